/** `uniroute eval`: the paper's unseen-LLM protocol: UniRoute (K-means, learned map) against baselines, deferral curves and their area. */
import { mkdirSync } from 'node:fs';
import { basename, resolve as resolvePath } from 'node:path';
import { type Command } from 'commander';
import { ALL_METHODS, EXTRA_METHODS } from '../../eval/protocol.js';
import { Progress } from '../progress.js';
import { type CliContext, readDataset, costArg, dataDir, rangeArg, usage, intArg, numArg, listArg, remoteFrom, promptEmbeddingsOf, writeLine, PRICE_PER_BILLION_HELP, pricePerBillionArg, pricePerBillion } from '../shared.js';

export function registerEval(program: Command, { io, quiet }: CliContext): void {
  program
    .command('eval')
    .description("the paper's unseen-LLM protocol: UniRoute (K-means, learned map) against baselines, deferral curves and their area")
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--out <dir>', 'report folder (report.json, report.md, deferral.svg)')
    .option('--seeds <n>', 'random seeds (trials)', intArg('--seeds', 1), 5)
    .option('--first-seed <n>', 'first seed', intArg('--first-seed'), 1)
    .option('--unseen-fraction <f>', 'share of the LLMs with complete outcomes held out as unseen, in (0, 1)', rangeArg('--unseen-fraction', 0, 1, '', true), 0.5)
    .option('--val-prompts <list>', 'validation prompts per unseen LLM; a list (25,50,100,200,400) sweeps label efficiency', (v: string) => v.split(',').map((x) => intArg('--val-prompts', 1)(x.trim())))
    .option('--test-fraction <f>', 'share of prompts held out for testing, in (0, 1)', rangeArg('--test-fraction', 0, 1, '', true), 0.3)
    .option('--methods <list>', `comma-separated methods to run (default: all): ${[...ALL_METHODS, ...EXTRA_METHODS].join(', ')}`, listArg)
    .option('--exclude-models <list>', 'comma-separated LLMs to leave out of the protocol', listArg)
    .option('--dim <d>', 'embedding dimension', intArg('--dim', 1), 256)
    .option('--model-cost <name=cost>', 'explicit cost per query (USD) for an LLM of the dataset, over its labels\' cost_usd and list price (repeatable)', costArg)
    .option('--price-per-billion-params <usd>', PRICE_PER_BILLION_HELP, pricePerBillionArg)
    .option('--title <text>', 'report title')
    .option('--linear-cost', 'a linear cost axis in the plots (default: log scale)')
    .option('--log-cost', 'a log-scale cost axis (the default; kept for scripts)')
    .option('--embedder <spec>', 'embed every prompt once through an OpenAI-compatible endpoint: openai:MODEL@BASE_URL')
    .option('--embeddings <jsonl>', 'or your own prompt embeddings: {"id", "embedding"} lines, one per prompt')
    .option('--embedder-key-env <name>', 'environment variable holding the endpoint\'s API key', 'OPENAI_API_KEY')
    .option('--online', 'also replay the test prompts as traffic: each unseen LLM starts from --start-labels validation labels, each decision\'s true outcome comes back as feedback; reports the cumulative regret against the router that knows every validation label, per --explore rate (online-regret.svg)')
    .option('--start-labels <n>', 'with --online: validation labels each unseen LLM starts from', intArg('--start-labels', 1), 10)
    .option('--explore <list>', 'with --online: exploration rates to compare (0 = greedy)', (v: string) => v.split(',').map((x) => numArg('--explore')(x.trim())), [0, 0.1])
    .action(async (o) => {
      // option values are checked before any work starts (exit status 2)
      const known = new Set<string>([...ALL_METHODS, ...EXTRA_METHODS]);
      for (const r of o.explore) if (!(r >= 0 && r <= 1)) usage('INVALID_ARGUMENT', `--explore rates must be in [0, 1]; got ${r}`);
      if (o.online && o.methods && !o.methods.includes('uniroute-kmeans')) usage('INVALID_ARGUMENT', '--online replays uniroute-kmeans: include it in --methods');
      for (const m of o.methods ?? []) if (!known.has(m)) usage('INVALID_ARGUMENT', `unknown method "${m}" (known: ${[...known].join(', ')})`);
      dataDir(o.data);
      try {
        mkdirSync(o.out, { recursive: true });
      } catch (e) {
        usage('IO_ERROR', `--out ${o.out}: cannot create the report folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      const { evaluate } = await import('../../eval/protocol.js');
      const { writeReport, markdownTable, operatingPointLine, calibrationTable, onlineTable } = await import('../../eval/report.js');
      const progress = new Progress(!quiet());
      const ds = await readDataset(o.data, o.modelCost, progress); // --model-cost checked against it, before any work
      const t0 = Date.now();
      const report = await evaluate(ds, {
        seeds: o.seeds,
        firstSeed: o.firstSeed,
        unseenFraction: o.unseenFraction,
        valPrompts: o.valPrompts,
        testFraction: o.testFraction,
        methods: o.methods,
        excludeModels: o.excludeModels,
        dim: o.dim,
        costs: o.modelCost,
        pricePerBillionParams: pricePerBillion(o.pricePerBillionParams),
        remoteEmbedder: o.embedder ? remoteFrom(o.embedder, o.embedderKeyEnv, false) : undefined,
        promptEmbeddings: o.embeddings ? await promptEmbeddingsOf(ds, o.embeddings) : undefined,
        ...(o.online ? { online: { startLabels: o.startLabels, explore: o.explore } } : {}),
        onProgress: (s, d, t, detail) => progress.update(s, d, t, detail),
      });
      (report.settings as any).seconds = (Date.now() - t0) / 1000;
      // the data set's name, not its path, as the title
      const files = await writeReport(o.out, report, o.title ?? basename(resolvePath(o.data)), !o.linearCost);
      progress.done(`${o.seeds === 1 ? '1 seed' : `${o.seeds} seeds`} in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${files.join(', ')}`);
      await writeLine(
        io.stdout,
        markdownTable(report) +
          '\n' +
          (report.operating_point ? operatingPointLine(report) + '\n' : '') +
          (report.calibration ? '\n' + calibrationTable(report) + '\n' : '') +
          (report.online ? '\n' + onlineTable(report) + '\n' : ''),
      );
    });
}
