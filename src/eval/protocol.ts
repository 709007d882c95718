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
import { DEFAULT_STRENGTH_GRID, chooseClusters, chooseMapClusters, concatRows, gatherRows, selectionDraws, stackRows, type SelectionClusters, type StrengthChoice } from '../router/select.js';
import { difficultyOf as difficultyOfRows, fitDifficulty, fitPrior, residOfRows, type DifficultyModel, type PsiPrior } from '../router/evidence.js';
import { Router, type LearnedMap } from '../router/router.js';
import { psiMatrix } from '../router/evidence.js';
import { intervalOf } from '../decide/posterior.js';
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
  /** Shrinkage strengths searched on validation with K (default DEFAULT_STRENGTH_GRID: 4, 16). */
  priorGrid?: StrengthChoice[];
  /**
   * Progress: `stage` and the steps done of the total; within a seed, `detail` says what runs now (the seed, the
   * validation size, the selection of K or the method).
   */
  onProgress?: (stage: string, done: number, total: number, detail?: string) => void;
  /** Called by runSeed as each step of a seed begins (evaluate() turns these into onProgress calls). */
  onStep?: (what: string) => void;
  /**
   * Learning from traffic: each unseen LLM starts from `startLabels` (default 10) validation outcomes, the test
   * prompts are replayed as traffic, each decision's true outcome is fed back, and the cumulative regret against the
   * router that knows all validation labels is reported, per exploration rate (default [0, 0.1]).
   */
  online?: { startLabels?: number; explore?: number[] };
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
  operatingPoint?: { lambda: number; costRatio: number; accuracyDiff: number; cost: number; quality: number };
  /** Learning from traffic (EvalOptions.online): per exploration rate, the online router's regret along the stream. */
  online?: { lambda: number; startLabels: number; byRate: Record<number, OnlineRun> };
  /** Per validation size: how UniRoute (K-means)'s posteriors of the unseen LLMs' cells fare on the test prompts. */
  calibration: Record<number, CellCalibration>;
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
  const step = (what: string) => opts.onStep?.(what);
  step(given ? 'embeddings and clusters' : 'fitting the embedder on the train prompts');
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
  /** What selection sees of K clusters: as fit sees them, with the prior, the prompts' difficulty and a. */
  const selectionClusters = async (k: number): Promise<SelectionClusters> => {
    const c = await clusters(k);
    const pf = priorOf(k, c.trainCl);
    return { trainCl: c.trainCl, valCl: c.valCl, prior: pf.prior, trainResid: pf.trainResid, valResid: residOfRows(pf.prior, Eva, D, c.valCl), concentration: pf.concentration };
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
  // the train prompts the operating point is computed on, as fit keeps them
  const keptPrompts = gatherRows(Etr, permutation(nTr, seed + 29).subarray(0, Math.min(nTr, 1000)), D);
  const fittedRouter = async (k: number, C: Int32Array | Float32Array, trainCl: Int32Array, a: number, map?: LearnedMap) => {
    const prior: PsiPrior = priorOf(k, trainCl).prior;
    const clusterShare = new Float32Array(k);
    for (const c of trainCl) clusterShare[c] += 1 / trainCl.length;
    if (!cellCache.has(k)) cellCache.set(k, await fitEvidenceCells(Etr, nTr, D, k, trainCl, seed));
    const cells = cellCache.get(k);
    return new Router({ ...embedderParts, centroids: C as Float32Array, k, priorStrength: a, prior, clusterShare, cells, map, minEvidence: opts.minEvidence, keptPrompts });
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
    calibration: {},
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
    const at = (what: string) => step(`${v} validation prompts, ${what}`);
    at('choosing K and the prior strength');
    const kGrid = opts.kGrid?.filter((k) => k <= nTr) ?? clusterGrid(v, nTr);
    const sel = await chooseClusters({
      grid: kGrid,
      priorGrid: opts.priorGrid ?? DEFAULT_STRENGTH_GRID,
      clusters: selectionClusters,
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
    const as = (method: MethodName) => {
      audit = { method, v };
      if (methods.has(method)) at(method);
    };
    as('uniroute-kmeans');
    if (methods.has('uniroute-kmeans')) {
      const router = await unseenRouter(bestK, c.C, c.trainCl, c.valCl, v, bestPrior);
      res['uniroute-kmeans'] = result(await shippedCurve(router));
      out.calibration[v] = calibrationOf(router, c.testCl, Yu_te, Mu, nTest);
      if (v === vMax) {
        // the default operating point as the shipped router has it (src/decide/operating.ts): a function of the pool,
        // computed on kept train prompts from the posterior; against λ = 0 on the test prompts
        const op = router.operatingPoint()!;
        const [d, z] = [await testPoint(router, op.lambda), await testPoint(router, 0)];
        out.operatingPoint = { lambda: op.lambda, costRatio: d.cost / z.cost, accuracyDiff: d.quality - z.quality, cost: d.cost, quality: d.quality };
        if (opts.online) {
          // learning from traffic: the unseen LLMs start from their first `startLabels` validation outcomes, the test
          // prompts are replayed as traffic, and each decision's true outcome comes back as feedback
          const o = opts.online;
          const start = Math.min(v, o.startLabels ?? 10);
          const Ete_ = Ete;
          out.online = { lambda: op.lambda, startLabels: start, byRate: {} };
          const order = permutation(nTest, seed * 4099 + 11);
          for (const rate of o.explore ?? [0, 0.1]) {
            step(`learning from traffic, ${rate === 0 ? 'greedy' : `${Math.round(rate * 100)} % exploration`}`);
            const fresh = await unseenRouter(bestK, c.C, c.trainCl, c.valCl, start, bestPrior);
            out.online.byRate[rate] = await replayOnline(fresh, router, Ete_, D, order, Yu_te, cUnseen, op.lambda, rate, seed);
          }
        }
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
      // trained on the training LLMs' errors on the train prompts, Psi from the same (App. G.2); the first 10 % of
      // the train prompts held out (early stopping)
      const hold = Math.max(2, Math.round(nTr * 0.1));
      const cfgOf = (k: number): MlpConfig => ({ in: D, out: k, hidden: [128, 128], batchnorm: true, inputBn: true, head: 'mixture' });
      const Y = errorsOf(Ytr_tr);
      const mapOf = async (k: number) => {
        let params = mapCache.get(k);
        if (!params) {
          const c = await clusters(k);
          const { psi } = psiMatrix(c.trainCl, Ytr_tr, Mtr, k, prior, priorOf(k, c.trainCl).prior);
          const r = await callAsync(() =>
            native().trainMlp(Etr.subarray(hold * D), nTr - hold, Y.subarray(hold * Mtr), Mtr, cfgOf(k), {
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
          mapCache.set(k, params);
        }
        return params;
      };
      // K and the strength chosen for the map itself, as for K-means but routed by its soft memberships (the K-means
      // choice does not carry over): the training LLMs described from the same budget-sized draws of train prompts,
      // scored on prompts the map was not trained on (the held-out train prompts outside the draw, the validation
      // prompts), never on test prompts
      const nScored = hold + v;
      const scoredE = concatRows(Etr.subarray(0, hold * D), Eva.subarray(0, v * D));
      const scoredY = concatRows(Ytr_tr.subarray(0, hold * Mtr), YtrVa);
      const mapDraws = draws.map((d) => {
        const inFit = new Uint8Array(hold);
        for (const i of d.fit) if (i < hold) inFit[i] = 1;
        const rows: number[] = [];
        for (let i = 0; i < hold; i++) if (!inFit[i]) rows.push(i);
        for (let i = 0; i < v; i++) rows.push(hold + i);
        return { fit: d.fit, rows: Int32Array.from(rows) };
      });
      const msel = await chooseMapClusters({
        grid: kGrid,
        priorGrid: opts.priorGrid ?? DEFAULT_STRENGTH_GRID,
        candidate: async (k) => {
          const c = await clusters(k);
          const pf = priorOf(k, c.trainCl);
          const z = new Float32Array(nScored * k);
          native().mlpForward(await mapOf(k), cfgOf(k), scoredE, nScored, z);
          const dd = pf.prior.difficulty;
          return { trainCl: c.trainCl, prior: pf.prior, concentration: pf.concentration, z, difficulty: dd ? difficultyOfRows(scoredE, D, dd.w, dd.w0) : null };
        },
        trainY: Ytr_tr,
        draws: mapDraws,
        rowsY: scoredY,
        M: Mtr,
        costs: cTrain,
        lambdas: lambdasTrain,
      });
      if (v === vMax) {
        out.chosen.map_k = msel.k;
        out.chosen.map_prior_strength = msel.priorStrength;
      }
      const cm = await clusters(msel.k);
      const params = await mapOf(msel.k);
      res['uniroute-learned-map'] = result(await shippedCurve(await unseenRouter(msel.k, cm.C, cm.trainCl, cm.valCl, v, msel.priorStrength, { config: cfgOf(msel.k), params })));
    }
    as('knn');
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
    as('retrained-mlp');
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
    as('zero-router');
    if (methods.has('zero-router')) {
      // the hull of the unseen LLMs' (cost, quality) on validation; mixing between hull LLMs, evaluated on test
      const hull = upperHull(unseen.map((_, j) => ({ cost: cUnseen[j], quality: valAcc[j], lambda: j })));
      res['zero-router'] = result(hull.map((p) => ({ cost: cUnseen[p.lambda!], quality: testAcc[p.lambda!] })));
    }
    as('best-single');
    if (methods.has('best-single')) {
      // the LLM most accurate on validation; below its cost, random mixing with the cheapest unseen LLM
      const j = valAcc.indexOf(Math.max(...valAcc));
      const cheapest = cUnseen.indexOf(cMin);
      res['best-single'] = result([
        { cost: cUnseen[cheapest], quality: testAcc[cheapest] },
        { cost: cUnseen[j], quality: testAcc[j] },
      ]);
    }
    as('oracle');
    if (methods.has('oracle')) res.oracle = result(testCurve(errorsOf(Yu_te)));
    as('oracle-benchmark');
    as('oracle-difficulty');
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

export interface OnlineRun {
  /** Cumulative regret (reference's quality − λ·cost minus the online router's) after every `every` prompts. */
  regret: number[];
  every: number;
  /** Mean quality and cost of the online router's decisions, and of the reference's, over the stream. */
  quality: number;
  cost: number;
  refQuality: number;
  refCost: number;
  /** Decisions made by exploration, and prompts replayed. */
  explored: number;
  prompts: number;
}

/**
 * Replays prompts (rows of E in `order`) as traffic through `online` at λ with exploration `rate`: each decision's
 * true outcome (Y, rows x M in the pool's order) is fed back into the chosen LLM's statistics in the prompt's cluster
 * and cell, as production feedback is. `reference` decides the same prompts without learning.
 */
export async function replayOnline(
  online: Router,
  reference: Router,
  E: Float32Array,
  D: number,
  order: Int32Array,
  Y: Float32Array,
  costs: number[],
  lambda: number,
  rate: number,
  seed: number,
  every = 25,
): Promise<OnlineRun> {
  const M = costs.length;
  const ref = await reference.routeEmbeddings(E, { lambda, explain: false, ood: false });
  const names = online.snapshot().names;
  const refNames = ref.models;
  let regret = 0;
  let q = 0;
  let c = 0;
  let rq = 0;
  let rc = 0;
  let explored = 0;
  const curve: number[] = [];
  order.forEach((i, t) => {
    const b = online.routeEmbeddingsSync(E.subarray(i * D, (i + 1) * D), { lambda, explain: false, ood: false, explore: rate, exploreSeed: seed * 1_000_003 + t });
    const name = names[b.choice[0]];
    const j = names.indexOf(name);
    const y = Y[i * M + j];
    const jr = refNames.indexOf(refNames[ref.choice[i]]);
    const yr = Y[i * M + jr];
    q += y;
    c += costs[j];
    rq += yr;
    rc += costs[jr];
    if (b.explored.length && b.explored[0]) explored++;
    regret += yr - lambda * costs[jr] - (y - lambda * costs[j]);
    if ((t + 1) % every === 0 || t === order.length - 1) curve.push(regret);
    // the outcome comes back as feedback: one more outcome in the prompt's cluster and cell
    const e = online.exportModel(name);
    e.errorSums[b.cluster[0]] += 1 - y;
    e.counts[b.cluster[0]] += 1;
    if (e.cellCounts && online.cells) e.cellCounts[b.cellOf[0]] += 1;
    online.upsertEntry(e);
  });
  const n = Math.max(1, order.length);
  return { regret: curve, every, quality: q / n, cost: c / n, refQuality: rq / n, refCost: rc / n, explored, prompts: order.length };
}

/** Cells with fewer test prompts than this are not scored (their observed rate says too little). */
export const CALIBRATION_MIN_TEST = 10;

export interface CellCalibration {
  /** (LLM, cluster) cells with at least CALIBRATION_MIN_TEST test prompts. */
  cells: number;
  /** Cells whose observed test error rate lies in the 95 % posterior predictive interval (the posterior, plus the test prompts' own sampling noise). */
  covered: number;
  /** Cells whose observed test error rate lies in the 95 % interval of the error rate itself (what `explain` shows). */
  coveredRate: number;
  /** Per cell: the posterior mean Ψ, the observed test error rate, the test prompts, the outcomes that described it. */
  points: Array<{ predicted: number; observed: number; n: number; outcomes: number }>;
}

/**
 * Calibration of a router's posteriors: for every pooled LLM and cluster with enough test prompts, whether the
 * LLM's observed error rate on that cluster's test prompts falls in the 95 % interval. The predictive interval adds
 * the test sample's own noise to the posterior (the observed rate of n prompts is not the rate itself).
 */
export function calibrationOf(router: Router, testCl: Int32Array, Y: Float32Array, M: number, nTest: number): CellCalibration {
  const s = router.snapshot();
  const K = router.k;
  const out: CellCalibration = { cells: 0, covered: 0, coveredRate: 0, points: [] };
  for (let j = 0; j < M; j++)
    for (let k = 0; k < K; k++) {
      let e = 0;
      let n = 0;
      for (let i = 0; i < nTest; i++) {
        if (testCl[i] !== k) continue;
        const y = Y[i * M + j];
        if (Number.isNaN(y)) continue;
        e += 1 - y;
        n++;
      }
      if (n < CALIBRATION_MIN_TEST) continue;
      const t = j * K + k;
      const obs = e / n;
      const [lo, hi] = intervalOf(s.psi[t], s.sd[t], 0.95, n);
      const [lo2, hi2] = intervalOf(s.psi[t], s.sd[t], 0.95);
      out.cells++;
      if (obs >= lo - 1e-9 && obs <= hi + 1e-9) out.covered++;
      if (obs >= lo2 - 1e-9 && obs <= hi2 + 1e-9) out.coveredRate++;
      out.points.push({ predicted: s.psi[t], observed: obs, n, outcomes: s.counts[t] });
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
  /**
   * UniRoute (K-means)'s default operating point on the test prompts: its cost relative to λ = 0's and the
   * difference in accuracy, and (reports from this version on) its mean cost per query and accuracy.
   */
  operating_point?: { cost_ratio: Summary; accuracy_diff: Summary; cost?: Summary; quality?: Summary };
  /**
   * How honest the unseen LLMs' posteriors are, by validation size N (keys): the share of (LLM, cluster) cells with
   * >= 10 test prompts whose observed test error rate lies in the 95 % predictive interval (`coverage95`) and in the
   * interval of the rate itself (`coverage95_rate`), over every seed; and a reliability table (cells binned by
   * predicted error: mean predicted against mean observed).
   */
  /**
   * Learning from traffic (--online): per exploration rate, the cumulative regret along the replayed test prompts
   * against the router that knows every validation label (mean ± sd over seeds), and what each served.
   */
  online?: {
    start_labels: number;
    lambda: Summary;
    rates: Record<
      string,
      { final_regret: Summary; regret_per_prompt: Summary; curve: Array<{ prompts: number; regret: number; sd: number }>; quality: Summary; cost: Summary; explored: Summary }
    >;
    reference: { quality: Summary; cost: Summary };
  };
  calibration?: {
    coverage95: Record<string, number>;
    coverage95_rate: Record<string, number>;
    cells: Record<string, number>;
    min_test_prompts: number;
    reliability: Record<string, Array<{ predicted: number; observed: number; cells: number }>>;
  };
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
  // steps of a seed: the embedder, then per validation size the selection and each method, then the online replay
  const methodCount = new Set(opts.methods ?? [...ALL_METHODS, ...EXTRA_METHODS]).size;
  const online = opts.online && (opts.methods ?? ['uniroute-kmeans']).includes('uniroute-kmeans') ? (opts.online.explore ?? [0, 0.1]).length : 0;
  const perSeed = 1 + new Set(opts.valPrompts ?? [defaultValPrompts(ds.prompts.length)]).size * (1 + methodCount) + online;
  const total = seeds * perSeed;
  let done = 0;
  for (let s = 0; s < seeds; s++) {
    const seedNo = s + 1;
    // each step reports the steps done before it began, and what runs now
    const onStep = (what: string) => opts.onProgress?.('evaluating', Math.min(done++, total), total, `seed ${seedNo}/${seeds}: ${what}`);
    results.push(await runSeed(ds, first + s, { ...opts, onStep }));
    done = seedNo * perSeed;
  }
  opts.onProgress?.('evaluating', total, total);
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
      prior_strength_grid: opts.priorGrid ?? DEFAULT_STRENGTH_GRID,
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
            cost: summary(results.map((r) => r.operatingPoint!.cost)),
            quality: summary(results.map((r) => r.operatingPoint!.quality)),
          },
        }
      : {}),
    calibration: calibrationSummary(results, valSizes),
    ...(results.every((r) => r.online) ? { online: onlineSummary(results) } : {}),
    seeds: results.map((r) => ({
      seed: r.seed,
      chosen: r.chosen,
      unseen: r.unseenModels,
      audc: Object.fromEntries(Object.entries(r.byValSize[vMain]).map(([k, v]) => [k, v!.audc])),
    })),
  };
}

function calibrationSummary(results: SeedResult[], valSizes: number[]): Report['calibration'] {
  const sizes = valSizes.filter((v) => results.every((r) => r.calibration[v]));
  if (sizes.length === 0) return undefined;
  const out: NonNullable<Report['calibration']> = { coverage95: {}, coverage95_rate: {}, cells: {}, min_test_prompts: CALIBRATION_MIN_TEST, reliability: {} };
  for (const v of sizes) {
    const cs = results.map((r) => r.calibration[v]);
    const cells = cs.reduce((a, c) => a + c.cells, 0);
    out.cells[v] = cells;
    out.coverage95[v] = cells ? cs.reduce((a, c) => a + c.covered, 0) / cells : NaN;
    out.coverage95_rate[v] = cells ? cs.reduce((a, c) => a + c.coveredRate, 0) / cells : NaN;
    const bins = Array.from({ length: 10 }, () => ({ p: 0, o: 0, n: 0 }));
    for (const c of cs)
      for (const pt of c.points) {
        const b = bins[Math.min(9, Math.floor(pt.predicted * 10))];
        b.p += pt.predicted;
        b.o += pt.observed;
        b.n++;
      }
    out.reliability[v] = bins.filter((b) => b.n > 0).map((b) => ({ predicted: b.p / b.n, observed: b.o / b.n, cells: b.n }));
  }
  return out;
}

function onlineSummary(results: SeedResult[]): Report['online'] {
  const first = results[0].online!;
  const rates = Object.keys(first.byRate);
  const out: NonNullable<Report['online']> = {
    start_labels: first.startLabels,
    lambda: summary(results.map((r) => r.online!.lambda)),
    rates: {},
    reference: {
      quality: summary(results.map((r) => r.online!.byRate[rates[0] as unknown as number].refQuality)),
      cost: summary(results.map((r) => r.online!.byRate[rates[0] as unknown as number].refCost)),
    },
  };
  for (const k of rates) {
    const runs = results.map((r) => r.online!.byRate[k as unknown as number]);
    const len = Math.min(...runs.map((x) => x.regret.length));
    out.rates[k] = {
      final_regret: summary(runs.map((x) => x.regret[x.regret.length - 1])),
      regret_per_prompt: summary(runs.map((x) => x.regret[x.regret.length - 1] / Math.max(1, x.prompts))),
      curve: Array.from({ length: len }, (_, t) => {
        const s = summary(runs.map((x) => x.regret[t]));
        // every `every` prompts, and the end of the stream (which a last, shorter stretch reaches)
        return { prompts: Math.min((t + 1) * runs[0].every, runs[0].prompts), regret: s.mean, sd: s.sd };
      }),
      quality: summary(runs.map((x) => x.quality)),
      cost: summary(runs.map((x) => x.cost)),
      explored: summary(runs.map((x) => x.explored)),
    };
  }
  return out;
}
