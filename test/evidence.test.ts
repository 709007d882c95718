/**
 * Ψ from evidence: the two-factor prior, the prompt-difficulty slope, the posterior and risk, the one argmin,
 * and that every way of routing (texts, embeddings, the eval protocol's curve) makes the same decisions.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router, explain } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import {
  fitClusterLogits,
  fitDifficulty,
  gammaOf,
  psiRow,
  residOfRows,
  sigmoid,
  statsOf,
  type PsiPrior,
} from '../src/router/evidence.js';
import { argminRows } from '../src/decide/argmin.js';
import { chooseOperatingPoint } from '../src/router/operating.js';
import { mulberry32 } from '../src/engine/reference.js';
import { HAS_SHARED_DATA, SHARED_DATA, SKIP_REASON, makeSyntheticDataset, randomTexts } from './helpers.js';

/** A router on 2-d precomputed embeddings with two clusters at (1, 0) and (0, 1). */
function tinyRouter(prior?: PsiPrior, extra: Partial<ConstructorParameters<typeof Router>[0]> = {}) {
  return new Router({
    embedder: { kind: 'precomputed', dim: 2 },
    centroids: Float32Array.from([1, 0, 0, 1]),
    k: 2,
    priorStrength: 4,
    prior,
    ...extra,
  });
}
const at = (rows: number[][]) => Float32Array.from(rows.flat());

describe('the two-factor cluster prior', () => {
  it('recovers which cluster is hard and which LLM is strong from incomplete outcomes', () => {
    const rand = mulberry32(5);
    const beta = [-2, 0.5, 1.5];
    const alpha = [-1, 0, 1];
    const n = 3000;
    const clusters = Int32Array.from({ length: n }, (_, i) => i % 3);
    const Y = new Float32Array(n * 3);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < 3; j++) {
        // LLM 2 has no outcome in cluster 2
        Y[i * 3 + j] = j === 2 && clusters[i] === 2 ? NaN : rand() < sigmoid(beta[clusters[i]] + alpha[j]) ? 0 : 1;
      }
    const fit = fitClusterLogits(clusters, Y, 3, 3);
    expect(fit.beta[0]).toBeLessThan(fit.beta[1]);
    expect(fit.beta[1]).toBeLessThan(fit.beta[2]);
    expect(fit.alpha[0]).toBeLessThan(fit.alpha[1]);
    expect(fit.alpha[1]).toBeLessThan(fit.alpha[2]);
    // the weak LLM's predicted error in the cluster it never saw comes from that cluster's difficulty
    const s = statsOf(3, Array.from(clusters).filter((c) => c !== 2), Array.from({ length: 2000 }, (_, t) => Y[[...clusters.keys()].filter((i) => clusters[i] !== 2)[t] * 3 + 2]));
    const row = psiRow(s, 4, { clusterLogit: fit.beta });
    const truth = sigmoid(beta[2] + alpha[2]);
    const overall = (s.errorSums[0] + s.errorSums[1]) / (s.counts[0] + s.counts[1]);
    expect(Math.abs(row.psi[2] - truth)).toBeLessThan(0.08);
    expect(Math.abs(row.psi[2] - truth)).toBeLessThan(Math.abs(overall - truth) / 3);
  });

  it('without a prior, an empty cluster takes the overall error (routers fitted before it)', () => {
    const s = statsOf(3, [0, 0, 1], [1, 0, 0]);
    expect(psiRow(s, 0).psi[2]).toBeCloseTo(2 / 3, 6);
  });
});

describe('the posterior of Ψ', () => {
  it('its interval narrows as outcomes are added', () => {
    const widths = [4, 40, 400].map((n) => {
      const s = statsOf(1, new Array(n).fill(0), Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 0 : 1)));
      return psiRow(s, 4).sd[0];
    });
    expect(widths[1]).toBeLessThan(widths[0]);
    expect(widths[2]).toBeLessThan(widths[1]);
  });

  it('risk changes a decision where evidence is thin, and the explanation shows the outcomes behind it', () => {
    const r = tinyRouter(undefined, { priorStrength: 1 });
    // thin: 3 outcomes, all correct; thick: 300 outcomes, 90 % correct; same cost
    r.addModelFromClusters('thin', 1, Int32Array.from([0, 0, 0, 1]), Float32Array.from([1, 1, 1, 0]));
    const thick = Array.from({ length: 300 }, (_, i) => (i % 10 === 0 ? 0 : 1));
    r.addModelFromClusters('thick', 1, new Int32Array(300 + 300).fill(0).fill(1, 300), Float32Array.from([...thick, ...thick]));
    const x = at([[1, 0]]);
    expect(r.routeEmbeddingsSync(x, { lambda: 0 }).choice[0]).toBe(0);
    expect(r.routeEmbeddingsSync(x, { lambda: 0, risk: 2 }).choice[0]).toBe(1);
    const [d] = explain(r.routeEmbeddingsSync(x, { lambda: 0 }));
    expect(d.candidates.map((c) => c.outcomes)).toEqual([3, 300]);
    const [lo0, hi0] = d.candidates[0].interval;
    const [lo1, hi1] = d.candidates[1].interval;
    expect(hi0 - lo0).toBeGreaterThan(3 * (hi1 - lo1));
    expect(lo0).toBeLessThanOrEqual(d.candidates[0].predictedError);
    expect(hi0).toBeGreaterThanOrEqual(d.candidates[0].predictedError);
    expect(() => r.routeEmbeddingsSync(x, { risk: -1 })).toThrow(/risk/);
  });
});

describe('the one argmin', () => {
  it('the engine argmin keeps the tie rule: lower score, then lower cost, then the first listed', () => {
    const costs = Float32Array.from([1, 0.5, 0.5]);
    const g = Float32Array.from([0.2, 0.2, 0.2, 0.3, 0.3, 0.3]);
    expect(Array.from(argminRows(g, costs, 2, 3, { lambda: 0 }))).toEqual([1, 1]);
    expect(Array.from(argminRows(g, costs, 2, 3, { lambda: 0, allowed: Uint8Array.from([1, 0, 1]) }))).toEqual([2, 2]);
    // at a huge lambda the predicted errors still break a tie in cost (scores in double)
    const g2 = Float32Array.from([0.3, 0.1]);
    expect(argminRows(g2, Float32Array.from([0.1, 0.1]), 1, 2, { lambda: 1e9 })[0]).toBe(1);
  });
});

describe('prompt difficulty', () => {
  it('the ridge model finds a planted difficulty direction, with its strength chosen by cross-validation', () => {
    const rand = mulberry32(9);
    const n = 800;
    const D = 8;
    const E = Float32Array.from({ length: n * D }, () => rand() - 0.5);
    const Y = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) for (let j = 0; j < 3; j++) Y[i * 3 + j] = rand() < sigmoid(3 * E[i * D] + j - 1) ? 0 : 1;
    const dm = fitDifficulty(E, D, Y, 3, 1);
    expect(dm.r2).toBeGreaterThan(0.2);
    expect(Math.abs(dm.w[0])).toBeGreaterThan(5 * Math.max(...Array.from(dm.w.subarray(1), Math.abs)));
  });

  it('a fitted router with a difficulty slope predicts the same errors through texts and embeddings, and as the formula says', async () => {
    const ds = await loadDataset(makeSyntheticDataset(900, 21));
    const { router, report } = await fitRouter(ds, { seed: 3, embedder: { bucketsLog2: 14, dim: 32 } });
    expect(router.prior?.difficulty).toBeDefined();
    expect(report.difficulty).toBeDefined();
    const texts = randomTexts(300, 5);
    const a = await router.routeBatch(texts, { lambda: 0.05 });
    const emb = await router.hashed!.embed(texts);
    const b = router.routeEmbeddingsSync(emb, { lambda: 0.05 });
    expect(Array.from(b.choice)).toEqual(Array.from(a.choice));
    expect(Array.from(b.cluster)).toEqual(Array.from(a.cluster));
    for (let t = 0; t < a.predictedError.length; t++) expect(b.predictedError[t]).toBeCloseTo(a.predictedError[t], 5);
    const r = residOfRows(router.prior, emb, router.dim, b.cluster)!;
    const m = b.models.length;
    const g = gammaOf(router.snapshot().psi, b.cluster, router.k, m, router.prior!.difficulty!.slope, r);
    // in distribution, the formula; out of distribution, the pool's prior over clusters (every LLM's share-weighted Ψ)
    const overall = router.snapshot().overall;
    for (let t = 0; t < g.length; t++) expect(a.predictedError[t]).toBeCloseTo(a.ood[Math.floor(t / m)] ? overall[t % m] : g[t], 5);
    // the difficulty term moves predictions within a cluster
    const inCluster0 = [...b.cluster.keys()].filter((i) => b.cluster[i] === b.cluster[0]);
    const spread = new Set(inCluster0.map((i) => a.predictedError[i * m].toFixed(6)));
    expect(spread.size).toBeGreaterThan(1);
    // and survives a save / load
    const again = Router.fromArtifact(router.toArtifact(), 'mem');
    const c = await again.routeBatch(texts, { lambda: 0.05 });
    expect(Array.from(c.choice)).toEqual(Array.from(a.choice));
    expect(Array.from(c.predictedError)).toEqual(Array.from(a.predictedError));
  });
});

describe('statistics are checked on every path', () => {
  it('NaN sums, negative counts or sums above counts are refused', () => {
    const r = tinyRouter();
    const bad = (errorSums: number[], counts: number[]) => () =>
      r.importModel({ name: 'x', costPerQuery: 1, errorSums: Float32Array.from(errorSums), counts: Float32Array.from(counts) });
    expect(bad([NaN, 0], [1, 1])).toThrow(/invalid statistics/);
    expect(bad([0, 0], [-1, 1])).toThrow(/invalid statistics/);
    expect(bad([3, 0], [1, 1])).toThrow(/invalid statistics/);
    expect(r.size).toBe(0);
  });
});

if (!HAS_SHARED_DATA) console.warn(SKIP_REASON);

describe.skipIf(!HAS_SHARED_DATA)('coverage on real data', () => {
  it('zeroeval: an LLM graded on one benchmark only is predicted on the others from evidence, closer than a copy of its overall error', async () => {
    const ds = await loadDataset(join(SHARED_DATA, 'zeroeval'));
    const complete = ds.models.filter((m) => ds.outcomes.get(m)!.every((v) => !Number.isNaN(v)));
    const held = complete.filter((_, i) => i % 6 === 1).slice(0, 5);
    const { router } = await fitRouter(ds, { seed: 1, pricePerBillionParams: 0.0125, trainModels: ds.models.filter((m) => !held.includes(m)) });
    const texts = ds.prompts.map((p) => p.text);
    const emb = await router.hashed!.embed(texts);
    const { cluster } = router.assignEmbeddings(emb);
    let maeNew = 0;
    let maeCopy = 0;
    let cells = 0;
    for (const m of held) {
      const o = ds.outcomes.get(m)!;
      const gsm = [...ds.prompts.keys()].filter((i) => ds.prompts[i].benchmark === 'gsm');
      await router.addModel(m, { costPerQuery: 0.001, outcomes: gsm.map((i) => ({ text: texts[i], correct: o[i] })) });
      const copy = gsm.reduce((a, i) => a + 1 - o[i], 0) / gsm.length;
      const psi = router.models().find((x) => x.name === m)!.errorVector;
      // per (cluster, other benchmark) cell: the mean true error of the LLM against the prediction
      for (const bench of ['crux', 'math-l5'])
        for (let k = 0; k < router.k; k++) {
          const idx = [...ds.prompts.keys()].filter((i) => ds.prompts[i].benchmark === bench && cluster[i] === k);
          if (idx.length < 20) continue;
          const truth = idx.reduce((a, i) => a + 1 - o[i], 0) / idx.length;
          maeNew += Math.abs(psi[k] - truth);
          maeCopy += Math.abs(copy - truth);
          cells++;
        }
      router.removeModel(m);
    }
    maeNew /= cells;
    maeCopy /= cells;
    console.log(`held-out benchmarks, ${held.length} LLMs graded on GSM8K only: MAE of Ψ ${maeNew.toFixed(4)} vs overall-error copy ${maeCopy.toFixed(4)} (${cells} cluster x benchmark cells)`);
    expect(maeNew).toBeLessThan(maeCopy);
  }, 120_000);
});

describe('suggest-labels', () => {
  it('is deterministic for a seed, never suggests a prompt twice, spends where traffic is, and takes the pool into account', async () => {
    const ds = await loadDataset(makeSyntheticDataset(600, 31));
    const { router } = await fitRouter(ds, { seed: 2, embedder: { bucketsLog2: 14, dim: 32 }, trainModels: ['big-all', 'mid-all', 'cheap-math'] });
    const cand = randomTexts(400, 12);
    const a = await router.suggestLabels(cand, { budget: 60, seed: 3 });
    const b = await router.suggestLabels(cand, { budget: 60, seed: 3 });
    expect(a).toEqual(b);
    expect(a).toHaveLength(60);
    expect(new Set(a.map((p) => p.index)).size).toBe(60);
    // the pool has other LLMs: the shares lean toward where a new LLM could win
    expect(a.every((p) => p.reason === 'value')).toBe(true);
    // every prefix covers the clusters in proportion to traffic (within one label per cluster)
    const { cluster: cl } = await router.assignTexts(cand);
    for (let k = 0; k < router.k; k++) {
      const share = cl.filter((c) => c === k).length / cand.length;
      const got = a.slice(0, 30).filter((p) => p.cluster === k).length;
      expect(got).toBeGreaterThanOrEqual(Math.floor(0.5 * share * 30) - 1);
    }
    // every cluster with traffic gets labels
    const { cluster } = await router.assignTexts(cand);
    for (let k = 0; k < router.k; k++) if (cluster.filter((c) => c === k).length >= 40) expect(a.some((p) => p.cluster === k)).toBe(true);
    // more than the candidates: all of them, once
    const all = await router.suggestLabels(cand.slice(0, 30), { budget: 100 });
    expect(all.map((p) => p.index).sort((x, y) => x - y)).toEqual([...Array(30).keys()]);
    // an LLM already well described where it is far from winning gets its labels elsewhere than a new one
    const other = await router.suggestLabels(cand, { budget: 60, seed: 3, model: 'cheap-math' });
    expect(other.map((p) => p.index)).not.toEqual(a.map((p) => p.index));
    await expect(router.suggestLabels(cand, { budget: 0 })).rejects.toThrow(/budget/);
    // order 'given': within each cluster the candidates' own order (the eval's paired design with random labels)
    const given = await router.suggestLabels(cand, { budget: 60, order: 'given' });
    for (let k = 0; k < router.k; k++) {
      const mine = given.filter((p) => p.cluster === k).map((p) => p.index);
      const firstOfK = [...cl.keys()].filter((i) => cl[i] === k).slice(0, mine.length);
      expect([...mine].sort((x, y) => x - y)).toEqual(firstOfK);
    }
    expect(given.map((p) => p.index)).not.toEqual(a.map((p) => p.index));
    await expect(router.suggestLabels(cand, { budget: 5, order: 'sorted' as never })).rejects.toThrow(/order must be "shuffle" or "given"/);
  });
});

describe('one decision path, off the event loop', () => {
  it('the learned map routes the same through texts, embeddings, and without the n x m matrix', async () => {
    const ds = await loadDataset(makeSyntheticDataset(600, 41));
    const { router } = await fitRouter(ds, { seed: 5, method: 'learned-map', embedder: { bucketsLog2: 13, dim: 32 } });
    expect(router.map).toBeDefined();
    const texts = randomTexts(500, 6);
    const a = await router.routeBatch(texts, { lambda: 0.1 });
    const b = await router.routeEmbeddings(await router.hashed!.embed(texts), { lambda: 0.1 });
    const c = await router.routeBatch(texts, { lambda: 0.1, explain: false });
    const s = router.routeBatchSync(texts, { lambda: 0.1 });
    expect(Array.from(b.choice)).toEqual(Array.from(a.choice));
    expect(Array.from(c.choice)).toEqual(Array.from(a.choice));
    expect(Array.from(s.choice)).toEqual(Array.from(a.choice));
    expect(c.predictedError.length).toBe(0);
    const m = a.models.length;
    a.choice.forEach((j, i) => expect(c.chosenError[i]).toBeCloseTo(a.predictedError[i * m + j], 6));
    // the map mixes clusters: predictions are not one cluster's column
    expect(new Set(Array.from({ length: 50 }, (_, i) => a.predictedError[i * m].toFixed(5))).size).toBeGreaterThan(3);
  });

  it('fit --method learned-map chooses the map\'s own K and strength on prompts the map was not trained on', async () => {
    const ds = await loadDataset(makeSyntheticDataset(600, 47));
    const { router, report } = await fitRouter(ds, { seed: 3, method: 'learned-map', embedder: { bucketsLog2: 13, dim: 32 } });
    expect(report.kSearch.length).toBeGreaterThan(1);
    // every (K, strength) of K-means' grid scored again for the map, and the best of them kept
    expect(report.mapSearch!.map((x) => `${x.k}/${x.priorStrength}`)).toEqual(report.kSearch.map((x) => `${x.k}/${x.priorStrength}`));
    const best = report.mapSearch!.reduce((a, b) => (b.validationArea > a.validationArea + 1e-12 ? b : a));
    expect(report.clusters).toBe(best.k);
    expect(router.k).toBe(best.k);
    expect(router.map!.config.out).toBe(best.k);
    expect(report.priorStrength).toBe(best.priorStrength);
    expect(router.priorStrength).toBe(best.priorStrength);
    // a fixed K keeps the one map at that K
    const fixed = await fitRouter(ds, { seed: 3, method: 'learned-map', clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } });
    expect(fixed.router.k).toBe(4);
    expect(fixed.report.mapSearch).toBeUndefined();
  });

  it('batch routing with the learned map holds flat memory on a long stream', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-mem-')), 'map.uniroute');
    const ds = await loadDataset(makeSyntheticDataset(600, 43));
    const { router } = await fitRouter(ds, { seed: 5, method: 'learned-map', embedder: { bucketsLog2: 13, dim: 32 } });
    await router.save(file);
    const script = `
      import { Router } from ${JSON.stringify(join(__dirname, '..', 'dist', 'src', 'router', 'router.js'))};
      const r = await Router.load(${JSON.stringify(file)});
      const words = ['integral', 'python', 'empire', 'solve', 'loop', 'king', 'sum', 'class', 'war', 'prime'];
      const n = Number(process.argv[1]);
      let chosen = 0;
      for (let b = 0; b < n; b += 4096) {
        const texts = Array.from({ length: Math.min(4096, n - b) }, (_, i) => 'Question: ' + words[(b + i) % 10] + ' ' + words[(b + 3 * i) % 7] + ' ' + (b + i));
        const res = await r.routeBatch(texts, { explain: false });
        chosen += res.choice.length;
      }
      console.log(JSON.stringify({ chosen, maxRSS: process.resourceUsage().maxRSS }));`;
    const run = (n: number) => {
      const out = spawnSync(process.execPath, ['--input-type=module', '-e', script, String(n)], { encoding: 'utf8', timeout: 120_000 });
      expect(out.status, out.stderr).toBe(0);
      return JSON.parse(out.stdout.trim().split('\n').pop()!);
    };
    const small = run(20_000);
    const big = run(200_000);
    expect(big.chosen).toBe(200_000);
    console.log(`learned-map stream: peak RSS ${(small.maxRSS / 1024).toFixed(0)} MB for 20k prompts, ${(big.maxRSS / 1024).toFixed(0)} MB for 200k`);
    expect(big.maxRSS - small.maxRSS).toBeLessThan(48 * 1024); // KB: ten times the prompts, no more than noise
  }, 120_000);
});

describe('the default operating point', () => {
  it('is the pool\'s: within a point of lambda 0\'s predicted accuracy, cheaper, used when no lambda is given, and kept prompts travel in the file', async () => {
    const ds = await loadDataset(makeSyntheticDataset(900, 51));
    const { router, report } = await fitRouter(ds, { seed: 4, embedder: { bucketsLog2: 13, dim: 32 } });
    const op = report.operatingPoint!;
    expect(op.basis).toBe('predicted');
    expect(op.prompts).toBeGreaterThan(100);
    expect(op.expectedAccuracy).toBeGreaterThanOrEqual(op.accuracyAtZero - 0.01 - 1e-9);
    expect(op.expectedCost).toBeLessThanOrEqual(op.costAtZero + 1e-12);
    expect(router.defaultLambda).toBe(op.lambda);
    // the check by the training LLMs' own outcomes on those prompts
    expect(report.operatingCheck!.costRatio).toBeLessThanOrEqual(1 + 1e-9);
    expect(report.operatingCheck!.accuracyDiff).toBeGreaterThan(-0.03);
    const texts = randomTexts(200, 3);
    const dflt = await router.routeBatch(texts);
    const explicit = await router.routeBatch(texts, { lambda: op.lambda });
    const zero = await router.routeBatch(texts, { lambda: 0 });
    expect(Array.from(dflt.choice)).toEqual(Array.from(explicit.choice));
    const mean = (b: typeof dflt) => b.choice.reduce((a, j) => a + b.costs[j], 0) / b.choice.length;
    expect(mean(dflt)).toBeLessThanOrEqual(mean(zero));
    // kept in the file, so a loaded router computes the same point; an explicit default wins
    const again = Router.fromArtifact(router.toArtifact(), 'mem');
    expect(again.operatingPoint()).toEqual(router.operatingPoint());
    expect(again.modelHash()).toBe(router.modelHash());
    const fixed = (await fitRouter(ds, { seed: 4, embedder: { bucketsLog2: 13, dim: 32 }, defaultLambda: 0 })).router;
    expect(fixed.defaultLambda).toBe(0);
    expect(Router.fromArtifact(fixed.toArtifact(), 'mem').defaultLambda).toBe(0);
  });
});
