/**
 * /v1/route as the CLI and the library take it: errors in plain words that name the field (never the validator's
 * "must match exactly one schema in oneOf"), max_cost / min_accuracy calibrated on the request's prompts,
 * explain: false; and DELETE /v1/models/<a name with a slash>, raw or %2F-encoded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { makeSyntheticDataset, randomTexts } from './helpers.js';

const TOKEN = 'route-admin-token';
let routerPath: string;
let app: FastifyInstance;
let router: Router;

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-srt-')), 'r.uniroute');
  await fitted.save(routerPath);
  router = await Router.load(routerPath);
  app = await buildApp({ router, routerPath, adminToken: TOKEN });
});
afterAll(async () => app?.close());

const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/route', payload: payload as any, headers: { 'content-type': 'application/json' } });

describe('/v1/route in plain words', () => {
  it('names the field and what it takes; never the validator\'s jargon', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ prompt: 'x', lamda: 0.5 }, /unknown field "lamda" \(did you mean "lambda"\?\); the fields are prompt, prompts/],
      [{ promt: 'x' }, /unknown field "promt" \(did you mean "prompt"/],
      [{}, /give the prompt to route: "prompt" \(one\), "prompts" \(several\)/],
      [{ prompt: 'a', prompts: ['b'] }, /give one of "prompt" and "prompts", not both/],
      [{ prompt: 42 }, /"prompt" takes a string, got 42/],
      [{ prompt: 'x', lambda: 'high' }, /"lambda" takes a number >= 0, got "high"/],
      [{ prompt: 'x', tradeoff: 2 }, /"tradeoff" takes a number in \[0, 1\].*got 2/],
      [{ prompt: 'x', ood: 'off' }, /"ood" takes false, or \{"quantile"/],
      [{ prompt: 'x', explain: 'no' }, /"explain" takes true or false/],
      [{ prompt: 'x', max_cost: 0.2, lambda: 1 }, /give one of lambda, tradeoff, max_cost, min_accuracy and max_error, not both lambda and max_cost/],
      [{ prompts: ['a', 7] }, /"prompts\[1\]"/],
      [[1, 2], /the body must be a JSON object/],
    ];
    for (const [body, msg] of cases) {
      const r = await post(body);
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      const j = r.json();
      expect(j.error.code).toBe('INVALID_ARGUMENT');
      expect(j.error.message, JSON.stringify(body)).toMatch(msg);
      expect(j.error.message).not.toMatch(/oneOf|must match|schema|additional properties/i);
    }
  });

  it('max_cost and min_accuracy: lambda calibrated on the request\'s prompts, as `uniroute route --max-cost` does', async () => {
    const texts = randomTexts(40, 9);
    const costs = router.snapshot();
    const cost = (m: string) => costs.cost[costs.index.get(m)!];
    for (const maxCost of [0.2, 0.6]) {
      const r = await post({ prompts: texts, max_cost: maxCost });
      expect(r.statusCode, r.body).toBe(200);
      const j = r.json();
      const mean = j.decisions.reduce((s: number, d: any) => s + cost(d.model), 0) / texts.length;
      expect(mean).toBeLessThanOrEqual(maxCost * 1.05 + 1e-9);
      expect(j.calibration.feasible).toBe(true);
      expect(j.calibration.mean_cost).toBeCloseTo(mean, 5);
      // the library's calibration on the same prompts gives the same lambda
      const lib = await router.calibrateLambda(texts, { maxCost });
      expect(j.lambda).toBe(lib.lambda);
    }
    const acc = (await post({ prompts: texts, min_accuracy: 0.8 })).json();
    expect(acc.calibration.predicted_accuracy).toBeGreaterThanOrEqual(0.8 * 0.95);
    const tight = (await post({ prompts: texts, max_cost: 0.2 })).json();
    const loose = (await post({ prompts: texts, max_cost: 2 })).json();
    expect(loose.calibration.predicted_accuracy).toBeGreaterThan(tight.calibration.predicted_accuracy);
    // with embeddings it says what it needs
    const e = await post({ embedding: [1, 2], max_cost: 0.1 });
    expect(e.statusCode).toBe(400);
  });

  it('explain: false leaves the candidates out (the same decisions)', async () => {
    const texts = randomTexts(6, 3);
    const full = (await post({ prompts: texts, lambda: 0.1 })).json();
    const slim = (await post({ prompts: texts, lambda: 0.1, explain: false })).json();
    expect(slim.decisions.map((d: any) => d.model)).toEqual(full.decisions.map((d: any) => d.model));
    expect(slim.decisions.every((d: any) => d.candidates === undefined)).toBe(true);
    expect(full.decisions.every((d: any) => typeof d.candidates === 'object')).toBe(true);
  });
});

describe('DELETE /v1/models/<a name with a slash>', () => {
  it('takes the name raw or %2F-encoded', async () => {
    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const outcomes = randomTexts(30, 5).map((text, i) => ({ text, correct: i % 2 }));
    for (const [name, url] of [
      ['meta-llama/Llama-3-8B', '/v1/models/meta-llama/Llama-3-8B'],
      ['org/sub/model', '/v1/models/org%2Fsub%2Fmodel'],
    ]) {
      const add = await app.inject({ method: 'POST', url: '/v1/models', headers: auth, payload: { name, cost_per_query: 0.01, outcomes } });
      expect(add.statusCode, add.body).toBe(201);
      const del = await app.inject({ method: 'DELETE', url, headers: { authorization: auth.authorization } });
      expect(del.statusCode, del.body).toBe(200);
      expect(del.json()).toMatchObject({ id: name, deleted: true });
      expect((await Router.load(routerPath)).has(name)).toBe(false);
    }
    const ghost = await app.inject({ method: 'DELETE', url: '/v1/models/no/such', headers: { authorization: auth.authorization } });
    expect(ghost.statusCode).toBe(404);
    expect(ghost.json().error.message).toMatch(/no\/such/);
    const bad = await app.inject({ method: 'DELETE', url: '/v1/models/%E0%A4%A', headers: { authorization: auth.authorization } });
    expect(bad.statusCode).toBe(400);
  });
});
