/** The HTTP server: inject() for the API surface, a real socket for streaming, the proxy and shutdown. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router, decisionRecord, explain } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { makeSyntheticDataset, randomTexts, startServe } from './helpers.js';

const TOKEN = 'secret-token';
let routerPath: string;
let app: FastifyInstance;
let router: Router;

async function freshRouter(): Promise<Router> {
  return Router.load(routerPath);
}

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-srv-')), 'r.uniroute');
  await fitted.save(routerPath);
  router = await freshRouter();
  app = await buildApp({ router, routerPath, adminToken: TOKEN, maxPromptChars: 2000, maxPromptsPerRequest: 8, bodyLimitBytes: 64 * 1024 });
});
afterAll(async () => app?.close());

const admin = { authorization: `Bearer ${TOKEN}` };
const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, payload: payload as any, headers: { 'content-type': 'application/json', ...headers } });

describe('/v1/route', () => {
  it('routes one prompt with its explanation', async () => {
    const r = await post('/v1/route', { prompt: 'Question: integral solve equation?', lambda: 0.2 });
    expect(r.statusCode).toBe(200);
    const j = r.json();
    expect(j.lambda).toBe(0.2);
    expect(j.decisions).toHaveLength(1);
    const d = j.decisions[0];
    expect(d.model).toBe('cheap-math');
    expect(typeof d.cluster).toBe('number');
    expect(typeof d.distance).toBe('number');
    expect(Object.keys(d.candidates).sort()).toEqual(router.snapshot().names.slice().sort());
    expect(d.predicted_error).toBe(d.candidates[d.model].predicted_error);
  });

  it('tradeoff: the unit-free knob maps onto the pool\'s lambda; out of [0, 1] or with lambda it is refused', async () => {
    const r = await post('/v1/route', { prompt: 'Question: integral solve equation?', tradeoff: 1 });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().lambda).toBeCloseTo(router.lambdaForTradeoff(1), 10);
    expect((await post('/v1/route', { prompt: 'x', tradeoff: 0 })).json().lambda).toBe(0);
    expect((await post('/v1/route', { prompt: 'x', tradeoff: 1.5 })).statusCode).toBe(400);
    const both = await post('/v1/route', { prompt: 'x', tradeoff: 0.5, lambda: 1 });
    expect(both.statusCode).toBe(400);
    expect(both.json().error.message).toMatch(/not both/);
  });

  it('ood: decisions say when a prompt is out of distribution, the fallback answers it, and the metrics count it', async () => {
    const texts = randomTexts(8, 33);
    const r = await post('/v1/route', { prompts: texts, lambda: 0.2, ood: { quantile: 0.5, fallback: 'mid-all' } });
    expect(r.statusCode, r.body).toBe(200);
    const direct = await router.route(texts, { lambda: 0.2, ood: { quantile: 0.5, fallback: 'mid-all' } });
    const ds = r.json().decisions;
    expect(ds.map((d: any) => d.ood)).toEqual(direct.map((d) => d.ood));
    const flagged = ds.filter((d: any) => d.ood);
    expect(flagged.length).toBeGreaterThan(0);
    for (const d of flagged) expect(d.model).toBe('mid-all');
    const off = await post('/v1/route', { prompts: texts, lambda: 0.2, ood: false });
    expect(off.json().decisions.every((d: any) => d.ood === false)).toBe(true);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(new RegExp(`uniroute_ood_total\\{route="/v1/route"\\} ${flagged.length}`));
    expect((await post('/v1/route', { prompt: 'x y', ood: { quantile: 0.1 } })).statusCode).toBe(400);
  });

  it('backpressure: past the pending-prompt limit a request gets 503 with Retry-After at once, never an unbounded queue', async () => {
    const small = await buildApp({ router, batchWindowMs: 100, maxPendingPrompts: 3 });
    try {
      const rs = await Promise.all(randomTexts(8, 4).map((t) => small.inject({ method: 'POST', url: '/v1/route', payload: { prompt: t }, headers: { 'content-type': 'application/json' } })));
      const codes = rs.map((r) => r.statusCode);
      expect(codes.filter((c) => c === 200).length).toBe(3);
      const busy = rs.filter((r) => r.statusCode === 503);
      expect(busy.length).toBe(5);
      for (const r of busy) {
        expect(r.headers['retry-after']).toBe('1');
        expect(r.json().error.code).toBe('OVERLOADED');
      }
    } finally {
      await small.close();
    }
  });

  it('max_error: a quality floor, the same decision as the library\'s; not with lambda', async () => {
    const texts = randomTexts(6, 12);
    const r = await post('/v1/route', { prompts: texts, max_error: 0.3 });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().max_error).toBe(0.3);
    const direct = await router.route(texts, { maxError: 0.3 });
    expect(r.json().decisions.map((d: any) => d.model)).toEqual(direct.map((d) => d.model));
    expect((await post('/v1/route', { prompt: 'x y', max_error: 0.3, lambda: 1 })).statusCode).toBe(400);
    expect((await post('/v1/route', { prompt: 'x y', max_error: 2 })).statusCode).toBe(400);
  });

  it('the decision has the library\'s explanation: outcomes, evidence and interval per candidate; risk and evidence options', async () => {
    const texts = randomTexts(5, 8);
    const r = await post('/v1/route', { prompts: texts, lambda: 0.1, risk: 1.5, evidence: 'ignore' });
    expect(r.statusCode, r.body).toBe(200);
    const direct = explain(await router.routeBatch(texts, { lambda: 0.1, risk: 1.5, evidence: 'ignore' }));
    r.json().decisions.forEach((d: any, i: number) => {
      expect(d).toMatchObject(JSON.parse(JSON.stringify(decisionRecord(direct[i], true))));
    });
    expect((await post('/v1/route', { prompt: 'x y z', risk: -1 })).statusCode).toBe(400);
    expect((await post('/v1/route', { prompt: 'x y z', evidence: 'maybe' })).statusCode).toBe(400);
  });

  it('suggests which prompts to label for an LLM', async () => {
    const prompts = randomTexts(40, 2);
    expect((await post('/v1/models/new-llm/suggest', { prompts, budget: 10, seed: 2 })).statusCode).toBe(401); // an admin endpoint
    const r = await post('/v1/models/new-llm/suggest', { prompts, budget: 10, seed: 2 }, admin);
    expect(r.statusCode, r.body).toBe(200);
    const idx = r.json().suggestions.map((x: any) => x.index);
    expect(idx).toEqual((await router.suggestLabels(prompts, { budget: 10, seed: 2, model: 'new-llm' })).map((p) => p.index));
    expect(new Set(idx).size).toBe(10);
    expect((await post('/v1/models/new-llm/suggest', { prompts, budget: 0 }, admin)).statusCode).toBe(400);
  });

  it('routes a batch in order and honours the allowed models', async () => {
    const texts = randomTexts(6, 3);
    const r = await post('/v1/route', { prompts: texts, models: ['mid-all', 'big-all'] });
    expect(r.statusCode).toBe(200);
    const ds = r.json().decisions;
    expect(ds).toHaveLength(6);
    const direct = await router.routeBatch(texts, { models: ['mid-all', 'big-all'] });
    ds.forEach((d: any, i: number) => {
      expect(d.model).toBe(direct.models[direct.choice[i]]);
      expect(Object.keys(d.candidates).sort()).toEqual(['big-all', 'mid-all']);
    });
  });

  it('refuses bad bodies of every kind with {error: {code, message}}', async () => {
    const cases: Array<[unknown, number, string, RegExp?]> = [
      ['{not json', 400, 'INVALID_ARGUMENT', /JSON/],
      [{}, 400, 'INVALID_ARGUMENT'],
      [{ prompt: 42 }, 400, 'INVALID_ARGUMENT', /string/],
      [{ prompt: 'a', prompts: ['b'] }, 400, 'INVALID_ARGUMENT'],
      [{ prompts: [] }, 400, 'INVALID_ARGUMENT'],
      [{ prompts: Array(9).fill('x') }, 400, 'INVALID_ARGUMENT', /8/],
      [{ prompt: '' }, 400, 'EMPTY_TEXT'],
      [{ prompt: '   ' }, 400, 'EMPTY_TEXT'],
      [{ prompt: 'x'.repeat(2001) }, 400, 'INVALID_ARGUMENT', /2000/],
      [{ prompt: 'a', lambda: -1 }, 400, 'INVALID_ARGUMENT'],
      [{ prompt: 'a', lambda: 'high' }, 400, 'INVALID_ARGUMENT'],
      [{ prompt: 'a', models: ['ghost'] }, 404, 'UNKNOWN_MODEL', /ghost/],
      [{ prompt: 'a', extra: 1 }, 400, 'INVALID_ARGUMENT'],
      [{ prompt: 'x'.repeat(70 * 1024) }, 413, 'PAYLOAD_TOO_LARGE'],
    ];
    for (const [body, status, code, msg] of cases) {
      const r = await post('/v1/route', typeof body === 'string' ? body : body);
      expect(r.statusCode, JSON.stringify(body).slice(0, 60)).toBe(status);
      const j = r.json();
      expect(j.error.code, JSON.stringify(body).slice(0, 60)).toBe(code);
      expect(typeof j.error.message).toBe('string');
      if (msg) expect(j.error.message).toMatch(msg);
    }
    const wrongType = await app.inject({ method: 'POST', url: '/v1/route', payload: 'prompt=a', headers: { 'content-type': 'text/plain' } });
    expect(wrongType.statusCode).toBe(415);
    expect((await app.inject({ method: 'GET', url: '/nowhere' })).json().error.code).toBe('NOT_FOUND');
  });

  it('micro-batches concurrent requests into fewer native batches', async () => {
    const before = await metricValue('uniroute_engine_batch_size_count');
    const texts = randomTexts(40, 8);
    const rs = await Promise.all(texts.map((t) => post('/v1/route', { prompt: t, lambda: 0.1 })));
    expect(rs.every((r) => r.statusCode === 200)).toBe(true);
    const batches = (await metricValue('uniroute_engine_batch_size_count')) - before;
    expect(batches).toBeLessThan(40);
    const direct = await router.routeBatch(texts, { lambda: 0.1 });
    rs.forEach((r, i) => expect(r.json().decisions[0].model).toBe(direct.models[direct.choice[i]]));
  });
});

async function metricValue(name: string): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('the pool', () => {
  const outcomes = randomTexts(60, 11).map((text, i) => ({ text, correct: i % 2 }));

  it('admin endpoints need the bearer token; disabled without one; read-only without a router file', async () => {
    expect((await post('/v1/models', { name: 'x', cost_per_query: 1, outcomes })).statusCode).toBe(401);
    expect((await post('/v1/models', { name: 'x', cost_per_query: 1, outcomes }, { authorization: 'Bearer wrong-token!' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'DELETE', url: '/v1/models/mid-all' })).statusCode).toBe(401);
    const noAdmin = await buildApp({ router: await freshRouter(), routerPath });
    const r = await noAdmin.inject({ method: 'POST', url: '/v1/models', payload: {}, headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.statusCode).toBe(403);
    expect(r.json().error.code).toBe('ADMIN_DISABLED');
    const readOnly = await buildApp({ router: await freshRouter(), adminToken: TOKEN });
    const ro = await readOnly.inject({ method: 'DELETE', url: '/v1/models/mid-all', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ro.json().error.code).toBe('READ_ONLY');
    await noAdmin.close();
    await readOnly.close();
  });

  it('adds and removes LLMs at once, saved atomically, surviving a restart', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const add = await post('/v1/models', { name: 'newcomer', cost_per_query: 0.05, outcomes }, auth);
    expect(add.statusCode).toBe(201);
    expect(add.json().outcomes).toBe(60);
    expect((await app.inject({ method: 'GET', url: '/v1/models' })).json().data.map((m: any) => m.id)).toContain('newcomer');
    expect((await freshRouter()).has('newcomer')).toBe(true); // on disk
    expect((await post('/v1/models', { name: 'newcomer', cost_per_query: 0.05, outcomes }, auth)).statusCode).toBe(409);
    expect((await post('/v1/models', { name: 'y', cost_per_query: -1, outcomes }, auth)).statusCode).toBe(400);
    expect((await post('/v1/models', { name: 'y', cost_per_query: 1, outcomes: [{ text: 'a', correct: 3 }] }, auth)).statusCode).toBe(400);
    const del = await app.inject({ method: 'DELETE', url: '/v1/models/newcomer', headers: auth });
    expect(del.statusCode).toBe(200);
    expect((await freshRouter()).has('newcomer')).toBe(false);
    const ghost = await app.inject({ method: 'DELETE', url: '/v1/models/ghost', headers: auth });
    expect(ghost.statusCode).toBe(404);
    expect(ghost.json().error.code).toBe('UNKNOWN_MODEL');
  });

  it('routes under load while LLMs come and go: no failed request, no torn pool', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const base = router.size;
    const texts = randomTexts(30, 21);
    const routes: Promise<any>[] = [];
    for (let round = 0; round < 6; round++) for (const t of texts) routes.push(post('/v1/route', { prompts: [t, t], lambda: 0.05 }));
    const changes = (async () => {
      const codes: number[] = [];
      for (let round = 0; round < 6; round++) {
        const r = await (round % 2 === 0
          ? post('/v1/models', { name: 'flicker', cost_per_query: 0.01, outcomes }, auth)
          : app.inject({ method: 'DELETE', url: '/v1/models/flicker', headers: auth }));
        codes.push(r.statusCode);
      }
      return codes;
    })();
    const [rs, cs] = await Promise.all([Promise.all(routes), changes]);
    expect(cs).toEqual([201, 200, 201, 200, 201, 200]);
    for (const r of rs) {
      expect(r.statusCode).toBe(200);
      const ds = r.json().decisions;
      const sizes = ds.map((d: any) => Object.keys(d.candidates).length);
      expect([base, base + 1]).toContain(sizes[0]);
      expect(sizes[1]).toBe(sizes[0]); // both prompts of one request saw the same pool
    }
    expect(router.has('flicker')).toBe(false);
  });
});

describe('health and metrics', () => {
  it('healthz, readyz, and metrics all named uniroute_', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json().status).toBe('ok');
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json().status).toBe('ready');
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const names = text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]);
    expect(names.length).toBeGreaterThan(10);
    for (const n of names) expect(n.startsWith('uniroute_')).toBe(true);
    for (const n of ['uniroute_http_requests_total', 'uniroute_http_request_duration_seconds_bucket', 'uniroute_engine_batch_size_bucket', 'uniroute_decisions_total', 'uniroute_pool_size'])
      expect(names).toContain(n);
  });
});

// the OpenAI-compatible proxy: test/gateway.test.ts

describe('uniroute serve (a real process)', () => {
  it('serves on a real socket, and SIGTERM stops it with exit status 0 (in-flight work: see the graceful-shutdown test above)', async () => {
    const { proc, url, err } = await startServe(['--router', routerPath]);
    const texts = randomTexts(30, 6);
    const inflight = Promise.all(texts.map((t) => fetch(`${url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: t }) })));
    const first = await fetch(`${url}/healthz`);
    expect(first.status).toBe(200);
    const rs = await inflight;
    const exited = new Promise<number | null>((ok) => proc.on('exit', (c) => ok(c)));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(err()).toMatch(/SIGTERM: finishing in-flight requests/);
  });
});

describe('the response schemas (src/server/schemas.ts) hold for what the server and the CLI send', () => {
  it('route, models, health and error bodies validate; the library decision serialises to the same shape', async () => {
    const { default: Ajv } = await import('ajv');
    const ajv = new (Ajv as any)({ allErrors: true, strict: false });
    const S = await import('../src/server/schemas.js');
    const check = (schema: object, body: unknown) => {
      const ok = ajv.validate(schema, body);
      expect(ok, JSON.stringify(ajv.errors) + ' in ' + JSON.stringify(body).slice(0, 300)).toBe(true);
    };
    for (const payload of [{ prompt: 'integral of x^2?' }, { prompts: randomTexts(5, 2), lambda: 0.3 }, { prompts: randomTexts(3, 4), max_error: 0.4 }, { prompt: 'python loop', models: ['cheap-math', 'mid-all'] }]) {
      const r = await post('/v1/route', payload);
      expect(r.statusCode, r.body).toBe(200);
      check(S.routeResponseSchema, r.json());
    }
    const models = await app.inject({ method: 'GET', url: '/v1/models' });
    check(S.modelsResponseSchema, models.json());
    check(S.healthResponseSchema, (await app.inject({ method: 'GET', url: '/healthz' })).json());
    check(S.readyResponseSchema, (await app.inject({ method: 'GET', url: '/readyz' })).json());
    for (const bad of [{ prompt: 5 }, { prompt: 'x', lambda: -1 }, { prompt: 'x', models: ['nope'] }]) {
      const r = await post('/v1/route', bad);
      expect([400, 404]).toContain(r.statusCode);
      check(S.errorSchema, r.json());
    }
    // the library's decision record is the same shape, candidates keyed by LLM
    const [d] = await router.route(['integral of x^2?'], { lambda: 0.3, explain: true });
    check(S.decisionSchema, JSON.parse(JSON.stringify(decisionRecord(d, true))));
    // and a schema that could fail does: a decision without its model is refused
    expect(ajv.validate(S.decisionSchema, { cluster: 0, distance: 1, predicted_error: 0.1, cost: 1, ood: false })).toBe(false);
  });
});
