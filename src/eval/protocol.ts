/**
 * The paper's unseen-LLM protocol (§6, App. F–G): per seed, split the LLMs with complete outcomes into training
 * and unseen LLMs and the prompts into train / validation / test; fit on training LLMs × train prompts; describe
 * each unseen LLM only by its validation outcomes; route test prompts among the unseen LLMs; trace deferral curves.
 * Hyper-parameters (K, k) are chosen on validation prompts with the training LLMs, never on test data.
 */
import { UnirouteError, didYouMean } from '../errors.js';
import { callAsync, native, type MlpConfig } from '../engine/native.js';
import { HashedEmbedder, type EmbedderSpec } from '../embed/embedder.js';
import type { RemoteEmbedder } from '../embed/remote.js';
import { costPerQuery, permutation, type CostOptions, type Dataset } from '../data/dataset.js';
import { clusterGrid, fitEvidenceCells } from '../router/fit.js';
import { chooseClusters, gatherRows, selectionDraws, stackRows } from '../router/select.js';
import { CurveAccumulator, bestSingleOf, pickOperatingPoint } from '../router/operating.js';
import { fitDifficulty, fitPrior, type DifficultyModel, type PsiPrior } from '../router/evidence.js';
import { Router, type LearnedMap } from '../router/router.js';
import { psiMatrix } from '../router/evidence.js';
import { aiq, curveAt, deferralArea, lambdaGrid, monotoneCurve, qualityNeutralCost, routerCurve, upperHull, type CurvePoint } from './metrics.js';
import { benchmarkOracle, difficultyOracle } from './ceiling.js';

export const ALL_METHODS = ['uniroute-kmeans', 'uniroute-learned-map', 'zero-router', 'knn', 'retrained-mlp', 'best-single', 'oracle'] as const;
export type MethodName = (typeof ALL_METHODS)[number] | (typeof EXTRA_METHODS)[number];
/** Methods run when asked for (or by default): the ablation without shrinkage, and suggested labels. */
/** Variants, and two ceilings that read test labels (src/eval/ceiling.ts; only where the prompts name a benchmark). */
export const EXTRA_METHODS = ['uniroute-kmeans-no-shrinkage', 'uniroute-kmeans-suggested', 'oracle-benchmark', 'oracle-difficulty'] as const;

export interface EvalOptions extends CostOptions {
  seeds?: number;
  firstSeed?: number;
  unseenFraction?: number;
  /** Validation prompts; several values sweep label efficiency (the largest is the main result). */
  valPrompts?: number[];
  testFraction?: number;
  methods?: string[];
  priorStrength?: number;
  dim?: number;
  lambdaSteps?: number;
  mapEpochs?: number;
  /** K-means restarts (the lowest objective wins; unsupervised). */
  kmeansRestarts?: number;
  /** LLMs left out of the protocol entirely. */
  excludeModels?: string[];
  /** The prompt-difficulty feature (default true, as in fit). */
  difficulty?: boolean;
  /** A remote embedder: every prompt embedded once through it instead of fitting the hashed embedder per seed. */
  remoteEmbedder?: RemoteEmbedder;
  /**
   * The vectors of every prompt (dataset order) instead of the hashed embedder: your own (`precomputed`), or set by
   * evaluate() from remoteEmbedder.
   */
  promptEmbeddings?: { spec: EmbedderSpec; data: Float32Array; remote?: RemoteEmbedder };
  /** Outcomes in a cluster below which an unseen LLM has no evidence there (default 1, as in the router). */
  minEvidence?: number;
  /** Override the K grid searched on validation (default: the paper's 3 … N_val/50). */
  kGrid?: number[];
  /** Shrinkage strengths searched on validation with K (default 0, 1, 4, 16). */
  priorGrid?: number[];
  onProgress?: (stage: string, done: number, total: number) => void;
  /** Audits: called with each UniRoute router whose decisions make a curve (the test prompts, the λ values). */
  onRouter?: (a: { method: MethodName; valPrompts: number; router: Router; testIdx: Int32Array; lambdas: number[]; unseen: string[] }) => void;
}

export interface MethodResult {
  curve: CurvePoint[];
  audc: number;
  qnc: number | null;
  peak: number;
  aiq: number;
}

export interface SeedResult {
  seed: number;
  trainModels: string[];
  unseenModels: string[];
  prompts: { train: number; val: number; test: number };
  chosen: Record<string, number>;
  costRange: [number, number];
  /** Prompt indices of each part (for audits). */
  split: { train: Int32Array; val: Int32Array; test: Int32Array };
  /** Per validation size: per method. */
  byValSize: Record<number, Partial<Record<MethodName, MethodResult>>>;
  /** UniRoute (K-means)'s default operating point on the test prompts, against λ = 0. */
  operatingPoint?: { lambda: number; costRatio: number; accuracyDiff: number };
  /** The unseen LLMs themselves: cost per query and accuracy on the test prompts. */
  llms: Array<{ name: string; cost: number; accuracy: number }>;
}

const ladder = (lo: number, hi: number, values: number[]) => {
  const g = values.filter((v) => v >= lo && v <= hi);
  return g.length ? g : [lo];
};

function topK(sim: Float32Array, rows: number, cols: number, kmax: number): Int32Array {
  kmax = Math.min(kmax, cols);
  // indices of the kmax most similar columns per row, most similar first
  const out = new Int32Array(rows * kmax);
  const idx = new Int32Array(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) idx[j] = j;
    const row = sim.subarray(i * cols, (i + 1) * cols);
    const sorted = Array.from(idx).sort((a, b) => row[b] - row[a] || a - b);
    for (let t = 0; t < kmax; t++) out[i * kmax + t] = sorted[t];
  }
  return out;
}

/** A · Bᵀ for row-major A (nA x D) and B (nB x D), via the engine's soft scoring kernel (gamma = Z · Psiᵀ). */
function dotProducts(A: Float32Array, nA: number, B: Float32Array, nB: number, D: number): Float32Array {
  const S = new Float32Array(nA * nB);
  if (nA === 0 || nB === 0) return S;
  native().scoreSync({ membership: A, psi: B, cost: new Float32Array(nB), m: nB, k: D, lambda: 0, choice: new Int32Array(nA), gamma: S });
  return S;
}

/** Runs the protocol for one seed. */
export async function runSeed(ds: Dataset, seed: number, opts: EvalOptions): Promise<SeedResult> {
  const methods = new Set(opts.methods ?? [...ALL_METHODS, ...EXTRA_METHODS]);
  const prior = opts.priorStrength ?? 1;
  const n = ds.prompts.length;
  for (const m of opts.excludeModels ?? [])
    if (!ds.outcomes.has(m)) throw new UnirouteError('UNKNOWN_MODEL', `excluded LLM "${m}" has no outcome in ${ds.dir}${didYouMean(m, ds.models)}`);
  const complete = ds.models.filter((m) => !(opts.excludeModels ?? []).includes(m) && ds.outcomes.get(m)!.every((v) => !Number.isNaN(v)));
  if (complete.length < 2) throw new UnirouteError('BAD_DATASET', 'the protocol needs at least 2 LLMs with outcomes on every prompt');
  const mperm = permutation(complete.length, seed * 7919 + 1);
  const nUnseen = Math.min(complete.length - 1, Math.max(1, Math.round(complete.length * (opts.unseenFraction ?? 0.5))));
  const unseen = Array.from(mperm.subarray(0, nUnseen), (i) => complete[i]);
  const train = Array.from(mperm.subarray(nUnseen), (i) => complete[i]);
  const valSizes = [...new Set(opts.valPrompts ?? [defaultValPrompts(n)])].sort((a, b) => a - b);
  const vMax = valSizes[valSizes.length - 1];
  const nTest = Math.round(n * (opts.testFraction ?? 0.3));
  if (vMax + nTest >= n - 10) throw new UnirouteError('INVALID_ARGUMENT', `too many validation (${vMax}) and test (${nTest}) prompts for ${n} prompts`);
  const pperm = permutation(n, seed * 104729 + 3);
  const testIdx = pperm.subarray(0, nTest);
  const valIdx = pperm.subarray(nTest, nTest + vMax);
  const trainIdx = pperm.subarray(nTest + vMax);
  const nTr = trainIdx.length;

  // the embedder: fitted on train prompt texts only, or the remote endpoint's vectors of every prompt (computed once)
  const given = opts.promptEmbeddings;
  const emb = given ? undefined : await HashedEmbedder.fit(Array.from(trainIdx, (i) => ds.prompts[i].text), { seed, dim: opts.dim ?? 256 });
  const D = given ? given.spec.dim : emb!.dim;
  if (given && given.data.length !== n * D)
    throw new UnirouteError('DIMENSION_MISMATCH', `${given.data.length / D} prompt embeddings for ${n} prompts`);
  const embed = async (idx: Int32Array) => {
    if (!given) return emb!.embed(Array.from(idx, (i) => ds.prompts[i].text));
    const out = new Float32Array(idx.length * D);
    idx.forEach((p, i) => out.set(given.data.subarray(p * D, (p + 1) * D), i * D));
    return out;
  };
  const [Etr, Eva, Ete] = await Promise.all([embed(trainIdx), embed(valIdx), embed(testIdx)]);
  const embedderParts = given ? { embedder: given.spec, remote: given.remote } : { embedder: emb!.spec, hashed: emb };
  const correct = (models: string[], idx: Int32Array) => {
    const M = models.length;
    const Y = new Float32Array(idx.length * M);
    models.forEach((m, j) => {
      const o = ds.outcomes.get(m)!;
      idx.forEach((p, i) => (Y[i * M + j] = o[p]));
    });
    return Y;
  };
  const Mtr = train.length;
  const Mu = unseen.length;
  const Ytr_tr = correct(train, trainIdx);
  const Ytr_va = correct(train, valIdx);
  const Yu_va = correct(unseen, valIdx);
  const Yu_te = correct(unseen, testIdx);
  const cTrain = train.map((m) => costPerQuery(ds, m, opts));
  const cUnseen = unseen.map((m) => costPerQuery(ds, m, opts));
  const cMin = Math.min(...cUnseen);
  const cMax = Math.max(...cUnseen);
  const lambdas = lambdaGrid(cUnseen, opts.lambdaSteps ?? 64);
  const lambdasTrain = lambdaGrid(cTrain, opts.lambdaSteps ?? 64);
  const testAcc = unseen.map((_, j) => {
    let s = 0;
    for (let i = 0; i < nTest; i++) s += Yu_te[i * Mu + j];
    return s / nTest;
  });
  const bestTest = testAcc.indexOf(Math.max(...testAcc));
  const result = (curve: CurvePoint[]): MethodResult => ({
    curve,
    audc: deferralArea(curve, cMin, cMax),
    qnc: qualityNeutralCost(curve, testAcc[bestTest] - 1e-9, cUnseen[bestTest]),
    peak: Math.max(...curve.map((p) => p.quality)),
    aiq: aiq(curve, cMin, cMax),
  });
  const testCurve = (gamma: Float32Array) => routerCurve(gamma, Yu_te, cUnseen, nTest, Mu, lambdas);
  const assign = (E: Float32Array, C: Float32Array, k: number) => {
    const out = new Int32Array(E.length / D);
    native().assignSync(E, out.length, D, C, k, out, null);
    return out;
  };
  const errorsOf = (Y: Float32Array) => Y.map((v) => 1 - v);

  const kmCache = new Map<number, { C: Float32Array; trainCl: Int32Array; valCl: Int32Array; testCl: Int32Array }>();
  const clusters = async (k: number) => {
    let c = kmCache.get(k);
    if (!c) {
      const km = await callAsync(() => native().kmeans(Etr, nTr, D, k, { seed, nInit: opts.kmeansRestarts ?? 5 }));
      c = { C: km.centroids, trainCl: km.assignments, valCl: assign(Eva, km.centroids, k), testCl: assign(Ete, km.centroids, k) };
      kmCache.set(k, c);
    }
    return c;
  };
  // the prompt-difficulty model, fitted once on the train prompts with the training LLMs' outcomes
  const dm: DifficultyModel | undefined = opts.difficulty === false ? undefined : fitDifficulty(Etr, D, Ytr_tr, Mtr, seed);
  const priorCache = new Map<number, ReturnType<typeof fitPrior>>();
  const priorOf = (k: number, trainCl: Int32Array) => {
    let p = priorCache.get(k);
    if (!p) priorCache.set(k, (p = fitPrior(trainCl, Ytr_tr, Mtr, k, dm)));
    return p;
  };
  /**
   * The shipped router for this split: the fitted parts (embedder, centroids, prior, map) and the unseen LLMs
   * added from their first v validation outcomes, exactly as `uniroute add-model` adds them.
   */
  const cellCache = new Map<number, Awaited<ReturnType<typeof fitEvidenceCells>>>();
  /** The fitted parts of this split as a router with an empty pool. */
  const fittedRouter = async (k: number, C: Int32Array | Float32Array, trainCl: Int32Array, a: number, map?: LearnedMap) => {
    const prior: PsiPrior = priorOf(k, trainCl).prior;
    const clusterShare = new Float32Array(k);
    for (const c of trainCl) clusterShare[c] += 1 / trainCl.length;
    if (!cellCache.has(k)) cellCache.set(k, await fitEvidenceCells(Etr, nTr, D, k, trainCl, seed));
    const cells = cellCache.get(k);
    return new Router({ ...embedderParts, centroids: C as Float32Array, k, priorStrength: a, prior, clusterShare, cells, map, minEvidence: opts.minEvidence });
  };
  const rowsOf = (idx: Int32Array, A: Float32Array, w: number) => gatherRows(A, idx, w);
  /**
   * The shipped router for this split: the fitted parts and the unseen LLMs added from their outcomes on the
   * validation prompts `rows` (default: the first v), exactly as `uniroute add-model` adds them.
   */
  const unseenRouter = async (k: number, C: Int32Array | Float32Array, trainCl: Int32Array, valCl: Int32Array, v: number, a: number, map?: LearnedMap, rows?: Int32Array) => {
    const router = await fittedRouter(k, C, trainCl, a, map);
    const idx = rows ?? Int32Array.from({ length: v }, (_, i) => i);
    const cl = Int32Array.from(idx, (i) => valCl[i]);
    const valCells = router.cellsOf(rowsOf(idx, Eva, D), cl);
    unseen.forEach((name, j) => {
      const y = Float32Array.from(idx, (i) => Yu_va[i * Mu + j]);
      router.addModelFromClusters(name, cUnseen[j], cl, y, valCells);
    });
    return router;
  };
  /** The deferral curve of a router on the test prompts: its own decisions at each λ. */
  let audit: { method: MethodName; v: number } = { method: 'uniroute-kmeans', v: 0 };
  /** The router's own decisions on the test prompts at λ: mean cost and mean quality. */
  const testPoint = async (router: Router, lambda: number): Promise<CurvePoint> => {
    const b = await router.routeEmbeddings(Ete, { lambda, explain: false, ood: false });
    let cs = 0;
    let qs = 0;
    for (let i = 0; i < nTest; i++) {
      const j = b.choice[i];
      cs += cUnseen[j];
      qs += Yu_te[i * Mu + j];
    }
    return { lambda, cost: cs / nTest, quality: qs / nTest };
  };
  const shippedCurve = async (router: Router): Promise<CurvePoint[]> => {
    opts.onRouter?.({ method: audit.method, valPrompts: audit.v, router, testIdx, lambdas, unseen });
    const pts: CurvePoint[] = [];
    for (const lambda of lambdas) pts.push(await testPoint(router, lambda));
    return pts;
  };

  // kNN neighbours: validation prompts among train prompts (for k), test prompts among validation prompts
  const kLadder = [5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300];
  let nnTestVal: Int32Array | undefined;
  // similarities of every train and validation prompt to every train prompt (kNN's k selection)
  const simAllTrain = methods.has('knn') ? dotProducts(concatRows(Etr, Eva), nTr + vMax, Etr, nTr, D) : undefined;

  // the ceilings' inputs, once for every validation size: each validation and test prompt's benchmark, and its
  // true difficulty (the training LLMs' mean error on it)
  const bench = benchmarkIndex(ds);
  const difficultyOf = (p: number) => train.reduce((s, m) => s + 1 - ds.outcomes.get(m)![p], 0) / Mtr;
  const ceilingPart = (idx: Int32Array) => ({ bench: Int32Array.from(idx, (p) => bench!.index[p]), difficulty: Float64Array.from(idx, difficultyOf) });
  const ceiling = bench && (methods.has('oracle-benchmark') || methods.has('oracle-difficulty')) ? { count: bench.count, val: ceilingPart(valIdx), test: ceilingPart(testIdx) } : undefined;
  const out: SeedResult = {
    seed,
    trainModels: train,
    unseenModels: unseen,
    prompts: { train: nTr, val: vMax, test: nTest },
    chosen: {},
    costRange: [cMin, cMax],
    split: { train: trainIdx, val: valIdx, test: testIdx },
    byValSize: {},
    llms: unseen.map((name, j) => ({ name, cost: cUnseen[j], accuracy: testAcc[j] })),
  };
  const mapCache = new Map<number, Float32Array>();
  for (const v of valSizes) {
    const res: Partial<Record<MethodName, MethodResult>> = {};
    const YtrVa = Ytr_va.subarray(0, v * Mtr);
    // K and the shrinkage strength for UniRoute, chosen without test data (src/router/select.ts)
    const draws = selectionDraws(nTr, v, seed);
    const evalY = draws.map((d) => stackRows(Ytr_tr, d.evalTrain, YtrVa, v, Mtr));
    const areaTrain = (g: Float32Array, Y: Float32Array, rows: number) =>
      deferralArea(routerCurve(g, Y, cTrain, rows, Mtr, lambdasTrain), Math.min(...cTrain), Math.max(...cTrain));
    const sel = await chooseClusters({
      grid: opts.kGrid?.filter((k) => k <= nTr) ?? clusterGrid(v, nTr),
      priorGrid: opts.priorGrid ?? [0, 1, 4, 16],
      clusters,
      trainY: Ytr_tr,
      valY: YtrVa,
      nTr,
      v,
      M: Mtr,
      costs: cTrain,
      lambdas: lambdasTrain,
      draws,
    });
    const bestK = sel.k;
    const bestPrior = sel.priorStrength;
    if (v === vMax) {
      out.chosen.k = bestK;
      out.chosen.prior_strength = bestPrior;
    }
    const c = await clusters(bestK);
    const as = (method: MethodName) => (audit = { method, v });
    as('uniroute-kmeans');
    if (methods.has('uniroute-kmeans')) {
      const router = await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, bestPrior);
      res['uniroute-kmeans'] = result(await shippedCurve(router));
      if (v === vMax) {
        // the default operating point, chosen on the validation prompts by cross-fitting, against λ = 0 on the test
        // prompts: each of 5 folds is routed by a router whose unseen LLMs are described by the other folds only.
        // Read in-sample (the outcomes that set Ψ also scoring the curve), the curve flattered the cheap LLMs: the
        // point chosen lost 1.35 points against λ = 0 on routerbench's test prompts.
        const folds = 5;
        const costs = router.snapshot().cost;
        const grid = lambdaGrid(costs, 48);
        const curve = new CurveAccumulator(grid.length);
        for (let f = 0; f < folds; f++) {
          const inFold = Int32Array.from({ length: v }, (_, i) => i).filter((i) => i % folds === f);
          const rest = Int32Array.from({ length: v }, (_, i) => i).filter((i) => i % folds !== f);
          if (inFold.length === 0 || rest.length === 0) continue;
          const rf = await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, bestPrior, undefined, rest);
          const Ef = rowsOf(inFold, Eva, D);
          const Yf = rowsOf(inFold, Yu_va, Mu);
          for (let t = 0; t < grid.length; t++) curve.add(t, (await rf.routeEmbeddings(Ef, { lambda: grid[t], explain: false, ood: false })).choice, Yf, Mu, costs);
        }
        const op = pickOperatingPoint(grid, curve, bestSingleOf(Yu_va.subarray(0, v * Mu), v, Mu, unseen, costs), v);
        const [d, z] = [await testPoint(router, op.lambda), await testPoint(router, 0)];
        out.operatingPoint = { lambda: op.lambda, costRatio: d.cost / z.cost, accuracyDiff: d.quality - z.quality };
      }
    }
    as('uniroute-kmeans-suggested');
    if (methods.has('uniroute-kmeans-suggested')) {
      // the same router, the unseen LLMs described by v prompts that suggest-labels picks from the validation pool
      // (nothing known about them yet: coverage of the traffic, then where a label narrows the posterior most)
      const fitted = await fittedRouter(bestK, c.C, c.trainCl, bestPrior);
      const picks = v >= vMax ? Int32Array.from({ length: vMax }, (_, i) => i) : Int32Array.from(await fitted.suggestLabels(Eva, { budget: v, seed, order: 'given' }), (p) => p.index);
      res['uniroute-kmeans-suggested'] = result(await shippedCurve(await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, bestPrior, undefined, picks)));
    }
    as('uniroute-kmeans-no-shrinkage');
    if (methods.has('uniroute-kmeans-no-shrinkage'))
      res['uniroute-kmeans-no-shrinkage'] = result(await shippedCurve(await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, 0)));
    as('uniroute-learned-map');
    if (methods.has('uniroute-learned-map')) {
      let params = mapCache.get(bestK);
      const cfg: MlpConfig = { in: D, out: bestK, hidden: [128, 128], batchnorm: true, inputBn: true, head: 'mixture' };
      if (!params) {
        // trained on the training LLMs' errors on the train prompts, Psi from the same (App. G.2); 10 % held out
        const { psi } = psiMatrix(c.trainCl, Ytr_tr, Mtr, bestK, prior, priorOf(bestK, c.trainCl).prior);
        const hold = Math.max(2, Math.round(nTr * 0.1));
        const Y = errorsOf(Ytr_tr);
        const r = await callAsync(() =>
          native().trainMlp(Etr.subarray(hold * D), nTr - hold, Y.subarray(hold * Mtr), Mtr, cfg, {
            psi,
            valX: Etr.subarray(0, hold * D),
            valY: Y.subarray(0, hold * Mtr),
            lr: 0.005,
            batch: 64,
            epochs: opts.mapEpochs ?? 5,
            patience: 2,
            seed,
          }),
        );
        params = r.params;
        mapCache.set(bestK, params);
      }
      res['uniroute-learned-map'] = result(await shippedCurve(await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, bestPrior, { config: cfg, params })));
    }
    if (methods.has('knn') && simAllTrain) {
      // k chosen the same way: neighbours among the v train prompts of each draw, evaluated on the same prompts
      const kmax = Math.max(1, Math.floor(v / 3));
      const ks = ladder(Math.min(5, kmax), kmax, kLadder);
      const kTop = Math.min(ks[ks.length - 1], v);
      const areas = new Map<number, number>();
      draws.forEach((d, r) => {
        const rows = [...Array.from(d.evalTrain), ...Array.from({ length: v }, (_, i) => nTr + i)];
        const nn = new Int32Array(rows.length * kTop);
        rows.forEach((q, i) => {
          const row = simAllTrain.subarray(q * nTr, (q + 1) * nTr);
          const order = Array.from(d.fit).sort((x, y) => row[y] - row[x] || x - y);
          for (let t = 0; t < kTop; t++) nn[i * kTop + t] = order[t];
        });
        for (const k of ks) {
          const kk = Math.min(k, kTop);
          const g = new Float32Array(rows.length * Mtr);
          for (let i = 0; i < rows.length; i++)
            for (let t = 0; t < kk; t++) {
              const p = nn[i * kTop + t];
              for (let j = 0; j < Mtr; j++) g[i * Mtr + j] += (1 - Ytr_tr[p * Mtr + j]) / kk;
            }
          areas.set(k, (areas.get(k) ?? 0) + areaTrain(g, evalY[r], rows.length) / draws.length);
        }
      });
      let bestk = ks[0];
      for (const k of ks) if (areas.get(k)! > areas.get(bestk)! + 1e-12) bestk = k;
      if (v === vMax) out.chosen.knn_k = bestk;
      nnTestVal = topK(dotProducts(Ete, nTest, Eva.subarray(0, v * D), v, D), nTest, v, bestk);
      const g = new Float32Array(nTest * Mu);
      for (let i = 0; i < nTest; i++)
        for (let t = 0; t < bestk; t++) {
          const p = nnTestVal[i * bestk + t];
          for (let j = 0; j < Mu; j++) g[i * Mu + j] += (1 - Yu_va[p * Mu + j]) / bestk;
        }
      res.knn = result(testCurve(g));
    }
    if (methods.has('retrained-mlp')) {
      // one output per unseen LLM, trained on the validation sample only (paper: 2 x 100, Adam 1e-3, 10 epochs, batch 64)
      const cfg: MlpConfig = { in: D, out: Mu, hidden: [100, 100], batchnorm: false, inputBn: false, head: 'sigmoid' };
      const r = await callAsync(() =>
        native().trainMlp(Eva.subarray(0, v * D), v, errorsOf(Yu_va.subarray(0, v * Mu)), Mu, cfg, { lr: 0.001, batch: 64, epochs: 10, seed }),
      );
      const g = new Float32Array(nTest * Mu);
      native().mlpForward(r.params, cfg, Ete, nTest, g);
      res['retrained-mlp'] = result(testCurve(g));
    }
    const valAcc = unseen.map((_, j) => {
      let s = 0;
      for (let i = 0; i < v; i++) s += Yu_va[i * Mu + j];
      return s / v;
    });
    if (methods.has('zero-router')) {
      // the hull of the unseen LLMs' (cost, quality) on validation; mixing between hull LLMs, evaluated on test
      const hull = upperHull(unseen.map((_, j) => ({ cost: cUnseen[j], quality: valAcc[j], lambda: j })));
      res['zero-router'] = result(hull.map((p) => ({ cost: cUnseen[p.lambda!], quality: testAcc[p.lambda!] })));
    }
    if (methods.has('best-single')) {
      // the LLM most accurate on validation; below its cost, random mixing with the cheapest unseen LLM
      const j = valAcc.indexOf(Math.max(...valAcc));
      const cheapest = cUnseen.indexOf(cMin);
      res['best-single'] = result([
        { cost: cUnseen[cheapest], quality: testAcc[cheapest] },
        { cost: cUnseen[j], quality: testAcc[j] },
      ]);
    }
    if (methods.has('oracle')) res.oracle = result(testCurve(errorsOf(Yu_te)));
    if (ceiling) {
      if (methods.has('oracle-benchmark')) res['oracle-benchmark'] = result(testCurve(benchmarkOracle(ceiling.test.bench, ceiling.count, Yu_te, Mu)));
      if (methods.has('oracle-difficulty')) {
        const val = { bench: ceiling.val.bench.subarray(0, v), difficulty: ceiling.val.difficulty.subarray(0, v), correct: Yu_va.subarray(0, v * Mu) };
        res['oracle-difficulty'] = result(testCurve(difficultyOracle(val, ceiling.test, ceiling.count, Mu)));
      }
    }
    out.byValSize[v] = res;
  }
  return out;
}

/** Each prompt's benchmark as an index, or undefined where no prompt names one. */
function benchmarkIndex(ds: Dataset): { index: Int32Array; count: number } | undefined {
  if (!ds.prompts.some((p) => p.benchmark)) return undefined;
  const names = new Map<string, number>();
  const index = Int32Array.from(ds.prompts, (p) => {
    const b = p.benchmark ?? '';
    if (!names.has(b)) names.set(b, names.size);
    return names.get(b)!;
  });
  return { index, count: names.size };
}

function concatRows(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

export function defaultValPrompts(n: number): number {
  // the paper: 400 validation prompts on RouterBench-sized data, 10 % of the prompts on larger sets
  return n <= 10_000 ? Math.min(400, Math.floor(n * 0.2)) : Math.round(n * 0.1);
}

export interface Summary {
  mean: number;
  sd: number;
}
const summary = (xs: number[]): Summary => {
  const m = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
  return { mean: m, sd: Math.sqrt(v) };
};

export interface Report {
  settings: Record<string, unknown>;
  /** curve: the mean over seeds on a common cost grid, with `sd`, the sd over seeds at each point. */
  methods: Record<string, { audc: Summary; qnc: Summary & { reached: number; of: number }; peak_accuracy: Summary; aiq: Summary; curve: Array<CurvePoint & { sd: number }> }>;
  /** Each LLM that was unseen in some seed: cost per query, mean test accuracy over those seeds, and how many. */
  llms: Array<{ name: string; cost: number; accuracy: number; seeds: number }>;
  label_efficiency: { val_prompts: number[]; methods: Record<string, Array<{ val_prompts: number; audc: Summary }>> };
  seeds: Array<{ seed: number; chosen: Record<string, number>; unseen: string[]; audc: Record<string, number> }>;
  /** UniRoute (K-means)'s default operating point on test prompts: cost relative to λ = 0, accuracy difference. */
  operating_point?: { cost_ratio: Summary; accuracy_diff: Summary };
}

/** Runs every seed and aggregates: mean and sd of each metric, curves averaged on a common cost grid. */
export async function evaluate(ds: Dataset, opts: EvalOptions = {}): Promise<Report> {
  const seeds = opts.seeds ?? 5;
  const first = opts.firstSeed ?? 1;
  const results: SeedResult[] = [];
  if (opts.remoteEmbedder && !opts.promptEmbeddings) {
    opts.onProgress?.('embedding (remote)', 0, ds.prompts.length);
    const data = await opts.remoteEmbedder.embed(ds.prompts.map((p) => p.text));
    opts = { ...opts, promptEmbeddings: { spec: opts.remoteEmbedder.spec, remote: opts.remoteEmbedder, data } };
  }
  for (let s = 0; s < seeds; s++) {
    opts.onProgress?.('seeds', s, seeds);
    results.push(await runSeed(ds, first + s, opts));
  }
  opts.onProgress?.('seeds', seeds, seeds);
  const valSizes = Object.keys(results[0].byValSize).map(Number).sort((a, b) => a - b);
  const vMain = valSizes[valSizes.length - 1];
  const names = Object.keys(results[0].byValSize[vMain]);
  const lo = Math.min(...results.map((r) => r.costRange[0]));
  const hi = Math.max(...results.map((r) => r.costRange[1]));
  const grid = Array.from({ length: 60 }, (_, i) => (lo > 0 ? lo * (hi / lo) ** (i / 59) : lo + ((hi - lo) * i) / 59));
  const methods: Report['methods'] = {};
  for (const name of names) {
    const rs = results.map((r) => r.byValSize[vMain][name as MethodName]!);
    const qncs = rs.map((r) => r.qnc).filter((q): q is number => q !== null);
    methods[name] = {
      audc: summary(rs.map((r) => r.audc)),
      qnc: { ...summary(qncs), reached: qncs.length, of: rs.length },
      peak_accuracy: summary(rs.map((r) => r.peak)),
      aiq: summary(rs.map((r) => r.aiq)),
      curve: grid.map((x) => {
        const q = summary(rs.map((r) => curveAt(monotoneCurve(r.curve), x)));
        return { cost: x, quality: q.mean, sd: q.sd };
      }),
    };
  }
  const llmAcc = new Map<string, { cost: number; acc: number[] }>();
  for (const r of results)
    for (const l of r.llms) {
      const e = llmAcc.get(l.name) ?? { cost: l.cost, acc: [] };
      e.acc.push(l.accuracy);
      llmAcc.set(l.name, e);
    }
  const llms = [...llmAcc].map(([name, e]) => ({ name, cost: e.cost, accuracy: e.acc.reduce((a, x) => a + x, 0) / e.acc.length, seeds: e.acc.length }));
  const le: Report['label_efficiency'] = { val_prompts: valSizes, methods: {} };
  for (const name of Object.keys(results[0].byValSize[valSizes[0]]))
    le.methods[name] = valSizes.map((v) => ({ val_prompts: v, audc: summary(results.map((r) => r.byValSize[v][name as MethodName]!.audc)) }));
  return {
    settings: {
      data: ds.dir,
      prompts: ds.prompts.length,
      seeds,
      first_seed: first,
      unseen_fraction: opts.unseenFraction ?? 0.5,
      val_prompts: vMain,
      test_fraction: opts.testFraction ?? 0.3,
      prior_strength_grid: opts.priorGrid ?? [0, 1, 4, 16],
      dim: opts.dim ?? 256,
      kmeans_restarts: opts.kmeansRestarts ?? 5,
      split_sizes: results[0].prompts,
      llms_with_complete_outcomes: results[0].trainModels.length + results[0].unseenModels.length,
    },
    methods,
    llms,
    label_efficiency: le,
    ...(results.every((r) => r.operatingPoint)
      ? {
          operating_point: {
            cost_ratio: summary(results.map((r) => r.operatingPoint!.costRatio)),
            accuracy_diff: summary(results.map((r) => r.operatingPoint!.accuracyDiff)),
          },
        }
      : {}),
    seeds: results.map((r) => ({
      seed: r.seed,
      chosen: r.chosen,
      unseen: r.unseenModels,
      audc: Object.fromEntries(Object.entries(r.byValSize[vMain]).map(([k, v]) => [k, v!.audc])),
    })),
  };
}
