/**
 * The decision core through the server: /v1/models and the gateway use the pool's current operating point (it
 * moves when an LLM is added), a preset with a cost target follows it, `explore` decides a share of routed requests
 * by Thompson draws when feedback is on (and says so), and an out-of-distribution prompt's explained decision says why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { LivePool } from '../src/pool/live.js';
import { MemoryPoolStore } from '../src/pool/store.js';
import { makeSyntheticDataset, randomTexts } from './helpers.js';

let upstream: FastifyInstance;
let upUrl: string;
let artifact: Buffer;
const LLMS = ['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'];

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(600, 7));
  artifact = (await fitRouter(ds, { seed: 2, clusters: 3, embedder: { bucketsLog2: 13, dim: 32 } })).router.toArtifact();
  upstream = Fastify();
  upstream.post('/:llm/v1/chat/completions', async (req: any) => ({
    id: 'c1',
    object: 'chat.completion',
    created: 1,
    model: req.body.model,
    choices: [{ index: 0, message: { role: 'assistant', content: `hi from ${req.params.llm}` }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  }));
  upUrl = await upstream.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => upstream?.close());

const router = () => Router.fromArtifact(artifact, 'mem');
const config = (extra: Record<string, unknown> = {}) =>
  parseConfig({ upstreams: Object.fromEntries([...LLMS, 'newcomer'].map((m) => [m, { base_url: `${upUrl}/${m}/v1` }])), ...extra }, 'test');

describe('the decision core through the server', () => {
  it('/v1/models gives the operating point in force; it moves when the pool changes, and the gateway routes at it', async () => {
    const r = router();
    const live = await LivePool.open(r, new MemoryPoolStore());
    const app = await buildApp({ router: r, pool: live, adminToken: 'admin-token-0123', config: config() });
    try {
      const before = (await app.inject({ method: 'GET', url: '/v1/models' })).json();
      expect(before.operating_point.fixed).toBe(false);
      expect(before.operating_point.lambda).toBe(r.defaultLambda);
      // a newcomer as accurate as big-all at a fraction of its cost
      const outcomes = randomTexts(150, 4).map((text) => ({ text, correct: 1 }));
      const add = await app.inject({
        method: 'POST',
        url: '/v1/models',
        headers: { authorization: 'Bearer admin-token-0123', 'content-type': 'application/json' },
        payload: { name: 'newcomer', cost_per_query: 0.2, outcomes },
      });
      expect(add.statusCode, add.body).toBe(201);
      const after = (await app.inject({ method: 'GET', url: '/v1/models' })).json();
      expect(after.operating_point.lambda).not.toBe(before.operating_point.lambda);
      expect(after.operating_point.lambda).toBe(r.defaultLambda);
      expect(after.operating_point.expected_accuracy).toBeGreaterThanOrEqual(after.operating_point.accuracy_at_zero - 0.01 - 1e-9);
      // the gateway's "uniroute" routes at it
      const chat = await app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
        payload: { model: 'uniroute', messages: [{ role: 'user', content: randomTexts(1, 9)[0] }] },
      });
      expect(chat.statusCode, chat.body).toBe(200);
      const direct = await r.routeBatch([randomTexts(1, 9)[0]], { lambda: after.operating_point.lambda });
      expect(chat.headers['x-uniroute-model']).toBe(direct.models[direct.choice[0]]);
    } finally {
      await app.close();
    }
  });

  it('a preset with a cost target is resolved on the current pool, not once at start', async () => {
    const r = router();
    const live = await LivePool.open(r, new MemoryPoolStore());
    const cheapCost = Math.min(...r.snapshot().cost);
    const app = await buildApp({ router: r, pool: live, adminToken: 'admin-token-0123', config: config({ presets: { frugal: { max_cost: cheapCost * 1.5 } } }) });
    try {
      const ask = () =>
        app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: { model: 'uniroute/frugal', messages: [{ role: 'user', content: 'Question: solve integral sum?' }] } });
      const first = await ask();
      expect(first.statusCode, first.body).toBe(200);
      const lambdaBefore = Number(first.headers['x-uniroute-lambda']);
      // a perfect LLM cheaper than every other: the curve changes, and so does the preset's lambda
      const add = await app.inject({
        method: 'POST',
        url: '/v1/models',
        headers: { authorization: 'Bearer admin-token-0123', 'content-type': 'application/json' },
        payload: { name: 'newcomer', cost_per_query: cheapCost / 10, outcomes: randomTexts(150, 5).map((text) => ({ text, correct: 1 })) },
      });
      expect(add.statusCode, add.body).toBe(201);
      const second = await ask();
      expect(second.statusCode, second.body).toBe(200);
      expect(Number(second.headers['x-uniroute-lambda'])).not.toBe(lambdaBefore);
      expect(second.headers['x-uniroute-model']).toBe('newcomer');
    } finally {
      await app.close();
    }
  });

  it('explore: with feedback on, a share of routed requests is decided by Thompson draws and says so; off without a pool', async () => {
    const r = router();
    const live = await LivePool.open(r, new MemoryPoolStore());
    const app = await buildApp({ router: r, pool: live, config: config({ explore: 0.5 }) });
    const texts = randomTexts(60, 21);
    let explored = 0;
    try {
      for (const content of texts) {
        const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: { model: 'uniroute', messages: [{ role: 'user', content }] } });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.headers['x-uniroute-decision-id']).toBeDefined();
        if (res.headers['x-uniroute-explored'] === 'true') explored++;
      }
    } finally {
      await app.close();
    }
    expect(explored).toBeGreaterThan(10);
    expect(explored).toBeLessThan(50);
    // without a pool there is no feedback to learn from: no exploration
    const plain = await buildApp({ router: router(), config: config({ explore: 0.5 }) });
    try {
      for (const content of texts.slice(0, 20)) {
        const res = await plain.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: { model: 'uniroute', messages: [{ role: 'user', content }] } });
        expect(res.headers['x-uniroute-explored']).toBeUndefined();
      }
    } finally {
      await plain.close();
    }
    expect(() => config({ explore: 1.5 })).toThrow(/explore/);
  });

  it('an out-of-distribution prompt is decided on the prior, and /v1/route says why', async () => {
    const app = await buildApp({ router: router() });
    try {
      const res = await app.inject({ method: 'POST', url: '/v1/route', headers: { 'content-type': 'application/json' }, payload: { prompt: 'Zebra umbrella violin harbour? Ünïcode — 数学 ∑', lambda: 0.1, ood: { quantile: 0.5 } } });
      expect(res.statusCode, res.body).toBe(200);
      const d = res.json().decisions[0];
      expect(d.ood).toBe(true);
      expect(d.reason).toMatch(/out of distribution.*prior over clusters/);
      const evidence = await app.inject({ method: 'POST', url: '/v1/route', headers: { 'content-type': 'application/json' }, payload: { prompt: 'x', evidence: 'prefer' } });
      expect(evidence.statusCode).toBe(400);
      expect(evidence.json().error.message).toMatch(/removed/);
    } finally {
      await app.close();
    }
  });
});
