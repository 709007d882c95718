/**
 * The decision core (src/decide/): the special functions, the posterior of Ψ (an honest interval for a thinly
 * described LLM, calibrated on draws from its own model), the one decision rule (no evidence override; tradeoff 1
 * is the cheapest LLM everywhere), out-of-distribution prompts decided by cost on the pool's prior, exploration, and
 * the operating point that follows the pool.
 */
import { describe, expect, it } from 'vitest';
import { betaCdf, betaQuantile, betaSample, digamma, lgamma, trigamma } from '../src/decide/special.js';
import { intervalOf, psiRow, sigmoid, statsOf, type PsiPrior } from '../src/decide/posterior.js';
import { seededRandom } from '../src/decide/policy.js';
import { Router, explain, decisionRecord } from '../src/router/router.js';
import { UnirouteError } from '../src/errors.js';
import { mulberry32 } from '../src/engine/reference.js';

describe('special functions', () => {
  it('log-gamma, digamma and trigamma agree with known values and with each other', () => {
    expect(lgamma(1)).toBeCloseTo(0, 12);
    expect(lgamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(lgamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    expect(lgamma(100.5)).toBeCloseTo(361.43554046777747, 9);
    for (const x of [0.05, 0.7, 3.3, 40]) {
      const h = 1e-5;
      expect(digamma(x)).toBeCloseTo((lgamma(x + h) - lgamma(x - h)) / (2 * h), 4);
      expect(trigamma(x)).toBeCloseTo((digamma(x + h) - digamma(x - h)) / (2 * h), 3);
    }
  });

  it('the beta CDF and its inverse are each other, and match the uniform and a closed form', () => {
    expect(betaCdf(0.3, 1, 1)).toBeCloseTo(0.3, 12);
    // Beta(2, 1): CDF x²
    expect(betaCdf(0.6, 2, 1)).toBeCloseTo(0.36, 12);
    for (const [a, b] of [[0.3, 20], [5, 5], [40, 2], [0.6, 15.4]])
      for (const p of [0.025, 0.5, 0.975]) expect(betaCdf(betaQuantile(p, a, b), a, b)).toBeCloseTo(p, 7);
    // the sampler's mean and variance
    const rand = mulberry32(3);
    const xs = Array.from({ length: 20000 }, () => betaSample(2, 8, rand));
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    const v = xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length;
    expect(m).toBeCloseTo(0.2, 2);
    expect(v).toBeCloseTo((2 * 8) / (100 * 11), 3);
  });
});

/** A prior on K clusters: β_k spread over [-2, 1.5], ability sd τ. */
const priorOf = (K: number, tau: number): PsiPrior => ({
  clusterLogit: Float32Array.from({ length: K }, (_, k) => -2 + (3.5 * k) / Math.max(1, K - 1)),
  ability: { mean: 0, sd: tau },
});

describe('the posterior of Ψ', () => {
  it('a thin LLM (12 outcomes, all correct, in one cluster) gets a wide interval there, not a veteran\'s', () => {
    const K = 3;
    const prior = priorOf(K, 0.8);
    const thin = psiRow(statsOf(K, new Array(12).fill(0), new Array(12).fill(1)), 25, prior);
    // a veteran: 219 outcomes in the same cluster, 97 % correct
    const vet = psiRow(statsOf(K, new Array(219).fill(0), Array.from({ length: 219 }, (_, i) => (i % 33 === 0 ? 0 : 1))), 25, prior);
    const [, hiThin] = intervalOf(thin.psi[0], thin.sd[0]);
    const [, hiVet] = intervalOf(vet.psi[0], vet.sd[0]);
    expect(hiThin).toBeGreaterThanOrEqual(0.15);
    expect(hiThin).toBeGreaterThan(2 * hiVet);
    // its ability is uncertain, and near an average LLM's: not far below every real one
    expect(thin.abilitySd).toBeGreaterThan(0.4);
    expect(thin.ability).toBeGreaterThan(-2 * 0.8);
    // where it has no outcome, the prior's wide posterior
    expect(thin.sd[2]).toBeGreaterThan(thin.sd[0]);
  });

  it('its 95 % intervals cover the true error rate of LLMs drawn from its own model about 95 % of the time', () => {
    const K = 6;
    const tau = 1;
    const a = 20;
    const prior = priorOf(K, tau);
    const rand = mulberry32(11);
    let cells = 0;
    let covered = 0;
    for (const n of [10, 60, 400]) {
      for (let m = 0; m < 150; m++) {
        // α ~ N(0, τ²); θ_k ~ Beta(a·t_k, a·(1 − t_k)); n outcomes spread over the clusters
        const u = Math.max(rand(), 1e-12);
        const alpha = tau * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
        const theta = Array.from({ length: K }, (_, k) => {
          const t = sigmoid(prior.clusterLogit[k] + alpha);
          return betaSample(a * t, a * (1 - t), rand);
        });
        const cl = Array.from({ length: n }, () => Math.floor(rand() * K));
        const y = cl.map((k) => (rand() < theta[k] ? 0 : 1));
        const row = psiRow(statsOf(K, cl, y), a, prior);
        for (let k = 0; k < K; k++) {
          const [lo, hi] = intervalOf(row.psi[k], row.sd[k]);
          cells++;
          if (theta[k] >= lo && theta[k] <= hi) covered++;
        }
      }
    }
    const share = covered / cells;
    expect(share).toBeGreaterThan(0.92);
    expect(share).toBeLessThan(0.985);
  });

  it('the statistics stay additive: outcomes given in two parts give the posterior of all of them at once', () => {
    const prior = priorOf(3, 1);
    const a = statsOf(3, [0, 1, 1, 2], [1, 0, 1, 1]);
    const b = statsOf(3, [0, 0, 2], [0, 1, 1]);
    const sum = { errorSums: a.errorSums.map((v, i) => v + b.errorSums[i]), counts: a.counts.map((v, i) => v + b.counts[i]) };
    const all = statsOf(3, [0, 1, 1, 2, 0, 0, 2], [1, 0, 1, 1, 0, 1, 1]);
    expect(Array.from(psiRow(sum, 4, prior).psi)).toEqual(Array.from(psiRow(all, 4, prior).psi));
  });
});

/** A router on 2-d precomputed embeddings with two clusters at (1, 0) and (0, 1). */
function tinyRouter(prior?: PsiPrior, extra: Partial<ConstructorParameters<typeof Router>[0]> = {}) {
  return new Router({ embedder: { kind: 'precomputed', dim: 2 }, centroids: Float32Array.from([1, 0, 0, 1]), k: 2, priorStrength: 4, prior, ...extra });
}
const at = (rows: number[][]) => Float32Array.from(rows.flat());
const ones = (n: number, share: number) => Float32Array.from({ length: n }, (_, i) => (i % 100 < share * 100 ? 1 : 0));

describe('one decision rule', () => {
  it('an LLM with no outcome in a cluster competes there on its posterior; risk keeps it out; the evidence rule is gone', () => {
    const r = tinyRouter({ clusterLogit: Float32Array.from([0, 0]), ability: { mean: 0, sd: 1 } });
    // "specialist" graded only in cluster 0, where it is perfect; "generalist" in both, 70 % correct
    r.addModelFromClusters('specialist', 0.1, new Int32Array(50), new Float32Array(50).fill(1));
    r.addModelFromClusters('generalist', 0.1, Int32Array.from({ length: 100 }, (_, i) => i % 2), ones(100, 0.7));
    const x = at([[1, 0], [0, 1]]);
    const mean = r.routeEmbeddingsSync(x, { lambda: 0 });
    // the specialist's strong ability carries it into cluster 1 through the prior (no lexicographic rule)
    expect(Array.from(mean.choice)).toEqual([0, 0]);
    // but there its posterior is wide: on the upper side it loses
    expect(r.routeEmbeddingsSync(x, { lambda: 0, risk: 2 }).choice[1]).toBe(1);
    const [, d1] = explain(mean);
    expect(d1.candidates[0]).toMatchObject({ model: 'specialist', outcomes: 0, evidence: false });
    expect(d1.candidates[0].interval[1] - d1.candidates[0].interval[0]).toBeGreaterThan(2 * (d1.candidates[1].interval[1] - d1.candidates[1].interval[0]));
    expect(() => r.routeEmbeddingsSync(x, { evidence: 'prefer' })).toThrow(/removed.*risk/);
    expect(r.routeEmbeddingsSync(x, { lambda: 0, evidence: 'ignore' }).choice[1]).toBe(0);
  });

  it('tradeoff 1 is the cheapest allowed LLM for every prompt, whatever its error, risk or the prompt', () => {
    const r = tinyRouter({ clusterLogit: Float32Array.from([-1, 1]), ability: { mean: 0, sd: 1 } });
    r.addModelFromClusters('good-dear', 1, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.95));
    r.addModelFromClusters('bad-cheap', 0.999, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.1));
    r.addModelFromClusters('mid', 0.9995, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.5));
    const x = at([[1, 0], [0, 1], [0.7, 0.7]]);
    for (const risk of [0, 3]) expect(Array.from(r.routeEmbeddingsSync(x, { tradeoff: 1, risk }).choice)).toEqual([1, 1, 1]);
    expect(Array.from(r.routeEmbeddingsSync(x, { tradeoff: 1, models: ['good-dear', 'mid'] }).choice)).toEqual([2, 2, 2]);
    // and cost never rises with t
    let prev = Infinity;
    for (const t of [0, 0.25, 0.5, 0.75, 0.9, 1]) {
      const b = r.routeEmbeddingsSync(x, { tradeoff: t });
      const c = b.choice.reduce((s, j) => s + b.costs[j], 0);
      expect(c).toBeLessThanOrEqual(prev + 1e-9);
      prev = c;
    }
  });
});

describe('out-of-distribution prompts', () => {
  const far = at([[-3, -3]]);
  function oodRouter() {
    const r = tinyRouter({ clusterLogit: Float32Array.from([0, 0]), ability: { mean: 0, sd: 1 } }, { clusterShare: Float32Array.from([0.5, 0.5]) });
    r.setDistanceQuantiles({ q: [0, 0.5, 0.99, 1], d: [0, 0.1, 0.5, 0.6] });
    r.addModelFromClusters('dear-best', 10, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.9));
    r.addModelFromClusters('cheap-ok', 0.01, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.8));
    return r;
  }

  it('are flagged and decided on the pool\'s prior over clusters at the caller\'s lambda, by cost like any prompt', () => {
    const r = oodRouter();
    const b = r.routeEmbeddingsSync(far, { lambda: 1 });
    expect(b.ood[0]).toBe(1);
    // at lambda 1 the 0.1 error difference is worth far less than 10 - 0.01 of cost
    expect(b.models[b.choice[0]]).toBe('cheap-ok');
    expect(r.routeEmbeddingsSync(far, { lambda: 0 }).models[0]).toBe('dear-best');
    const [d] = explain(b);
    expect(d.reason).toMatch(/out of distribution.*prior over clusters/);
    expect(decisionRecord(d, true)).toMatchObject({ ood: true, reason: d.reason });
    // the old fallback stays available by name
    expect(r.routeEmbeddingsSync(far, { lambda: 1, ood: { fallback: 'best-overall' } }).choice[0]).toBe(0);
    expect(r.routeEmbeddingsSync(far, { lambda: 1, ood: { fallback: 'dear-best' } }).choice[0]).toBe(0);
    expect(() => r.routeEmbeddingsSync(far, { ood: { fallback: 'nope' } })).toThrow(UnirouteError);
    // and in-distribution prompts are not flagged
    expect(r.routeEmbeddingsSync(at([[1, 0]]), { lambda: 1 }).ood[0]).toBe(0);
  });
});

describe('exploration', () => {
  it('sends a share of the prompts by Thompson draws: a thin LLM wins some, reproducibly for a seed', () => {
    const r = tinyRouter({ clusterLogit: Float32Array.from([0, 0]), ability: { mean: 0, sd: 1 } });
    r.addModelFromClusters('veteran', 1, new Int32Array(400), ones(400, 0.8));
    r.addModelFromClusters('thin', 1, new Int32Array(3), Float32Array.from([1, 0, 1]));
    const x = Float32Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 1 : 0));
    const greedy = r.routeEmbeddingsSync(x, { lambda: 0 });
    expect(greedy.choice.every((j) => j === 0)).toBe(true);
    const e = r.routeEmbeddingsSync(x, { lambda: 0, explore: 0.5, exploreSeed: 7 });
    const explored = e.explored.reduce((s, v) => s + v, 0);
    expect(explored).toBeGreaterThan(60);
    expect(explored).toBeLessThan(140);
    const thin = e.choice.reduce((s, j) => s + (j === 1 ? 1 : 0), 0);
    expect(thin).toBeGreaterThan(5);
    // only explored prompts may differ from the greedy decision
    e.choice.forEach((j, i) => (e.explored[i] ? undefined : expect(j).toBe(0)));
    expect(Array.from(r.routeEmbeddingsSync(x, { lambda: 0, explore: 0.5, exploreSeed: 7 }).choice)).toEqual(Array.from(e.choice));
    const [d] = explain(e).filter((z) => z.explored);
    expect(d.reason).toMatch(/Thompson/);
    expect(() => r.routeEmbeddingsSync(x, { explore: 2 })).toThrow(/explore/);
    void seededRandom;
  });
});

describe('the operating point follows the pool', () => {
  function kept(n: number, seed: number) {
    const rand = mulberry32(seed);
    return Float32Array.from({ length: 2 * n }, (_, i) => (i % 2 === 0 ? rand() : rand()));
  }

  it('is recomputed after every change of the pool, deterministically, and keeps within a point of lambda 0', () => {
    const mk = () => {
      const r = tinyRouter({ clusterLogit: Float32Array.from([-0.5, 0.5]), ability: { mean: 0, sd: 1 } }, { keptPrompts: kept(300, 2) });
      r.addModelFromClusters('dear', 1, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.9));
      r.addModelFromClusters('cheap', 0.01, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.5));
      return r;
    };
    const r = mk();
    const before = r.operatingPoint()!;
    expect(before.expectedAccuracy).toBeGreaterThanOrEqual(before.accuracyAtZero - 0.01 - 1e-9);
    expect(r.defaultLambda).toBe(before.lambda);
    // a new LLM, as accurate as the dear one and cheaper: the point moves, and the default routes to it
    r.addModelFromClusters('new-best', 0.1, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.9));
    const after = r.operatingPoint()!;
    expect(after).not.toEqual(before);
    expect(after.expectedAccuracy).toBeGreaterThanOrEqual(after.accuracyAtZero - 0.01 - 1e-9);
    const b = r.routeEmbeddingsSync(at([[1, 0], [0, 1]]));
    expect(b.models[b.choice[0]]).toBe('new-best');
    // another process at the same pool agrees; the file keeps the prompts, not the point
    const twin = mk();
    twin.addModelFromClusters('new-best', 0.1, Int32Array.from({ length: 200 }, (_, i) => i % 2), ones(200, 0.9));
    expect(twin.operatingPoint()).toEqual(after);
    // a removal moves it back
    r.removeModel('new-best');
    expect(r.operatingPoint()).toEqual(before);
    // a fixed lambda wins until unset
    r.defaultLambda = 0.5;
    expect(r.defaultLambda).toBe(0.5);
    r.defaultLambda = undefined;
    expect(r.defaultLambda).toBe(before.lambda);
  });
});
