/** `uniroute feedback`: add production outcomes to the pool in bulk: JSONL lines {"decision_id", "correct": 0|1 or "score": [0, 1], "model"?} (decision ids from /v1/route or x-uniroute-decision-id). */
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { DecisionSigner, reportedOutcome } from '../../pool/feedback.js';
import { jsonLines } from '../../data/jsonl.js';
import { type CliContext, numArg, loadWithPool, writeLine } from '../shared.js';

export function registerFeedback(program: Command, { io, quiet }: CliContext): void {
  program
    .command('feedback')
    .description('add production outcomes to the pool in bulk: JSONL lines {"decision_id", "correct": 0|1 or "score": [0, 1], "model"?} (decision ids from /v1/route or x-uniroute-decision-id)')
    .argument('<file>', 'the JSONL file, or - for stdin')
    .option('--router <file>', 'router file (default: the built-in router)')
    .requiredOption('--pool <url>', 'the pool store the decisions were made on: sqlite:PATH')
    .option('--half-life <hours>', 'decay an LLM\'s older evidence with this half-life first', numArg('--half-life'))
    .action(async (file, o) => {
      const secret = process.env.UNIROUTE_FEEDBACK_SECRET;
      if (!secret) throw new UnirouteError('INVALID_ARGUMENT', 'set UNIROUTE_FEEDBACK_SECRET to the servers\' secret: it checks the decision ids');
      const signer = new DecisionSigner(secret);
      const { live } = await loadWithPool(o.router, o.pool, 'cli', { change: 'feedback' });
      const tag = live!.modelHash.slice(0, 16);
      const tally = new Map<string, number>();
      const count = (k: string) => tally.set(k, (tally.get(k) ?? 0) + 1);
      try {
        for await (const { rec, line, malformed } of jsonLines(file, 'INVALID_ARGUMENT', { tolerant: true })) {
          try {
            if (malformed || !rec || typeof rec !== 'object') throw new UnirouteError('INVALID_ARGUMENT', 'not a JSON object');
            await live!.feedback({ ...reportedOutcome(rec, signer, tag), halfLifeMs: o.halfLife ? o.halfLife * 3_600_000 : undefined });
            count('counted');
          } catch (e) {
            const c = e instanceof UnirouteError ? e.code : 'ERROR';
            count(c);
            if (c !== 'ALREADY_COUNTED' && !quiet()) process.stderr.write(`${file}:${line}: ${c}: ${(e as Error).message}\n`);
          }
        }
      } finally {
        await live!.close();
      }
      const summary = [...tally].map(([k, n]) => `${n} ${k === 'counted' ? 'counted' : k}`).join(', ') || 'no lines';
      if (!quiet()) process.stderr.write(`feedback: ${summary}; pool version ${live!.version}\n`);
      await writeLine(io.stdout, JSON.stringify({ counted: tally.get('counted') ?? 0, refused: Object.fromEntries([...tally].filter(([k]) => k !== 'counted')), pool_version: live!.version }) + '\n');
      if ([...tally.keys()].some((k) => k !== 'counted' && k !== 'ALREADY_COUNTED')) process.exitCode = 1;
    });
}
