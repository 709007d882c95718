/** Router behaviour: properties of routing, pool changes, persistence, and bad input. */
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { UnirouteError } from '../src/errors.js';
import { encodeArtifact } from '../src/router/artifact.js';
import { psiRow, statsOf } from '../src/router/evidence.js';
import { makeSyntheticDataset, randomTexts } from './helpers.js';

let router: Router;
let dir: string;
const probe = randomTexts(120, 77);

beforeAll(async () => {
  dir = makeSyntheticDataset(600, 3);
  const ds = await loadDataset(dir);
  ({ router } = await fitRouter(ds, { seed: 2, embedder: { bucketsLog2: 14, dim: 32 } }));
});

const expectCode = async (p: Promise<unknown> | (() => unknown), code: string, msg?: RegExp) => {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} error`).toBeInstanceOf(UnirouteError);
  expect((err as UnirouteError).code).toBe(code);
  if (msg) expect((err as Error).message).toMatch(msg);
};

describe('fitting', () => {
  it('chooses K on validation and profiles every training LLM', () => {
    expect(router.size).toBe(5);
    expect(router.k).toBeGreaterThanOrEqual(3);
    expect((router.info.kSearch as unknown[]).length).toBeGreaterThan(0);
  });

  it('learns who is good at what: the cheap specialist wins its topic at a moderate lambda', async () => {
    const d = await router.route(['Question: integral derivative solve equation algebra prime?', 'Question: python function return list loop class?'], { lambda: 0.2 });
    expect(d[0].model).toBe('cheap-math');
    expect(d[1].model).toBe('cheap-code');
  });

  it('fitting twice with one seed gives identical artifacts (but for the timestamp)', async () => {
    const ds = await loadDataset(dir);
    const a = (await fitRouter(ds, { seed: 4, clusters: 4, embedder: { bucketsLog2: 12, dim: 16 } })).router;
    const b = (await fitRouter(ds, { seed: 4, clusters: 4, embedder: { bucketsLog2: 12, dim: 16 } })).router;
    a.info = b.info = {};
    expect(a.toArtifact().equals(b.toArtifact())).toBe(true);
  });
});

describe('routing properties', () => {
  it('lambda = 0 picks the lowest predicted error; a huge lambda picks the cheapest allowed LLM', async () => {
    const b0 = await router.routeBatch(probe, { lambda: 0 });
    const m = b0.models.length;
    for (let i = 0; i < probe.length; i++) {
      const g = b0.predictedError.subarray(i * m, (i + 1) * m);
      expect(g[b0.choice[i]]).toBe(Math.min(...g));
    }
    const big = await router.routeBatch(probe, { lambda: 1e9 });
    const minCost = Math.min(...big.costs);
    for (let i = 0; i < probe.length; i++) expect(big.costs[big.choice[i]]).toBe(minCost);
  });

  it('the chosen LLM\'s cost never rises as lambda rises', async () => {
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0, max: 5, noNaN: true }), async (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const x = await router.routeBatch(probe, { lambda: lo });
        const y = await router.routeBatch(probe, { lambda: hi });
        for (let i = 0; i < probe.length; i++) expect(y.costs[y.choice[i]]).toBeLessThanOrEqual(x.costs[x.choice[i]]);
      }),
      { numRuns: 30 },
    );
  });

  it('honours the allowed set, shared or per prompt', async () => {
    const b = await router.routeBatch(probe.slice(0, 3), { models: ['mid-all', 'big-all'] });
    for (const c of b.choice) expect(['mid-all', 'big-all']).toContain(b.models[c]);
    const per = await router.routeBatch(probe.slice(0, 2), { models: [['cheap-math'], ['big-all']] });
    expect(per.models[per.choice[0]]).toBe('cheap-math');
    expect(per.models[per.choice[1]]).toBe('big-all');
  });

  it('sync and async routing agree, and the result is in input order', async () => {
    const a = await router.routeBatch(probe, { lambda: 0.1 });
    const b = router.routeBatchSync(probe, { lambda: 0.1 });
    expect(b.choice).toEqual(a.choice);
    const single = await Promise.all(probe.slice(0, 10).map((t) => router.routeBatch([t], { lambda: 0.1 })));
    single.forEach((s, i) => expect(s.choice[0]).toBe(a.choice[i]));
  });

  it('add-then-remove restores every decision', async () => {
    const before = await router.routeBatch(probe, { lambda: 0.05 });
    const outcomes = probe.slice(0, 60).map((text, i) => ({ text, correct: i % 3 === 0 ? 1 : 0 }));
    await router.addModel('newcomer', { costPerQuery: 0.01, outcomes });
    expect(router.size).toBe(6);
    const during = await router.routeBatch(probe, { lambda: 0.05 });
    expect(during.models).toContain('newcomer');
    router.removeModel('newcomer');
    const after = await router.routeBatch(probe, { lambda: 0.05 });
    expect(after.choice).toEqual(before.choice);
    expect(after.predictedError).toEqual(before.predictedError);
  });

  it('save-then-load gives identical decisions (plain and gzipped)', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'uniroute-'));
    for (const file of ['r.uniroute', 'r.uniroute.gz']) {
      const p = join(tmp, file);
      await router.save(p);
      const loaded = await Router.load(p);
      const a = await router.routeBatch(probe, { lambda: 0.07 });
      const b = await loaded.routeBatch(probe, { lambda: 0.07 });
      expect(b.choice).toEqual(a.choice);
      expect(b.predictedError).toEqual(a.predictedError);
      expect(loaded.models()).toEqual(router.models());
    }
  });
});

describe('the quality floor (maxError)', () => {
  it('picks the cheapest allowed LLM whose predicted error is <= eps, else the lowest predicted error', async () => {
    const texts = probe.slice(0, 60);
    for (const eps of [0.05, 0.15, 0.3, 0.6, 1]) {
      for (const models of [undefined, ['cheap-math', 'mid-all', 'big-all']]) {
        const d = await router.route(texts, { maxError: eps, models, evidence: 'ignore' });
        for (const x of d) {
          const cands = x.candidates.filter((c) => !models || models.includes(c.model));
          const ok = cands.filter((c) => c.predictedError <= eps);
          if (ok.length) {
            expect(x.predictedError).toBeLessThanOrEqual(eps);
            expect(x.cost).toBe(Math.min(...ok.map((c) => c.cost)));
          } else expect(x.predictedError).toBe(Math.min(...cands.map((c) => c.predictedError)));
        }
      }
    }
    // eps = 1 is the cheapest LLM; eps = 0 (nobody is perfect) the lowest predicted error, as at lambda 0
    const cheapest = await router.route(texts, { maxError: 1, evidence: 'ignore' });
    for (const x of cheapest) expect(x.cost).toBe(Math.min(...x.candidates.map((c) => c.cost)));
    const none = await router.routeBatch(texts, { maxError: 0 });
    const zero = await router.routeBatch(texts, { lambda: 0 });
    expect([...none.choice]).toEqual([...zero.choice]);
    // a tighter floor never gets cheaper
    const costOf = async (eps: number) => (await router.route(texts, { maxError: eps, evidence: 'ignore' })).reduce((a, x) => a + x.cost, 0);
    expect(await costOf(0.1)).toBeGreaterThanOrEqual(await costOf(0.4));
    for (const bad of [-0.1, 1.5, NaN]) await expectCode(router.routeBatch(texts, { maxError: bad }), 'INVALID_ARGUMENT', /maxError/);
  });
});

describe('out-of-distribution prompts', () => {
  it('keeps the training distance quantiles; beyond the threshold a prompt is flagged and sent to the fallback', async () => {
    const x = router.distanceQuantiles!;
    expect(x.q.length).toBeGreaterThan(20);
    for (let i = 1; i < x.q.length; i++) expect(x.d[i]).toBeGreaterThanOrEqual(x.d[i - 1]);
    expect(router.oodThreshold(0.99)!).toBeGreaterThan(router.oodThreshold(0.5)!);
    const texts = randomTexts(400, 91); // drawn like the training prompts
    const plain = await router.routeBatch(texts, { lambda: 0.3, ood: false });
    expect(plain.ood.length).toBe(0);
    // at the 99th percentile few are flagged; at the median about half
    const at99 = await router.routeBatch(texts, { lambda: 0.3 });
    const share99 = at99.ood.reduce((a, v) => a + v, 0) / texts.length;
    expect(share99).toBeLessThan(0.05);
    const half = await router.routeBatch(texts, { lambda: 0.3, ood: { quantile: 0.5 } });
    const share50 = half.ood.reduce((a, v) => a + v, 0) / texts.length;
    expect(share50).toBeGreaterThan(0.3);
    expect(share50).toBeLessThan(0.7);
    // flagged: decided on the pool's prior over clusters (Ψ weighted by the cluster shares) at the same lambda;
    // the others: as without the check
    const snap = router.snapshot();
    const share = router.clusterShare!;
    const predictedOverall = (name: string) => {
      const j = snap.index.get(name)!;
      let s = 0;
      for (let c = 0; c < router.k; c++) s += share[c] * snap.psi[j * router.k + c];
      return s;
    };
    const lowest = (names: string[]) => names.reduce((a, n) => (predictedOverall(n) < predictedOverall(a) ? n : a));
    const best = lowest(snap.names);
    const byPrior = snap.names.reduce((a, n) =>
      predictedOverall(n) + 0.3 * snap.cost[snap.index.get(n)!] < predictedOverall(a) + 0.3 * snap.cost[snap.index.get(a)!] ? n : a,
    );
    for (let i = 0; i < texts.length; i++) {
      expect(half.ood[i]).toBe(half.distance[i] > router.oodThreshold(0.5)! ? 1 : 0);
      if (half.ood[i]) expect(half.models[half.choice[i]]).toBe(byPrior);
      else expect(half.choice[i]).toBe(plain.choice[i]);
    }
    // 'best-overall': the lowest such error, whatever it costs
    const bestOverall = await router.routeBatch(texts, { lambda: 0.3, ood: { quantile: 0.5, fallback: 'best-overall' } });
    for (let i = 0; i < texts.length; i++) if (bestOverall.ood[i]) expect(bestOverall.models[bestOverall.choice[i]]).toBe(best);
    // a named fallback, and one outside the allowed set (the best allowed instead); 'route' only flags
    const named = await router.routeBatch(texts, { lambda: 0.3, ood: { quantile: 0.5, fallback: 'cheap-code' } });
    for (let i = 0; i < texts.length; i++) if (named.ood[i]) expect(named.models[named.choice[i]]).toBe('cheap-code');
    const allowed = ['cheap-math', 'mid-all'];
    const sub = await router.routeBatch(texts, { lambda: 0.3, models: allowed, ood: { quantile: 0.5, fallback: 'cheap-code' } });
    const bestAllowed = lowest(allowed);
    for (let i = 0; i < texts.length; i++) if (sub.ood[i]) expect(sub.models[sub.choice[i]]).toBe(bestAllowed);
    const flagOnly = await router.routeBatch(texts, { lambda: 0.3, ood: { quantile: 0.5, fallback: 'route' } });
    expect([...flagOnly.choice]).toEqual([...plain.choice]);
    expect([...flagOnly.ood]).toEqual([...half.ood]);
    // decision records say so
    expect((await router.route(texts.slice(0, 50), { lambda: 0.3, ood: { quantile: 0.5 } })).some((d) => d.ood)).toBe(true);
    await expectCode(router.routeBatch(texts, { ood: { fallback: 'ghost' } }), 'UNKNOWN_MODEL');
    await expectCode(router.routeBatch(texts, { ood: { quantile: 0 } }), 'INVALID_ARGUMENT');
  });

  it('the quantiles survive save and load; bad ones are refused', async () => {
    const f = join(dir, 'ood.uniroute');
    await router.save(f);
    const back = await Router.load(f);
    expect(back.distanceQuantiles).toEqual(router.distanceQuantiles);
    const r2 = await Router.load(f);
    expect(() => r2.setDistanceQuantiles({ q: [0, 0.5, 1], d: [0.3, 0.2, 0.4] })).toThrow(/ascend/);
    expect(() => r2.setDistanceQuantiles({ q: [0, 1], d: [0, NaN] })).toThrow(/finite/);
  });
});

describe('error vectors', () => {
  it('plain mean with prior 0, shrinkage toward the overall error otherwise, overall error for empty clusters', () => {
    const s = statsOf(3, [0, 0, 0, 1], [1, 1, 0, 0]);
    expect(Array.from(psiRow(s, 0).psi)).toEqual([Math.fround(1 / 3), 1, 0.5]);
    const shrunk = psiRow(s, 2).psi;
    expect(shrunk[1]).toBeCloseTo((1 + 2 * 0.5) / 3, 6);
    expect(shrunk[2]).toBe(0.5);
  });

  it('the prior strength moves sparse clusters more than dense ones', () => {
    const s = statsOf(2, [0, 0, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    const plain = psiRow(s, 0).psi;
    const shrunk = psiRow(s, 4).psi;
    expect(Math.abs(shrunk[1] - plain[1])).toBeGreaterThan(Math.abs(shrunk[0] - plain[0]));
  });
});

describe('bad input gets a coded error, never a crash', () => {
  it('texts', async () => {
    await expectCode(router.routeBatch(['fine', '']), 'EMPTY_TEXT', /texts\[1\]/);
    await expectCode(router.routeBatch(['fine', '   \n']), 'EMPTY_TEXT');
    await expectCode(router.routeBatch([42 as unknown as string]), 'INVALID_ARGUMENT', /texts\[0\]/);
    await expectCode(router.routeBatch('text' as unknown as string[]), 'INVALID_ARGUMENT');
  });

  it('lambda and allowed LLMs', async () => {
    await expectCode(router.routeBatch(['x'], { lambda: NaN }), 'INVALID_ARGUMENT', /lambda/);
    await expectCode(router.routeBatch(['x'], { lambda: -1 }), 'INVALID_ARGUMENT', /lambda/);
    await expectCode(router.routeBatch(['x'], { models: ['nope'] }), 'UNKNOWN_MODEL', /nope/);
    await expectCode(router.routeBatch(['x', 'y'], { models: [['big-all']] }), 'DIMENSION_MISMATCH');
  });

  it('pool changes', async () => {
    await expectCode(() => router.removeModel('ghost'), 'UNKNOWN_MODEL', /ghost/);
    await expectCode(router.addModel('big-all', { costPerQuery: 1, outcomes: [{ text: 'a', correct: 1 }] }), 'DUPLICATE_MODEL');
    await expectCode(router.addModel('x', { costPerQuery: NaN, outcomes: [{ text: 'a', correct: 1 }] }), 'NO_COST', /"x"/);
    await expectCode(router.addModel('x', { costPerQuery: 1e39, outcomes: [{ text: 'a', correct: 1 }] }), 'NO_COST', /1e\+30/);
    await expectCode(router.addModel('x', { costPerQuery: 1, outcomes: [] }), 'INVALID_ARGUMENT');
    await expectCode(router.addModel('x', { costPerQuery: 1, outcomes: [{ text: 'a', correct: 2 }] }), 'INVALID_ARGUMENT', /correct/);
    await expectCode(router.addModel('x', { costPerQuery: 1, outcomes: [{ text: '', correct: 1 }] }), 'EMPTY_TEXT');
    expect(router.has('x')).toBe(false);
  });

  it('embeddings of the wrong size or with NaN', async () => {
    await expectCode(() => router.routeEmbeddings(new Float32Array(router.dim + 1)), 'DIMENSION_MISMATCH');
    const e = new Float32Array(router.dim);
    e[3] = NaN;
    await expectCode(() => router.routeEmbeddings(e), 'NON_FINITE', /index 3/);
    await expectCode(() => router.assignEmbeddings([1, 2] as unknown as Float32Array), 'INVALID_ARGUMENT');
  });

  it('native boundary checks every size and type', async () => {
    const { native } = await import('../src/engine/native.js');
    const n = native();
    expect(() => n.assignSync(new Float32Array(10), 3, 4, new Float32Array(8), 2, new Int32Array(3))).toThrow(/points.*12/);
    expect(() => n.assignSync(new Float64Array(12) as unknown as Float32Array, 3, 4, new Float32Array(8), 2, new Int32Array(3))).toThrow(/Float32Array for `points`/);
    expect(() => n.scoreSync({ clusters: new Int32Array([5]), psi: new Float32Array(4), cost: new Float32Array(2), m: 2, k: 2, lambda: 0, choice: new Int32Array(1) })).toThrow(/outside/);
    expect(() => n.scoreSync({ clusters: new Int32Array([0]), psi: new Float32Array(4), cost: new Float32Array(2), m: 2, k: 2, lambda: Infinity, choice: new Int32Array(1) })).toThrow(/finite/);
    // argument errors are thrown synchronously by the binding, before any work is queued
    expect(() => n.kmeans(new Float32Array(4), 2, 2, 3)).toThrow(/exceeds/);
    expect(() => new n.Embedder({ bucketsLog2: 4, dim: 2, charN: 4, projection: new Int8Array(3), scale: new Float32Array(16) })).toThrow(/projection/);
  });

  it('truncated, corrupted or foreign artifacts', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'uniroute-'));
    const good = router.toArtifact();
    const cases: Array<[string, Buffer, RegExp]> = [
      ['truncated', good.subarray(0, good.length - 100), /checksum|outside|truncated/],
      ['corrupt', Buffer.from(good.map((b, i) => (i === good.length - 5 ? b ^ 0xff : b))), /checksum/],
      ['empty', Buffer.alloc(0), /too short/],
      ['json', Buffer.from('{"hello": 1}'), /header length|not a safetensors/],
      ['foreign', encodeForeign(), /format tag/],
      ['badgzip', Buffer.from([0x1f, 0x8b, 1, 2, 3]), /gzip/],
    ];
    for (const [name, buf, msg] of cases) {
      const p = join(tmp, name);
      writeFileSync(p, buf);
      await expectCode(Router.load(p), 'BAD_ARTIFACT', msg);
    }
    await expectCode(Router.load(join(tmp, 'missing')), 'NOT_FOUND');
    // a mismatched embedder is refused when the caller states what it needs
    const p = join(tmp, 'ok');
    writeFileSync(p, good);
    await expectCode(Router.load(p, { embedder: { dim: router.dim + 1 } }), 'ARTIFACT_MISMATCH', /dim/);
    expect(readFileSync(p).equals(good)).toBe(true);
  });
});

function encodeForeign(): Buffer {
  // a valid safetensors file from another tool: no uniroute format tag
  const body = Buffer.from(new Float32Array([1, 2]).buffer);
  const header = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, __metadata__: { format: 'pt' } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  void encodeArtifact;
  return Buffer.concat([len, header, body]);
}

describe('calibrating lambda (label-free line search)', () => {
  it('meets a cost budget with the most accurate routing that fits, and an accuracy floor with the cheapest', async () => {
    const { routeStats } = await import('../src/router/calibrate.js');
    const b0 = await router.routeBatch(probe, { lambda: 0 });
    const cheapest = Math.min(...b0.costs);
    const full = routeStats(b0, 0);
    const budget = (cheapest + full.meanCost) / 2;
    const c = await router.calibrateLambda(probe, { maxCost: budget });
    expect(c.feasible).toBe(true);
    expect(c.meanCost).toBeLessThanOrEqual(budget + 1e-12);
    // a slightly smaller lambda would break the budget (the most accurate routing that fits)
    expect(routeStats(b0, c.lambda * 0.98).meanCost).toBeGreaterThan(budget - 1e-12);
    // routing at the calibrated lambda gives those statistics
    const at = await router.routeBatch(probe, { lambda: c.lambda });
    expect(Array.from(at.choice, (j) => at.costs[j]).reduce((a, x) => a + x, 0) / probe.length).toBeCloseTo(c.meanCost, 9);
    const target = (full.predictedAccuracy + routeStats(b0, 1e9).predictedAccuracy) / 2;
    const a = await router.calibrateLambda(probe, { minAccuracy: target });
    expect(a.feasible).toBe(true);
    expect(a.predictedAccuracy).toBeGreaterThanOrEqual(target - 1e-9);
    expect(routeStats(b0, a.lambda * 1.05 + 1e-9).predictedAccuracy).toBeLessThan(target + 1e-9);
    expect(a.meanCost).toBeLessThanOrEqual(full.meanCost);
  });

  it('flags targets that cannot be met and refuses bad arguments', async () => {
    const tooCheap = await router.calibrateLambda(probe, { maxCost: 0 });
    expect(tooCheap.feasible).toBe(false);
    const tooGood = await router.calibrateLambda(probe, { minAccuracy: 1 });
    expect(tooGood.feasible).toBe(false);
    await expectCode(router.calibrateLambda(probe, {}), 'INVALID_ARGUMENT');
    await expectCode(router.calibrateLambda(probe, { maxCost: 1, minAccuracy: 0.5 }), 'INVALID_ARGUMENT');
    await expectCode(router.calibrateLambda(probe, { minAccuracy: 2 }), 'INVALID_ARGUMENT');
    const only = await router.calibrateLambda(probe, { maxCost: 10 }, { models: ['mid-all'] });
    expect(only.meanCost).toBeCloseTo(0.5, 6);
  });
});

describe('the unit-free tradeoff knob', () => {
  it('t = 0 is lambda = 0; mean cost never rises with t; t = 1 is cheaper than any t < 1; bad values and both knobs are refused', async () => {
    const { defaultRouterPath } = await import('../src/defaults.js');
    const router = await Router.load(defaultRouterPath());
    const texts = randomTexts(400, 12);
    const zero = await router.routeBatch(texts, { lambda: 0, ood: false });
    const t0 = await router.routeBatch(texts, { tradeoff: 0, ood: false });
    expect(Array.from(t0.choice)).toEqual(Array.from(zero.choice));
    const meanCost = (b: Awaited<ReturnType<Router['routeBatch']>>) => Array.from(b.choice).reduce((a, c) => a + b.costs[c], 0) / b.choice.length;
    const ts = [0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1];
    const costs: number[] = [];
    for (const t of ts) costs.push(meanCost(await router.routeBatch(texts, { tradeoff: t, ood: false })));
    for (let i = 1; i < costs.length; i++) expect(costs[i]).toBeLessThanOrEqual(costs[i - 1] * (1 + 1e-9));
    expect(costs[costs.length - 1]).toBeLessThan(costs[0] / 5); // the knob spans the pool's costs
    // t = 1 is the cheapest LLM for every prompt (a lambda at which cost outweighs any error difference)
    expect(router.lambdaForTradeoff(1)).toBeGreaterThanOrEqual(router.tradeoffScale());
    const one = await router.routeBatch(texts, { tradeoff: 1 });
    const cheapest = Math.min(...Array.from(one.costs));
    expect(Array.from(one.choice).every((j) => one.costs[j] === cheapest)).toBe(true);
    for (const bad of [-0.1, 1.5, NaN]) await expect(router.routeBatch(texts.slice(0, 2), { tradeoff: bad })).rejects.toThrow(/tradeoff/);
    await expect(router.routeBatch(texts.slice(0, 2), { tradeoff: 0.5, lambda: 1 })).rejects.toThrow(/not both/);
  });
});

describe('cost and accuracy targets land on the target', () => {
  it('max cost: within 5 % below the budget, mixing two neighbouring lambdas when no single one lands (built-in router)', async () => {
    const { defaultRouterPath } = await import('../src/defaults.js');
    const router = await Router.load(defaultRouterPath());
    const texts = randomTexts(3000, 77);
    const mean = (b: Awaited<ReturnType<Router['routeBatch']>>) => Array.from(b.choice).reduce((a, c) => a + b.costs[c], 0) / b.choice.length;
    const lo = mean(await router.routeBatch(texts, { tradeoff: 1 }));
    const hi = mean(await router.routeBatch(texts, { lambda: 0 }));
    let mixed = 0;
    for (const f of [0.05, 0.12, 0.3, 0.6]) {
      const budget = lo + f * (hi - lo);
      const c = await router.calibrateLambda(texts, { maxCost: budget });
      expect(c.feasible).toBe(true);
      if (c.mix) mixed++;
      const got = mean(await router.routeBatch(texts, { lambda: c.lambda, mix: c.mix }));
      expect(got).toBeCloseTo(c.meanCost, 12); // the calibration's figure is what routing does
      expect(got).toBeLessThanOrEqual(budget * (1 + 1e-9));
      expect(got, `budget ${budget}`).toBeGreaterThanOrEqual(0.95 * budget);
    }
    // a coarse pool (5 LLMs at 0.1, 0.5 and 2 USD, 3 clusters): budgets between two lambdas' costs need the mix
    const ds = await loadDataset(makeSyntheticDataset(450, 9));
    const small = (await fitRouter(ds, { seed: 2, clusters: 3, embedder: { bucketsLog2: 12, dim: 24 } })).router;
    // one prompt repeated: every decision flips at the same lambda, so between two steps only a mix can land
    const few = Array.from({ length: 400 }, () => 'Solve the integral of the derivative of this equation.');
    const m0 = mean(await small.routeBatch(few, { lambda: 0, ood: false }));
    const m1 = mean(await small.routeBatch(few, { tradeoff: 1, ood: false }));
    for (const f of [0.2, 0.45, 0.7]) {
      const budget = m1 + f * (m0 - m1);
      const c = await small.calibrateLambda(few, { maxCost: budget }, { ood: false });
      if (c.mix) mixed++;
      const got = mean(await small.routeBatch(few, { lambda: c.lambda, mix: c.mix, ood: false }));
      expect(got).toBeLessThanOrEqual(budget * (1 + 1e-9));
      expect(got, `budget ${budget}`).toBeGreaterThanOrEqual(0.95 * budget);
    }
    expect(mixed).toBeGreaterThan(0); // at least one budget fell between two lambdas
    // min accuracy: met, within 0.2 points (a target 60 % of the way from the cheapest routing's accuracy to the best)
    const accOf = (b: Awaited<ReturnType<Router['routeBatch']>>) => Array.from(b.choice).reduce((a, c, i) => a + 1 - b.predictedError[i * b.models.length + c], 0) / b.choice.length;
    const [accLo, accHi] = [accOf(await router.routeBatch(texts, { tradeoff: 1 })), accOf(await router.routeBatch(texts, { lambda: 0 }))];
    const goal = accLo + 0.6 * (accHi - accLo);
    const acc = await router.calibrateLambda(texts, { minAccuracy: goal });
    expect(acc.feasible).toBe(true);
    const b = await router.routeBatch(texts, { lambda: acc.lambda, mix: acc.mix });
    const predicted = accOf(b);
    expect(predicted).toBeGreaterThanOrEqual(goal - 1e-9);
    expect(predicted).toBeLessThanOrEqual(goal + 0.002 + 1e-9);
  });
});
