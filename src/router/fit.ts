/** Fitting a router from a dataset: embedder, clusters (K chosen on validation prompts), training LLMs' profiles. */
import { UnirouteError, didYouMean } from '../errors.js';
import { callAsync, native, type MlpConfig } from '../engine/native.js';
import { HashedEmbedder, checkEmbeddings, type EmbedderSpec, type HashedFitOptions } from '../embed/embedder.js';
import { costPerQuery, permutation, type CostOptions, type Dataset } from '../data/dataset.js';
import { lambdaGrid } from '../eval/metrics.js';
import { DEFAULT_STRENGTH_GRID, chooseClusters, chooseMapClusters, concatRows, gatherRows, selectionDraws } from './select.js';
import { difficultyOf, fitDifficulty, fitPrior, psiMatrix, residOfRows, type DifficultyModel, type PsiPrior } from './evidence.js';
import { DISTANCE_LEVELS, Router, type EvidenceCells, type LearnedMap } from './router.js';
import type { OperatingPoint } from '../decide/operating.js';
import type { RemoteEmbedder } from '../embed/remote.js';

export type Progress = (stage: string, done: number, total: number) => void;

export interface FitOptions extends CostOptions {
  /** LLMs left out of the training LLMs (applied after trainModels). */
  excludeModels?: string[];
  /** Training LLMs (default: every LLM in the dataset). */
  trainModels?: string[];
  /** Number of clusters, or 'auto' to choose K on the validation prompts (default). */
  clusters?: number | 'auto';
  /** With 'auto': the smallest K searched (e.g. one cluster per benchmark of merged data sets). */
  minClusters?: number;
  seed?: number;
  /** Share of prompts held out as validation prompts (default 0.25), or an absolute count. */
  valFraction?: number;
  valPrompts?: number;
  embedder?: HashedFitOptions;
  /** Shrinkage of sparse clusters toward an LLM's overall error (0 = the paper's plain mean); default: chosen with K. */
  priorStrength?: number;
  /** Cap on the prompts used to fit the embedder (a seeded sample beyond it). */
  maxEmbedderTexts?: number;
  kmeansIterations?: number;
  /** K-means restarts; the lowest objective wins (default 5). */
  kmeansRestarts?: number;
  /** The cluster map: nearest centroid (the paper's K-means) or a learned map (§5.2). */
  method?: 'kmeans' | 'learned-map';
  /** Learned-map training epochs (the paper: 5) with early stopping on 10 % of the train prompts. */
  mapEpochs?: number;
  /** The prompt-difficulty feature (default true): one logit slope on a ridge model of the embedding. */
  difficulty?: boolean;
  /** A fixed λ used when none is given; default: the pool's operating point (src/decide/operating.ts), which follows the pool. */
  defaultLambda?: number;
  /** Train prompts kept in the model for the operating point (default 1,000). */
  keptPrompts?: number;
  /** Outcomes in an evidence cell below which an LLM has no evidence there (default 1; 0 disables). */
  minEvidence?: number;
  /** Evidence cells: a finer k-means partition that tells where an LLM has outcomes (default min(32, train/20); 0 = the clusters). */
  evidenceCells?: number;
  /** A remote OpenAI-compatible embedding endpoint instead of the built-in embedder (recorded in the model). */
  remoteEmbedder?: RemoteEmbedder;
  /** Caller's embeddings, one row per dataset prompt (in dataset order), instead of the built-in embedder. */
  embeddings?: { dim: number; data: Float32Array; name?: string };
  onProgress?: Progress;
}

export interface FitReport {
  trainPrompts: number;
  valPrompts: number;
  clusters: number;
  kSearch: Array<{ k: number; priorStrength: number; validationArea: number }>;
  /** With a learned map and K chosen: the map's own search (src/router/select.ts, chooseMapClusters). */
  mapSearch?: Array<{ k: number; priorStrength: number; validationArea: number }>;
  priorStrength: number;
  /** The difficulty model's cross-validated R² and its logit slope (absent without it). */
  difficulty?: { r2: number; ridge: number; slope: number };
  /** The pool's operating point at fit time, on the kept train prompts (absent when a fixed λ is given). */
  operatingPoint?: OperatingPoint;
  /** What it does there by the training LLMs' own outcomes: cost relative to λ = 0's, accuracy difference. */
  operatingCheck?: { costRatio: number; accuracyDiff: number; prompts: number };
  models: Array<{ name: string; costPerQuery: number; validationOutcomes: number; coverage: number }>;
  /** Training LLMs left out of the pool, and why. */
  skipped?: Array<{ name: string; reason: string }>;
  embedder: { keptBuckets?: number; rank?: number; dim?: number };
  seconds: number;
}

/** The largest dimension of the built-in embedder (the engine's limit). */
export const MAX_HASHED_DIM = 4096;

/**
 * The built-in embedder's dimension, refused before any work when it cannot be fitted: its LSA finds at most one
 * direction per prompt (more dimensions would be zeros, and the difficulty model's ridge, O(D^3) per solve, would
 * run for hours on them), and the engine takes at most 4096. The default, 256, is always allowed.
 */
export function checkHashedDim(dim: unknown, prompts: number): void {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > MAX_HASHED_DIM)
    throw new UnirouteError('INVALID_ARGUMENT', `--dim (the embedding dimension) must be a whole number in [1, ${MAX_HASHED_DIM}] (got ${String(dim)})`);
  // the default (256) always fits: on fewer prompts its extra dimensions are zeros and cost little
  if (dim > Math.max(prompts, 256))
    throw new UnirouteError(
      'INVALID_ARGUMENT',
      `--dim ${dim} is more than the ${prompts} train prompts can give: the embedder's LSA finds at most one direction per prompt, so use --dim ${Math.max(prompts, 256)} or fewer (or fit on more prompts)`,
    );
}

/** The paper's grid for K-means (App. G.1): 3 … N_val/50, here on a roughly geometric ladder. */
export function clusterGrid(nVal: number, nTrain: number): number[] {
  const hi = Math.max(3, Math.min(Math.floor(nVal / 50), nTrain));
  const ladder = [3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256];
  const g = ladder.filter((k) => k <= hi);
  if (g[g.length - 1] !== hi && hi <= 256) g.push(hi);
  return g;
}

/**
 * The evidence cells: each cluster split by k-means into cells (about `count` in all, min(32, n/20) by default, in
 * proportion to the clusters' sizes), so that an LLM graded on one kind of prompt is not taken to have evidence on
 * another kind that shares its cluster. Cells nest in clusters, so a prompt's cell is searched among its cluster's
 * few cells only. Undefined when it would be no finer than the K clusters.
 */
export async function fitEvidenceCells(
  E: Float32Array,
  n: number,
  D: number,
  K: number,
  clusters: Int32Array,
  seed: number,
  count?: number,
): Promise<EvidenceCells | undefined> {
  const want = count ?? Math.min(32, Math.floor(n / 20));
  if (!(want > K) || want > n) return undefined;
  const rows: number[][] = Array.from({ length: K }, () => []);
  clusters.forEach((c, i) => rows[c].push(i));
  const parts: Float32Array[] = [];
  const shares: number[] = [];
  const start = new Int32Array(K + 1);
  for (let c = 0; c < K; c++) {
    const nc = rows[c].length;
    const kc = Math.max(1, Math.min(nc, Math.round((want * nc) / n)));
    const X = new Float32Array(nc * D);
    rows[c].forEach((r, i) => X.set(E.subarray(r * D, (r + 1) * D), i * D));
    if (nc === 0) {
      parts.push(new Float32Array(D)); // an empty cluster keeps one (unused) cell
      shares.push(0);
    } else if (kc === 1) {
      const m = new Float32Array(D);
      for (let i = 0; i < nc; i++) for (let d = 0; d < D; d++) m[d] += X[i * D + d] / nc;
      parts.push(m);
      shares.push(nc / n);
    } else {
      const km = await callAsync(() => native().kmeans(X, nc, D, kc, { seed: seed + 101 + c, nInit: 2 }));
      parts.push(km.centroids);
      const cnt = new Float64Array(kc);
      for (const a of km.assignments) cnt[a]++;
      for (let t = 0; t < kc; t++) shares.push(cnt[t] / n);
    }
    start[c + 1] = start[c] + parts[c].length / D;
  }
  const centroids = new Float32Array(start[K] * D);
  parts.forEach((p, c) => centroids.set(p, start[c] * D));
  return { centroids, count: start[K], share: Float32Array.from(shares), start };
}

export async function fitRouter(ds: Dataset, opts: FitOptions = {}): Promise<{ router: Router; report: FitReport }> {
  const t0 = Date.now();
  const progress = opts.onProgress ?? (() => undefined);
  const seed = opts.seed ?? 1;
  for (const m of opts.excludeModels ?? [])
    if (!ds.outcomes.has(m)) throw new UnirouteError('UNKNOWN_MODEL', `excluded LLM "${m}" has no outcome in ${ds.dir}${didYouMean(m, ds.models)}`);
  const models = (opts.trainModels ?? ds.models).filter((m) => !(opts.excludeModels ?? []).includes(m));
  if (models.length === 0) throw new UnirouteError('INVALID_ARGUMENT', 'no training LLM');
  for (const m of models)
    if (!ds.outcomes.has(m))
      throw new UnirouteError('UNKNOWN_MODEL', `training LLM "${m}" has no outcome in ${ds.dir}${didYouMean(m, ds.models) || ` (${ds.models.length} LLMs have outcomes there)`}`);
  const costs = models.map((m) => costPerQuery(ds, m, opts));

  // Prompt split: validation (Psi of the pool) and train (embedder, clusters).
  const n = ds.prompts.length;
  const nVal = opts.valPrompts ?? Math.round(n * (opts.valFraction ?? 0.25));
  if (!(nVal >= 1 && nVal < n)) throw new UnirouteError('INVALID_ARGUMENT', `validation prompts must be between 1 and ${n - 1} (got ${nVal})`);
  const perm = permutation(n, seed);
  const valIdx = perm.subarray(0, nVal);
  const trainIdx = perm.subarray(nVal);
  const texts = (idx: Int32Array) => Array.from(idx, (i) => ds.prompts[i].text);
  const trainTexts = texts(trainIdx);
  const valTexts = texts(valIdx);

  let embedder: HashedEmbedder | undefined;
  let spec: EmbedderSpec;
  let trainEmb: Float32Array;
  let valEmb: Float32Array;
  let remote: RemoteEmbedder | undefined;
  let given = opts.embeddings;
  if (opts.remoteEmbedder) {
    if (given) throw new UnirouteError('INVALID_ARGUMENT', 'give either embeddings or a remote embedder, not both');
    remote = opts.remoteEmbedder;
    progress('embedding (remote)', 0, n);
    const data = await remote.embed(ds.prompts.map((p) => p.text));
    progress('embedding (remote)', n, n);
    given = { dim: remote.dim, data };
  }
  if (given) {
    const { dim, data, name } = given;
    if (!Number.isInteger(dim) || dim < 1) throw new UnirouteError('INVALID_ARGUMENT', `embedding dimension must be a positive integer (got ${dim})`);
    checkEmbeddings(data, dim);
    if (data.length !== n * dim)
      throw new UnirouteError('DIMENSION_MISMATCH', `${data.length / dim} embedding rows for ${n} prompts (dimension ${dim})`);
    const rows = (idx: Int32Array) => {
      const out = new Float32Array(idx.length * dim);
      idx.forEach((p, i) => out.set(data.subarray(p * dim, (p + 1) * dim), i * dim));
      return out;
    };
    spec = remote ? remote.spec : { kind: 'precomputed', dim, ...(name ? { name } : {}) };
    trainEmb = rows(trainIdx);
    valEmb = rows(valIdx);
  } else {
    progress('embedder', 0, 1);
    const cap = opts.maxEmbedderTexts ?? 100_000;
    const fitTexts = trainTexts.length > cap ? Array.from(permutation(trainTexts.length, seed + 1).subarray(0, cap), (i) => trainTexts[i]) : trainTexts;
    checkHashedDim(opts.embedder?.dim ?? 256, fitTexts.length);
    embedder = await HashedEmbedder.fit(fitTexts, { seed, ...opts.embedder });
    progress('embedder', 1, 1);
    spec = embedder.spec;
    trainEmb = await embedder.embed(trainTexts);
    valEmb = await embedder.embed(valTexts);
  }
  const D = spec.dim;

  const outcomeMatrix = (idx: Int32Array) => {
    const out = new Float32Array(idx.length * models.length);
    models.forEach((m, j) => {
      const o = ds.outcomes.get(m)!;
      for (let i = 0; i < idx.length; i++) out[i * models.length + j] = o[idx[i]];
    });
    return out;
  };
  const trainY = outcomeMatrix(trainIdx);
  const valY = outcomeMatrix(valIdx);
  const M = models.length;
  const column = (Y: Float32Array, j: number) => {
    const c = new Float32Array(Y.length / M);
    for (let i = 0; i < c.length; i++) c[i] = Y[i * M + j];
    return c;
  };

  const kmeansOpts = { seed, maxIter: opts.kmeansIterations ?? 300, nInit: opts.kmeansRestarts ?? 5 };
  const cluster = (k: number) => callAsync(() => native().kmeans(trainEmb, trainTexts.length, D, k, kmeansOpts));
  const assign = (emb: Float32Array, C: Float32Array, k: number) => {
    const idx = new Int32Array(emb.length / D);
    native().assignSync(emb, idx.length, D, C, k, idx, null);
    return idx;
  };

  // the prompt-difficulty model (independent of K), fitted on the train prompts and the training LLMs' outcomes
  let dm: DifficultyModel | undefined;
  if (opts.difficulty !== false) {
    progress('difficulty', 0, 1);
    // O(D^3) per ridge solve on this thread: seconds at D = 256, minutes at 1024 and above; the bar shows each solve
    const stage = D >= 512 ? `difficulty (ridge on ${D} dimensions)` : 'difficulty';
    dm = fitDifficulty(trainEmb, D, trainY, M, seed, (done, total) => progress(stage, done, total));
    progress('difficulty', 1, 1);
  }
  const priorFor = (clusters: Int32Array, k: number) => fitPrior(clusters, trainY, M, k, dm);

  // K and the shrinkage strength chosen without test data, budget-matched to the validation outcomes that each
  // LLM's error vector will come from (src/router/select.ts)
  const kSearch: FitReport['kSearch'] = [];
  let mapSearch: FitReport['mapSearch'];
  let K: number;
  let priorStrength = opts.priorStrength ?? 1;
  const autoK = opts.clusters === undefined || opts.clusters === 'auto';
  const grid = clusterGrid(nVal, trainTexts.length).filter((k) => k >= (opts.minClusters ?? 1));
  if (grid.length === 0) grid.push(Math.min(opts.minClusters ?? 1, trainTexts.length));
  const draws = selectionDraws(trainTexts.length, nVal, seed);
  const strengthGrid = opts.priorStrength === undefined ? DEFAULT_STRENGTH_GRID : [opts.priorStrength];
  const kmCache = new Map<number, import('./select.js').SelectionClusters>();
  if (autoK) {
    let done = 0;
    const sel = await chooseClusters({
      grid,
      priorGrid: strengthGrid,
      clusters: async (k) => {
        progress('choose K', done++, grid.length);
        let c = kmCache.get(k);
        if (!c) {
          const km = await cluster(k);
          const valCl = assign(valEmb, km.centroids, k);
          const pf = priorFor(km.assignments, k);
          c = { trainCl: km.assignments, valCl, prior: pf.prior, trainResid: pf.trainResid, valResid: residOfRows(pf.prior, valEmb, D, valCl), concentration: pf.concentration };
          kmCache.set(k, c);
        }
        return c;
      },
      trainY,
      valY,
      nTr: trainTexts.length,
      v: nVal,
      M,
      costs,
      lambdas: lambdaGrid(costs),
      draws,
    });
    progress('choose K', grid.length, grid.length);
    K = sel.k;
    priorStrength = sel.priorStrength;
    kSearch.push(...sel.search);
  } else {
    K = opts.clusters as number;
    if (!Number.isInteger(K) || K < 1 || K > trainTexts.length)
      throw new UnirouteError('INVALID_ARGUMENT', `--clusters must be a whole number in [1, ${trainTexts.length}] (got ${K})`);
  }

  let chosenMap: LearnedMap | undefined;
  if (opts.method === 'learned-map' && autoK && grid.length * strengthGrid.length > 1) {
    // the map's own K and strength (K per method, paper App. G): K-means' choice does not carry over to a map that
    // spreads a prompt over clusters. One map per K of the grid, each scored on the prompts it was not trained on
    // (its held-out train prompts outside the draw, the validation prompts) among the training LLMs
    const maps = new Map<number, { map: LearnedMap; held: Int32Array }>();
    const mapFor = async (k: number) => {
      let t = maps.get(k);
      if (!t) {
        const c = kmCache.get(k)!;
        maps.set(k, (t = await trainLearnedMapHeld(trainEmb, trainTexts.length, D, k, c.trainCl, trainY, M, priorStrength, opts.mapEpochs ?? 5, seed, c.prior)));
      }
      return t;
    };
    let done = 0;
    const held = (await mapFor(grid[0])).held; // the same rows for every K (one permutation)
    const scoredE = concatRows(gatherRows(trainEmb, held, D), valEmb.subarray(0, nVal * D));
    const scoredY = concatRows(gatherRows(trainY, held, M), valY.subarray(0, nVal * M));
    const msel = await chooseMapClusters({
      grid,
      priorGrid: strengthGrid,
      candidate: async (k) => {
        progress('learned map', done++, grid.length);
        const c = kmCache.get(k)!;
        const { map: mk } = await mapFor(k);
        const n = held.length + nVal;
        const z = new Float32Array(n * k);
        native().mlpForward(mk.params, mk.config, scoredE, n, z);
        const dd = c.prior?.difficulty;
        return { trainCl: c.trainCl, prior: c.prior, concentration: c.concentration, z, difficulty: dd ? difficultyOf(scoredE, D, dd.w, dd.w0) : null };
      },
      trainY,
      draws: draws.map((d) => {
        const inFit = new Set(d.fit);
        const rows: number[] = [];
        held.forEach((p, i) => inFit.has(p) || rows.push(i));
        for (let i = 0; i < nVal; i++) rows.push(held.length + i);
        return { fit: d.fit, rows: Int32Array.from(rows) };
      }),
      rowsY: scoredY,
      M,
      costs,
      lambdas: lambdaGrid(costs),
    });
    progress('learned map', grid.length, grid.length);
    mapSearch = msel.search;
    K = msel.k;
    priorStrength = msel.priorStrength;
    chosenMap = (await mapFor(K)).map;
  }

  progress('clusters', 0, 1);
  const km = await cluster(K);
  progress('clusters', 1, 1);
  const { prior, covers } = priorFor(km.assignments, K);
  if (opts.evidenceCells !== undefined && !(Number.isInteger(opts.evidenceCells) && opts.evidenceCells >= 0))
    throw new UnirouteError('INVALID_ARGUMENT', `evidenceCells must be a whole number >= 0 (got ${opts.evidenceCells})`);
  const cells = opts.evidenceCells === 0 ? undefined : await fitEvidenceCells(trainEmb, trainTexts.length, D, K, km.assignments, seed, opts.evidenceCells);
  const clusterShare = new Float32Array(K);
  for (const c of km.assignments) clusterShare[c] += 1 / km.assignments.length;
  let map: LearnedMap | undefined = chosenMap;
  if (opts.method === 'learned-map' && !map) {
    progress('learned map', 0, 1);
    map = (await trainLearnedMapHeld(trainEmb, trainTexts.length, D, K, km.assignments, trainY, M, priorStrength, opts.mapEpochs ?? 5, seed, prior)).map;
    progress('learned map', 1, 1);
  }
  const router = new Router({
    embedder: spec,
    hashed: embedder,
    remote,
    map,
    centroids: km.centroids,
    k: K,
    priorStrength,
    prior,
    clusterShare,
    cells,
    minEvidence: opts.minEvidence,
    info: {
      fittedAt: new Date().toISOString(),
      seed,
      trainPrompts: trainTexts.length,
      valPrompts: nVal,
      kmeans: { inertia: km.inertia, iterations: km.iterations },
      kSearch,
    },
  });
  const valClusters = assign(valEmb, km.centroids, K);
  const valCells = cells ? assign(valEmb, cells.centroids, cells.count) : undefined;
  const trainCells = cells ? assign(trainEmb, cells.centroids, cells.count) : undefined;
  const reportModels: FitReport['models'] = [];
  const skipped: NonNullable<FitReport['skipped']> = [];
  models.forEach((m, j) => {
    progress('profiles', j, M);
    const y = column(valY, j);
    // with ability groups (merged data sets graded on different LLMs), a training LLM's outcomes count only in the
    // groups whose prompts it was graded on, not on a few stray prompts of another set
    if (covers && prior.groups) {
      const G = prior.groups.abilities.length;
      for (let i = 0; i < y.length; i++) if (!covers[j * G + prior.groups.of[valClusters[i]]]) y[i] = NaN;
    }
    const seen = y.reduce((a, v) => a + (Number.isNaN(v) ? 0 : 1), 0);
    let info: import('./router.js').ModelInfo;
    if (covers && prior.groups && !covers.subarray(j * prior.groups.abilities.length, (j + 1) * prior.groups.abilities.length).some((v) => v === 1)) {
      skipped.push({ name: m, reason: 'graded only on prompts of a data set that no cluster belongs to (its grades are on a scale none of the clusters is judged on); add it with add-model on outcomes of your traffic' });
      return;
    }
    if (seen === 0) {
      // an LLM with no validation outcome falls back to its training outcomes rather than being dropped
      const tc = km.assignments;
      const ty = column(trainY, j);
      if (covers && prior.groups) {
        const G = prior.groups.abilities.length;
        for (let i = 0; i < ty.length; i++) if (!covers[j * G + prior.groups.of[tc[i]]]) ty[i] = NaN;
      }
      info = router.addModelFromClusters(m, costs[j], tc, ty, trainCells);
    } else {
      info = router.addModelFromClusters(m, costs[j], valClusters, y, valCells);
    }
    reportModels.push({ name: m, costPerQuery: costs[j], validationOutcomes: seen, coverage: info.coverage });
  });
  progress('profiles', M, M);
  // how far training prompts lie from their nearest centroid: beyond the 99th percentile a prompt is out of distribution
  {
    const nTr = trainTexts.length;
    const rows = permutation(nTr, seed + 31).subarray(0, Math.min(nTr, 20_000));
    const E = new Float32Array(rows.length * D);
    rows.forEach((r, i) => E.set(trainEmb.subarray(r * D, (r + 1) * D), i * D));
    const b = await router.routeEmbeddings(E, { lambda: 0, explain: false, ood: false });
    const d = Float64Array.from(b.distance).sort();
    const at = (q: number) => {
      const x = q * (d.length - 1);
      const lo = Math.floor(x);
      const hi = Math.min(d.length - 1, lo + 1);
      return d[lo] + (x - lo) * (d[hi] - d[lo]);
    };
    if (d.length >= 2) router.setDistanceQuantiles({ q: DISTANCE_LEVELS, d: DISTANCE_LEVELS.map(at) });
  }
  // the prompts the operating point is computed on after every change of the pool: a seeded sample of the train
  // prompts (they did not describe the pool: the validation prompts did)
  const nTr = trainTexts.length;
  const keep = permutation(nTr, seed + 29).subarray(0, Math.min(nTr, opts.keptPrompts ?? 1000));
  router.setKeptPrompts(gatherRows(trainEmb, keep, D));
  let operatingPoint: OperatingPoint | undefined;
  let operatingCheck: FitReport['operatingCheck'];
  if (opts.defaultLambda !== undefined) {
    if (!(Number.isFinite(opts.defaultLambda) && opts.defaultLambda >= 0))
      throw new UnirouteError('INVALID_ARGUMENT', `the default lambda must be a finite number >= 0 (got ${opts.defaultLambda})`);
    router.defaultLambda = opts.defaultLambda;
  } else {
    progress('operating point', 0, 1);
    operatingPoint = router.operatingPoint();
    // what the point does on the same prompts by the training LLMs' own outcomes there (a check, not the rule)
    if (operatingPoint) {
      const E = gatherRows(trainEmb, keep, D);
      const Y = gatherRows(trainY, keep, M);
      const at = async (lambda: number) => {
        const b = await router.routeEmbeddings(E, { lambda, explain: false, ood: false });
        let c = 0;
        let a = 0;
        let k = 0;
        b.choice.forEach((j, i) => {
          const y = Y[i * M + j];
          if (Number.isNaN(y)) return;
          c += costs[j];
          a += y;
          k++;
        });
        return { cost: c / Math.max(1, k), accuracy: a / Math.max(1, k), prompts: k };
      };
      const [d, z] = [await at(operatingPoint.lambda), await at(0)];
      operatingCheck = { costRatio: z.cost > 0 ? d.cost / z.cost : 1, accuracyDiff: d.accuracy - z.accuracy, prompts: d.prompts };
    }
    progress('operating point', 1, 1);
  }
  return {
    router,
    report: {
      operatingPoint,
      operatingCheck,
      trainPrompts: trainTexts.length,
      valPrompts: nVal,
      clusters: K,
      priorStrength,
      kSearch,
      ...(mapSearch ? { mapSearch } : {}),
      ...(prior.difficulty && dm ? { difficulty: { r2: dm.r2, ridge: dm.ridge, slope: prior.difficulty.slope } } : {}),
      models: reportModels,
      ...(skipped.length ? { skipped } : {}),
      embedder: spec.kind === 'hashed-lsa' ? { keptBuckets: spec.keptBuckets, rank: spec.rank } : { dim: spec.dim },
      seconds: (Date.now() - t0) / 1000,
    },
  };
}

/**
 * Trains the learned cluster map on the training LLMs' 0/1 errors on the train prompts, with their Psi from the
 * same prompts (App. G.2); early stopping on a held-out 10 % of the train prompts, returned as `held` (the map is
 * not fitted to them).
 */
export async function trainLearnedMapHeld(
  E: Float32Array,
  n: number,
  D: number,
  K: number,
  clusters: Int32Array,
  correct: Float32Array,
  M: number,
  priorStrength: number,
  epochs: number,
  seed: number,
  prior?: PsiPrior,
): Promise<{ map: LearnedMap; held: Int32Array }> {
  const { psi } = psiMatrix(clusters, correct, M, K, priorStrength, prior);
  const errors = correct.map((v) => 1 - v);
  const order = permutation(n, seed + 17);
  const hold = Math.max(2, Math.round(n * 0.1));
  const rows = (idx: Int32Array, A: Float32Array, w: number) => gatherRows(A, idx, w);
  const trainRows = order.subarray(hold);
  const heldRows = order.subarray(0, hold);
  const config: MlpConfig = { in: D, out: K, hidden: [128, 128], batchnorm: true, inputBn: true, head: 'mixture' };
  const r = await callAsync(() =>
    native().trainMlp(rows(trainRows, E, D), trainRows.length, rows(trainRows, errors, M), M, config, {
      psi,
      valX: rows(heldRows, E, D),
      valY: rows(heldRows, errors, M),
      lr: 0.005,
      batch: 64,
      epochs,
      patience: 2,
      seed,
    }),
  );
  return { map: { config, params: r.params }, held: heldRows };
}
