/**
 * The posterior of an LLM's error vector Ψ_m: what the router believes about LLM m's error rate θ_mk in each
 * cluster k, from its outcomes there and elsewhere.
 *
 * The model (fitted on the training LLMs, src/router/evidence.ts):
 *   α_m ~ p(α)                            the LLM's ability: the training LLMs' abilities, kernel-smoothed
 *                                         (empirical Bayes), so a new LLM is one more of the same population
 *   t_mk = σ(β_k + α_m)                   β_k: how hard cluster k is for everyone
 *   θ_mk | α_m ~ (1 − ε)·Beta(a·t, a·(1 − t)) + ε·Beta(s·t, s·(1 − t))   how far an LLM's cluster error strays
 *                                         from t_mk: most cells little (a), a share ε far (s < a): specialists
 *   e_mk | θ_mk ~ Binomial(n_mk, θ_mk)     its outcomes (error sums e, counts n; graded scores allowed)
 * Given α, each cell is conjugate: θ_mk | α, data is a mixture of Beta(e + a·t, n − e + a·(1 − t)) (and the same
 * with s), weighted by how well each explains the cell's outcomes. α itself is integrated out on a grid over its
 * exact posterior, whose likelihood is each cell's beta-binomial (mixture): so a few outcomes move α only as far as
 * they deserve, and its uncertainty widens every cell's interval. The statistics stay additive sums
 * and counts: adding outcomes (add-model, feedback) is adding numbers.
 */
import { UnirouteError } from '../errors.js';
import { betaQuantile, betaSample, lgamma } from './special.js';

/** Per LLM, per cluster statistics of its outcomes (additive). */
export interface OutcomeStats {
  /** Σ error (1 − correct) per cluster. */
  errorSums: Float32Array;
  /** Outcomes per cluster. */
  counts: Float32Array;
}

/**
 * The ability prior, from the training LLMs (empirical Bayes): their abilities `points`, each a Normal of sd
 * `bandwidth` (a kernel density), or without points N(mean, sd²). A kernel prior keeps the population's shape: a new
 * LLM with a few lucky outcomes is taken for one of the strong LLMs seen, not for one beyond every real LLM.
 */
export interface AbilityPrior {
  mean: number;
  sd: number;
  points?: number[];
  bandwidth?: number;
}

/**
 * log p(α) under the ability prior (up to a constant). With points: the kernel density of the training LLMs'
 * abilities, mixed with a share 1/(points + 1) of a broad Normal (twice the population's spread): a new LLM may be
 * unlike any seen (a newer generation), which takes more than a handful of outcomes to show.
 */
export function abilityLogDensity(ap: AbilityPrior, alpha: number): number {
  const normal = (sd: number) => -((alpha - ap.mean) ** 2) / (2 * sd * sd) - Math.log(sd);
  if (!ap.points || ap.points.length === 0 || !(ap.bandwidth! > 0)) return normal(ap.sd);
  const h = ap.bandwidth!;
  const h2 = 2 * h * h;
  const n = ap.points.length;
  let mx = -Infinity;
  for (const p of ap.points) mx = Math.max(mx, -((alpha - p) ** 2) / h2);
  let s = 0;
  for (const p of ap.points) s += Math.exp(-((alpha - p) ** 2) / h2 - mx);
  const kde = mx + Math.log(s / n) - Math.log(h);
  const broad = normal(2 * Math.max(ap.sd, 0.5));
  const w = 1 / (n + 1);
  const top = Math.max(kde, broad);
  return top + Math.log((1 - w) * Math.exp(kde - top) + w * Math.exp(broad - top));
}

/** The fitted model's prior over Ψ and its difficulty model. */
export interface PsiPrior {
  /** β_k (K): logit error of an average training LLM in each cluster. */
  clusterLogit: Float32Array;
  /** The ability prior; routers fitted before it take ABILITY_FALLBACK. */
  ability?: AbilityPrior;
  /**
   * Ability groups: clusters whose training LLMs differ (data sets graded on different LLMs, on scales that need not
   * agree) each get an ability of their own. `of[k]` is cluster k's group; `abilities[g]` its population's prior.
   * An LLM's ability in a group comes from its outcomes there; in a group where it has none, it is the group's prior
   * (an average LLM of that group, with the group's whole spread): outcomes on one data set say nothing certain of
   * another graded by other means. Absent: one group with `ability`.
   */
  groups?: { of: Int32Array; abilities: AbilityPrior[] };
  /**
   * Heavy tails of the cells: a share of (LLM, cluster) cells strays far from the two-factor prediction (a
   * specialist, a weak spot): θ | t ~ (1 − share)·Beta(a·t, a·(1 − t)) + share·Beta(s·t, s·(1 − t)), s = strength,
   * fitted on the training LLMs (empirical Bayes). Absent: one Beta.
   */
  deviation?: { share: number; strength: number };
  /**
   * How many Bernoulli outcomes' worth one outcome is (≥ 1): graded scores in [0, 1] vary less than right/wrong
   * outcomes of the same mean, so each says more; fitted on the training LLMs' outcomes (1 for right/wrong data).
   * Error sums and counts are scaled by it where the posterior reads them; the stored statistics stay as they are.
   */
  outcomeWeight?: number;
  /** d(x) = w·φ(x) + w₀, its per-cluster mean μ_k, and the common logit slope b of error on r = d − μ_k. */
  difficulty?: { w: Float32Array; w0: number; mu: Float32Array; slope: number };
}


/** For routers fitted before the ability prior was: about the spread of real LLMs' abilities in the data sets. */
export const ABILITY_FALLBACK: AbilityPrior = { mean: 0, sd: 1.5 };

export const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
export const logit = (p: number) => Math.log(p / (1 - p));

/** Accumulates per-cluster error sums and counts. correct[i] in [0, 1]; NaN means "no outcome". */
export function statsOf(k: number, clusters: ArrayLike<number>, correct: ArrayLike<number>): OutcomeStats {
  if (clusters.length !== correct.length)
    throw new UnirouteError('DIMENSION_MISMATCH', `${clusters.length} cluster ids but ${correct.length} outcomes`);
  const errorSums = new Float32Array(k);
  const counts = new Float32Array(k);
  for (let i = 0; i < clusters.length; i++) {
    const y = correct[i];
    if (Number.isNaN(y)) continue;
    if (!(y >= 0 && y <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `outcome ${i} is ${y}; \`correct\` must be in [0, 1]`);
    const c = clusters[i];
    if (!(Number.isInteger(c) && c >= 0 && c < k)) throw new UnirouteError('INVALID_ARGUMENT', `cluster id ${c} at ${i} is outside [0, ${k})`);
    errorSums[c] += 1 - y;
    counts[c] += 1;
  }
  return { errorSums, counts };
}

export function totalOutcomes(s: OutcomeStats): number {
  let n = 0;
  for (let c = 0; c < s.counts.length; c++) n += s.counts[c];
  return n;
}

export function overallErrorOf(s: OutcomeStats): number {
  let e = 0;
  let n = 0;
  for (let c = 0; c < s.counts.length; c++) {
    e += s.errorSums[c];
    n += s.counts[c];
  }
  return n > 0 ? e / n : NaN;
}

/** Points of the grid α is integrated on. */
const GRID = 41;
/** The smallest concentration used for spreads: with strength 0 (the plain mean), a cell is still not a point. */
const MIN_SPREAD_STRENGTH = 1;

export interface PsiRow {
  /** Posterior mean error per cluster. */
  psi: Float32Array;
  /** Posterior sd per cluster. */
  sd: Float32Array;
  /** E[t_k]: the prior's mean in each cluster (the two-factor prediction, α integrated out). */
  target: Float32Array;
  /** The posterior mean and sd of α (0 and 0 without a prior). */
  ability: number;
  abilitySd: number;
  /**
   * The α grid and its posterior weights (one node without a prior), per ability group: group g's GRID nodes start
   * at g × GRID. For intervals and sampling.
   */
  nodes: Float64Array;
  weights: Float64Array;
  /** Cluster k's ability group (all 0 with one group). */
  groupOf: Int32Array;
}

/** The cell prior's components: weight and concentration (one, unless the prior has a deviation share). */
export interface CellComponent {
  w: number;
  a: number;
}
export function cellComponents(a: number, prior?: PsiPrior): CellComponent[] {
  const d = prior?.deviation;
  // the far-straying share is wider than the main concentration, or it is no share of its own
  if (!(a > 0) || !d || !(d.share > 0) || !(d.strength > 0) || d.strength >= a) return [{ w: 1, a }];
  return [
    { w: 1 - d.share, a },
    { w: d.share, a: d.strength },
  ];
}

/** log of the beta-binomial probability of e errors in n outcomes under Beta(a·t, a·(1 − t)), without the binomial coefficient. */
function logBetaBinomial(e: number, n: number, a: number, t: number): number {
  const at = a * t;
  const ab = a * (1 - t);
  return lgamma(e + at) + lgamma(n - e + ab) - lgamma(at) - lgamma(ab) + lgamma(a) - lgamma(n + a);
}

/** The log-likelihood of α from one cell: beta-binomial (mixture), or binomial when a = 0; up to a constant. */
function cellLogLik(e: number, n: number, beta: number, alpha: number, comps: CellComponent[]): number {
  const t = Math.min(1 - 1e-12, Math.max(1e-12, sigmoid(beta + alpha)));
  if (!(comps[0].a > 0)) return e * Math.log(t) + (n - e) * Math.log(1 - t);
  if (comps.length === 1) return logBetaBinomial(e, n, comps[0].a, t);
  const l = comps.map((c) => Math.log(c.w) + logBetaBinomial(e, n, c.a, t));
  const mx = Math.max(...l);
  return mx + Math.log(l.reduce((s, x) => s + Math.exp(x - mx), 0));
}

/** The posterior weights of the cell's components given its outcomes, at t. */
function componentWeights(e: number, n: number, t: number, comps: CellComponent[]): number[] {
  if (comps.length === 1 || !(n > 0)) return comps.map((c) => c.w);
  const l = comps.map((c) => Math.log(c.w) + logBetaBinomial(e, n, c.a, Math.min(1 - 1e-12, Math.max(1e-12, t))));
  const mx = Math.max(...l);
  const w = l.map((x) => Math.exp(x - mx));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / s);
}

/**
 * The posterior of one LLM's Ψ from its statistics: α integrated on a grid over its exact posterior, each cluster a
 * mixture of conjugate Betas. `priorStrength` is a. Without a prior (routers fitted before it), the shrinkage target
 * is the LLM's overall error, as it was.
 */
export function psiRow(stats: OutcomeStats, priorStrength: number, prior?: PsiPrior): PsiRow {
  const s = weighted(stats, prior);
  const K = s.counts.length;
  const a = priorStrength;
  const comps = cellComponents(a, prior);
  const psi = new Float32Array(K);
  const sd = new Float32Array(K);
  const target = new Float32Array(K);
  if (!prior) {
    const o = overallErrorOf(s);
    const t = Number.isNaN(o) ? 0.5 : o;
    target.fill(t);
    for (let c = 0; c < K; c++) {
      const [m, v] = cellMoments(s.errorSums[c], s.counts[c], comps, [t], [1]);
      psi[c] = m;
      sd[c] = Math.sqrt(v);
    }
    return { psi, sd, target, ability: 0, abilitySd: 0, nodes: Float64Array.of(0), weights: Float64Array.of(1), groupOf: new Int32Array(K) };
  }
  const beta = prior.clusterLogit;
  const G = prior.groups ? prior.groups.abilities.length : 1;
  const groupOf = prior.groups ? prior.groups.of : new Int32Array(K);
  const nodes = new Float64Array(G * GRID);
  const weights = new Float64Array(G * GRID);
  let ability = 0;
  let abilitySd = 0;
  let most = -1;
  for (let g = 0; g < G; g++) {
    const ap = prior.groups ? prior.groups.abilities[g] : (prior.ability ?? ABILITY_FALLBACK);
    let outcomes = 0;
    for (let c = 0; c < K; c++) if (groupOf[c] === g) outcomes += s.counts[c];
    const logPost = (alpha: number) => {
      let f = abilityLogDensity(ap, alpha);
      for (let c = 0; c < K; c++) if (groupOf[c] === g && s.counts[c] > 0) f += cellLogLik(s.errorSums[c], s.counts[c], beta[c], alpha, comps);
      return f;
    };
    // a coarse grid over the prior's range finds where the posterior is; a fine grid there integrates it
    const spread = Math.max(ap.sd, 0.25);
    const pts = ap.points && ap.points.length ? ap.points : [ap.mean];
    const lo0 = Math.min(...pts) - 5 * spread;
    const hi0 = Math.max(...pts) + 5 * spread;
    const coarse = gridWeights(logPost, lo0, hi0, 81);
    const step0 = (hi0 - lo0) / 80;
    const sdc = Math.max(coarse.sd, step0);
    let lo = coarse.mean - 7 * sdc;
    let hi = coarse.mean + 7 * sdc;
    const top = Math.max(logPost(coarse.mean), coarse.fMax);
    for (let i = 0; i < 40 && logPost(lo) > top - 14; i++) lo -= sdc;
    for (let i = 0; i < 40 && logPost(hi) > top - 14; i++) hi += sdc;
    const gw = gridWeights(logPost, lo, hi, GRID);
    nodes.set(gw.nodes, g * GRID);
    weights.set(gw.weights, g * GRID);
    // the ability reported: the group where the LLM has the most outcomes
    if (outcomes > most) {
      most = outcomes;
      ability = gw.mean;
      abilitySd = gw.sd;
    }
  }
  const ts = new Float64Array(GRID);
  for (let c = 0; c < K; c++) {
    const off = groupOf[c] * GRID;
    const w = weights.subarray(off, off + GRID);
    let tm = 0;
    for (let q = 0; q < GRID; q++) {
      ts[q] = sigmoid(beta[c] + nodes[off + q]);
      tm += w[q] * ts[q];
    }
    target[c] = tm;
    const [m, v] = cellMoments(s.errorSums[c], s.counts[c], comps, ts, w);
    psi[c] = m;
    sd[c] = Math.sqrt(v);
  }
  return { psi, sd, target, ability, abilitySd, nodes, weights, groupOf };
}

/** Posterior weights of α on an even grid of n points over [lo, hi], with the posterior's mean and sd. */
function gridWeights(logPost: (a: number) => number, lo: number, hi: number, n: number) {
  const nodes = new Float64Array(n);
  const weights = new Float64Array(n);
  let fMax = -Infinity;
  for (let q = 0; q < n; q++) {
    nodes[q] = lo + ((hi - lo) * q) / (n - 1);
    weights[q] = logPost(nodes[q]);
    fMax = Math.max(fMax, weights[q]);
  }
  let total = 0;
  for (let q = 0; q < n; q++) total += weights[q] = Math.exp(weights[q] - fMax);
  let mean = 0;
  let second = 0;
  for (let q = 0; q < n; q++) {
    weights[q] /= total;
    mean += weights[q] * nodes[q];
    second += weights[q] * nodes[q] * nodes[q];
  }
  return { nodes, weights, mean, sd: Math.sqrt(Math.max(0, second - mean * mean)), fMax };
}

/**
 * The Beta of a cell given α's node q: (A, B) = (e + a·t, n − e + a·(1 − t)). With strength 0 (the paper's plain
 * mean, kept as an ablation) the mean stays e/n, and spreads come from Jeffreys' Beta(e + ½, n − e + ½), or from
 * Beta(t, 1 − t) in a cell with no outcome, so that no cell is a point.
 */
function cellBeta(e: number, n: number, a: number, t: number): [number, number] {
  if (a > 0) return [e + a * t, n - e + a * (1 - t)];
  if (n > 0) return [e + 0.5, n - e + 0.5];
  return [MIN_SPREAD_STRENGTH * t, MIN_SPREAD_STRENGTH * (1 - t)];
}

/** Mean and variance of a cell's mixture over the α nodes (and the cell prior's components). */
function cellMoments(e: number, n: number, comps: CellComponent[], ts: ArrayLike<number>, w: ArrayLike<number>): [number, number] {
  let m1 = 0;
  let m2 = 0;
  for (let q = 0; q < ts.length; q++) {
    const cw = componentWeights(e, n, ts[q], comps);
    for (let c = 0; c < comps.length; c++) {
      const a = comps[c].a;
      const [A, B] = cellBeta(e, n, a, ts[q]);
      const S = A + B;
      const mq = A / S;
      const mean = a <= 0 && n > 0 ? e / n : mq;
      const wq = w[q] * cw[c];
      m1 += wq * mean;
      m2 += wq * ((mq * (1 - mq)) / (S + 1) + mean * mean);
    }
  }
  return [m1, Math.max(0, m2 - m1 * m1)];
}

/**
 * A central interval of a distribution on [0, 1] with this mean and sd: the Beta with the same two moments.
 * `extraN`: the interval of the mean of that many more outcomes instead (the posterior predictive, with their
 * sampling noise), which is what an observed error rate on `extraN` prompts should fall in.
 */
export function intervalOf(mean: number, sd: number, level = 0.95, extraN?: number): [number, number] {
  const m = Math.min(1 - 1e-9, Math.max(1e-9, mean));
  let v = sd * sd;
  if (extraN !== undefined && extraN > 0) v += Math.max(0, m * (1 - m) - v) / extraN;
  const cap = m * (1 - m);
  if (!(v > 1e-14)) return [mean, mean];
  const c = Math.max(1e-6, cap / Math.min(v, cap * (1 - 1e-9)) - 1);
  const tail = (1 - level) / 2;
  return [betaQuantile(tail, m * c, (1 - m) * c), betaQuantile(1 - tail, m * c, (1 - m) * c)];
}

/** Statistics as the posterior reads them: error sums and counts times the prior's outcome weight. */
function weighted(s: OutcomeStats, prior?: PsiPrior): OutcomeStats {
  const w = prior?.outcomeWeight;
  if (!w || w === 1) return s;
  return { errorSums: s.errorSums.map((v) => v * w), counts: s.counts.map((v) => v * w) };
}

/** One draw of θ in cluster k from an LLM's posterior (Thompson sampling): α's node, the cell's component, the Beta. */
export function sampleCell(row: PsiRow, stats: OutcomeStats, k: number, priorStrength: number, prior: PsiPrior | undefined, rand: () => number): number {
  const s = weighted(stats, prior);
  const n = prior ? GRID : row.nodes.length;
  const off = prior ? row.groupOf[k] * n : 0;
  let u = rand();
  let q = 0;
  while (q < n - 1 && u > row.weights[off + q]) u -= row.weights[off + q++];
  const t = prior ? sigmoid(prior.clusterLogit[k] + row.nodes[off + q]) : row.target[k];
  const comps = cellComponents(priorStrength, prior);
  const cw = componentWeights(s.errorSums[k], s.counts[k], t, comps);
  let c = 0;
  let v = rand();
  while (c < comps.length - 1 && v > cw[c]) v -= cw[c++];
  const [A, B] = cellBeta(s.errorSums[k], s.counts[k], comps[c].a, t);
  return betaSample(A, B, rand);
}

/** Ψ (M x K), its sd and outcome counts (M x K) of every LLM from a correctness matrix (rows x M, NaN = none). */
export function psiMatrix(clusters: ArrayLike<number>, Y: Float32Array, M: number, K: number, priorStrength: number, prior?: PsiPrior) {
  const rows = clusters.length;
  const psi = new Float32Array(M * K);
  const sd = new Float32Array(M * K);
  const counts = new Float32Array(M * K);
  const col = new Float32Array(rows);
  for (let j = 0; j < M; j++) {
    for (let i = 0; i < rows; i++) col[i] = Y[i * M + j];
    const s = statsOf(K, clusters, col);
    const row = psiRow(s, priorStrength, prior);
    psi.set(row.psi, j * K);
    sd.set(row.sd, j * K);
    counts.set(s.counts, j * K);
  }
  return { psi, sd, counts };
}

/**
 * Predicted errors (rows x M) under hard assignment, as the engine computes them: Ψ[k], or σ(logit Ψ[k] + b·r) with
 * a difficulty slope. For selection and tests; routing itself runs in the engine.
 */
export function gammaOf(psi: Float32Array, clusters: ArrayLike<number>, K: number, M: number, slope = 0, resid?: ArrayLike<number> | null): Float32Array {
  const g = new Float32Array(clusters.length * M);
  for (let i = 0; i < clusters.length; i++) {
    const shift = resid ? slope * resid[i] : 0;
    for (let j = 0; j < M; j++) {
      const p = psi[j * K + clusters[i]];
      if (!resid) g[i * M + j] = p;
      else {
        const q = Math.min(1 - 1e-6, Math.max(1e-6, p));
        g[i * M + j] = sigmoid(Math.log(q / (1 - q)) + shift);
      }
    }
  }
  return g;
}
