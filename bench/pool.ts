/**
 * Pool changes end to end, with 100 LLMs in the pool (the built-in router's 71 and 29 more): an admin change
 * (POST /v1/models with 20 outcomes, or DELETE) against a server whose pool is (a) the router file, rewritten whole
 * on every change as before `--pool` existed, (b) a memory: store, (c) a sqlite: store, (d) a redis: store (a local
 * redis-server this script starts, when one is installed). Then /v1/route throughput
 * at 64 connections with no change and with 50 changes a second applied meanwhile (sqlite). Each server is a child
 * process; the changes and autocannon run from this one.
 *   node dist/bench/pool.js [--quick]
 * Writes results/bench/pool.jsonl.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { buildApp } from '../src/server/app.js';
import { LivePool } from '../src/pool/live.js';
import { loadSummary, startChild } from './load.js';
import { startLocalRedis } from './redis-server.js';

const argv = process.argv.slice(2);
const TOKEN = 'bench-token';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

async function child(kind: string, file: string, pool: string) {
  const router = await Router.load(file);
  const live = kind === 'file' ? undefined : await LivePool.open(router, pool, 'bench');
  const app = await buildApp({ router, routerPath: kind === 'file' ? file : undefined, pool: live, adminToken: TOKEN });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ url });
}

const start = (kind: string, file: string, pool = '') => startChild(fileURLToPath(import.meta.url), [kind, file, pool]);

const outcomes = Array.from({ length: 20 }, (_, i) => ({ text: `Question ${i}: compute the integral of x^${i} and explain each step.`, correct: i % 3 ? 1 : 0 }));
let counter = 0;
/** One change: add a fresh LLM, or remove the one added before it. Returns its latency in ms. */
async function change(url: string, added: string[]): Promise<number> {
  const t0 = performance.now();
  let r: Response;
  if (added.length && counter % 2 === 1) r = await fetch(`${url}/v1/models/${added.pop()}`, { method: 'DELETE', headers: { authorization: auth.authorization } });
  else {
    const name = `bench-${process.pid}-${counter}`;
    r = await fetch(`${url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name, cost_per_query: 0.001, outcomes }) });
    if (r.status === 201) added.push(name);
  }
  counter++;
  await r.text();
  if (r.status >= 300) throw new Error(`admin change failed: ${r.status}`);
  return performance.now() - t0;
}

const pct = (xs: number[], q: number) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

if (argv[0] === '--child') {
  await child(argv[1], argv[2], argv[3]);
} else {
  const quick = argv.includes('--quick');
  const changes = quick ? 10 : 40;
  const seconds = quick ? 3 : 8;
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-poolbench-'));
  // 100 LLMs: the built-in 71 and 29 copies with other names
  const base = await Router.load(defaultRouterPath());
  for (const e of base.poolEntries().slice(0, 100 - base.size)) base.importModel({ ...e, name: `${e.name}-copy` });
  const file = join(dir, 'r100.uniroute');
  await base.save(file);
  const results: Record<string, unknown>[] = [];
  const redis = await startLocalRedis();
  for (const kind of ['file', 'memory', 'sqlite', ...(redis ? ['redis'] : [])]) {
    const pool = kind === 'sqlite' ? `sqlite:${join(dir, 'pool.db')}` : kind === 'redis' ? `${redis!.url}?prefix=bench:` : 'memory:';
    const s = await start(kind, file, pool);
    const added: string[] = [];
    const lat: number[] = [];
    await change(s.url, added); // warm-up
    for (let i = 0; i < changes; i++) lat.push(await change(s.url, added));
    results.push({ name: `pool-change-${kind}`, llms: 100, changes, p50_ms: pct(lat, 0.5), p99_ms: pct(lat, 0.99), max_ms: Math.max(...lat) });
    if (kind === 'sqlite') {
      const body = JSON.stringify({ prompt: 'Write a Python function that returns the n-th Fibonacci number iteratively.' });
      const requests = [{ method: 'POST' as const, path: '/v1/route', headers: { 'content-type': 'application/json' }, body }];
      await autocannon({ url: s.url, connections: 64, duration: 1, requests });
      const calm = loadSummary('route-no-changes', await autocannon({ url: s.url, connections: 64, duration: seconds, requests }), 64, seconds);
      // 50 changes a second, paced, while the same load runs
      let stop = false;
      let applied = 0;
      const writer = (async () => {
        const t0 = performance.now();
        while (!stop) {
          await change(s.url, added);
          applied++;
          const due = t0 + applied * 20;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
      })();
      const busy = loadSummary('route-50-changes-per-s', await autocannon({ url: s.url, connections: 64, duration: seconds, requests }), 64, seconds);
      stop = true;
      await writer;
      results.push(calm, { ...busy, changes_applied_per_s: applied / seconds }, { name: 'route-under-changes-vs-none', ratio: busy.req_per_s / calm.req_per_s, goal: '>= 0.9' });
    }
    s.proc.kill('SIGTERM');
  }
  await redis?.stop();
  if (!redis) results.push({ name: 'pool-change-redis', skipped: 'redis-server is not installed' });
  const lines = results.map((r) => JSON.stringify(r));
  for (const l of lines) console.log(l);
  mkdirSync(join('results', 'bench'), { recursive: true });
  writeFileSync(join('results', 'bench', 'pool.jsonl'), lines.join('\n') + '\n');
}
