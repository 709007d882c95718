/**
 * Regenerates the built-in default router (models/default.uniroute.gz) from the four data sets of ../shared/data:
 * two of benchmark questions (routerbench, zeroeval) and two of chat-style instructions (alpacaeval, arenabench), so
 * that the prompts a gateway sees every day (greetings, rewriting, translation, advice, short code) lie near a cluster.
 * The artifact holds numbers only (IDF x projection rows, centroids, per-cluster error sums and counts, costs):
 * no prompt text. Open models without a list price get a proxy price proportional to their active parameters
 * (0.0125 USD per 1M tokens per billion parameters: Llama-3-70B's $0.88 / 70.6B), as ../shared/data/README.md suggests.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadDataset, mergeDatasets } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Progress } from '../src/cli/progress.js';

const dataDir = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'));
const out = resolve(process.argv[2] ?? join(process.cwd(), 'models', 'default.uniroute.gz'));
const SETS = ['routerbench', 'zeroeval', 'alpacaeval', 'arenabench'];
const missing = SETS.filter((s) => !existsSync(join(dataDir, s)));
if (missing.length) {
  process.stderr.write(`fit:default needs ${missing.map((s) => join(dataDir, s)).join(', ')} (set UNIROUTE_DATA)\n`);
  process.exit(1);
}
const progress = new Progress(true);
const parts = [];
for (const name of SETS) {
  progress.update(`reading ${name}`, 0);
  parts.push({ name, ds: await loadDataset(join(dataDir, name)) });
}
const ds = mergeDatasets(parts);
// the sets were graded on different LLMs: at least one cluster per benchmark, so that no cluster mixes them (the
// validation area alone is flat across K on merged sets, whose LLMs have outcomes on a part of the prompts only)
const benchmarks = new Set(ds.prompts.map((p) => p.benchmark ?? '')).size;
const { router, report } = await fitRouter(ds, {
  seed: 1,
  minClusters: benchmarks,
  pricePerBillionParams: 0.0125,
  onProgress: (s, d, t) => progress.update(s, d, t),
});
for (const m of report.skipped ?? []) process.stderr.write(`not in the pool: ${m.name}: ${m.reason}\n`);
router.info = { ...router.info, source: `uniroute fit:default on ../shared/data ${SETS.join(' + ')}` };
await router.save(out);
progress.done(
  `default router: ${report.clusters} clusters, prior strength ${report.priorStrength} (chosen on validation), ` +
    `${report.models.length} LLMs, ${report.trainPrompts} train / ${report.valPrompts} validation prompts, ${report.seconds.toFixed(1)} s -> ${out}`,
);
