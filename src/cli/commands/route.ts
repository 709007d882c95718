/** `uniroute route`: route JSONL prompts ({"id", "text"} per line) to LLMs; writes JSONL decisions in input order, streaming. */
import { once } from 'node:events';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { UnirouteError } from '../../errors.js';
import { decisionJson, explainRow, type RouteBatch } from '../../router/router.js';
import { costJson } from '../../decide/explain.js';
import { Progress } from '../progress.js';
import { jsonLineBatches } from '../../data/jsonl.js';
import { type CliContext, accessFrom, intArg, numArg, rangeArg, listArg, POOL_HELP, loadWithPool, openOutput, usage, warnLine, writeLine } from '../shared.js';

/** --shard I/N: the I-th of N interleaved shards, 1 <= I <= N. */
const shardArg = (v: string) => {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  if (!m || Number(m[2]) < 1 || Number(m[1]) < 1 || Number(m[1]) > Number(m[2]))
    throw new InvalidArgumentError(`--shard must be I/N with 1 <= I <= N (got ${JSON.stringify(v)})`);
  return { i: Number(m[1]), n: Number(m[2]) };
};

export function registerRoute(program: Command, { io, quiet }: CliContext): void {
  program
    .command('route')
    .description('route JSONL prompts ({"id", "text"} per line) to LLMs; writes JSONL decisions in input order, streaming')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1); without this or --embedder-url, no prompt is sent anywhere')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or put the key in UNIROUTE_EMBEDDER_KEY); a key variable named in a router file is never used")
    .option('--lambda <l>', 'error-per-cost trade-off (0 = lowest predicted error); default: the router\'s', numArg('--lambda'))
    .option('--tradeoff <t>', 'the unit-free knob instead of --lambda: t in [0, 1], 0 = lowest predicted error, 1 = the cheapest LLM (uniroute models prints what it means for this pool)', rangeArg('--tradeoff', 0, 1, '0 = lowest predicted error, 1 = cheapest'))
    .option('--max-cost <usd>', 'instead of --lambda: the most accurate routing with mean cost per query at most this (lambda calibrated on the first batch, then fixed)', numArg('--max-cost'))
    .option('--min-accuracy <a>', 'instead of --lambda: the cheapest routing with mean predicted accuracy at least this, in [0, 1] (calibrated likewise)', rangeArg('--min-accuracy', 0, 1, 'a mean predicted accuracy'))
    .option('--max-error <e>', 'a quality floor instead of --lambda: the cheapest LLM whose predicted error is at most e, in [0, 1] (the lowest predicted error where none is)', rangeArg('--max-error', 0, 1, 'a predicted error'))
    .option('--models <list>', 'comma-separated LLMs allowed (default: the whole pool)', listArg)
    .option('--ood-quantile <q>', 'a prompt farther from its nearest centroid than this quantile of the training prompts is out of distribution ("ood": true) (default 0.99)', numArg('--ood-quantile'))
    .option('--ood-fallback <rule>', 'how out-of-distribution prompts are decided: prior (default: on every LLM\'s error averaged over the clusters, at the same lambda, so by cost as any prompt), best-overall (the LLM with the lowest such error, whatever it costs), an LLM\'s name, or route (flag only)')
    .option('--no-ood', 'no out-of-distribution check')
    .option('--input <file>', 'input JSONL, or - for stdin', '-')
    .option('--output <file>', 'output JSONL, or - for stdout', '-')
    .option('--shard <i/n>', 'route only the I-th of N interleaved shards of the input lines, 1 <= I <= N (a fleet splits one file)', shardArg)
    .option('--explain', 'add every candidate LLM\'s predicted error, cost, outcomes in the prompt\'s cluster, evidence flag and 95 % interval')
    .option('--risk <k>', 'route on the predicted error + k posterior sd, so that LLMs described by few outcomes (or none where the prompt lies) are trusted only as far as their outcomes show (default 0: the posterior mean)', numArg('--risk'))
    .addOption(new Option('--batch-size <n>', 'prompts per native batch').argParser(intArg('--batch-size', 1)).default(4096))
    .addOption(new Option('--max-errors <n>', 'stop after this many bad input lines, with a summary (0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .option('--pool <url>', POOL_HELP)
    .action(async (o) => {
      // option values are checked before any work (their parsers refuse values out of range)
      const targets = [o.lambda, o.tradeoff, o.maxCost, o.minAccuracy, o.maxError].filter((x) => x !== undefined).length;
      if (targets > 1) usage('INVALID_ARGUMENT', 'give at most one of --lambda, --tradeoff, --max-cost, --min-accuracy and --max-error');
      const shard: { i: number; n: number } | undefined = o.shard;
      const { router, live } = await loadWithPool(o.router, o.pool, 'cli', { readOnly: true, access: accessFrom(o) });
      await live?.close(); // routes on the pool as it is now
      let lambda: number | undefined = o.tradeoff !== undefined ? router.lambdaForTradeoff(o.tradeoff) : o.lambda;
      let mix: { lambda: number; share: number } | undefined; // a calibrated target between two lambdas
      let dispatched = 0; // prompts sent to routing so far (the mix's assignment continues across batches)
      const calibrate = o.maxCost !== undefined || o.minAccuracy !== undefined;
      const out = o.output === '-' ? io.stdout : await openOutput(o.output);
      const progress = new Progress(!quiet() && (o.output !== '-' || !!process.stderr.isTTY));
      let routed = 0;
      const t0 = Date.now();
      const share = new Map<string, number>();
      let costSum = 0;
      let errSum = 0;
      let failed = 0;
      type Item = { line: number; id: unknown; text?: string; embedding?: number[]; error?: { code: string; message: string } };
      const byText = !!router.takesText;
      let batch: Item[] = [];
      // Routing of one batch overlaps the reading and parsing of the next (the engine works off the event loop);
      // decisions are written in input order, and at most two batches are held.
      let writing: Promise<void> = Promise.resolve();
      const flush = async () => {
        const items = batch;
        batch = [];
        const ok = items.filter((b) => !b.error);
        if (ok.length && calibrate && lambda === undefined) {
          if (!byText) throw new UnirouteError('INVALID_ARGUMENT', '--max-cost / --min-accuracy need a router on texts');
          const c = await router.calibrateLambda(ok.map((b) => b.text!), { maxCost: o.maxCost, minAccuracy: o.minAccuracy }, { models: o.models, risk: o.risk });
          lambda = c.lambda;
          mix = c.mix;
          const target = o.maxCost !== undefined ? `mean cost <= ${o.maxCost}` : `predicted accuracy >= ${o.minAccuracy}`;
          if (!quiet() || !c.feasible)
            process.stderr.write(
              `${c.feasible ? '' : 'warning: the target cannot be met; using the closest routing. '}lambda = ${c.lambda.toPrecision(4)}` +
                (c.mix ? `, and ${(100 * c.mix.share).toFixed(1)} % of prompts at lambda = ${c.mix.lambda.toPrecision(4)} (no single lambda lands within 5 % of the target)` : '') +
                ` for ${target}; reached on the first ${ok.length} prompts: mean cost ${c.meanCost.toPrecision(4)}, predicted accuracy ${c.predictedAccuracy.toFixed(4)}\n`,
            );
        }
        const ood = o.ood === false ? (false as const) : { quantile: o.oodQuantile, fallback: o.oodFallback };
        const policy = { lambda, models: o.models, risk: o.risk, explain: !!o.explain, maxError: o.maxError, ood, ...(mix ? { mix: { ...mix, offset: dispatched } } : {}) };
        dispatched += ok.length;
        let routing: Promise<RouteBatch | undefined> = Promise.resolve(undefined);
        if (ok.length && byText) routing = router.routeBatch(ok.map((b) => b.text!), policy);
        else if (ok.length) {
          const e = new Float32Array(ok.length * router.dim);
          ok.forEach((b, i) => e.set(b.embedding!, i * router.dim));
          routing = router.routeEmbeddings(e, policy);
        }
        routing.catch(() => undefined); // awaited below, in order; this only keeps an early failure from being unhandled
        const previous = writing;
        writing = (async () => {
          await previous;
          const res = await routing;
          await writeLine(out, formatDecisions(items, res));
          progress.update('routed', routed + failed);
        })();
        writing.catch(() => undefined); // a failure surfaces at the next await of `writing`, not as unhandled
        await previous; // the batch before has been written: at most this one is in flight
      };
      // decision lines without the generic replacer (most of the time of a large batch was JSON.stringify's)
      const modelJson = new Map<string, string>();
      const r5 = (v: number) => String(Number.isInteger(v) ? v : +v.toFixed(5));
      const formatDecisions = (items: Item[], res: RouteBatch | undefined): string => {
        let j = 0;
        let chunk = '';
        const fast = !!res && !o.explain && res.predictedError.length === 0;
        for (const b of items) {
          if (b.error) {
            failed++;
            chunk += JSON.stringify({ id: b.id ?? null, line: b.line, error: b.error }) + '\n';
            continue;
          }
          const simpleId = typeof b.id === 'string' || Number.isInteger(b.id) || b.id === null;
          if (fast && simpleId) {
            const c = res!.choice[j];
            const model = res!.models[c];
            const cost = res!.costs[c];
            const err = res!.chosenError[j];
            let mj = modelJson.get(model);
            if (mj === undefined) modelJson.set(model, (mj = JSON.stringify(model)));
            share.set(model, (share.get(model) ?? 0) + 1);
            costSum += cost;
            errSum += err;
            chunk +=
              `{"id":${JSON.stringify(b.id)},"model":${mj},"cluster":${res!.cluster[j]},"distance":${r5(res!.distance[j])},` +
              `"predicted_error":${r5(err)},"cost":${costJson(cost)},"ood":${res!.ood[j] === 1}}\n`;
          } else {
            const d = explainRow(res!, j);
            share.set(d.model, (share.get(d.model) ?? 0) + 1);
            costSum += d.cost;
            errSum += d.predictedError;
            chunk += decisionJson(d, !!o.explain, b.id) + '\n';
          }
          j++;
          routed++;
        }
        return chunk;
      };
      let seq = 0;
      let bad = 0;
      let stopped = false;
      let firstError: string | undefined;
      let noId = 0; // routed lines without an "id": their decisions carry "id": null
      let firstNoId = 0;
      read: for await (const lines of jsonLineBatches(o.input, 'INVALID_ARGUMENT', { tolerant: true })) {
        for (const { rec, line, malformed, why } of lines) {
          // --shard I/N: the I-th of N interleaved shards of the (non-blank) lines, so that machines can split a file
          if (shard && seq++ % shard.n !== shard.i - 1) continue;
          const item: Item = { line, id: null };
          if (malformed) item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: ${why ?? 'malformed JSON'}` };
          else {
            item.id = rec?.id ?? null;
            if (!byText) {
              const e = rec?.embedding;
              if (!Array.isArray(e)) item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: this router needs an "embedding" array` };
              else if (e.length !== router.dim) item.error = { code: 'DIMENSION_MISMATCH', message: `line ${line}: "embedding" has ${e.length} values; the router expects ${router.dim}` };
              else if (!e.every((v: unknown) => typeof v === 'number' && Number.isFinite(v))) item.error = { code: 'NON_FINITE', message: `line ${line}: "embedding" has a value that is not a finite number` };
              else item.embedding = e;
            } else if (typeof rec?.text !== 'string') item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: "text" must be a string` };
            else if (!/\S/.test(rec.text)) item.error = { code: 'EMPTY_TEXT', message: `line ${line}: "text" is empty` };
            else item.text = rec.text;
          }
          if (item.error && firstError === undefined) firstError = item.error.message;
          if (!item.error && item.id === null && ++noId === 1) firstNoId = line;
          batch.push(item);
          if (item.error && ++bad >= o.maxErrors && o.maxErrors > 0) {
            // the wrong file, most likely: stop instead of writing one error record per line of it
            stopped = true;
            break read;
          }
          if (batch.length >= o.batchSize) await flush();
        }
      }
      if (batch.length) await flush();
      await writing;
      if (stopped) {
        const first = firstError ?? '';
        process.stderr.write(
          `uniroute: INVALID_ARGUMENT: stopped after ${bad} bad input lines (--max-errors ${o.maxErrors}); the first: ${first}. ` +
            `Is ${o.input === '-' ? 'standard input' : o.input} JSONL of {"id", "text"} lines? (--max-errors 0 never stops)\n`,
        );
        process.exitCode = 2;
      }
      if (out !== io.stdout) {
        out.end();
        await once(out, 'finish');
      }
      const secs = (Date.now() - t0) / 1000;
      const top = [...share].sort((a, b) => b[1] - a[1]);
      const shares = top
        .slice(0, 4)
        .map(([m, c]) => `${m} ${((100 * c) / Math.max(1, routed)).toFixed(1)} %`)
        .join(', ');
      // the summary goes to stderr whether or not it is a terminal (a pipeline's log keeps it); stopping said its own
      progress.done();
      if (!quiet() && !stopped)
        process.stderr.write(
          `routed ${routed} prompt${routed === 1 ? '' : 's'} in ${secs.toFixed(1)} s (${Math.round(routed / Math.max(secs, 1e-3)).toLocaleString('en-US')}/s, ` +
              `peak memory ${Math.round(process.resourceUsage().maxRSS / 1024)} MB)` +
              `${failed ? `, ${failed} lines failed` : ''}` +
              (routed
                ? `; mean cost ${(costSum / routed).toExponential(3)}, mean predicted error ${(errSum / routed).toFixed(3)}; ` +
                  `${shares}${top.length > 4 ? `, ${top.length - 4} more LLMs` : ''}`
                : '') +
            '\n',
        );
      if (noId)
        warnLine(
          `${noId} input line${noId === 1 ? '' : 's'} had no "id" (the first: line ${firstNoId}); ` +
            `${noId === 1 ? 'its decision carries' : 'their decisions carry'} "id": null. Give each prompt an "id" to match decisions to prompts`,
        );
      if (routed + failed === 0) process.stderr.write(`uniroute: ${o.input === '-' ? 'standard input' : o.input} has no prompt line: nothing routed\n`);
      if (failed && !stopped) {
        process.stderr.write(`uniroute: ${failed} input line(s) could not be routed (see their "error" records)\n`);
        process.exitCode = 2;
      }
    });
}
