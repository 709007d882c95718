/** `uniroute fit`: fit a router on a dataset (prompts.jsonl, labels.csv, models.csv); K is chosen on validation prompts unless --clusters is given. */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { fitRouter } from '../../router/fit.js';
import { Progress } from '../progress.js';
import { type CliContext, readDataset, checkOutputFile, dataDir, rangeArg, usage, warnLine, intArg, numArg, listArg, costArg, remoteFrom, operatingPointText, table, coverageWarning, promptEmbeddingsOf, writeLine, PRICE_PER_BILLION_HELP, pricePerBillionArg, pricePerBillion } from '../shared.js';

/** Fewer prompts than this in the train or the validation part gets a warning. */
const MIN_PART = 50;

/** --clusters: a whole number >= 1, or "auto". */
const clustersArg = (v: string): number | 'auto' => {
  if (v === 'auto') return 'auto';
  const k = Number(v);
  if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError('--clusters must be a whole number >= 1, or "auto"');
  return k;
};

export function registerFit(program: Command, { io, quiet }: CliContext): void {
  program
    .command('fit')
    .description('fit a router on a dataset (prompts.jsonl, labels.csv, models.csv); K is chosen on validation prompts unless --clusters is given')
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--out <file>', 'where to write the router (.gz to compress)')
    .option('--train-models <list>', 'comma-separated training LLMs (default: all in labels.csv)', listArg)
    .option('--exclude-models <list>', 'comma-separated LLMs to leave out (e.g. one to add later as unseen)', listArg)
    .option('--clusters <k>', 'number of clusters (at most the train prompts), or "auto" (chosen on validation prompts)', 'auto')
    .option('--seed <n>', 'random seed', intArg('--seed'), 1)
    .option('--val-fraction <f>', 'share of prompts held out to compute the pool\'s error vectors, in (0, 1); the rest fit the embedder and the clusters', rangeArg('--val-fraction', 0, 1, '', true), 0.25)
    .option(
      '--prior-strength <a>',
      'a >= 0: each cluster\'s error is shrunk toward the LLM\'s prior there, sigma(cluster difficulty + the LLM\'s ability), as (errors + a x prior) / (outcomes + a); 0 = the plain mean (default: chosen from 4 and 16 on validation prompts together with K; 1 when --clusters fixes K)',
      numArg('--prior-strength'),
    )
    .option('--default-lambda <l>', 'a fixed default lambda, instead of the pool\'s operating point (recomputed on every change of the pool)', numArg('--default-lambda'))
    .option('--dim <d>', 'embedding dimension', intArg('--dim', 1), 256)
    .option('--model-cost <name=cost>', 'explicit cost per query (USD) for an LLM of the dataset, over its labels\' cost_usd and list price (repeatable)', costArg)
    .option('--price-per-billion-params <usd>', PRICE_PER_BILLION_HELP, pricePerBillionArg)
    .addOption(new Option('--method <m>', 'cluster map: nearest centroid (kmeans) or the learned map').choices(['kmeans', 'learned-map']).default('kmeans'))
    .option('--embeddings <jsonl>', 'use your own prompt embeddings ({"id", "embedding"} lines, one per prompt) instead of the built-in embedder')
    .option('--embedding-name <name>', 'name of the embedding model (recorded in the router)')
    .option('--embedder <spec>', 'embed through an OpenAI-compatible endpoint instead: openai:MODEL@BASE_URL (recorded in the router; route and serve use it too)')
    .option('--embedder-key-env <name>', 'environment variable holding the endpoint\'s API key', 'OPENAI_API_KEY')
    .option('--json', 'print the full fit report as JSON instead of the summary')
    .action(async (o) => {
      // option values are checked before any work starts (exit status 2)
      if (o.embedder && o.embeddings) usage('INVALID_ARGUMENT', 'give either --embedder or --embeddings, not both');
      const clusters = clustersArg(o.clusters);
      dataDir(o.data);
      checkOutputFile(o.out, '--out');
      const remote = o.embedder ? remoteFrom(o.embedder, o.embedderKeyEnv, !quiet()) : undefined;
      const progress = new Progress(!quiet());
      const ds = await readDataset(o.data, o.modelCost, progress); // --model-cost checked against it, before any work
      const n = ds.prompts.length;
      const nVal = Math.round(n * o.valFraction);
      const nTrain = n - nVal;
      if (nVal < 1 || nTrain < 1) usage('INVALID_ARGUMENT', `--val-fraction ${o.valFraction} leaves ${nTrain} train and ${nVal} validation prompts of ${n}: each part needs at least one`);
      if (clusters !== 'auto' && clusters > nTrain)
        usage('INVALID_ARGUMENT', `--clusters ${clusters} is more than the ${nTrain} train prompts (${n} prompts, --val-fraction ${o.valFraction}); give at most ${nTrain}, or "auto"`);
      if (nTrain < MIN_PART || nVal < MIN_PART)
        warnLine(
          `--val-fraction ${o.valFraction} leaves ${nTrain} train prompts (they fit the embedder and the clusters) and ${nVal} validation prompts ` +
            `(they describe the LLMs) of ${n}; with fewer than ${MIN_PART} in a part the router is mostly noise`,
        );
      let embeddings: { dim: number; data: Float32Array; name?: string } | undefined;
      if (o.embeddings) {
        const pe = await promptEmbeddingsOf(ds, o.embeddings);
        embeddings = { dim: pe.spec.dim, data: pe.data, name: o.embeddingName };
      }
      const { router, report } = await fitRouter(ds, {
        trainModels: o.trainModels,
        excludeModels: o.excludeModels,
        clusters,
        seed: o.seed,
        valFraction: o.valFraction,
        priorStrength: o.priorStrength,
        defaultLambda: o.defaultLambda,
        embedder: { dim: o.dim },
        costs: o.modelCost,
        pricePerBillionParams: pricePerBillion(o.pricePerBillionParams),
        embeddings,
        remoteEmbedder: remote,
        method: o.method,
        onProgress: (s, d, t) => progress.update(s, d, t),
      });
      await router.save(o.out);
      for (const m of report.models) if (m.coverage < 0.5) process.stderr.write(coverageWarning(m.name, m.coverage));
      for (const m of report.skipped ?? []) process.stderr.write(`warning: LLM "${m.name}" is not in the pool: ${m.reason}\n`);
      progress.done(`fitted ${report.clusters} clusters on ${report.trainPrompts} prompts, ${report.models.length} LLMs profiled on ${report.valPrompts} validation prompts in ${report.seconds.toFixed(1)} s -> ${o.out}`);
      if (o.json) await writeLine(io.stdout, JSON.stringify({ out: o.out, ...report }) + '\n');
      else {
        const grid = report.kSearch.length > 1 ? ` (chosen on validation prompts among ${[...new Set(report.kSearch.map((x) => x.k))].join(', ')})` : '';
        const lines = [
          `router     ${o.out}, fitted in ${report.seconds.toFixed(1)} s`,
          `clusters   ${report.clusters}${grid}; prior strength ${report.priorStrength}`,
          `prompts    ${report.trainPrompts} train, ${report.valPrompts} validation`,
          `operating  ${operatingPointText(router)}`,
          ...(report.operatingCheck
            ? [
                `           by the training LLMs' own outcomes on those ${report.operatingCheck.prompts} prompts: ${(100 * report.operatingCheck.costRatio).toFixed(0)} % of lambda 0's cost at ` +
                  `${(100 * report.operatingCheck.accuracyDiff >= 0 ? '+' : '') + (100 * report.operatingCheck.accuracyDiff).toFixed(2)} points of accuracy`,
              ]
            : []),
          '',
          table(
            ['LLM', 'cost/query', 'outcomes', 'coverage'],
            report.models.map((m) => [m.name, m.costPerQuery.toExponential(3), String(m.validationOutcomes), `${(100 * m.coverage).toFixed(0)} %`]),
          ),
          '(--json for the full report)',
        ];
        await writeLine(io.stdout, lines.join('\n') + '\n');
      }
    });
}
