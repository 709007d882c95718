/** Evaluation: metrics on hand-computed curves, the protocol's splits (nothing leaks), the learned map's trainer. */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { aiq, deferralArea, monotoneCurve, qualityNeutralCost, routerCurve, upperHull } from '../src/eval/metrics.js';
import { runSeed } from '../src/eval/protocol.js';
import { benchmarkOracle, difficultyOracle, fitLogistic } from '../src/eval/ceiling.js';
import { loadDataset } from '../src/data/dataset.js';
import { native } from '../src/engine/native.js';
import { mulberry32 } from '../src/engine/reference.js';
import { makeSyntheticDataset, NODE_CLI_FLAGS } from './helpers.js';

const P = (cost: number, quality: number) => ({ cost, quality });

describe('metrics on hand-computed curves', () => {
  it('area of a known curve, flat beyond its ends, made non-decreasing', () => {
    expect(deferralArea([P(1, 0.5), P(3, 0.9)], 1, 3)).toBeCloseTo(0.7, 12);
    // flat beyond the ends: [0,1] at 0.5, [1,3] averaging 0.7, [3,4] at 0.9 -> (0.5 + 1.4 + 0.9) / 4
    expect(deferralArea([P(1, 0.5), P(3, 0.9)], 0, 4)).toBeCloseTo(0.7, 12);
    // a dip is lifted by the running maximum: (1,.5) (2,.5) (3,.9) -> (0.5 + 0.7) / 2
    expect(monotoneCurve([P(1, 0.5), P(2, 0.4), P(3, 0.9)]).map((p) => p.quality)).toEqual([0.5, 0.5, 0.9]);
    expect(deferralArea([P(1, 0.5), P(2, 0.4), P(3, 0.9)], 1, 3)).toBeCloseTo(0.6, 12);
    expect(deferralArea([P(2, 0.8)], 2, 2)).toBe(0.8);
  });

  it('a known hull: points under a chord are dropped, dominated points too', () => {
    const hull = upperHull([P(1, 0.5), P(2, 0.6), P(3, 0.9), P(4, 0.85)]);
    expect(hull).toEqual([P(1, 0.5), P(3, 0.9)]);
    expect(upperHull([P(1, 0.5), P(2, 0.8), P(3, 0.9)]).length).toBe(3); // concave: all stay
    expect(aiq([P(1, 0.5), P(2, 0.6), P(3, 0.9)], 1, 3)).toBeCloseTo(0.7, 12);
  });

  it('quality-neutral cost: interpolated crossing, or null when never reached', () => {
    expect(qualityNeutralCost([P(1, 0.5), P(3, 0.9)], 0.7, 3)).toBeCloseTo(2 / 3, 12);
    expect(qualityNeutralCost([P(1, 0.5), P(3, 0.9)], 0.95, 3)).toBeNull();
    expect(qualityNeutralCost([P(1, 0.95), P(3, 0.9)], 0.9, 3)).toBeCloseTo(1 / 3, 12);
  });

  it('routerCurve: lambda = 0 takes the lowest predicted error, large lambda the cheapest, missing outcomes skipped', () => {
    // 2 prompts x 2 LLMs: LLM 0 cheap (cost 1), LLM 1 dear (cost 3)
    const gamma = Float32Array.from([0.6, 0.2, 0.1, 0.3]);
    const correct = Float32Array.from([0, 1, 1, 0]);
    const pts = routerCurve(gamma, correct, [1, 3], 2, 2, [0, 100]);
    expect(pts[0]).toMatchObject({ cost: 2, quality: 1 }); // prompt 0 -> LLM 1 (right), prompt 1 -> LLM 0 (right)
    expect(pts[1]).toMatchObject({ cost: 1, quality: 0.5 });
    const missing = routerCurve(gamma, Float32Array.from([0, NaN, 1, 0]), [1, 3], 2, 2, [0]);
    expect(missing[0]).toMatchObject({ cost: 1, quality: 0.5 }); // prompt 0 can only go to LLM 0
  });
});

describe('the protocol', () => {
  it('splits LLMs and prompts into disjoint parts, and no test label or unseen LLM\'s train label is read', async () => {
    const dir = makeSyntheticDataset(600, 12);
    const ds = await loadDataset(dir);
    const opts = { seed: 3, valPrompts: [60, 120], methods: ['uniroute-kmeans', 'uniroute-learned-map', 'knn', 'retrained-mlp', 'zero-router'] };
    const a = await runSeed(ds, 3, opts);
    expect(new Set([...a.trainModels, ...a.unseenModels]).size).toBe(a.trainModels.length + a.unseenModels.length);
    expect([...a.trainModels, ...a.unseenModels].sort()).toEqual(ds.models.slice().sort());
    const parts = [a.split.train, a.split.val, a.split.test].map((x) => new Set(x));
    expect(parts[0].size + parts[1].size + parts[2].size).toBe(ds.prompts.length);
    for (const i of parts[2]) expect(parts[0].has(i) || parts[1].has(i)).toBe(false);
    for (const i of parts[1]) expect(parts[0].has(i)).toBe(false);

    // scramble every label the protocol must never read: every LLM's test-prompt labels and the unseen LLMs'
    // train-prompt labels. The choices (K, k, shrinkage) and the routing decisions must not move.
    const rand = mulberry32(99);
    const scrambled = { ...ds, outcomes: new Map(ds.outcomes) };
    for (const m of ds.models) {
      const o = Float32Array.from(ds.outcomes.get(m)!);
      const unseen = a.unseenModels.includes(m);
      for (const i of a.split.test) o[i] = rand() < 0.5 ? 1 : 0;
      if (unseen) for (const i of a.split.train) o[i] = rand() < 0.5 ? 1 : 0;
      scrambled.outcomes.set(m, o);
    }
    const b = await runSeed(scrambled, 3, opts);
    expect(b.chosen).toEqual(a.chosen);
    // with test labels changed the curves change, but the routing decisions (costs along the curve) must not
    for (const v of [60, 120])
      for (const m of ['uniroute-kmeans', 'uniroute-learned-map', 'knn', 'retrained-mlp'] as const)
        expect(b.byValSize[v][m]!.curve.map((p) => p.cost)).toEqual(a.byValSize[v][m]!.curve.map((p) => p.cost));
  });

  it('uses unseen LLMs only through their validation outcomes: changing them changes the routing', async () => {
    const ds = await loadDataset(makeSyntheticDataset(600, 13));
    const opts = { valPrompts: [120], methods: ['uniroute-kmeans'] };
    const a = await runSeed(ds, 5, opts);
    const flipped = { ...ds, outcomes: new Map(ds.outcomes) };
    for (const m of a.unseenModels) {
      const o = Float32Array.from(ds.outcomes.get(m)!);
      for (const i of a.split.val) o[i] = 1 - o[i];
      flipped.outcomes.set(m, o);
    }
    const b = await runSeed(flipped, 5, opts);
    expect(b.byValSize[120]['uniroute-kmeans']!.curve).not.toEqual(a.byValSize[120]['uniroute-kmeans']!.curve);
  });
});

describe('the learned map\'s trainer (native)', () => {
  it('learns a separable map, deterministically, and checks its arguments', async () => {
    const n = 400;
    const d = 6;
    const r = mulberry32(1);
    const X = Float32Array.from({ length: n * d }, () => r() * 2 - 1);
    // two training LLMs: LLM 0 fails when x0 > 0, LLM 1 when x0 <= 0; clusters with psi that can express it
    const Y = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      Y[i * 2] = X[i * d] > 0 ? 1 : 0;
      Y[i * 2 + 1] = X[i * d] > 0 ? 0 : 1;
    }
    const psi = Float32Array.from([0.95, 0.05, 0.05, 0.95]);
    const cfg = { in: d, out: 2, hidden: [16, 16], head: 'mixture' as const };
    const a = await native().trainMlp(X, n, Y, 2, cfg, { psi, epochs: 15, patience: 15, seed: 3 });
    const b = await native().trainMlp(X, n, Y, 2, cfg, { psi, epochs: 15, patience: 15, seed: 3 });
    expect(a.params).toEqual(b.params);
    expect(a.trainLoss[a.trainLoss.length - 1]).toBeLessThan(a.trainLoss[0] * 0.6);
    const Z = new Float32Array(n * 2);
    native().mlpForward(a.params, cfg, X, n, Z);
    let right = 0;
    for (let i = 0; i < n; i++) right += (Z[i * 2] > 0.5) === X[i * d] > 0 ? 1 : 0;
    expect(right / n).toBeGreaterThan(0.9);
    expect(() => native().trainMlp(X, n, Y, 2, cfg, { epochs: 1 })).toThrow(/psi/);
    expect(() => native().trainMlp(X, n, Float32Array.from(Y, () => 2), 2, cfg, { psi })).toThrow(/labels/);
    expect(() => native().mlpForward(a.params.subarray(1), cfg, X, n, Z)).toThrow(/params/);
    expect(() => native().trainMlp(X, n, Y, 2, { ...cfg, hidden: [0] }, { psi })).toThrow(/hidden/);
  });
});

describe('the ceilings (reference routers that read test labels)', () => {
  it('fitLogistic recovers the weights that generated the labels', () => {
    const rand = mulberry32(5);
    const n = 20000;
    const truth = [-1, 0.5, 2];
    const X = new Float64Array(n * 3);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      X[i * 3] = 1;
      X[i * 3 + 1] = rand() * 2 - 1;
      X[i * 3 + 2] = rand() * 2 - 1;
      const z = truth[0] + truth[1] * X[i * 3 + 1] + truth[2] * X[i * 3 + 2];
      y[i] = rand() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
    }
    const w = fitLogistic(X, y, 3, 1e-3);
    truth.forEach((t, a) => expect(Math.abs(w[a] - t)).toBeLessThan(0.1));
    // a strong L2 pulls every weight toward 0
    const w2 = fitLogistic(X, y, 3, 1e5);
    for (let a = 0; a < 3; a++) expect(Math.abs(w2[a])).toBeLessThan(Math.abs(w[a]) / 2);
    expect(() => fitLogistic(X.subarray(1), y, 3, 1)).toThrow(/features/);
  });

  it('oracle-benchmark is each LLM\'s mean test error per benchmark; oracle-difficulty follows the difficulty', () => {
    // 2 LLMs, 4 test prompts in 2 benchmarks
    const bench = Int32Array.from([0, 0, 1, 1]);
    const correct = Float32Array.from([1, 0, 0, 0, 1, 1, 1, 0]);
    expect(Array.from(benchmarkOracle(bench, 2, correct, 2))).toEqual([0.5, 1, 0.5, 1, 0, 0.5, 0, 0.5]);
    // one benchmark; the LLM errs exactly on the prompts whose difficulty is above 0.5
    const v = 200;
    const d = Float64Array.from({ length: v }, (_, i) => i / (v - 1));
    const val = { bench: new Int32Array(v), difficulty: d, correct: Float32Array.from(d, (x) => (x > 0.5 ? 0 : 1)) };
    const g = difficultyOracle(val, { bench: new Int32Array(2), difficulty: Float64Array.from([0.1, 0.9]) }, 1, 1);
    expect(g[0]).toBeLessThan(0.2);
    expect(g[1]).toBeGreaterThan(0.8);
  });
});

describe('uniroute eval', () => {
  it('writes report.json, report.md, report.html and the SVGs (rendered: not blank), with a label-efficiency sweep', async () => {
    const data = makeSyntheticDataset(600, 21);
    const out = join(mkdtempSync(join(tmpdir(), 'uniroute-eval-')), 'rep');
    const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), 'eval', '--data', data, '--seeds', '2', '--val-prompts', '30,120', '--out', out, '--quiet'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    for (const m of ['uniroute-kmeans', 'uniroute-learned-map', 'zero-router', 'knn', 'retrained-mlp', 'best-single', 'oracle']) {
      expect(rep.methods[m].audc.mean).toBeGreaterThan(0);
      expect(rep.methods[m].audc.sd).toBeGreaterThanOrEqual(0);
      expect(rep.methods[m].curve.length).toBeGreaterThan(1);
    }
    expect(rep.methods.oracle.audc.mean).toBeGreaterThanOrEqual(rep.methods['uniroute-kmeans'].audc.mean);
    // the two ceilings, reported where the prompts name benchmarks; the true labels route at least as well
    for (const m of ['oracle-benchmark', 'oracle-difficulty']) expect(rep.methods.oracle.audc.mean).toBeGreaterThanOrEqual(rep.methods[m].audc.mean);
    expect(rep.label_efficiency.val_prompts).toEqual([30, 120]);
    expect(rep.settings.seeds).toBe(2);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/\| uniroute-kmeans \|/);
    const svg = readFileSync(join(out, 'deferral.svg'), 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toMatch(/uniroute-learned-map/);
    // plots a person reads: the data set's name as title, a log cost axis in USD, every unseen LLM as a labelled
    // point, bands over seeds, the label-efficiency sweep plotted, QNC as sentences, one HTML page
    const name = data.split('/').pop()!;
    expect(svg).toMatch(new RegExp(`class="title"[^>]*>${name}</text>`));
    expect(svg).toMatch(/mean cost per query \(USD, log scale\)/);
    const unseen = new Set(rep.seeds.flatMap((x: { unseen: string[] }) => x.unseen));
    expect(rep.llms.map((l: { name: string }) => l.name).sort()).toEqual([...unseen].sort());
    for (const l of unseen) expect(svg).toContain(`>${l}</text>`);
    expect(svg).toMatch(/<polygon[^>]*fill-opacity/);
    expect(new Set([...svg.matchAll(/stroke-dasharray="([^"]+)"/g)].map((x) => x[1])).size).toBeGreaterThan(3);
    // every legend entry's colour and dash differ from every other's (the chart has more series than colours)
    const legend = [...svg.matchAll(/<line class="legend" x1="[^"]+" x2="[^"]+" y1="[^"]+" y2="[^"]+" stroke="([^"]+)" stroke-width="[^"]+"(?: stroke-dasharray="([^"]+)")?\/>/g)].map((x) => `${x[1]}|${x[2] ?? ''}`);
    expect(legend.length).toBe(Object.keys(rep.methods).length);
    expect(new Set(legend).size).toBe(legend.length);
    const le = readFileSync(join(out, 'label-efficiency.svg'), 'utf8');
    expect(le).toMatch(/label efficiency/);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/uniroute-kmeans (reaches the accuracy of the most accurate unseen LLM at \d+ % of that LLM's cost|never reaches)/);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/<svg[\s\S]*<table>[\s\S]*label efficiency/);
    // every SVG rendered by a real renderer (resvg): not blank, several colours
    const { Resvg } = await import('@resvg/resvg-js');
    for (const file of ['deferral.svg', 'label-efficiency.svg']) {
      const png = new Resvg(readFileSync(join(out, file), 'utf8'), { font: { loadSystemFonts: false } }).render();
      const px = png.pixels;
      let ink = 0;
      const colours = new Set<number>();
      for (let i = 0; i < px.length; i += 4) {
        if (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235) ink++;
        colours.add(((px[i] >> 4) << 8) | ((px[i + 1] >> 4) << 4) | (px[i + 2] >> 4));
      }
      expect(png.width).toBeGreaterThan(500);
      expect(ink / (px.length / 4), file).toBeGreaterThan(0.01);
      expect(colours.size, file).toBeGreaterThan(6);
    }
    expect(r.stdout).toMatch(/\| method \|/);
    const bad = spawnSync(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), 'eval', '--data', data, '--methods', 'magic', '--out', out], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown method "magic"/);
  });
});

describe('the evaluation measures the shipped path', () => {
  it('each UniRoute curve point is what the Router decides for the test prompts\' texts at that lambda (K-means and learned map)', async () => {
    const ds = await loadDataset(makeSyntheticDataset(500, 23));
    const seen: Array<{ method: string; v: number; curve: Array<{ lambda?: number; cost: number; quality: number }> }> = [];
    const audits: Parameters<NonNullable<Parameters<typeof runSeed>[2]['onRouter']>>[0][] = [];
    const res = await runSeed(ds, 2, {
      methods: ['uniroute-kmeans', 'uniroute-learned-map'],
      valPrompts: [60, 120],
      dim: 32,
      kGrid: [3, 4],
      lambdaSteps: 12,
      onRouter: (a) => audits.push(a),
    });
    expect(audits.map((a) => `${a.method}@${a.valPrompts}`).sort()).toEqual(
      ['uniroute-kmeans@60', 'uniroute-kmeans@120', 'uniroute-learned-map@60', 'uniroute-learned-map@120'].sort(),
    );
    for (const a of audits) {
      const texts = Array.from(a.testIdx, (i) => ds.prompts[i].text);
      const curve = res.byValSize[a.valPrompts][a.method]!.curve;
      expect(curve).toHaveLength(a.lambdas.length);
      for (const [t, lambda] of a.lambdas.entries()) {
        // the texts go through the fused kernel (K-means) or the map's path: the router users run
        const b = await a.router.routeBatch(texts, { lambda, explain: false });
        let cost = 0;
        let quality = 0;
        b.choice.forEach((j, i) => {
          cost += a.router.snapshot().cost[j];
          quality += ds.outcomes.get(a.unseen[j])![a.testIdx[i]];
        });
        expect(curve[t].cost).toBeCloseTo(cost / texts.length, 6); // float32 costs in the snapshot
        expect(curve[t].quality).toBeCloseTo(quality / texts.length, 12);
      }
      seen.push({ method: a.method, v: a.valPrompts, curve });
    }
    expect(seen.length).toBe(4);
  }, 60_000);
});

describe('the learned map\'s own selection of K and strength', () => {
  it('scores the predicted errors the map\'s router computes (soft memberships, difficulty shift), and is reported apart from K-means\'', async () => {
    const { softGammaOf } = await import('../src/router/select.js');
    const { difficultyOf } = await import('../src/router/evidence.js');
    const ds = await loadDataset(makeSyntheticDataset(500, 29));
    const audits: Parameters<NonNullable<Parameters<typeof runSeed>[2]['onRouter']>>[0][] = [];
    const res = await runSeed(ds, 4, { methods: ['uniroute-learned-map'], valPrompts: [120], dim: 32, kGrid: [3, 4], lambdaSteps: 8, onRouter: (a) => audits.push(a) });
    expect([3, 4]).toContain(res.chosen.map_k);
    expect([4, 16]).toContain(res.chosen.map_prior_strength);
    const { router, testIdx } = audits[0];
    expect(router.k).toBe(res.chosen.map_k);
    expect(router.priorStrength).toBe(res.chosen.map_prior_strength);
    const E = await router.embedTexts(Array.from(testIdx, (i) => ds.prompts[i].text));
    const n = testIdx.length;
    const K = router.k;
    const z = new Float32Array(n * K);
    native().mlpForward(router.map!.params, router.map!.config, E, n, z);
    const s = router.snapshot();
    const M = s.names.length;
    const d = router.prior?.difficulty;
    expect(d).toBeDefined();
    const g = softGammaOf(s.psi, z, Int32Array.from({ length: n }, (_, i) => i), K, M, router.prior, difficultyOf(E, router.dim, d!.w, d!.w0));
    const b = await router.routeEmbeddings(E, { lambda: 0, explain: true, ood: false });
    for (let t = 0; t < n * M; t++) expect(g[t]).toBeCloseTo(b.predictedError[t], 5);
  }, 60_000);
});
