/** `uniroute add-model`: take an unseen LLM into the pool from its outcomes on validation prompts, without refitting anything. */
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { UnirouteError } from '../../errors.js';
import { addCostRow, costFrom, newCostAcc, readLabels, readModels, readPrompts } from '../../data/dataset.js';
import { readRecords } from '../../data/jsonl.js';
import { type CliContext, accessFrom, checkOutputFile, dataDir, usage, intArg, numArg, warnLine, coverageWarning, POOL_HELP, loadWithPool, cliUser, readEmbeddings, writeLine, PRICE_PER_BILLION_HELP, pricePerBillionArg, pricePerBillion } from '../shared.js';

export function registerAddModel(program: Command, { io }: CliContext): void {
  program
    .command('add-model')
    .description('take an unseen LLM into the pool from its outcomes on validation prompts, without refitting anything')
    .option('--router <file>', 'router file to update (default: the built-in router, which then needs --out)')
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1); without this or --embedder-url, no prompt is sent anywhere')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or put the key in UNIROUTE_EMBEDDER_KEY); a key variable named in a router file is never used")
    .requiredOption('--name <name>', 'the LLM\'s name')
    .option('--labels <csv>', 'outcomes as prompt_id,model,correct[,cost_usd] rows (texts looked up in --data); this or --outcomes is required')
    .option('--data <dir>', 'dataset folder holding prompts.jsonl (and models.csv for list prices)')
    .option('--outcomes <jsonl>', 'outcomes as {"text", "correct"} lines ({"embedding", "correct"} for a router on your own embeddings); this or --labels is required')
    .option('--embeddings <jsonl>', 'with --labels, for a router on your own embeddings: {"id", "embedding"} lines')
    .option('--cost <usd>', 'cost per query (wins over anything in the files)', numArg('--cost'))
    .option('--price-per-billion-params <usd>', 'with --labels: ' + PRICE_PER_BILLION_HELP, pricePerBillionArg)
    .option('--out <file>', 'write the updated router here instead of in place')
    .option('--replace', 'replace the LLM if it is already in the pool (its old outcomes are dropped)')
    .option('--json', 'print the added LLM as JSON instead of the summary')
    .addOption(new Option('--max-errors <n>', 'with --outcomes: stop after this many bad lines (fewer are skipped with a warning; 0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .option('--pool <url>', POOL_HELP)
    .option('--if-version <n>', 'with --pool: change only if the pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      // option values and combinations are checked before any work
      if (!!o.labels === !!o.outcomes) usage('INVALID_ARGUMENT', 'give exactly one of --labels or --outcomes');
      if (!o.router && !o.out && !o.pool) usage('INVALID_ARGUMENT', 'the built-in router is read-only: pass --pool URL, --router FILE or --out FILE');
      if (o.labels && !o.data) usage('INVALID_ARGUMENT', '--labels needs --data DIR to look up the prompt texts');
      if (o.data) dataDir(o.data);
      if (o.out) checkOutputFile(o.out, '--out');
      else if (o.router && !o.pool) checkOutputFile(o.router, '--router'); // written in place
      const { router, live } = await loadWithPool(o.router, o.pool, 'cli', { change: 'add-model', access: accessFrom(o) });
      const outcomes: Array<{ text?: string; embedding?: ArrayLike<number>; correct: number }> = [];
      let cost: number | undefined = o.cost;
      if (o.labels) {
        const prompts = new Map((await readPrompts(join(o.data, 'prompts.jsonl'))).map((p) => [p.id, p.text]));
        const emb = router.takesText ? undefined : o.embeddings ? await readEmbeddings(o.embeddings) : undefined;
        if (!router.takesText && !emb) usage('INVALID_ARGUMENT', 'this router works on your own embeddings: pass --embeddings FILE with --labels');
        const acc = newCostAcc();
        const others = new Set<string>();
        for await (const r of readLabels(o.labels)) {
          if (r.model !== o.name) {
            others.add(r.model);
            continue;
          }
          const text = prompts.get(r.promptId);
          if (text === undefined) throw new UnirouteError('BAD_DATASET', `${o.labels}: prompt_id "${r.promptId}" is not in ${o.data}/prompts.jsonl`);
          if (emb) {
            const e = emb.rows.get(r.promptId);
            if (!e) throw new UnirouteError('INVALID_ARGUMENT', `${o.embeddings} has no embedding for prompt "${r.promptId}"`);
            outcomes.push({ embedding: e, correct: r.correct });
          } else outcomes.push({ text, correct: r.correct });
          addCostRow(acc, r, text);
        }
        if (outcomes.length === 0)
          throw new UnirouteError('UNKNOWN_MODEL', `${o.labels} has no row for model "${o.name}"${others.size ? ` (it has: ${[...others].slice(0, 10).join(', ')})` : ''}`);
        if (cost === undefined)
          cost = costFrom(o.name, acc, (await readModels(join(o.data, 'models.csv'))).get(o.name), { pricePerBillionParams: pricePerBillion(o.pricePerBillionParams) });
      } else {
        const what = router.takesText ? 'a string "text"' : 'an "embedding" array';
        const good = await readRecords(
          o.outcomes,
          (rec, line) => {
            // everything the router would refuse is refused here, so that a message names the file's line (the
            // router counts only the lines kept)
            const at = `${o.outcomes}:${line}`;
            if ((router.takesText ? typeof rec?.text !== 'string' : !Array.isArray(rec?.embedding)) || !(Number(rec.correct) >= 0 && Number(rec.correct) <= 1))
              throw new UnirouteError('INVALID_ARGUMENT', `${at}: needs ${what} and "correct" in [0, 1]`);
            if (router.takesText) {
              if (!/\S/.test(rec.text)) throw new UnirouteError('EMPTY_TEXT', `${at}: "text" is empty`);
              return { text: rec.text as string, correct: Number(rec.correct) };
            }
            const e = rec.embedding as unknown[];
            if (e.length !== router.dim) throw new UnirouteError('DIMENSION_MISMATCH', `${at}: "embedding" has ${e.length} values; the router expects ${router.dim}`);
            if (!e.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new UnirouteError('NON_FINITE', `${at}: "embedding" has a value that is not a finite number`);
            return { embedding: e as number[], correct: Number(rec.correct) };
          },
          { maxErrors: o.maxErrors, warn: warnLine },
        );
        outcomes.push(...good);
      }
      if (cost === undefined)
        throw new UnirouteError('NO_COST', `no cost for LLM "${o.name}": pass --cost (no cost_usd in the labels and no list price in models.csv)`);
      if (router.has(o.name) && !o.replace) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${o.name}" is already in the pool: pass --replace to replace it`);
      let info;
      let dest: string;
      if (live) {
        try {
          info = await live.addModel(o.name, { costPerQuery: cost, outcomes }, { replace: !!o.replace, ifVersion: o.ifVersion, by: cliUser() });
        } finally {
          await live.close();
        }
        dest = `${live.store.description} (pool version ${info.version})`;
      } else {
        if (router.has(o.name)) router.removeModel(o.name);
        info = await router.addModel(o.name, { costPerQuery: cost, outcomes });
        dest = o.out ?? o.router;
        await router.save(dest);
      }
      if (info.coverage < 0.5) process.stderr.write(coverageWarning(info.name, info.coverage));
      if (o.json) await writeLine(io.stdout, JSON.stringify({ name: info.name, costPerQuery: info.costPerQuery, outcomes: info.outcomes, overallError: info.overallError, predictedError: info.predictedError, coverage: info.coverage }) + '\n');
      else
        await writeLine(
          io.stdout,
          `added "${info.name}" -> ${dest}: ${info.outcomes} outcomes (observed error ${info.overallError.toFixed(3)}), predicted error ${info.predictedError.toFixed(3)} over the training distribution, ` +
            `cost ${info.costPerQuery.toExponential(3)} per query, coverage ${(100 * info.coverage).toFixed(0)} % of the prompts\n`,
        );
    });
}
