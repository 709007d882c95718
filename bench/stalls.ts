/**
 * Routing while something else stalls (issue 26): /v1/route latency of a server (a child process, the built-in
 * router) measured quiet and then (a) under a flood of label suggestions (four clients sending 4,096-prompt
 * requests), (b) while a second process holds the SQLite pool's write lock and an admin change waits for it,
 * (c) while the pool's Redis is paused (SIGSTOP of this script's own redis-server) and admin changes are refused.
 * Each case reports p50 / p99 and their ratios to the quiet run of the same server, measured just before it.
 *   node dist/bench/stalls.js [--seconds 3]
 * Writes results/bench/stalls.jsonl.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { buildApp } from '../src/server/app.js';
import { LivePool } from '../src/pool/live.js';
import { startChild } from './load.js';
import { startLocalRedis } from './redis-server.js';

const argv = process.argv.slice(2);
const TOKEN = 'bench-token';
const json = { 'content-type': 'application/json' };
const admin = { ...json, authorization: `Bearer ${TOKEN}` };

async function child(pool: string) {
  const router = await Router.load(defaultRouterPath());
  const live = pool ? await LivePool.open(router, pool, 'bench') : undefined;
  const app = await buildApp({ router, pool: live, adminToken: TOKEN, poolPollMs: 100 });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ url });
}

const seconds = Number(argv[argv.indexOf('--seconds') + 1] ?? 3) || 3;

async function route(url: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/route`, { method: 'POST', headers: json, body: '{"prompt":"Question: integral derivative solve?"}' });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`/v1/route answered ${r.status}`);
  return performance.now() - t0;
}

async function during(url: string, ms: number): Promise<number[]> {
  const t: number[] = [];
  const t0 = Date.now();
  while (Date.now() - t0 < ms) t.push(await route(url));
  return t.sort((a, b) => a - b);
}

const q = (t: number[], f: number) => t[Math.min(t.length - 1, Math.floor(t.length * f))];

function report(name: string, quiet: number[], busy: number[], extra: Record<string, unknown> = {}) {
  return {
    name,
    p50_ms: +q(busy, 0.5).toFixed(2),
    p99_ms: +q(busy, 0.99).toFixed(2),
    quiet_p50_ms: +q(quiet, 0.5).toFixed(2),
    quiet_p99_ms: +q(quiet, 0.99).toFixed(2),
    p50_ratio: +(q(busy, 0.5) / q(quiet, 0.5)).toFixed(2),
    p99_ratio: +(q(busy, 0.99) / q(quiet, 0.99)).toFixed(2),
    requests: busy.length,
    ...extra,
  };
}

async function main() {
  const me = fileURLToPath(import.meta.url);
  const results: object[] = [];
  const log = (r: object) => {
    results.push(r);
    console.log(JSON.stringify(r));
  };
  // (a) a flood of label suggestions
  {
    const s = await startChild(me, ['']);
    const words = 'integral python empire solve function battle prime loop queen sum class war the of and to a'.split(' ');
    const big = JSON.stringify({ prompts: Array.from({ length: 4096 }, (_, i) => Array.from({ length: 120 }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' ')), budget: 20 });
    for (let i = 0; i < 20; i++) await route(s.url);
    const quiet = await during(s.url, seconds * 500);
    let stop = false;
    const st: number[] = [];
    const flood = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await fetch(`${s.url}/v1/models/new-llm/suggest`, { method: 'POST', headers: admin, body: big }).catch(() => undefined);
        if (!r) continue;
        st.push(r.status);
        await r.arrayBuffer().catch(() => undefined);
      }
    });
    const busy = await during(s.url, seconds * 1000);
    stop = true;
    await Promise.all(flood);
    log(report('route-during-suggest-flood', quiet, busy, { suggestions_answered: st.filter((x) => x === 200).length, suggestions_refused_503: st.filter((x) => x === 503).length, body_bytes: big.length }));
    s.proc.kill('SIGKILL');
  }
  // (b) the SQLite pool's write lock held by another process while an admin change waits for it
  {
    const path = join(mkdtempSync(join(tmpdir(), 'uniroute-bench-stall-')), 'pool.db');
    const s = await startChild(me, [`sqlite:${path}`]);
    for (let i = 0; i < 20; i++) await route(s.url);
    const quiet = await during(s.url, seconds * 500);
    const holder = spawn(
      process.execPath,
      ['-e', `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, ${seconds * 1000 + 500});`],
      { cwd: join(fileURLToPath(import.meta.url), '..', '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((ok) => holder.stdout!.on('data', (d) => String(d).includes('locked') && ok()));
    const t0 = performance.now();
    const write = fetch(`${s.url}/v1/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'during-lock', cost_per_query: 0.001, outcomes: [{ text: 'Question: integral?', correct: 1 }] }) }).then(async (r) => ({ status: r.status, ms: performance.now() - t0 }));
    const busy = await during(s.url, seconds * 1000);
    const w = await write;
    log(report('route-during-sqlite-lock', quiet, busy, { admin_change_status: w.status, admin_change_waited_ms: Math.round(w.ms) }));
    s.proc.kill('SIGKILL');
  }
  // (c) the pool's Redis paused
  const redis = await startLocalRedis();
  if (!redis) log({ name: 'route-during-redis-pause', skipped: 'redis-server is not installed' });
  else {
    const s = await startChild(me, [`${redis.url}?prefix=bench-stall:&timeout_ms=500`]);
    try {
      for (let i = 0; i < 20; i++) await route(s.url);
      const quiet = await during(s.url, seconds * 500);
      process.kill(redis.pid, 'SIGSTOP');
      const writes: number[] = [];
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop; i++) {
          const t0 = performance.now();
          const r = await fetch(`${s.url}/v1/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name: `p${i}`, cost_per_query: 0.001, outcomes: [{ text: 'Question: integral?', correct: 1 }] }) });
          await r.arrayBuffer();
          writes.push(performance.now() - t0);
        }
      })();
      const busy = await during(s.url, seconds * 1000);
      stop = true;
      process.kill(redis.pid, 'SIGCONT');
      await writer;
      writes.sort((a, b) => a - b);
      log(report('route-during-redis-pause', quiet, busy, { admin_changes_refused: writes.length, admin_refusal_p50_ms: +q(writes, 0.5).toFixed(1), admin_refusal_max_ms: +writes.at(-1)!.toFixed(1) }));
    } finally {
      s.proc.kill('SIGKILL');
      await redis.stop();
    }
  }
  const machine = { cpu: cpus()[0]?.model, cores: cpus().length, load: loadavg().map((x) => +x.toFixed(2)) };
  mkdirSync(join('results', 'bench'), { recursive: true });
  writeFileSync(join('results', 'bench', 'stalls.jsonl'), results.map((r) => JSON.stringify({ ...r, machine })).join('\n') + '\n');
  console.log(JSON.stringify({ machine }));
}

if (argv[0] === '--child') await child(argv[1] ?? '');
else await main();
