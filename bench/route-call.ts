/**
 * The cost of one routing call on the event loop (what the gateway's micro-batcher does for a turn's prompts), on
 * the built-in router: the route model (Router.routeBatchSync: the route's fixed parts checked and copied into the
 * engine once per pool snapshot, then λ, the mask and the outputs per call) against the previous call path, run in
 * the same process on the same prompts and options: the same native route with every part (centroids, Ψ, costs,
 * difficulty model, evidence cells) passed as properties of one object and checked again on every call. Both
 * write the same decisions (checked here before timing). CPU time per prompt, at batches of 1, 4, 16 and 64.
 *   node dist/bench/route-call.js [--calls 40000]
 * Writes results/bench/route-call.jsonl.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { machineInfo } from './machine.js';
import { chatPrompts } from './prompts.js';

const argv = process.argv.slice(2);
const i = argv.indexOf('--calls');
const prompts = i >= 0 ? Number(argv[i + 1]) : 40_000;

// short chat-style prompts, each with the system prompt a gateway's request carries
const texts = chatPrompts.map((t) => `You are helpful.\n${t}`);

const router = await Router.load(defaultRouterPath());
const opts = { explain: false as const };
// the previous path, through the router's own parts (private: a bench may look inside)
const r = router as unknown as {
  prepare(n: number, o: object): { out: { choice: Int32Array } };
  routeArgs(t: string[], p: unknown): object;
  batchResult(p: unknown): { choice: Int32Array };
  hashed: { nativeHandle: { routeSync(a: object): void } };
};
const previous = (batch: string[]) => {
  const p = r.prepare(batch.length, opts);
  r.hashed.nativeHandle.routeSync(r.routeArgs(batch, p));
  return r.batchResult(p);
};
const current = (batch: string[]) => router.routeBatchSync(batch, opts);

const cpuPerPrompt = (f: (b: string[]) => unknown, batch: string[]) => {
  const calls = Math.max(50, Math.ceil(prompts / batch.length));
  for (let k = 0; k < Math.min(2000, calls); k++) f(batch);
  const c0 = process.cpuUsage();
  for (let k = 0; k < calls; k++) f(batch);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (calls * batch.length);
};

const machine = machineInfo();
const lines: string[] = [];
for (const n of [1, 4, 16, 64]) {
  const batch = Array.from({ length: n }, (_, k) => texts[k % texts.length]);
  const a = previous(batch).choice;
  const b = current(batch).choice;
  if (a.some((c, k) => c !== b[k])) throw new Error(`the two paths disagree at batch ${n}`);
  // alternate the two, three times each, and keep each one's best (least disturbed) run
  const prev: number[] = [];
  const cur: number[] = [];
  for (let round = 0; round < 3; round++) {
    prev.push(cpuPerPrompt(previous, batch));
    cur.push(cpuPerPrompt(current, batch));
  }
  const row = {
    name: `route-call-batch-${n}`,
    batch: n,
    us_per_prompt: Math.min(...cur),
    previous_us_per_prompt: Math.min(...prev),
    speedup: Math.min(...prev) / Math.min(...cur),
    machine,
  };
  lines.push(JSON.stringify(row));
  console.log(JSON.stringify(row));
}
mkdirSync(join('results', 'bench'), { recursive: true });
writeFileSync(join('results', 'bench', 'route-call.jsonl'), lines.join('\n') + '\n');
