/** `uniroute suggest-labels`: pick the candidate prompts whose outcomes would most improve routing for a new (or thinly evidenced) LLM; writes them as JSONL, ready to send to it. */
import { once } from 'node:events';
import { type Command, Option } from 'commander';
import { UnirouteError } from '../../errors.js';
import { readRecords } from '../../data/jsonl.js';
import { type CliContext, accessFrom, intArg, numArg, warnLine, loadRouter, openOutput, writeLine } from '../shared.js';

export function registerSuggestLabels(program: Command, { io, quiet }: CliContext): void {
  program
    .command('suggest-labels')
    .description('pick the candidate prompts whose outcomes would most improve routing for a new (or thinly evidenced) LLM; writes them as JSONL, ready to send to it')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1); without this or --embedder-url, no prompt is sent anywhere')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or put the key in UNIROUTE_EMBEDDER_KEY); a key variable named in a router file is never used")
    .requiredOption('--candidates <jsonl>', 'candidate prompts: {"id", "text"} lines ({"id", "embedding"} for a router on your own embeddings), e.g. a sample of your traffic')
    .requiredOption('--budget <n>', 'how many prompts to suggest', intArg('--budget', 1))
    .option('--model <name>', 'the LLM to label for: one in the pool (its outcomes so far count) or a new name')
    .option('--cost <usd>', 'the new LLM\'s cost per query (to favour prompts where it is close to winning)', numArg('--cost'))
    .option('--lambda <l>', 'the routing the labels should improve (default: the router\'s)', numArg('--lambda'))
    .option('--seed <n>', 'random seed', intArg('--seed'), 1)
    .addOption(new Option('--order <order>', 'the order within a cluster: shuffle (seeded), or given (the file\'s order, for candidates already sampled at random)').choices(['shuffle', 'given']).default('shuffle'))
    .option('--output <file>', 'output JSONL, or - for stdout', '-')
    .addOption(new Option('--max-errors <n>', 'stop after this many bad candidate lines (fewer are skipped with a warning; 0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .action(async (o) => {
      const router = await loadRouter(o.router, accessFrom(o));
      const recs: any[] = [];
      const seen = new Set<string>();
      const good = await readRecords(
        o.candidates,
        (rec, line) => {
          if (rec?.id === undefined) throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates}:${line}: needs an "id"`);
          if (router.takesText ? typeof rec.text !== 'string' || !rec.text.trim() : !Array.isArray(rec.embedding) || rec.embedding.length !== router.dim)
            throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates}:${line}: needs ${router.takesText ? 'a non-empty string "text"' : `an "embedding" of ${router.dim} numbers`}`);
          return rec;
        },
        { maxErrors: o.maxErrors, warn: warnLine },
      );
      for (const rec of good) {
        // the same prompt twice is one candidate
        const key = router.takesText ? rec.text : String(rec.id);
        if (seen.has(key)) continue;
        seen.add(key);
        recs.push(rec);
      }
      if (recs.length === 0) throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates} has no candidate prompt`);
      const cand = router.takesText ? recs.map((r) => r.text as string) : Float32Array.from(recs.flatMap((r) => r.embedding as number[]));
      const picks = await router.suggestLabels(cand, { budget: o.budget, model: o.model, costPerQuery: o.cost, lambda: o.lambda, seed: o.seed, order: o.order });
      const out = o.output === '-' ? io.stdout : await openOutput(o.output);
      for (const p of picks) await writeLine(out, JSON.stringify({ ...recs[p.index], cluster: p.cluster, reason: p.reason }) + '\n');
      if (out !== io.stdout) {
        out.end();
        await once(out, 'finish');
      }
      if (!quiet())
        process.stderr.write(
          `suggested ${picks.length} of ${recs.length} candidates${picks.length < o.budget ? ' (all of them)' : ''}` +
            ` for ${o.model ? `"${o.model}"` : 'a new LLM'}: ${picks.filter((p) => p.reason === 'coverage').length} spread over the traffic, ` +
            `${picks.filter((p) => p.reason === 'value').length} where a label narrows the posterior most\n`,
        );
    });
}
