/**
 * Tenants: with client keys every route but the health probes wants a key (or the admin token); rpm, tpm and
 * max_usd_per_day are hard limits (429 + Retry-After), counted in the pool store, so that two replicas on one
 * Redis enforce one limit. Against a local stand-in upstream and a real redis-server (127.0.0.1 only).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import Anthropic from '@anthropic-ai/sdk';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { LivePool } from '../src/pool/live.js';
import { MemoryCounters, SqliteCounters, decide, secondsUntil } from '../src/pool/counters.js';
import { makeSyntheticDataset, startRedis } from './helpers.js';

let routerPath: string;
let upstream: FastifyInstance;
let up: string;
let redis: Awaited<ReturnType<typeof startRedis>> = null;
const REDIS_SKIP = 'redis-server is not installed: the two-replica limit test is skipped (.ci/run installs it; in CI it runs)';

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-gwt-')), 'r.uniroute');
  await fitted.save(routerPath);
  upstream = Fastify();
  upstream.post('/v1/chat/completions', async (req: any) => ({
    id: 'c',
    object: 'chat.completion',
    created: 1,
    model: req.body.model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 600, completion_tokens: 400, total_tokens: 1000 },
  }));
  up = await upstream.listen({ port: 0, host: '127.0.0.1' });
  redis = await startRedis();
  if (!redis) console.warn(REDIS_SKIP);
  process.env.UNIROUTE_GWT_A = 'sk-tenant-a-0123456789';
  process.env.UNIROUTE_GWT_B = 'sk-tenant-b-0123456789';
  process.env.UNIROUTE_GWT_C = 'sk-tenant-c-0123456789';
});
afterAll(async () => {
  await upstream?.close();
  await redis?.stop();
});

const config = () =>
  parseConfig(
    {
      upstreams: Object.fromEntries(['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'].map((n) => [n, { base_url: `${up}/v1`, price: { input_per_1m: 5, output_per_1m: 10 } }])),
      keys: {
        a: { key_env: 'UNIROUTE_GWT_A', rpm: 5 },
        b: { key_env: 'UNIROUTE_GWT_B', tpm: 1500 },
        c: { key_env: 'UNIROUTE_GWT_C', max_usd_per_day: 0.01 },
      },
    },
    'test',
  );
const chat = (url: string, key: string, model = 'cheap-math') =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Question: integral sum?' }] }) });

describe('client keys on every route', () => {
  it('/v1/route, /v1/models, /metrics, /v1/messages and the pass-through want a key (or the admin token); the probes do not', async () => {
    const app = await buildApp({ router: await Router.load(routerPath), config: config(), adminToken: 'admin-secret-123' });
    try {
      const call = (method: string, url: string, headers: Record<string, string> = {}, payload?: unknown) => app.inject({ method: method as any, url, headers: { 'content-type': 'application/json', ...headers }, ...(payload ? { payload: payload as any } : {}) });
      const routes: Array<[string, string, unknown?]> = [
        ['POST', '/v1/route', { prompt: 'integral sum' }],
        ['GET', '/v1/models'],
        ['GET', '/metrics'],
        ['POST', '/v1/messages', { model: 'cheap-math', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }],
        ['POST', '/v1/embeddings', { model: 'cheap-math', input: 'x' }],
      ];
      for (const [m, u, p] of routes) {
        const r = await call(m, u, {}, p);
        expect(r.statusCode, u).toBe(401);
        expect(r.body, u).toMatch(/key/);
      }
      for (const [m, u, p] of routes.slice(0, 3)) {
        expect((await call(m, u, { authorization: 'Bearer sk-tenant-b-0123456789' }, p)).statusCode, u).toBe(200);
        expect((await call(m, u, { authorization: 'Bearer admin-secret-123' }, p)).statusCode, u).toBe(200);
        expect((await call(m, u, { 'x-api-key': 'sk-tenant-b-0123456789' }, p)).statusCode, u).toBe(200);
      }
      // label suggestions are an admin endpoint: a tenant key is not enough
      const suggest = (h: Record<string, string>) => call('POST', '/v1/models/cheap-math/suggest', h, { prompts: ['a b'], budget: 1 });
      expect((await suggest({ authorization: 'Bearer sk-tenant-b-0123456789' })).statusCode).toBe(401);
      expect((await suggest({ authorization: 'Bearer admin-secret-123' })).statusCode).toBe(200);
      expect((await call('GET', '/healthz')).statusCode).toBe(200);
      expect((await call('GET', '/readyz')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('the Anthropic SDK authenticates with x-api-key; a bad key is its AuthenticationError', async () => {
    const app = await buildApp({ router: await Router.load(routerPath), config: config() });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const ok = await new Anthropic({ baseURL: url, apiKey: 'sk-tenant-b-0123456789', maxRetries: 0 }).messages.create({ model: 'cheap-math', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] });
      expect(ok.content[0]).toMatchObject({ type: 'text', text: 'ok' });
      const e = await new Anthropic({ baseURL: url, apiKey: 'wrong', maxRetries: 0 }).messages.create({ model: 'cheap-math', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }).catch((x) => x);
      expect(e).toBeInstanceOf(Anthropic.AuthenticationError);
    } finally {
      await app.close();
    }
  });
});

describe('limits: rpm, tpm, max_usd_per_day', () => {
  it('the sliding window and Retry-After: the rule every store applies', () => {
    const t = 60_000 * 1000; // the start of a minute
    expect(decide({ rpm: 2 }, { rpmPrev: 0, rpmCur: 1, tpmPrev: 0, tpmCur: 0, usd: 0 }, t).ok).toBe(true);
    const no = decide({ rpm: 2 }, { rpmPrev: 0, rpmCur: 2, tpmPrev: 0, tpmCur: 0, usd: 0 }, t + 30_000);
    expect(no).toMatchObject({ ok: false, limit: 'rpm', used: 2, max: 2 });
    // the previous minute's 4 requests still count for the part of it inside the last 60 s
    expect(decide({ rpm: 4 }, { rpmPrev: 4, rpmCur: 0, tpmPrev: 0, tpmCur: 0, usd: 0 }, t + 15_000).ok).toBe(true); // 4 x 0.75 + 1 = 4: fits
    expect(decide({ rpm: 4 }, { rpmPrev: 4, rpmCur: 1, tpmPrev: 0, tpmCur: 0, usd: 0 }, t + 15_000).ok).toBe(false); // 5 > 4
    expect(decide({ rpm: 4 }, { rpmPrev: 4, rpmCur: 0, tpmPrev: 0, tpmCur: 0, usd: 0 }, t + 30_000).ok).toBe(true);
    // Retry-After: when the window has room again
    expect(secondsUntil(0, 2, 0.5, 1)).toBe(60); // next minute, with the current 2 weighing until half of it is gone
    expect(secondsUntil(4, 0, 0.25, 3)).toBe(1); // 4 * (1 - f) <= 3 at f = 0.25: now
    const usd = decide({ maxUsdPerDay: 1 }, { rpmPrev: 0, rpmCur: 0, tpmPrev: 0, tpmCur: 0, usd: 1 }, 86_400_000 * 10 + 3_600_000);
    expect(usd).toMatchObject({ ok: false, limit: 'max_usd_per_day', retryAfterS: 23 * 3600 });
  });

  it('one process (memory counters): rpm refuses the 6th request of a minute with 429 + Retry-After; tpm and max_usd_per_day after the answers that used them up', async () => {
    const app = await buildApp({ router: await Router.load(routerPath), config: config() });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const a: number[] = [];
      for (let i = 0; i < 7; i++) {
        const r = await chat(url, 'sk-tenant-a-0123456789');
        a.push(r.status);
        if (r.status === 429) {
          expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
          const j = (await r.json()) as any;
          expect(j.error.code).toBe('rate_limit_exceeded');
          expect(j.error.message).toMatch(/key "a" is over its rpm limit \(5 of 5\); retry in \d+ s/);
        } else await r.text();
      }
      expect(a.filter((s) => s === 200)).toHaveLength(5);
      expect(a.slice(5)).toEqual([429, 429]);
      // tpm 1500: an answer of 1000 tokens, then another (2000 >= 1500), then refused
      expect((await chat(url, 'sk-tenant-b-0123456789')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 30));
      expect((await chat(url, 'sk-tenant-b-0123456789')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 30));
      const b3 = await chat(url, 'sk-tenant-b-0123456789');
      expect(b3.status).toBe(429);
      expect(((await b3.json()) as any).error.message).toMatch(/tpm limit \(2000 of 1500\)/);
      // 600 x 5 + 400 x 10 per million = 0.007 USD an answer: the second crosses 0.01, the third is refused until tomorrow (UTC)
      for (let i = 0; i < 2; i++) {
        expect((await chat(url, 'sk-tenant-c-0123456789')).status).toBe(200);
        await new Promise((r) => setTimeout(r, 30));
      }
      const c3 = await chat(url, 'sk-tenant-c-0123456789');
      expect(c3.status).toBe(429);
      const cj = (await c3.json()) as any;
      expect(cj.error.code).toBe('budget_exceeded');
      expect(cj.error.message).toMatch(/max_usd_per_day limit \(\$0\.0140 of \$0\.01\)/);
      const now = Date.now();
      expect(Number(c3.headers.get('retry-after'))).toBe(Math.ceil((86_400_000 - (now % 86_400_000)) / 1000));
      const m = await (await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer sk-tenant-a-0123456789' } })).text();
      expect(m).toMatch(/uniroute_limit_rejections_total\{key="a",limit="rpm"\} 2/);
    } finally {
      await app.close();
    }
  });

  it('SQLite counters: the same rule, shared by two processes\' connections to one file', async () => {
    const Database = (await import('better-sqlite3')).default;
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-lim-')), 'pool.db');
    const one = new SqliteCounters(new Database(file), `sqlite:${file}`);
    const two = new SqliteCounters(new Database(file), `sqlite:${file}`);
    const now = Date.now();
    const got: boolean[] = [];
    for (let i = 0; i < 6; i++) got.push((await (i % 2 ? one : two).admit('k', { rpm: 4 }, now)).ok);
    expect(got).toEqual([true, true, true, true, false, false]);
    await one.record('k', 0, 0.5, now);
    await two.record('k', 0, 0.6, now);
    expect(await one.admit('j', { maxUsdPerDay: 1 }, now)).toMatchObject({ ok: true });
    expect(await two.admit('k', { maxUsdPerDay: 1 }, now)).toMatchObject({ ok: false, limit: 'max_usd_per_day' });
    // and memory counters agree on the same sequence
    const mem = new MemoryCounters();
    const m: boolean[] = [];
    for (let i = 0; i < 6; i++) m.push((await mem.admit('k', { rpm: 4 }, now)).ok);
    expect(m).toEqual(got);
  });

  it('with a SQLite pool the counters live in its file: two servers on one file (two connections) share the rpm limit', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-lims-')), 'pool.db');
    const servers = [];
    for (let i = 0; i < 2; i++) {
      const router = await Router.load(routerPath);
      const live = await LivePool.open(router, `sqlite:${file}`);
      const app = await buildApp({ router, pool: live, config: config() });
      servers.push({ app, url: await app.listen({ port: 0, host: '127.0.0.1' }) });
    }
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await chat(servers[i % 2].url, 'sk-tenant-a-0123456789');
        statuses.push(r.status);
        await r.text();
      }
      expect(statuses.filter((x) => x === 200)).toHaveLength(5);
    } finally {
      for (const x of servers) await x.app.close();
    }
  });

  it('two replicas on one Redis enforce one limit: rpm 5 across both, tpm and spend seen by the other', async (t) => {
    if (!redis) {
      console.warn(REDIS_SKIP);
      return t.skip();
    }
    const url0 = `${redis.url}?prefix=gwt${process.pid}:`;
    const replicas = [];
    for (let i = 0; i < 2; i++) {
      const router = await Router.load(routerPath);
      const live = await LivePool.open(router, url0);
      const app = await buildApp({ router, pool: live, config: config() });
      replicas.push({ app, url: await app.listen({ port: 0, host: '127.0.0.1' }) });
    }
    try {
      const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(replicas[i % 2].url, 'sk-tenant-a-0123456789').then(async (r) => (await r.text(), r.status))));
      expect(statuses.filter((s) => s === 200)).toHaveLength(5);
      expect(statuses.filter((s) => s === 429)).toHaveLength(5);
      // tokens counted on one replica hold on the other
      expect((await chat(replicas[0].url, 'sk-tenant-b-0123456789')).status).toBe(200);
      expect((await chat(replicas[0].url, 'sk-tenant-b-0123456789')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      expect((await chat(replicas[1].url, 'sk-tenant-b-0123456789')).status).toBe(429);
      for (let i = 0; i < 2; i++) {
        expect((await chat(replicas[i].url, 'sk-tenant-c-0123456789')).status).toBe(200);
        await new Promise((r) => setTimeout(r, 50));
      }
      const c = await chat(replicas[0].url, 'sk-tenant-c-0123456789');
      expect(c.status).toBe(429);
      expect(((await c.json()) as any).error.code).toBe('budget_exceeded');
    } finally {
      for (const r of replicas) await r.app.close();
    }
  });
});
