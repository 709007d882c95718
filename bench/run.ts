/**
 * Microbenchmarks: embed, assign, score and end-to-end routing throughput on the prompts of ../shared/data (or
 * synthetic prompts where it is absent, said in every row), each with its ratio to the TypeScript reference
 * implementation measured in the same process. One JSON line per measurement on stdout, a table on stderr.
 *   npm run bench [-- --quick] [--json]
 */
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { readPrompts } from '../src/data/dataset.js';
import { getThreads, native, setThreads } from '../src/engine/native.js';
import { referenceAssign, referenceEmbed, referenceScore } from '../src/engine/reference.js';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const minSeconds = quick ? 0.3 : 1.5;

interface Row {
  name: string;
  backend: string;
  batch: number;
  threads: number;
  prompts_per_s: number;
  per_core_prompts_per_s: number;
  vs_reference: number | null;
  reference_prompts_per_s?: number;
  data: string;
  mean_chars: number;
  [k: string]: unknown;
}
const rows: Row[] = [];

/** Runs fn repeatedly for at least minSeconds (after one warm-up) and returns items per second. */
async function rate(items: number, fn: () => unknown | Promise<unknown>, min = minSeconds): Promise<number> {
  await fn();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < min * 1000) {
    await fn();
    n++;
    t = performance.now();
  }
  return (items * n) / ((t - t0) / 1000);
}

async function loadTexts(): Promise<{ texts: string[]; source: string }> {
  const dir = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'));
  const texts: string[] = [];
  for (const name of ['routerbench', 'zeroeval']) {
    const f = join(dir, name, 'prompts.jsonl');
    if (existsSync(f)) texts.push(...(await readPrompts(f)).map((p) => p.text));
  }
  if (texts.length) return { texts, source: `${dir} (${texts.length} real prompts)` };
  const words = 'the of a to solve python function integral empire war list return number compute'.split(' ');
  for (let i = 0; i < 6000; i++) texts.push(Array.from({ length: 150 }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' '));
  return { texts, source: 'synthetic prompts (../shared/data absent)' };
}

function emit(r: Row) {
  rows.push(r);
  process.stdout.write(JSON.stringify(r) + '\n');
}

const { texts, source } = await loadTexts();
const meanChars = texts.reduce((a, t) => a + t.length, 0) / texts.length;
const router = await Router.load(defaultRouterPath());
const h = router.hashed!;
const D = router.dim;
const K = router.k;
const snap = router.snapshot();
const M = snap.names.length;
const proj = { ...h.spec, projection: h.projection, scale: h.scale };
const refN = quick ? 100 : 400;
const refTexts = texts.slice(0, refN);
const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length };
const base = { backend: 'cpu', data: source, mean_chars: Math.round(meanChars), machine };

// references (same process, same prompts)
const refEmbedRate = await rate(refN, () => refTexts.forEach((t) => referenceEmbed(proj, t)));
const emb = h.embedSync(texts);
const n = texts.length;
const refAssignRate = await rate(refN, () => {
  for (let i = 0; i < refN; i++) referenceAssign(emb, i * D, D, router.centroids, K);
});
const clusters = new Int32Array(n);
native().assignSync(emb, n, D, router.centroids, K, clusters, null);
const refScoreRate = await rate(n, () => {
  for (let i = 0; i < n; i++) referenceScore(snap.psi, snap.cost, M, K, clusters[i], 0.0);
});
const refE2eRate = await rate(refN, () => {
  const e = new Float64Array(D);
  for (const t of refTexts) {
    referenceEmbed(proj, t, e);
    const c = referenceAssign(e, 0, D, router.centroids, K).index;
    referenceScore(snap.psi, snap.cost, M, K, c, 0);
  }
});

const threadCounts = [...new Set([1, Math.min(2, cpus().length), cpus().length])];
const batches = quick ? [4096] : [64, 1024, 4096];
const out = new Float32Array(n * D);
for (const threads of threadCounts) {
  setThreads(threads);
  const t = getThreads();
  const embedRate = await rate(n, () => h.nativeHandle.embed(texts, out));
  emit({ name: 'embed', ...base, batch: n, threads: t, prompts_per_s: embedRate, per_core_prompts_per_s: embedRate / t, vs_reference: embedRate / refEmbedRate, reference_prompts_per_s: refEmbedRate, gflops: (embedRate * 2 * D * 1000) / 1e9 });
  const idx = new Int32Array(n);
  const assignRate = await rate(n, () => native().assignSync(emb, n, D, router.centroids, K, idx, null));
  emit({ name: 'assign', ...base, batch: n, threads: t, prompts_per_s: assignRate, per_core_prompts_per_s: assignRate / t, vs_reference: assignRate / refAssignRate, reference_prompts_per_s: refAssignRate, gflops: (assignRate * 2 * D * K) / 1e9 });
  const choice = new Int32Array(n);
  const scoreRate = await rate(n, () => native().scoreSync({ clusters, psi: snap.psi, cost: snap.cost, m: M, k: K, lambda: 0, choice }));
  emit({ name: 'score', ...base, batch: n, threads: t, prompts_per_s: scoreRate, per_core_prompts_per_s: scoreRate / t, vs_reference: scoreRate / refScoreRate, reference_prompts_per_s: refScoreRate, models: M });
  for (const batch of batches) {
    const chunks: string[][] = [];
    for (let i = 0; i < n; i += batch) chunks.push(texts.slice(i, i + batch));
    const e2e = await rate(n, async () => {
      for (const c of chunks) await router.routeBatch(c, { lambda: 0 });
    });
    emit({ name: 'route-e2e', ...base, batch, threads: t, prompts_per_s: e2e, per_core_prompts_per_s: e2e / t, vs_reference: e2e / refE2eRate, reference_prompts_per_s: refE2eRate, models: M, clusters: K, dim: D });
  }
}
setThreads(0);

if (!args.has('--json')) {
  const f = (x: number) => Math.round(x).toLocaleString('en-US');
  process.stderr.write(`\n${source}; mean ${Math.round(meanChars)} chars; ${machine.cpu}, ${machine.cores} cores; D=${D}, K=${K}, M=${M}\n`);
  process.stderr.write('| kernel | batch | threads | prompts/s | per core | vs TS reference |\n|---|---|---|---|---|---|\n');
  for (const r of rows) process.stderr.write(`| ${r.name} | ${r.batch} | ${r.threads} | ${f(r.prompts_per_s)} | ${f(r.per_core_prompts_per_s)} | ${r.vs_reference ? r.vs_reference.toFixed(1) + 'x' : '-'} |\n`);
}
