/**
 * What the fitted model knows beyond clusters, and how an LLM's Ψ is built from evidence.
 *
 * - **Cluster prior**, a two-factor logistic model fitted once on the training LLMs:
 *   logit P(error of LLM m on a prompt of cluster k) = β_k + α_m. β_k is how hard cluster k is for everyone. An
 *   LLM's ability α_m comes from its own outcomes wherever they fall, so an LLM graded on one benchmark only is
 *   predicted elsewhere from how hard those clusters are for the others, shifted by its skill where its outcomes
 *   overlap theirs, never by a copy of its overall error. σ(β_k + α_m) is the shrinkage target of Ψ_m[k].
 * - **Ability prior and concentration**, also from the training LLMs (empirical Bayes): α ~ N(μ, τ²) is their
 *   abilities' spread, and a (how far a cluster's error strays from σ(β_k + α)) maximises their cells'
 *   beta-binomial likelihood. The posterior itself is src/decide/posterior.ts.
 * - **Prompt difficulty** d(x) = w·φ(x) + w₀, a ridge model on the embedding fitted to the training LLMs'
 *   residual errors (error − σ(β_k + α_m)), centred per cluster (r = d − μ_k). The predicted error is
 *   γ_m(x) = σ(logit Ψ_m[k] + b·r) with one slope b for every LLM, fitted on the training LLMs: a hard prompt
 *   raises a weak LLM's error more than a strong one's, so easy prompts of a cluster go to cheaper LLMs.
 *   Measured on the protocol (5 seeds): per-LLM linear slopes from a few hundred outcomes were noisier and lost
 *   0.1–0.4 points; the common logit slope gained (see the README's evaluation), and it keeps the pool's
 *   statistics to error sums and counts, so outcomes and feedback stay additive.
 */
import { UnirouteError } from '../errors.js';
import { permutation } from '../data/dataset.js';
import { lgamma } from '../decide/special.js';
import { logit, sigmoid, type AbilityPrior, type PsiPrior } from '../decide/posterior.js';

export {
  sigmoid,
  logit,
  statsOf,
  totalOutcomes,
  overallErrorOf,
  psiRow,
  psiMatrix,
  gammaOf,
  type OutcomeStats,
  type PsiPrior,
  type PsiRow,
  type AbilityPrior,
} from '../decide/posterior.js';

// ---- fitting the prior ------------------------------------------------------------------------------------------

/**
 * The two-factor model logit P(error) = β_k + α_m on training outcomes: clusters (n), Y (n x M correctness, NaN =
 * none). Alternating Newton steps on the per-(m, k) sums, with weak priors (β ~ N(β̄, 3²), α ~ N(0, 3²)).
 */
/**
 * Error sums E and outcome counts N per (LLM, cluster), M x K row-major, of a correctness matrix (rows x M, NaN =
 * none), with the totals over every cell.
 */
function errorTable(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number) {
  const E = new Float64Array(M * K);
  const N = new Float64Array(M * K);
  let te = 0;
  let tn = 0;
  for (let i = 0; i < clusters.length; i++) {
    const c = clusters[i];
    for (let j = 0; j < M; j++) {
      const y = Y[i * M + j];
      if (Number.isNaN(y)) continue;
      E[j * K + c] += 1 - y;
      N[j * K + c] += 1;
      te += 1 - y;
      tn += 1;
    }
  }
  return { E, N, te, tn };
}

export function fitClusterLogits(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number): { beta: Float32Array; alpha: Float64Array } {
  const { E, N, te, tn } = errorTable(clusters, Y, M, K);
  const pbar = Math.min(0.99, Math.max(0.01, tn > 0 ? te / tn : 0.5));
  const b0 = logit(pbar);
  const beta = new Float64Array(K).fill(b0);
  const alpha = new Float64Array(M);
  const v = 9;
  // one Newton step for a factor: x[a] over the cells (a, b) of the other factor y, with N(center, v) prior
  const step = (x: Float64Array, y: Float64Array, a: number, cellOf: (a: number, b: number) => number, center: number) => {
    let g = -(x[a] - center) / v;
    let h = 1 / v;
    for (let b = 0; b < y.length; b++) {
      const t = cellOf(a, b);
      const cnt = N[t];
      if (!cnt) continue;
      const p = sigmoid(x[a] + y[b]);
      g += E[t] - cnt * p;
      h += cnt * p * (1 - p);
    }
    const d = Math.max(-2, Math.min(2, g / h));
    x[a] += d;
    return Math.abs(d);
  };
  for (let it = 0; it < 50; it++) {
    let moved = 0;
    for (let c = 0; c < K; c++) moved = Math.max(moved, step(beta, alpha, c, (c_, j) => j * K + c_, b0));
    for (let j = 0; j < M; j++) moved = Math.max(moved, step(alpha, beta, j, (j_, c) => j_ * K + c, 0));
    // identify the scale: mean ability 0
    let ma = 0;
    for (let j = 0; j < M; j++) ma += alpha[j] / M;
    for (let j = 0; j < M; j++) alpha[j] -= ma;
    for (let c = 0; c < K; c++) beta[c] += ma;
    if (moved < 1e-6) break;
  }
  return { beta: Float32Array.from(beta), alpha };
}

/**
 * Per prompt: how much harder it is than usual, mean over the LLMs with an outcome of (error − the LLM's overall
 * error); NaN where no LLM has one. It does not depend on the clusters, so one difficulty model serves every K.
 */
export function difficultyTargets(Y: Float32Array, M: number): Float64Array {
  const n = Y.length / M;
  const e = new Float64Array(M);
  const c = new Float64Array(M);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < M; j++) {
      const y = Y[i * M + j];
      if (Number.isNaN(y)) continue;
      e[j] += 1 - y;
      c[j]++;
    }
  for (let j = 0; j < M; j++) e[j] = c[j] > 0 ? e[j] / c[j] : 0;
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    let cnt = 0;
    for (let j = 0; j < M; j++) {
      const y = Y[i * M + j];
      if (Number.isNaN(y)) continue;
      s += 1 - y - e[j];
      cnt++;
    }
    t[i] = cnt > 0 ? s / cnt : NaN;
  }
  return t;
}

/** Solves (A + λI) x = b for symmetric positive definite A (D x D, row-major) by Cholesky. */
export function ridgeSolve(A: Float64Array, b: Float64Array, D: number, lambda: number): Float64Array<ArrayBufferLike> {
  const L = new Float64Array(D * D);
  for (let i = 0; i < D; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * D + j] + (i === j ? lambda : 0);
      for (let t = 0; t < j; t++) s -= L[i * D + t] * L[j * D + t];
      if (i === j) L[i * D + i] = Math.sqrt(Math.max(s, 1e-12));
      else L[i * D + j] = s / L[j * D + j];
    }
  }
  const y = new Float64Array(D);
  for (let i = 0; i < D; i++) {
    let s = b[i];
    for (let t = 0; t < i; t++) s -= L[i * D + t] * y[t];
    y[i] = s / L[i * D + i];
  }
  const x = new Float64Array(D);
  for (let i = D - 1; i >= 0; i--) {
    let s = y[i];
    for (let t = i + 1; t < D; t++) s -= L[t * D + i] * x[t];
    x[i] = s / L[i * D + i];
  }
  return x;
}

/** XᵀX and Xᵀy over the rows `rows` of centred X (mean xm) and y (mean ym). */
function gram(X: Float32Array, y: Float64Array, rows: number[], D: number, xm: Float64Array, ym: number) {
  const A = new Float64Array(D * D);
  const b = new Float64Array(D);
  const xc = new Float64Array(D);
  for (const i of rows) {
    for (let d = 0; d < D; d++) xc[d] = X[i * D + d] - xm[d];
    const yc = y[i] - ym;
    for (let p = 0; p < D; p++) {
      const v = xc[p];
      if (v === 0) continue;
      b[p] += v * yc;
      const row = p * D;
      for (let q = 0; q <= p; q++) A[row + q] += v * xc[q];
    }
  }
  for (let p = 0; p < D; p++) for (let q = 0; q < p; q++) A[q * D + p] = A[p * D + q];
  return { A, b };
}

function means(X: Float32Array, y: Float64Array, rows: number[], D: number) {
  const xm = new Float64Array(D);
  let ym = 0;
  for (const i of rows) {
    for (let d = 0; d < D; d++) xm[d] += X[i * D + d] / rows.length;
    ym += y[i] / rows.length;
  }
  return { xm, ym };
}

export interface DifficultyModel {
  w: Float32Array;
  w0: number;
  /** Ridge strength chosen by cross-validation, and the out-of-fold R² it reached. */
  ridge: number;
  r2: number;
  /** d of the fitting rows: out of fold (for choices made on those rows), and from the final model. */
  oof: Float32Array;
  full: Float32Array;
}

/**
 * The prompt-difficulty model: ridge regression of difficultyTargets on the embeddings (n x D), its strength chosen
 * by 5-fold cross-validation on these rows (no test data). Rows with no outcome are left out of the fit.
 */
/**
 * `onStep(done, total)` is called after each of the ridge solves (5 folds x 7 penalties + the final one): each is
 * O(D^3) on this thread, so at D = 1024 the whole fit takes about 20 s, and a caller shows where it is.
 */
export function fitDifficulty(X: Float32Array, D: number, Y: Float32Array, M: number, seed: number, onStep?: (done: number, total: number) => void): DifficultyModel {
  const target = difficultyTargets(Y, M);
  const n = target.length;
  const rows = [...Array(n).keys()].filter((i) => !Number.isNaN(target[i]));
  const grid = [0.03, 0.1, 0.3, 1, 3, 10, 30];
  const folds = 5;
  const perm = permutation(rows.length, seed * 31 + 7);
  const foldOf = new Int32Array(rows.length);
  perm.forEach((p, i) => (foldOf[p] = i % folds));
  const sse = new Float64Array(grid.length);
  const oofByGrid = grid.map(() => new Float32Array(n).fill(NaN));
  const ok = rows.length >= 20;
  const steps = (ok ? folds * grid.length : 0) + 1;
  let step = 0;
  if (ok) {
    for (let f = 0; f < folds; f++) {
      const tr = rows.filter((_, i) => foldOf[i] !== f);
      const te = rows.filter((_, i) => foldOf[i] === f);
      const { xm, ym } = means(X, target, tr, D);
      const { A, b } = gram(X, target, tr, D, xm, ym);
      grid.forEach((lam, g) => {
        const w = ridgeSolve(A, b, D, lam);
        onStep?.(++step, steps);
        for (const i of te) {
          let s = ym;
          for (let d = 0; d < D; d++) s += w[d] * (X[i * D + d] - xm[d]);
          oofByGrid[g][i] = s;
          sse[g] += (s - target[i]) ** 2;
        }
      });
    }
  }
  let best = 0;
  for (let g = 1; g < grid.length; g++) if (sse[g] < sse[best]) best = g;
  const lam = grid[best];
  let w: Float64Array<ArrayBufferLike> = new Float64Array(D);
  let w0 = 0;
  if (rows.length > 0) {
    const { xm, ym } = means(X, target, rows, D);
    const { A, b } = gram(X, target, rows, D, xm, ym);
    w = ridgeSolve(A, b, D, lam);
    w0 = ym;
    onStep?.(steps, steps);
    for (let d = 0; d < D; d++) w0 -= w[d] * xm[d];
  }
  let sst = 0;
  const ym = rows.reduce((a, i) => a + target[i], 0) / Math.max(1, rows.length);
  for (const i of rows) sst += (target[i] - ym) ** 2;
  const wf = Float32Array.from(w);
  const full = difficultyOf(X, D, wf, w0);
  const oof = ok ? oofByGrid[best] : full.slice();
  for (let i = 0; i < n; i++) if (Number.isNaN(oof[i])) oof[i] = full[i];
  return { w: wf, w0, ridge: lam, r2: ok && sst > 0 ? 1 - sse[best] / sst : 0, oof, full };
}

/** d(x) for rows of embeddings. */
export function difficultyOf(E: Float32Array, D: number, w: Float32Array, w0: number): Float32Array {
  const n = E.length / D;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = w0;
    for (let d = 0; d < D; d++) s += w[d] * E[i * D + d];
    out[i] = s;
  }
  return out;
}

/** r = d − μ_k per prompt. */
export function residualsOf(d: ArrayLike<number>, clusters: ArrayLike<number>, mu: Float32Array): Float32Array {
  return Float32Array.from({ length: d.length }, (_, i) => d[i] - mu[clusters[i]]);
}

export interface PriorFit {
  prior: PsiPrior;
  /**
   * With ability groups: whether training LLM j was graded on group g's prompts (covers[j * groups + g]). Its
   * outcomes on a few stray prompts of another group (another data set, graded on another scale) say nothing there.
   */
  covers?: Uint8Array;
  /** r = d − μ_k of the fitting rows, out of fold (for choices made on those rows); null without difficulty. */
  trainResid: Float32Array | null;
  /** The main Beta concentration a that the training LLMs' own cells show (empirical Bayes; its tails are prior.deviation). */
  concentration: number;
}

/**
 * The ability prior: the training LLMs' abilities as a kernel density (Silverman's bandwidth, at least 0.3), with
 * their mean and spread less their estimation noise (method of moments; at least 0.5) for routers that read only
 * a Normal. A new LLM is taken for one more of the same population.
 */
export function abilityPriorOf(alpha: ArrayLike<number>, E: Float64Array, N: Float64Array, beta: Float32Array, M: number, K: number): AbilityPrior {
  if (M < 2) return { mean: 0, sd: 1.5 };
  let mean = 0;
  for (let j = 0; j < M; j++) mean += alpha[j] / M;
  let v = 0;
  let noise = 0;
  for (let j = 0; j < M; j++) {
    v += (alpha[j] - mean) ** 2 / (M - 1);
    let info = 1 / 9;
    for (let c = 0; c < K; c++) {
      const p = sigmoid(beta[c] + alpha[j]);
      info += N[j * K + c] * p * (1 - p);
    }
    noise += 1 / info / M;
  }
  const sd = Math.sqrt(Math.max(0.25, v - noise));
  const sorted = Array.from(alpha).sort((x, y) => x - y);
  const q = (f: number) => sorted[Math.min(M - 1, Math.max(0, Math.round(f * (M - 1))))];
  const iqr = q(0.75) - q(0.25);
  const bandwidth = Math.max(0.3, 0.9 * Math.min(Math.sqrt(v), iqr > 0 ? iqr / 1.34 : Infinity) * Math.pow(M, -0.2));
  return { mean, sd, points: Array.from(alpha, (x) => Math.round(x * 1e6) / 1e6), bandwidth };
}

/**
 * The cell prior that the training LLMs' own cells show (empirical Bayes): θ_mk ~ (1 − ε)·Beta(a·t, a·(1 − t)) +
 * ε·Beta(s·t, s·(1 − t)), t_mk = σ(β_k + α_mk) (α_mk: the LLM's ability in cluster k's group), maximising the cells' beta-binomial likelihood. a: how far a cluster's
 * error usually strays from the two-factor prediction, in prior outcomes' worth; ε and s < a: the share of cells that
 * stray far (specialists, weak spots) and how far. A coarse grid, then a golden search on log a.
 */
export function cellPriorOf(E: Float64Array, N: Float64Array, beta: Float32Array, alphaCells: ArrayLike<number>, M: number, K: number): { a: number; deviation?: { share: number; strength: number } } {
  const cells: Array<[number, number, number]> = [];
  for (let j = 0; j < M; j++)
    for (let c = 0; c < K; c++) {
      const n = N[j * K + c];
      if (!(n > 0)) continue;
      cells.push([Math.min(n, Math.max(0, E[j * K + c])), n, Math.min(1 - 1e-9, Math.max(1e-9, sigmoid(beta[c] + alphaCells[j * K + c])))]);
    }
  const bb = (e: number, n: number, a: number, t: number) => lgamma(e + a * t) + lgamma(n - e + a * (1 - t)) - lgamma(a * t) - lgamma(a * (1 - t)) + lgamma(a) - lgamma(n + a);
  const ll = (a: number, eps: number, s: number) => {
    let f = 0;
    for (const [e, n, t] of cells) {
      const l1 = bb(e, n, a, t);
      if (eps <= 0) {
        f += l1;
        continue;
      }
      const l0 = bb(e, n, s, t);
      const mx = Math.max(l1, l0);
      f += mx + Math.log((1 - eps) * Math.exp(l1 - mx) + eps * Math.exp(l0 - mx));
    }
    return f;
  };
  if (cells.length === 0) return { a: 16 };
  let best = { a: 16, eps: 0, s: 1, f: -Infinity };
  const aGrid = [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000];
  for (const a of aGrid)
    for (const eps of [0, 0.05, 0.1, 0.2, 0.3])
      for (const sMix of eps > 0 ? [1, 2, 5] : [1]) {
        if (eps > 0 && sMix >= a / 2) continue;
        const f = ll(a, eps, sMix);
        if (f > best.f) best = { a, eps, s: sMix, f };
      }
  // refine log a between the grid's neighbours
  let lo = Math.log(best.a / 2);
  let hi = Math.log(Math.min(2000, best.a * 2));
  const gr = (Math.sqrt(5) - 1) / 2;
  const g = (x: number) => ll(Math.exp(x), best.eps, best.s);
  let x1 = hi - gr * (hi - lo);
  let x2 = lo + gr * (hi - lo);
  let f1 = g(x1);
  let f2 = g(x2);
  for (let it = 0; it < 30; it++) {
    if (f1 > f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - gr * (hi - lo);
      f1 = g(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + gr * (hi - lo);
      f2 = g(x2);
    }
  }
  const a = Math.exp((lo + hi) / 2);
  return best.eps > 0 ? { a, deviation: { share: best.eps, strength: best.s } } : { a };
}

/**
 * How many right/wrong outcomes one outcome is worth: over the training LLMs' (LLM, cluster) cells, the binomial
 * variance n·p(1 − p) of their outcomes against the outcomes' own Σ(y − p)², in [1, 20]. Exactly 1 for right/wrong
 * outcomes; more for graded scores, which vary less than right/wrong outcomes of the same mean.
 */
export function outcomeWeightOf(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number): number {
  const s1 = new Float64Array(M * K);
  const s2 = new Float64Array(M * K);
  const n = new Float64Array(M * K);
  for (let i = 0; i < clusters.length; i++)
    for (let j = 0; j < M; j++) {
      const y = Y[i * M + j];
      if (Number.isNaN(y)) continue;
      const t = j * K + clusters[i];
      s1[t] += y;
      s2[t] += y * y;
      n[t]++;
    }
  let bin = 0;
  let own = 0;
  for (let t = 0; t < M * K; t++) {
    if (n[t] < 2) continue;
    const p = s1[t] / n[t];
    bin += n[t] * p * (1 - p);
    own += s2[t] - n[t] * p * p;
  }
  if (!(own > 0) || !(bin > 0)) return 1;
  const w = bin / own;
  return w < 1.02 ? 1 : Math.min(20, w);
}

/** Prompts whose sets of graded LLMs overlap this much (Jaccard) belong to one grading (one data set). */
/** An LLM covers a grading when it has outcomes on this share of its prompts (one benchmark of several is enough). */
export const COVER_SHARE = 0.2;
export const GRADING_OVERLAP = 0.5;

/**
 * Ability groups from who was graded where. Each train prompt has the set of training LLMs with an outcome on it;
 * prompts whose sets overlap by GRADING_OVERLAP or more (Jaccard, single linkage over the distinct sets) are one
 * grading — one data set, its LLMs graded on one scale. A cluster belongs to the grading of most of its prompts, and
 * an LLM covers a group when it has outcomes on at least COVER_SHARE of the group's prompts. One data set graded on every
 * LLM is one group; data sets graded on different LLMs are apart, however a few shared LLMs link them.
 */
export function abilityGroups(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number): { of: Int32Array; count: number; covers: Uint8Array } {
  const n = clusters.length;
  const sigIndex = new Map<string, number>();
  const sigs: number[][] = [];
  const sigOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const set: number[] = [];
    for (let j = 0; j < M; j++) if (!Number.isNaN(Y[i * M + j])) set.push(j);
    const key = set.join(',');
    let s = sigIndex.get(key);
    if (s === undefined) {
      s = sigs.length;
      sigIndex.set(key, s);
      sigs.push(set);
    }
    sigOf[i] = s;
  }
  const one = { of: new Int32Array(K), count: 1, covers: new Uint8Array(M).fill(1) };
  if (sigs.length <= 1 || sigs.length > 4096) return one;
  const parent = Int32Array.from({ length: sigs.length }, (_, k) => k);
  const find = (x: number): number => (parent[x] === x ? x : (parent[x] = find(parent[x])));
  const sets = sigs.map((x) => new Set(x));
  for (let a = 0; a < sigs.length; a++)
    for (let b = a + 1; b < sigs.length; b++) {
      if (find(a) === find(b)) continue;
      let both = 0;
      for (const j of sigs[a]) if (sets[b].has(j)) both++;
      const union = sigs[a].length + sigs[b].length - both;
      if (union > 0 && both / union >= GRADING_OVERLAP) parent[find(a)] = find(b);
    }
  const rootIndex = new Map<number, number>();
  const groupOfSig = Int32Array.from({ length: sigs.length }, (_, s) => {
    const r = find(s);
    if (!rootIndex.has(r)) rootIndex.set(r, rootIndex.size);
    return rootIndex.get(r)!;
  });
  const G0 = rootIndex.size;
  if (G0 <= 1) return one;
  // each cluster: the grading of most of its prompts
  const votes = new Float64Array(K * G0);
  const groupPrompts = new Float64Array(G0);
  const graded = new Float64Array(M * G0);
  for (let i = 0; i < n; i++) {
    const g = groupOfSig[sigOf[i]];
    votes[clusters[i] * G0 + g]++;
    groupPrompts[g]++;
    for (const j of sigs[sigOf[i]]) graded[j * G0 + g]++;
  }
  const raw = Int32Array.from({ length: K }, (_, k) => {
    let best = 0;
    for (let g = 1; g < G0; g++) if (votes[k * G0 + g] > votes[k * G0 + best]) best = g;
    return best;
  });
  // renumber the groups that some cluster belongs to
  const used = new Map<number, number>();
  const of = Int32Array.from(raw, (g) => {
    if (!used.has(g)) used.set(g, used.size);
    return used.get(g)!;
  });
  const count = used.size;
  if (count <= 1) return one;
  const covers = new Uint8Array(M * count);
  for (const [g, u] of used) for (let j = 0; j < M; j++) covers[j * count + u] = graded[j * G0 + g] >= COVER_SHARE * groupPrompts[g] ? 1 : 0;
  // an LLM whose grading has no cluster of its own (a small set mixed into another's clusters) covers nothing: its
  // grades are on a scale that none of the clusters is judged on
  return { of, count, covers };
}

/**
 * Fits the prior for one cluster map: the two-factor cluster logits on the training LLMs' outcomes (clusters: n
 * ids, Y: n x M), the ability prior and the concentration a from the same cells, and, with a difficulty model
 * fitted on the same rows, μ_k and the common logit slope.
 */
export function fitPrior(clusters: Int32Array, Y: Float32Array, M: number, K: number, dm?: DifficultyModel): PriorFit {
  const n = clusters.length;
  const { E, N } = errorTable(clusters, Y, M, K);
  const groups = abilityGroups(clusters, Y, M, K);
  let beta: Float32Array;
  let alphaCells: Float64Array; // α of each (LLM, cluster) cell: the LLM's ability in the cluster's group
  let ability: AbilityPrior;
  let groupPriors: AbilityPrior[] | undefined;
  if (groups.count === 1) {
    const fit = fitClusterLogits(clusters, Y, M, K);
    beta = fit.beta;
    alphaCells = new Float64Array(M * K);
    for (let j = 0; j < M; j++) alphaCells.fill(fit.alpha[j], j * K, (j + 1) * K);
    ability = abilityPriorOf(fit.alpha, E, N, beta, M, K);
  } else {
    // each group fitted on its own clusters and the LLMs with outcomes there
    beta = new Float32Array(K);
    alphaCells = new Float64Array(M * K);
    groupPriors = [];
    let largest = -1;
    ability = { mean: 0, sd: 1.5 };
    for (let g = 0; g < groups.count; g++) {
      const ks = [...Array(K).keys()].filter((k) => groups.of[k] === g);
      const local = new Int32Array(K).fill(-1);
      ks.forEach((k, i) => (local[k] = i));
      // the LLMs graded on this group's prompts (not the ones with a few stray prompts of another set here)
      const llms = [...Array(M).keys()].filter((j) => groups.covers[j * groups.count + g] === 1);
      const rows = [...Array(n).keys()].filter((i) => local[clusters[i]] >= 0);
      const Yg = new Float32Array(rows.length * llms.length);
      rows.forEach((i, r) => llms.forEach((j, t) => (Yg[r * llms.length + t] = Y[i * M + j])));
      const cl = Int32Array.from(rows, (i) => local[clusters[i]]);
      const fit = fitClusterLogits(cl, Yg, llms.length, ks.length);
      ks.forEach((k, i) => (beta[k] = fit.beta[i]));
      llms.forEach((j, t) => ks.forEach((k) => (alphaCells[j * K + k] = fit.alpha[t])));
      const Eg = new Float64Array(llms.length * ks.length);
      const Ng = new Float64Array(llms.length * ks.length);
      llms.forEach((j, t) => ks.forEach((k, i) => ((Eg[t * ks.length + i] = E[j * K + k]), (Ng[t * ks.length + i] = N[j * K + k]))));
      const ap = abilityPriorOf(fit.alpha, Eg, Ng, fit.beta, llms.length, ks.length);
      groupPriors.push(ap);
      if (rows.length > largest) {
        largest = rows.length;
        ability = ap;
      }
    }
  }
  // graded scores: how many right/wrong outcomes' worth one is (the binomial variance over the outcomes' own)
  const outcomeWeight = outcomeWeightOf(clusters, Y, M, K);
  if (outcomeWeight !== 1)
    for (let t = 0; t < E.length; t++) {
      E[t] *= outcomeWeight;
      N[t] *= outcomeWeight;
    }
  // the cells the prior is fitted on: with groups, only where the LLM was graded on the group's prompts
  const Nc = groups.count > 1 ? N.map((v, t) => (groups.covers[Math.floor(t / K) * groups.count + groups.of[t % K]] ? v : 0)) : N;
  const cp = cellPriorOf(E, Nc, beta, alphaCells, M, K);
  const concentration = cp.a;
  const base: PsiPrior = {
    clusterLogit: beta,
    ability,
    ...(groupPriors ? { groups: { of: groups.of, abilities: groupPriors } } : {}),
    ...(cp.deviation ? { deviation: cp.deviation } : {}),
    ...(outcomeWeight !== 1 ? { outcomeWeight } : {}),
  };
  const covers = groups.count > 1 ? groups.covers : undefined;
  if (!dm) return { prior: base, trainResid: null, concentration, covers };
  if (dm.full.length !== n) throw new UnirouteError('DIMENSION_MISMATCH', `difficulty for ${dm.full.length} rows, clusters for ${n}`);
  const mu = new Float32Array(K);
  const cnt = new Float32Array(K);
  for (let i = 0; i < n; i++) {
    mu[clusters[i]] += dm.full[i];
    cnt[clusters[i]]++;
  }
  for (let c = 0; c < K; c++) mu[c] = cnt[c] > 0 ? mu[c] / cnt[c] : 0;
  const r = residualsOf(dm.oof, clusters, mu);
  const slope = fitLogitSlope(clusters, Y, M, K, r);
  return { prior: { ...base, difficulty: { w: dm.w, w0: dm.w0, mu, slope } }, trainResid: r, concentration, covers };
}

/** r = d − μ_k per row, for rows of embeddings under hard assignment (null without a difficulty model). */
export function residOfRows(prior: PsiPrior | undefined, E: Float32Array, D: number, clusters: ArrayLike<number>): Float32Array | null {
  const d = prior?.difficulty;
  if (!d) return null;
  return residualsOf(difficultyOf(E, D, d.w, d.w0), clusters, d.mu);
}

/**
 * The common logit slope b₀ of error on r: logit P(error of m on i) = logit Ψ_m[k(i)] + b₀·r_i, fitted by Newton
 * on the training LLMs' train outcomes with their own cluster means as offsets.
 */
export function fitLogitSlope(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number, r: ArrayLike<number>): number {
  const n = clusters.length;
  const { E, N } = errorTable(clusters, Y, M, K);
  const off = new Float64Array(M * K);
  for (let t = 0; t < M * K; t++) off[t] = logit(Math.min(0.995, Math.max(0.005, (E[t] + 0.5) / (N[t] + 1))));
  let b = 0;
  for (let it = 0; it < 25; it++) {
    let g = 0;
    let h = 1e-9;
    for (let i = 0; i < n; i++) {
      const ri = r[i];
      for (let j = 0; j < M; j++) {
        const y = Y[i * M + j];
        if (Number.isNaN(y)) continue;
        const p = sigmoid(off[j * K + clusters[i]] + b * ri);
        g += (1 - y - p) * ri;
        h += p * (1 - p) * ri * ri;
      }
    }
    const step = Math.max(-5, Math.min(5, g / h));
    b += step;
    if (Math.abs(step) < 1e-6) break;
  }
  return b;
}
