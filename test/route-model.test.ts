/**
 * The engine's route model: a route's fixed parts (centroids, Ψ, costs, difficulty, evidence cells) checked and
 * copied once per pool snapshot, so that a one-prompt route on the calling thread passes only λ, the mask and the
 * outputs. Its decisions must be the full route's, bit for bit, under every option; it must follow the pool as it
 * changes; and its native entry points must refuse bad arguments with coded errors.
 */
import { describe, expect, it } from 'vitest';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { HashedEmbedder } from '../src/embed/embedder.js';
import { native, type NativeRouteModel } from '../src/engine/native.js';
import type { RouteBatch, RouteOptions } from '../src/decide/types.js';
import { randomTexts } from './helpers.js';

const prompts = [
  'What is 17*23? Show the steps.',
  'Write a Python function that returns the n-th Fibonacci number iteratively.',
  'Summarise the causes of the First World War in three sentences.',
  'Give three arguments for and against nuclear power.',
  'hi',
  'x'.repeat(3000),
  ...randomTexts(40, 3),
];

function same(a: RouteBatch, b: RouteBatch) {
  expect(b.models).toEqual(a.models);
  expect(Array.from(b.choice)).toEqual(Array.from(a.choice));
  expect(Array.from(b.cluster)).toEqual(Array.from(a.cluster));
  expect(Array.from(b.distance)).toEqual(Array.from(a.distance));
  expect(Array.from(b.predictedError)).toEqual(Array.from(a.predictedError));
  expect(Array.from(b.chosenError)).toEqual(Array.from(a.chosenError));
  expect(Array.from(b.cellOf)).toEqual(Array.from(a.cellOf));
  expect(Array.from(b.ood)).toEqual(Array.from(a.ood));
}

describe('the route model (one-prompt routes on the calling thread)', () => {
  it('decides exactly as the full route, under every option, one prompt or many', async () => {
    const router = await Router.load(defaultRouterPath());
    expect(router.prior?.difficulty).toBeDefined(); // the built-in router exercises the difficulty model and cells
    const m = router.models().map((x) => x.name);
    const options: RouteOptions[] = [
      {},
      { lambda: 0 },
      { lambda: 0.5, explain: false },
      { lambda: 50 },
      { tradeoff: 0.3 },
      { risk: 0.5 },
      { risk: 1, explain: false },
      { maxError: 0.3 },
      { models: m.slice(0, 3) },
      { models: prompts.map((_, i) => [m[i % m.length], m[(i * 7 + 1) % m.length]]), lambda: 0.2 },
      { ood: false },
      { ood: { quantile: 0.5, fallback: 'best-overall' } },
    ];
    for (const opts of options) {
      const full = await router.routeBatch(prompts, opts); // the async path: every part passed and checked per call
      same(full, router.routeBatchSync(prompts, opts));
      if (!Array.isArray(opts.models?.[0]))
        for (const i of [0, 4, 5]) {
          const one = router.routeBatchSync([prompts[i]], opts);
          expect(one.choice[0]).toBe(full.choice[i]);
          expect(one.distance[0]).toBe(full.distance[i]);
          expect(one.chosenError[0]).toBe(full.chosenError[i]);
        }
    }
  });

  it('follows the pool: an LLM added or removed, or a price changed, is seen by the next route', async () => {
    const router = await Router.load(defaultRouterPath());
    const before = router.routeBatchSync(prompts, { lambda: 0.01 });
    // a free LLM that was right on every prompt like these: it must now take some of them
    await router.addModel('newcomer', { costPerQuery: 1e-9, outcomes: prompts.map((text) => ({ text, correct: 1 })) });
    const during = router.routeBatchSync(prompts, { lambda: 0.01 });
    same(await router.routeBatch(prompts, { lambda: 0.01 }), during);
    expect(during.models).toContain('newcomer');
    expect(Array.from(during.choice).some((c) => during.models[c] === 'newcomer')).toBe(true);
    router.removeModel('newcomer');
    same(before, router.routeBatchSync(prompts, { lambda: 0.01 }));
    // the LLM the first prompt goes to costs 100 USD a query: it loses that prompt
    const top = before.choice[0];
    const entries = router.poolEntries().map((e) => (e.name === before.models[top] ? { ...e, costPerQuery: 100 } : e));
    router.setPool(entries);
    const dearer = router.routeBatchSync(prompts, { lambda: 0.01 });
    same(await router.routeBatch(prompts, { lambda: 0.01 }), dearer);
    expect(dearer.choice[0]).not.toBe(top);
    // a stronger prior moves Ψ
    router.setPriorStrength(50);
    same(await router.routeBatch(prompts, { lambda: 0.01 }), router.routeBatchSync(prompts, { lambda: 0.01 }));
  });
});

describe('routeModel and routeModelSync refuse bad arguments', () => {
  const d = 8;
  const k = 3;
  const m = 2;
  const parts = () => ({
    dim: d,
    centroids: Float32Array.from({ length: k * d }, (_, i) => Math.sin(i)),
    k,
    psi: Float32Array.from([0.1, 0.5, 0.9, 0.4, 0.4, 0.4]),
    cost: Float32Array.from([1, 2]),
    m,
  });
  const setup = async () => {
    const emb = await HashedEmbedder.fit(randomTexts(120, 8), { bucketsLog2: 10, dim: d, seed: 2 });
    return { h: emb.nativeHandle, texts: ['What is 17*23?', 'hello there'] };
  };
  const outs = (n: number) => ({ choice: new Int32Array(n), cluster: new Int32Array(n), distance: new Float32Array(n), gamma: new Float32Array(n * m) });
  const run = (h: Awaited<ReturnType<typeof setup>>['h'], model: NativeRouteModel, texts: string[], lambda = 0.1) => {
    const o = outs(texts.length);
    h.routeModelSync(model, texts, lambda, null, false, o.choice, o.cluster, o.distance, o.gamma, null, null);
    return o;
  };

  it('decides as routeSync with the same parts, and keeps its own copies of them', async () => {
    const { h, texts } = await setup();
    const p = parts();
    const model = native().routeModel(p);
    const o = outs(texts.length);
    h.routeSync({ texts, ...p, lambda: 0.1, ...o });
    const a = run(h, model, texts);
    expect(a).toEqual(o);
    // the arrays it was made from change (or turn to NaN): the model does not
    p.centroids.fill(Number.NaN);
    p.psi.fill(1);
    expect(run(h, model, texts)).toEqual(a);
  });

  it('checks the parts once, with the same coded errors as a full route', async () => {
    const bad = (over: Record<string, unknown>) => () => native().routeModel({ ...parts(), ...over } as never);
    expect(bad({ psi: Float32Array.from([0.1, Number.NaN, 0.9, 0.4, 0.4, 0.4]) })).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/`psi` has a non-finite value at index 1/) }));
    expect(bad({ centroids: new Float32Array(k * d - 1) })).toThrow(expect.objectContaining({ code: 'DIMENSION_MISMATCH', message: expect.stringMatching(/`centroids` has 23 elements but k x dim needs 24/) }));
    expect(bad({ cost: new Float64Array(m) })).toThrow(/Expected a Float32Array for `cost`/);
    expect(bad({ dim: 0 })).toThrow(/whole number in \[1, 4096\] for `dim`/);
    expect(bad({ centroidNorms: Float32Array.from([1, -1, 1]) })).toThrow(/`centroidNorms` has a negative value/);
    expect(bad({ psiLogit: new Float32Array(m * k), slope: 1 })).toThrow(/an object \{w, w0, mu\} \(psiLogit needs it\) for `difficulty`/);
    expect(() => native().routeModel(null as never)).toThrow(/Expected an object for `options`/);
  });

  it('checks every per-call argument', async () => {
    const { h, texts } = await setup();
    const model = native().routeModel(parts());
    const o = outs(texts.length);
    const call = (...over: Array<[number, unknown]>) => () => {
      const args: unknown[] = [model, texts, 0.1, null, false, o.choice, o.cluster, o.distance, o.gamma, null, null];
      for (const [i, v] of over) args[i] = v;
      (h.routeModelSync as (...a: unknown[]) => void)(...args);
    };
    expect(call()).not.toThrow();
    expect(call([0, {}])).toThrow(/Expected a route model \(routeModel\(\)\) for `model`/);
    expect(call([0, null])).toThrow(/for `model`/);
    expect(() => (h.routeModelSync as (...a: unknown[]) => void)(model, texts)).toThrow(/takes 11 arguments, got 2/);
    expect(call([1, 'text'])).toThrow(/an array of strings for `texts`/);
    expect(call([1, ['a', 3]])).toThrow(/a string for `texts\[1\]`/);
    expect(call([2, Number.NaN])).toThrow(expect.objectContaining({ code: 'NON_FINITE' }));
    expect(call([2, -1])).toThrow(/`lambda` must be >= 0/);
    expect(call([3, new Uint8Array(m + 1)])).toThrow(/`allowed` has 3 elements but m needs 2/);
    expect(call([3, new Uint8Array(m)], [4, true])).toThrow(/`allowed` has 2 elements but n x m needs 4/);
    expect(call([5, new Int32Array(1)])).toThrow(/`choice` has 1 elements but rows needs 2/);
    expect(call([7, new Int32Array(2)])).toThrow(/Expected a Float32Array for `distance`/);
    expect(call([8, new Float32Array(3)])).toThrow(/`gamma` has 3 elements but rows x m needs 4/);
    expect(call([9, new Float32Array(1)])).toThrow(/`chosen` has 1 elements but rows needs 2/);
    // a model made for other embeddings
    const wide = native().routeModel({ ...parts(), dim: d * 2, centroids: new Float32Array(k * d * 2) });
    expect(call([0, wide])).toThrow(expect.objectContaining({ code: 'DIMENSION_MISMATCH', message: expect.stringMatching(/for 16-d embeddings; this embedder gives 8/) }));
    // an allowed mask that rules every LLM out is an error, as in the full route
    const none = new Uint8Array(m);
    const full = () => h.routeSync({ texts, ...parts(), lambda: 0.1, allowed: none, ...outs(texts.length) });
    let fullError: unknown;
    try {
      full();
    } catch (e) {
      fullError = e;
    }
    let modelError: unknown;
    try {
      call([3, none])();
    } catch (e) {
      modelError = e;
    }
    expect(String(modelError)).toBe(String(fullError));
  });
});
