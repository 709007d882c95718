/**
 * Routing never waits on a store (issue 26), with the real redis-server and SQLite: a paused Redis (SIGSTOP of the
 * test's own instance) times out and fails fast, /readyz says degraded while it does not answer; a SQLite file
 * locked by another process does not stop /v1/route; a Redis that restarts empty and is seeded again is told
 * apart by its epoch; sticky sessions in Redis are capped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { LivePool } from '../src/pool/live.js';
import { MemoryPoolStore, SqlitePoolStore, openPoolStore } from '../src/pool/store.js';
import { RedisPoolStore } from '../src/pool/redis.js';
import { buildApp } from '../src/server/app.js';
import { makeSyntheticDataset, randomTexts, startRedis } from './helpers.js';

const TOKEN = 'admin-token-for-stores';
const REDIS_SKIP = 'redis-server is not installed: Redis tests skipped (.ci/run installs it; in CI they run)';
let file: Buffer;
const fresh = () => Router.fromArtifact(file, 'test.uniroute');

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 21));
  const { router } = await fitRouter(ds, { seed: 1, clusters: 3, embedder: { bucketsLog2: 12, dim: 32 } });
  file = router.toArtifact();
});

const outcomes = (n: number, seed: number) => randomTexts(n, seed).map((text, i) => ({ text, correct: i % 2 }));
const json = { 'content-type': 'application/json' };
const admin = { ...json, authorization: `Bearer ${TOKEN}` };

/** One request's status, body and time (ms), given up after `limitMs` (status 0). */
async function timed(url: string, init: RequestInit = {}, limitMs = 15_000): Promise<{ status: number; body: any; ms: number }> {
  const t0 = performance.now();
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(limitMs) });
    const text = await r.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: r.status, body, ms: performance.now() - t0 };
  } catch {
    return { status: 0, body: null, ms: performance.now() - t0 };
  }
}

const route = (base: string) => timed(`${base}/v1/route`, { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'Question: integral derivative solve?' }) });
const addModel = (base: string, name: string, limitMs?: number) =>
  timed(`${base}/v1/models`, { method: 'POST', headers: admin, body: JSON.stringify({ name, cost_per_query: 0.01, outcomes: outcomes(20, name.length) }) }, limitMs);
const ready = async (base: string) => (await timed(`${base}/readyz`)).body;

const waitFor = async (f: () => Promise<boolean>, ms: number) => {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  return -1;
};

async function serveOn(live: LivePool): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildApp({ router: live.router, pool: live, adminToken: TOKEN, poolPollMs: 100 });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

describe('Redis that does not answer (SIGSTOP of the test\'s own redis-server)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>> = null;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => redis?.stop());

  it('admin writes time out and then fail at once, /readyz is degraded, /v1/route keeps answering; all recovers on SIGCONT', async (ctx) => {
    if (!redis) return ctx.skip(REDIS_SKIP);
    const live = await LivePool.open(fresh(), `${redis.url}?prefix=stall:&timeout_ms=400&retry_ms=1500`);
    const { app, url } = await serveOn(live);
    try {
      expect((await ready(url)).status).toBe('ready');
      expect((await addModel(url, 'before-pause')).status).toBe(201);
      process.kill(redis.pid, 'SIGSTOP');
      try {
        // the first write waits at most the command timeout (behind at most one poll), and is refused
        const w1 = await addModel(url, 'during-pause-1');
        expect(w1.status, JSON.stringify(w1.body)).toBe(503);
        expect(w1.body.error.code).toBe('STORE_UNAVAILABLE');
        expect(w1.body.error.message).toMatch(/did not answer within 400 ms|not tried/);
        expect(w1.ms).toBeLessThan(3000);
        // the next ones do not wait at all while the store is taken to be stalled
        const w2 = await addModel(url, 'during-pause-2');
        expect(w2.status).toBe(503);
        expect(w2.body.error.message).toMatch(/not tried|did not answer/);
        expect(w2.ms).toBeLessThan(1000);
        // readiness says so; routing goes on, on the last pool
        const degraded = await waitFor(async () => (await ready(url)).status === 'degraded', 3000);
        expect(degraded).toBeGreaterThanOrEqual(0);
        expect((await ready(url)).reason).toMatch(/unavailable/);
        for (let i = 0; i < 5; i++) {
          const r = await route(url);
          expect(r.status).toBe(200);
          expect(r.body.pool_version).toBe(2);
          expect(r.ms).toBeLessThan(1000);
        }
      } finally {
        process.kill(redis.pid, 'SIGCONT');
      }
      const back = await waitFor(async () => (await ready(url)).status === 'ready', 5000);
      expect(back).toBeGreaterThanOrEqual(0);
      const w3 = await addModel(url, 'after-pause');
      expect(w3.status, JSON.stringify(w3.body)).toBe(201);
    } finally {
      await app.close();
    }
  });

  it('sticky sessions in Redis are capped, and their keys bounded whatever the client sends', async (ctx) => {
    if (!redis) return ctx.skip(REDIS_SKIP);
    const store = openPoolStore(`${redis.url}?prefix=sess:`) as RedisPoolStore;
    await store.open('h-sessions', []);
    const Redis = createRequire(import.meta.url)('ioredis');
    const client = new Redis(redis.url);
    try {
      for (let i = 0; i < 60; i++) await store.sessionSet(`llm\u0000${'s'.repeat(5000)}-${i}`, 'm', 3_600_000, 25);
      const keys: string[] = await client.keys('sess:h-sessions:session:*');
      expect(keys.length).toBe(25);
      expect(Math.max(...keys.map((k) => k.length))).toBeLessThan(100);
      expect(await client.zcard('sess:h-sessions:sessions')).toBe(25);
      // the newest sessions are the ones kept
      expect(await store.sessionGet(`llm\u0000${'s'.repeat(5000)}-59`)).toBe('m');
      expect(await store.sessionGet(`llm\u0000${'s'.repeat(5000)}-0`)).toBeUndefined();
    } finally {
      client.disconnect();
      await store.close();
    }
  });
});

describe('a store that comes back empty, or as another store', () => {
  it('memory: a pool seeded again at the same version is taken whole (its epoch differs)', async () => {
    const store = new MemoryPoolStore();
    const a = await LivePool.open(fresh(), store);
    await a.addModel('x', { costPerQuery: 0.01, outcomes: outcomes(20, 1) });
    expect(a.version).toBe(2);
    store.clear(); // restarted empty
    await expect(a.refresh()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: /no pool for this model any more/ });
    // someone seeds it again and imports a pool: version 2 again, another pool
    const other = await LivePool.open(fresh(), store);
    const y = fresh();
    await y.addModel('y', { costPerQuery: 0.02, outcomes: outcomes(20, 2) });
    await other.importPool(y.poolEntries());
    expect(other.version).toBe(2);
    let told = '';
    a.onEpochChange = (from, to) => (told = `${from}->${to}`);
    expect(await a.refresh()).toBe(true);
    expect(a.router.has('x')).toBe(false);
    expect(a.router.has('y')).toBe(true);
    expect(told).toMatch(/^[0-9a-f]{16}->[0-9a-f]{16}$/);
    // a write computed on the old pool is refused, not applied to the new one
    const stale = await LivePool.open(fresh(), store);
    store.clear();
    await LivePool.open(fresh(), store);
    await expect(stale.addModel('z', { costPerQuery: 0.01, outcomes: outcomes(20, 3) })).rejects.toMatchObject({ code: 'VERSION_CONFLICT', message: /epoch/ });
  });

  it('redis: replicas notice a Redis that restarted empty (degraded), and take a re-imported pool at the version they had', async (ctx) => {
    const first = await startRedis();
    if (!first) return ctx.skip(REDIS_SKIP);
    let second: Awaited<ReturnType<typeof startRedis>> = null;
    const url = (r: { url: string }) => `${r.url}?prefix=epoch:`;
    const a = await serveOn(await LivePool.open(fresh(), url(first)));
    const b = await serveOn(await LivePool.open(fresh(), url(first)));
    try {
      expect((await addModel(a.url, 'old-only')).status).toBe(201);
      expect(await waitFor(async () => (await ready(b.url)).pool_version === 2, 3000)).toBeGreaterThanOrEqual(0);
      // Redis restarts empty, on the same port
      await first.stop();
      second = (await startRedis({ port: first.port }))!;
      const gone = await waitFor(async () => /no pool for this model any more/.test((await ready(a.url)).reason ?? ''), 5000);
      expect(gone).toBeGreaterThanOrEqual(0);
      expect((await route(a.url)).status).toBe(200); // still routing on the last pool
      expect((await addModel(a.url, 'into-the-void')).status).toBe(503); // never a one-LLM pool made by a write
      // an operator re-imports a pool: seeded (version 1), imported (version 2) - the version the replicas hold
      const importer = await LivePool.open(fresh(), url(second));
      const y = fresh();
      await y.addModel('re-imported', { costPerQuery: 0.02, outcomes: outcomes(20, 4) });
      expect(await importer.importPool(y.poolEntries())).toBe(2);
      await importer.close();
      for (const s of [a, b]) {
        const took = await waitFor(async () => {
          const m = (await timed(`${s.url}/v1/models`)).body;
          const ids = (m.data as Array<{ id: string }>).map((d) => d.id);
          return m.pool_version === 2 && ids.includes('re-imported') && !ids.includes('old-only');
        }, 5000);
        expect(took).toBeGreaterThanOrEqual(0);
        expect((await ready(s.url)).status).toBe('ready');
      }
    } finally {
      await a.app.close();
      await b.app.close();
      await first.stop();
      await second?.stop();
    }
  });
});

describe('a SQLite pool file locked by another process', () => {
  it('/v1/route keeps answering fast while an admin write waits for the lock off the event loop, then lands', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'uniroute-lock-')), 'pool.db');
    const live = await LivePool.open(fresh(), new SqlitePoolStore(path));
    const { app, url } = await serveOn(live);
    // a second process takes the write lock and holds it for 2.5 s
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE');
         process.stdout.write('locked\\n'); const t = Date.now(); while (Date.now() - t < 2500) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
         db.exec('COMMIT'); db.close(); process.stdout.write('released\\n');`,
      ],
      { cwd: join(__dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((ok) => holder.stdout!.on('data', (d) => String(d).includes('locked') && ok()));
      const t0 = performance.now();
      const write = addModel(url, 'while-locked');
      // the event loop keeps turning while the write waits
      let lag = 0;
      let last = performance.now();
      const tick = setInterval(() => {
        const now = performance.now();
        lag = Math.max(lag, now - last - 10);
        last = now;
      }, 10);
      const times: number[] = [];
      while (performance.now() - t0 < 2000) {
        const r = await route(url);
        expect(r.status).toBe(200);
        times.push(r.ms);
      }
      clearInterval(tick);
      expect(times.length).toBeGreaterThan(10);
      expect(Math.max(...times)).toBeLessThan(500);
      expect(lag).toBeLessThan(500);
      const w = await write;
      expect(w.status, JSON.stringify(w.body)).toBe(201);
      expect(w.ms).toBeGreaterThan(1500); // it did wait for the lock
      // the gateway's counters in the same file do not block either
      const counters = live.store.counters!();
      const held = spawn(process.execPath, ['-e', `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 800);`], {
        cwd: join(__dirname, '..'),
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((ok) => held.stdout!.on('data', (d) => String(d).includes('locked') && ok()));
      const c0 = performance.now();
      let turns = 0;
      const spin = setInterval(() => turns++, 10);
      const a = await counters.admit('k', { rpm: 10 });
      clearInterval(spin);
      expect(a.ok).toBe(true);
      expect(performance.now() - c0).toBeGreaterThan(500);
      expect(turns).toBeGreaterThan(20);
    } finally {
      holder.kill();
      await app.close();
    }
  });

  it('a lock held past the limit is a STORE_UNAVAILABLE in words, not a frozen thread', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'uniroute-lock-')), 'pool.db');
    const store = new SqlitePoolStore(path, { busyTimeoutMs: 300 });
    await store.open('h', []);
    const holder = spawn(process.execPath, ['-e', `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n'); setTimeout(() => {}, 5000);`], {
      cwd: join(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((ok) => holder.stdout!.on('data', (d) => String(d).includes('locked') && ok()));
      const e = await store.remove('x').catch((x) => x);
      expect(e.code).toBe('STORE_UNAVAILABLE');
      expect(e.message).toMatch(/locked by another process for \d+ ms/);
      // reads go on meanwhile (WAL)
      expect((await store.head()).version).toBe(1);
    } finally {
      holder.kill();
      await store.close();
    }
  });
});
