/**
 * The router: an embedder, K centroids (the cluster map) and a pool of LLMs, each with an error vector Psi and a
 * cost per query. route(x) = argmin_m Psi_m[k(x)] + lambda * cost_m over the allowed LLMs (Proposition 1).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { UnirouteError, didYouMean } from '../errors.js';
import { call, callAsync, native, type MlpConfig, type NativeRouteArgs, type NativeRouteParts, type NativeVectorRouteArgs } from '../engine/native.js';
import {
  HashedEmbedder,
  checkEmbeddings,
  checkTexts,
  embeddingsFromRows,
  type EmbedderSpec,
  type HashedEmbedderSpec,
  type TextEmbedder,
} from '../embed/embedder.js';
import { RemoteEmbedder, type RemoteEmbedderSpec } from '../embed/remote.js';
import { decodeArtifact, encodeArtifact, writeFileAtomic, type TensorMap } from './artifact.js';
import {
  logit,
  overallErrorOf,
  psiRow,
  statsOf,
  totalOutcomes,
  type OutcomeStats,
  type PsiPrior,
} from './evidence.js';
import { argminRows } from './decide.js';

const gzipAsync = promisify(gzip);
import { gatherRows } from './select.js';
import { calibrateLambda, mixedRow, type Calibration, type CalibrationTarget } from './calibrate.js';
import { pickSuggestions, type SuggestOptions, type Suggestion } from './suggest.js';

export interface PoolEntry extends OutcomeStats {
  name: string;
  costPerQuery: number;
  /** Outcomes per evidence cell (a finer partition than the clusters), when the model has cells. */
  cellCounts?: Float32Array;
}

/**
 * A finer partition of the prompt space than the clusters, used only to tell where an LLM has outcomes: each
 * cluster c split into the cells start[c] … start[c + 1] − 1.
 */
export interface EvidenceCells {
  centroids: Float32Array;
  count: number;
  /** Share of the train prompts in each cell. */
  share: Float32Array;
  /** K + 1 offsets: the cells of cluster c. */
  start: Int32Array;
}

/** A new LLM: its cost per query and its outcomes on labelled prompts. */
export interface AddModelSpec {
  costPerQuery: number;
  outcomes: Outcome[];
}

export interface ModelInfo {
  name: string;
  costPerQuery: number;
  outcomes: number;
  overallError: number;
  /** Ψ: the posterior mean error per cluster. */
  errorVector: number[];
  /** Outcomes per cluster. */
  counts: number[];
  /** Share of the fitted prompts that fall in cells (or clusters) where this LLM has evidence (>= minEvidence outcomes). */
  coverage: number;
}

export interface Outcome {
  text?: string;
  embedding?: ArrayLike<number>;
  correct: number;
}

export interface RouteOptions {
  /** Error-per-cost trade-off; 0 picks the lowest predicted error. Default: the router's defaultLambda. */
  lambda?: number;
  /**
   * The unit-free knob instead of λ: t in [0, 1], 0 = the lowest predicted error, 1 = the cheapest LLM for (nearly)
   * every prompt; λ = λ₁ · 10^(−4 (1 − t)) for t > 0, where λ₁ is this pool's λ at which the cheapest LLM wins in
   * every cluster (`Router.tradeoffScale()`). Mean cost never rises as t rises.
   */
  tradeoff?: number;
  /**
   * A calibrated mix (Calibration.mix from calibrateLambda): the prompts `mixedRow` picks are routed at mix.lambda,
   * the rest at λ, so that a cost or accuracy target can land between two neighbouring λ. `offset`: the index of
   * this batch's first prompt in the whole stream (so the assignment continues across batches).
   */
  mix?: { lambda: number; share: number; offset?: number };
  /** The allowed LLMs: one list for every prompt, or one list per prompt. Default: the whole pool. */
  models?: string[] | string[][];
  /**
   * Risk aversion κ >= 0: route on Ψ + κ·sd (the posterior's upper side) so that thinly evidenced LLMs are not
   * trusted blindly. Default 0 (the posterior mean).
   */
  risk?: number;
  /**
   * 'prefer' (default): a candidate with fewer than minEvidence outcomes in the prompt's cluster is chosen only when
   * no allowed candidate has evidence there. 'ignore': every allowed candidate competes on its predicted error.
   */
  evidence?: 'prefer' | 'ignore';
  /**
   * Keep every candidate's predicted error (the n x m `predictedError` matrix, for explanations and calibration).
   * Default true; false keeps only the chosen LLM's (`chosenError`), so memory stays O(n) on huge batches.
   */
  explain?: boolean;
  /**
   * A quality floor ε in [0, 1]: route to the cheapest allowed LLM whose predicted error is <= ε (ties as the
   * engine breaks them), or to the lowest predicted error where none is. λ then plays no part.
   */
  maxError?: number;
  /**
   * Out-of-distribution prompts: a prompt farther from its nearest centroid than `quantile` (default 0.99) of the
   * training prompts were is flagged (`ood` in the batch) and routed to `fallback`: 'best-overall' (default: the
   * allowed LLM with the lowest predicted error over the training distribution, Ψ averaged over the clusters by
   * their share), an LLM's name, or 'route' (flag only). false turns it off. A
   * router fitted before distances were kept flags nothing.
   */
  ood?: { quantile?: number; fallback?: string } | false;
}

export interface RouteBatch {
  /** Pool snapshot the decisions refer to. */
  models: string[];
  costs: Float32Array;
  lambda: number;
  /** Per prompt: index into `models` of the chosen LLM. */
  choice: Int32Array;
  cluster: Int32Array;
  distance: Float32Array;
  /** n x m predicted errors, row-major (empty when routed with explain: false). */
  predictedError: Float32Array;
  /** The chosen LLM's predicted error, per prompt. */
  chosenError: Float32Array;
  /** The snapshot's Ψ, its posterior sd and outcome counts (m x k), for explanations. */
  psi: Float32Array;
  sd: Float32Array;
  counts: Float32Array;
  k: number;
  minEvidence: number;
  /** Whether this batch's decisions preferred candidates with evidence. */
  evidenceRule: boolean;
  /** The snapshot's evidence flags (m x evidenceStride; null when minEvidence is 0) and each prompt's column in them. */
  evidenceFlags: Uint8Array | null;
  evidenceStride: number;
  cellOf: Int32Array;
  /** Per prompt: 1 when it lies beyond the out-of-distribution threshold (empty when OOD is off). */
  ood: Uint8Array;
  /** True when those prompts went to a fixed fallback (whatever λ), false when they were only flagged. */
  oodFixed?: boolean;
}

export interface Candidate {
  model: string;
  predictedError: number;
  cost: number;
  /** The LLM's outcomes in the prompt's cluster, and whether it has evidence where the prompt lies (its cell). */
  outcomes: number;
  evidence: boolean;
  /** An approximate 95 % interval of the predicted error (the posterior of Ψ in the cluster, ± 1.96 sd). */
  interval: [number, number];
}

export interface RouteDecision {
  model: string;
  cluster: number;
  distance: number;
  predictedError: number;
  cost: number;
  /** Beyond the out-of-distribution threshold (then routed to the fallback). */
  ood: boolean;
  candidates: Candidate[];
}

interface Snapshot {
  names: string[];
  index: Map<string, number>;
  psi: Float32Array;
  sd: Float32Array;
  counts: Float32Array;
  /** logit Ψ (with a difficulty model), evidence flags (m x cells or m x k, with minEvidence > 0). */
  psiLogit: Float32Array | null;
  evidence: Uint8Array | null;
  cost: Float32Array;
  /**
   * Each LLM's predicted error over the whole training distribution: Ψ averaged over the clusters, weighted by
   * their share of the training prompts. Unlike the mean of its outcomes, this does not favour an LLM graded only
   * on easy prompts (its missing clusters come from the prior).
   */
  overall: Float64Array;
  /** Ψ + κ·sd (and its logit) per κ asked for, a few kept. */
  risky: Map<number, { psi: Float32Array; psiLogit: Float32Array | null }>;
}

/**
 * Where an LLM has evidence, by cell: at least minEvidence outcomes, and outcomes per unit of prompt mass
 * (count / share) at least EVIDENCE_DENSITY of the LLM's own typical rate (the median over the cells it touched).
 * An LLM sampled from the whole prompt distribution has about the same rate everywhere; one graded on a single
 * benchmark has its full rate on that benchmark's cells and a small one in cells it only grazes (a few prompts of
 * its benchmark in a cell of another), where it has no evidence.
 */
export const EVIDENCE_DENSITY = 0.3;
export function evidenceFlags(cellCounts: Float32Array, share: Float32Array, minEvidence: number): Uint8Array {
  const E = cellCounts.length;
  const rates: number[] = [];
  for (let c = 0; c < E; c++) if (cellCounts[c] > 0 && share[c] > 0) rates.push(cellCounts[c] / share[c]);
  rates.sort((a, b) => a - b);
  const typical = rates.length ? rates[Math.floor((rates.length - 1) / 2)] : 0;
  const out = new Uint8Array(E);
  for (let c = 0; c < E; c++) {
    const n = cellCounts[c];
    out[c] = n >= minEvidence && n > 0 && (share[c] <= 0 || n / share[c] >= EVIDENCE_DENSITY * typical) ? 1 : 0;
  }
  return out;
}

const logitOf = (psi: Float32Array) => psi.map((p) => logit(Math.min(1 - 1e-6, Math.max(1e-6, p))));

/** The learned cluster map (paper §5.2): z(x) = softmax(f(φ(x))) over the K clusters. */
export interface LearnedMap {
  config: MlpConfig;
  params: Float32Array;
}

export interface RouterState {
  embedder: EmbedderSpec;
  hashed?: HashedEmbedder;
  /** The remote endpoint of an `openai` embedder. */
  remote?: RemoteEmbedder;
  centroids: Float32Array;
  k: number;
  priorStrength: number;
  defaultLambda?: number;
  info?: Record<string, unknown>;
  pool?: PoolEntry[];
  map?: LearnedMap;
  /** The fitted prior of Ψ (two-factor cluster logits, difficulty model); absent in routers fitted before it. */
  prior?: PsiPrior;
  /** Share of the train prompts in each cluster (for coverage). */
  clusterShare?: Float32Array;
  /** Evidence cells (default: the clusters themselves). */
  cells?: EvidenceCells;
  /** Outcomes in a cell below which an LLM has no evidence there (default 1; 0 disables). */
  minEvidence?: number;
  /** Quantiles of the training prompts' distances to their nearest centroid (for out-of-distribution prompts). */
  distanceQuantiles?: DistanceQuantiles;
}

/** Quantiles `d` of the training prompts' distance to their nearest centroid, at levels `q` (both ascending). */
export interface DistanceQuantiles {
  q: number[];
  d: number[];
}

/** The levels kept: coarse in the bulk, fine in the tail where thresholds are set. */
export const DISTANCE_LEVELS: number[] = [
  ...Array.from({ length: 18 }, (_, i) => i * 0.05),
  ...Array.from({ length: 9 }, (_, i) => 0.9 + i * 0.01),
  ...Array.from({ length: 11 }, (_, i) => 0.99 + i * 0.001),
].map((v) => Math.round(v * 1e6) / 1e6);

function checkDistanceQuantiles(x: DistanceQuantiles, where: string): DistanceQuantiles {
  const bad = (why: string): never => {
    throw new UnirouteError('INVALID_ARGUMENT', `${where}: ${why}`);
  };
  if (!x || !Array.isArray(x.q) || !Array.isArray(x.d) || x.q.length !== x.d.length || x.q.length < 2) bad('expected {q, d}: two lists of the same length (>= 2)');
  for (let i = 0; i < x.q.length; i++) {
    if (typeof x.q[i] !== 'number' || !(x.q[i] >= 0 && x.q[i] <= 1)) bad(`level ${i} is not in [0, 1]`);
    if (typeof x.d[i] !== 'number' || !Number.isFinite(x.d[i]) || x.d[i] < 0) bad(`distance ${i} is not a finite number >= 0`);
    if (i > 0 && (x.q[i] <= x.q[i - 1] || x.d[i] < x.d[i - 1])) bad('levels and distances must ascend');
  }
  return { q: x.q.slice(), d: x.d.slice() };
}

export class Router {
  readonly embedderSpec: EmbedderSpec;
  readonly hashed: HashedEmbedder | undefined;
  readonly remote: RemoteEmbedder | undefined;
  readonly centroids: Float32Array;
  readonly k: number;
  readonly dim: number;
  priorStrength: number;
  defaultLambda: number;
  info: Record<string, unknown>;
  readonly map: LearnedMap | undefined;
  readonly prior: PsiPrior | undefined;
  readonly clusterShare: Float32Array | undefined;
  readonly cells: EvidenceCells | undefined;
  minEvidence: number;
  distanceQuantiles: DistanceQuantiles | undefined;
  private pool: PoolEntry[] = [];
  private snap: Snapshot | undefined;

  constructor(s: RouterState) {
    this.embedderSpec = s.embedder;
    this.hashed = s.hashed;
    this.remote = s.remote;
    if (s.embedder.kind === 'openai') {
      if (!s.remote) throw new UnirouteError('INVALID_ARGUMENT', 'an openai-embedder router needs its remote embedder');
      if (s.remote.dim !== s.embedder.dim)
        throw new UnirouteError('DIMENSION_MISMATCH', `the remote embedder gives ${s.remote.dim}-d vectors; the router was fitted on ${s.embedder.dim}`);
    }
    this.dim = s.embedder.dim;
    this.k = s.k;
    if (!Number.isInteger(s.k) || s.k < 1) throw new UnirouteError('INVALID_ARGUMENT', `k must be a positive integer, got ${s.k}`);
    if (s.centroids.length !== s.k * this.dim)
      throw new UnirouteError('DIMENSION_MISMATCH', `centroids have ${s.centroids.length} values, expected k x dim = ${s.k * this.dim}`);
    if (s.embedder.kind === 'hashed-lsa' && !s.hashed)
      throw new UnirouteError('INVALID_ARGUMENT', 'a hashed-lsa router needs its fitted embedder');
    checkPriorStrength(s.priorStrength);
    this.centroids = s.centroids;
    this.priorStrength = s.priorStrength;
    this.defaultLambda = s.defaultLambda ?? 0;
    this.info = s.info ?? {};
    if (s.map) {
      const c = s.map.config;
      if (c.in !== this.dim || c.out !== this.k || c.head !== 'mixture')
        throw new UnirouteError('DIMENSION_MISMATCH', `the learned map maps ${c.in} -> ${c.out}; the router has dim ${this.dim} and ${this.k} clusters`);
    }
    this.map = s.map;
    if (s.prior) checkPrior(s.prior, this.k, this.dim);
    this.prior = s.prior;
    if (s.clusterShare && s.clusterShare.length !== this.k)
      throw new UnirouteError('DIMENSION_MISMATCH', `clusterShare has ${s.clusterShare.length} values for ${this.k} clusters`);
    this.clusterShare = s.clusterShare;
    this.distanceQuantiles = s.distanceQuantiles ? checkDistanceQuantiles(s.distanceQuantiles, 'distanceQuantiles') : undefined;
    if (s.cells) {
      const c = s.cells;
      if (!Number.isInteger(c.count) || c.count < 1 || c.centroids.length !== c.count * this.dim || c.share.length !== c.count)
        throw new UnirouteError('DIMENSION_MISMATCH', `evidence cells: ${c.count} cells need ${c.count} x ${this.dim} centroids and ${c.count} shares`);
      const st = c.start;
      let ok = st instanceof Int32Array && st.length === this.k + 1 && st[0] === 0 && st[this.k] === c.count;
      for (let i = 0; ok && i < this.k; i++) ok = st[i + 1] > st[i];
      if (!ok) throw new UnirouteError('DIMENSION_MISMATCH', `evidence cells: the ${this.k + 1} cluster offsets must rise from 0 to ${c.count}, each cluster with a cell`);
      for (let i = 0; i < c.centroids.length; i++)
        if (!Number.isFinite(c.centroids[i])) throw new UnirouteError('NON_FINITE', `evidence cell centroids have a non-finite value at ${i}`);
    }
    this.cells = s.cells;
    this.minEvidence = s.minEvidence ?? 1;
    checkMinEvidence(this.minEvidence);
    for (const e of s.pool ?? []) this.insert(e);
  }

  // ---- pool ---------------------------------------------------------------------------------------------------

  get size(): number {
    return this.pool.length;
  }

  has(name: string): boolean {
    return this.pool.some((e) => e.name === name);
  }

  models(): ModelInfo[] {
    return this.pool.map((e) => this.info_(e));
  }

  private info_(e: PoolEntry): ModelInfo {
    return {
      name: e.name,
      costPerQuery: e.costPerQuery,
      outcomes: totalOutcomes(e),
      overallError: overallErrorOf(e),
      errorVector: Array.from(psiRow(e, this.priorStrength, this.prior).psi),
      counts: Array.from(e.counts),
      coverage: this.coverageOf(e),
    };
  }

  /**
   * Where an LLM has evidence: one flag per evidence cell (per cluster without cells). An entry with no cell counts
   * has evidence in every cell of a cluster where it has at least `need` outcomes.
   */
  private evidenceRow(e: OutcomeStats & { cellCounts?: Float32Array }, need: number): Uint8Array {
    if (this.cells && e.cellCounts) return evidenceFlags(e.cellCounts, this.cells.share, need);
    const byCluster = Uint8Array.from(e.counts, (n) => (n >= need ? 1 : 0));
    if (!this.cells) return byCluster;
    const { start, count } = this.cells;
    const row = new Uint8Array(count);
    for (let k = 0; k < this.k; k++) row.fill(byCluster[k], start[k], start[k + 1]);
    return row;
  }

  /** Share of the fitted prompts in cells (or clusters) where the LLM has evidence (uniform shares without a record). */
  coverageOf(e: OutcomeStats & { cellCounts?: Float32Array }): number {
    const flags = this.evidenceRow(e, Math.max(this.minEvidence, 1e-9));
    const share = this.cells ? this.cells.share : this.clusterShare;
    let cov = 0;
    for (let c = 0; c < flags.length; c++) if (flags[c]) cov += share ? share[c] : 1 / flags.length;
    return Math.min(1, cov);
  }

  /** The evidence cell of each row of embeddings (the cluster when the model has no cells). */
  cellsOf(embeddings: Float32Array, clusters: Int32Array): Int32Array {
    if (!this.cells) return clusters;
    const n = embeddings.length / this.dim;
    const D = this.dim;
    const { centroids, start } = this.cells;
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      // the nearest of the prompt's cluster's cells (squared distance, ties to the lower index, as the engine)
      let best = start[clusters[i]];
      let bd = Infinity;
      for (let c = start[clusters[i]]; c < start[clusters[i] + 1]; c++) {
        let d2 = 0;
        for (let t = 0; t < D; t++) {
          const v = embeddings[i * D + t] - centroids[c * D + t];
          d2 += v * v;
        }
        if (d2 < bd) {
          bd = d2;
          best = c;
        }
      }
      out[i] = best;
    }
    return out;
  }

  /** Adds an LLM from its outcomes on validation prompts (texts, or embeddings for a precomputed router). */
  async addModel(name: string, opts: AddModelSpec): Promise<ModelInfo> {
    checkName(name);
    if (this.has(name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool; remove it first`);
    checkCost(name, opts?.costPerQuery);
    const outcomes = opts.outcomes;
    if (!Array.isArray(outcomes) || outcomes.length === 0)
      throw new UnirouteError('INVALID_ARGUMENT', `LLM "${name}" needs at least one outcome`);
    const correct = new Float32Array(outcomes.length);
    outcomes.forEach((o, i) => {
      const y = Number(o?.correct);
      if (!(y >= 0 && y <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `outcomes[${i}].correct must be a number in [0, 1]`);
      correct[i] = y;
    });
    let emb: Float32Array;
    if (this.takesText) {
      const texts = outcomes.map((o) => o.text as string);
      checkTexts(texts, 'outcomes[].text');
      emb = await this.embedTexts(texts);
    } else {
      const rows = outcomes.map((o, i) => {
        if (!o.embedding) throw new UnirouteError('INVALID_ARGUMENT', `outcomes[${i}].embedding is required by a precomputed-embedding router`);
        return o.embedding;
      });
      emb = embeddingsFromRows(rows, this.dim, 'outcomes[].embedding');
    }
    const clusters = this.assignEmbeddings(emb).cluster;
    return this.addModelFromClusters(name, opts.costPerQuery, clusters, correct, this.cells ? this.cellsOf(emb, clusters) : undefined);
  }

  /**
   * Adds an LLM from the cluster ids of its validation prompts and its outcomes on them (NaN = no outcome), with
   * the prompts' evidence cells when the model has cells (without them, the LLM counts as having evidence in every
   * cell of a cluster where it has outcomes).
   */
  addModelFromClusters(name: string, costPerQuery: number, clusters: Int32Array, correct: Float32Array, cells?: Int32Array): ModelInfo {
    checkName(name);
    if (this.has(name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool; remove it first`);
    checkCost(name, costPerQuery);
    const stats = statsOf(this.k, clusters, correct);
    if (!(totalOutcomes(stats) > 0))
      throw new UnirouteError('INVALID_ARGUMENT', `LLM "${name}" has no usable outcome`);
    const e: PoolEntry = { name, costPerQuery, ...stats };
    if (this.cells && cells) {
      if (cells.length !== clusters.length) throw new UnirouteError('DIMENSION_MISMATCH', `${cells.length} evidence cells for ${clusters.length} outcomes`);
      e.cellCounts = new Float32Array(this.cells.count);
      cells.forEach((c, i) => {
        if (!(c >= 0 && c < this.cells!.count)) throw new UnirouteError('INVALID_ARGUMENT', `evidence cell ${c} at ${i} is outside [0, ${this.cells!.count})`);
        if (!Number.isNaN(correct[i])) e.cellCounts![c] += 1;
      });
    }
    this.insert(e);
    return this.info_(e);
  }

  removeModel(name: string): void {
    const i = this.pool.findIndex((e) => e.name === name);
    if (i < 0)
      throw new UnirouteError(
        'UNKNOWN_MODEL',
        `LLM "${name}" is not in the pool${didYouMean(name, this.pool.map((e) => e.name)) || ` (${this.pool.length} LLMs; \`uniroute models\` lists them)`}`,
      );
    this.pool = this.pool.filter((_, j) => j !== i);
    this.snap = undefined;
  }

  /** A copy of an LLM's entry (to undo a removal). */
  exportModel(name: string): PoolEntry {
    const e = this.pool.find((x) => x.name === name);
    if (!e) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool${didYouMean(name, this.pool.map((x) => x.name))}`);
    return { ...e, errorSums: e.errorSums.slice(), counts: e.counts.slice(), ...(e.cellCounts ? { cellCounts: e.cellCounts.slice() } : {}) };
  }

  importModel(e: PoolEntry): void {
    checkName(e.name);
    if (this.has(e.name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${e.name}" is already in the pool`);
    checkCost(e.name, e.costPerQuery);
    this.insert(e);
  }

  setMinEvidence(n: number): void {
    checkMinEvidence(n);
    this.minEvidence = n;
    this.snap = undefined;
  }

  setPriorStrength(a: number): void {
    checkPriorStrength(a);
    this.priorStrength = a;
    this.snap = undefined;
  }

  /** The statistics of an entry against this router: cluster and cell sizes, finite values, counts >= sums >= 0. */
  private checkStatsOf(e: PoolEntry): void {
    if (e.errorSums?.length !== this.k || e.counts?.length !== this.k)
      throw new UnirouteError('DIMENSION_MISMATCH', `LLM "${e.name}" has statistics for ${e.counts?.length} clusters; the router has ${this.k}`);
    checkStats(e, this.k);
    if (e.cellCounts !== undefined) {
      if (!this.cells || !(e.cellCounts instanceof Float32Array) || e.cellCounts.length !== this.cells.count)
        throw new UnirouteError('DIMENSION_MISMATCH', `LLM "${e.name}" has evidence counts for ${e.cellCounts?.length} cells; the router has ${this.cells?.count ?? 0}`);
      if (!e.cellCounts.every((v) => Number.isFinite(v) && v >= 0))
        throw new UnirouteError('INVALID_ARGUMENT', `LLM "${e.name}" has an evidence count that is negative or not finite`);
    }
  }

  private insert(e: PoolEntry): void {
    this.checkStatsOf(e);
    this.pool = [...this.pool, e];
    this.snap = undefined;
  }

  private overallPredicted(psi: Float32Array, m: number): Float64Array {
    const K = this.k;
    const out = new Float64Array(m);
    let total = 0;
    for (let c = 0; c < K; c++) total += this.clusterShare ? this.clusterShare[c] : 1;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let c = 0; c < K; c++) s += (this.clusterShare ? this.clusterShare[c] : 1) * psi[j * K + c];
      out[j] = total > 0 ? s / total : NaN;
    }
    return out;
  }

  /** An immutable view of the pool; a change builds a new one, so a batch never sees a torn pool. */
  snapshot(): Snapshot {
    if (this.snap) return this.snap;
    const m = this.pool.length;
    const K = this.k;
    const psi = new Float32Array(m * K);
    const sd = new Float32Array(m * K);
    const counts = new Float32Array(m * K);
    const cost = new Float32Array(m);
    this.pool.forEach((e, j) => {
      const row = psiRow(e, this.priorStrength, this.prior);
      psi.set(row.psi, j * K);
      sd.set(row.sd, j * K);
      counts.set(e.counts, j * K);
      cost[j] = e.costPerQuery;
    });
    let evidence: Uint8Array | null = null;
    const E = this.cells?.count ?? K;
    if (this.minEvidence > 0) {
      evidence = new Uint8Array(m * E);
      this.pool.forEach((e, j) => evidence!.set(this.evidenceRow(e, this.minEvidence), j * E));
    }
    const names = this.pool.map((e) => e.name);
    this.snap = {
      names,
      index: new Map(names.map((n, i) => [n, i])),
      psi,
      sd,
      counts,
      psiLogit: this.prior?.difficulty ? logitOf(psi) : null,
      evidence,
      cost,
      overall: this.overallPredicted(psi, m),
      risky: new Map(),
    };
    return this.snap;
  }

  // ---- routing ------------------------------------------------------------------------------------------------

  /**
   * λ₁: the smallest λ at which the cheapest LLM of the pool wins in every cluster on Ψ (error differences over
   * cost differences), the top of the `tradeoff` scale. A pool whose cheapest LLM is also never worse gets the λ at
   * which cost outweighs a whole error unit over the pool's cost spread.
   */
  tradeoffScale(): number {
    const s = this.snapshot();
    const m = s.names.length;
    if (m === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty: add an LLM first');
    let cheap = 0;
    for (let j = 1; j < m; j++) if (s.cost[j] < s.cost[cheap]) cheap = j;
    let hi = 0;
    let spread = 0;
    for (let j = 0; j < m; j++) {
      const dc = s.cost[j] - s.cost[cheap];
      spread = Math.max(spread, dc);
      if (!(dc > 0)) continue;
      for (let k = 0; k < this.k; k++) hi = Math.max(hi, (s.psi[cheap * this.k + k] - s.psi[j * this.k + k]) / dc);
    }
    if (hi > 0 && Number.isFinite(hi)) return hi;
    return spread > 0 ? 1 / spread : 1;
  }

  /** The λ of `tradeoff` t in [0, 1] (see RouteOptions.tradeoff). */
  lambdaForTradeoff(t: number): number {
    if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 1)
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in [0, 1] for \`tradeoff\` (0 = lowest predicted error, 1 = cheapest) but received ${String(t)}`);
    return t === 0 ? 0 : this.tradeoffScale() * 10 ** (-4 * (1 - t));
  }

  private prepare(n: number, opts: RouteOptions) {
    const s = this.snapshot();
    if (s.names.length === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty: add an LLM first');
    if (opts.tradeoff !== undefined && opts.lambda !== undefined)
      throw new UnirouteError('INVALID_ARGUMENT', 'give `lambda` or `tradeoff`, not both');
    const lambda = opts.tradeoff !== undefined ? this.lambdaForTradeoff(opts.tradeoff) : (opts.lambda ?? this.defaultLambda);
    if (typeof lambda !== 'number' || !Number.isFinite(lambda) || lambda < 0)
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a finite number >= 0 for \`lambda\` but received ${String(lambda)}`);
    const m = s.names.length;
    const risk = opts.risk ?? 0;
    if (typeof risk !== 'number' || !Number.isFinite(risk) || risk < 0)
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a finite number >= 0 for \`risk\` but received ${String(risk)}`);
    const maxError = opts.maxError;
    if (maxError !== undefined && (typeof maxError !== 'number' || !Number.isFinite(maxError) || maxError < 0 || maxError > 1))
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in [0, 1] for \`maxError\` but received ${String(maxError)}`);
    let ood: { threshold: number; fallback: number | 'best' | 'route' } | null = null;
    if (opts.ood !== false && this.distanceQuantiles) {
      const o = opts.ood ?? {};
      const q = o.quantile ?? 0.99;
      if (typeof q !== 'number' || !(q > 0 && q <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in (0, 1] for \`ood.quantile\` but received ${String(q)}`);
      const f = o.fallback ?? 'best-overall';
      let fallback: number | 'best' | 'route';
      if (f === 'best-overall') fallback = 'best';
      else if (f === 'route') fallback = 'route';
      else {
        const j = s.index.get(f);
        if (j === undefined) throw new UnirouteError('UNKNOWN_MODEL', `\`ood.fallback\` names "${String(f)}", which is not in the pool${didYouMean(String(f), s.names)}; or give "best-overall" or "route"`);
        fallback = j;
      }
      if (q < 1) ood = { threshold: this.oodThreshold(q)!, fallback };
    }
    if (opts.evidence !== undefined && opts.evidence !== 'prefer' && opts.evidence !== 'ignore')
      throw new UnirouteError('INVALID_ARGUMENT', `Expected "prefer" or "ignore" for \`evidence\` but received ${JSON.stringify(opts.evidence)}`);
    let psi = s.psi;
    let psiLogit = s.psiLogit;
    if (risk > 0) {
      let r = s.risky.get(risk);
      if (!r) {
        const p = s.psi.map((v, t) => Math.min(1, v + risk * s.sd[t]));
        r = { psi: p, psiLogit: s.psiLogit ? logitOf(p) : null };
        if (s.risky.size >= 8) s.risky.delete(s.risky.keys().next().value!);
        s.risky.set(risk, r);
      }
      psi = r.psi;
      psiLogit = r.psiLogit;
    }
    const evidence = opts.evidence === 'ignore' ? null : s.evidence;
    let allowed: Uint8Array | null = null;
    let allowedPerRow = false;
    const toMask = (list: unknown, out: Uint8Array, where: string) => {
      if (!Array.isArray(list) || list.length === 0)
        throw new UnirouteError('INVALID_ARGUMENT', `\`${where}\` must be a non-empty list of LLM names`);
      for (const name of list) {
        const j = s.index.get(name);
        if (j === undefined)
          throw new UnirouteError('UNKNOWN_MODEL', `\`${where}\` names "${String(name)}", which is not in the pool${didYouMean(String(name), s.names)}`);
        out[j] = 1;
      }
    };
    if (opts.models !== undefined) {
      const ms = opts.models;
      if (Array.isArray(ms) && ms.length > 0 && Array.isArray(ms[0])) {
        if (ms.length !== n) throw new UnirouteError('DIMENSION_MISMATCH', `\`models\` has ${ms.length} lists for ${n} prompts`);
        allowed = new Uint8Array(n * m);
        allowedPerRow = true;
        (ms as string[][]).forEach((l, i) => toMask(l, allowed!.subarray(i * m, (i + 1) * m), `models[${i}]`));
      } else {
        allowed = new Uint8Array(m);
        toMask(ms, allowed, 'models');
      }
    }
    return {
      s,
      lambda: maxError !== undefined ? 0 : lambda,
      maxError,
      ood,
      explain: opts.explain !== false,
      allowed,
      allowedPerRow,
      psi,
      psiLogit,
      evidence,
      out: {
        choice: new Int32Array(n),
        cluster: new Int32Array(n),
        distance: new Float32Array(n),
        // the n x m matrix is also needed (then dropped) by the quality floor, and by an OOD fallback whose
        // predicted error differs per prompt (a learned map or a difficulty model)
        gamma: new Float32Array(opts.explain === false && maxError === undefined && !(ood && (this.map || this.prior?.difficulty)) ? 0 : n * m),
        chosen: new Float32Array(n),
        cell: new Int32Array(this.cells ? n : 0),
      },
    };
  }

  private batchResult(p: ReturnType<Router['prepare']>): RouteBatch {
    if (p.maxError !== undefined) this.qualityFloor(p, p.maxError);
    const ood = p.ood ? this.outOfDistribution(p, p.ood) : new Uint8Array(0);
    return {
      models: p.s.names,
      costs: p.s.cost,
      lambda: p.lambda,
      choice: p.out.choice,
      cluster: p.out.cluster,
      distance: p.out.distance,
      predictedError: p.explain ? p.out.gamma : new Float32Array(0),
      chosenError: p.out.chosen,
      psi: p.psi,
      sd: p.s.sd,
      counts: p.s.counts,
      k: this.k,
      minEvidence: this.minEvidence,
      evidenceRule: !!p.evidence,
      evidenceFlags: p.s.evidence,
      evidenceStride: this.cells?.count ?? this.k,
      cellOf: this.cells ? p.out.cell : p.out.cluster,
      ood,
      oodFixed: !!p.ood && p.ood.fallback !== 'route',
    };
  }

  /** Sets (checked) the training distance quantiles that out-of-distribution thresholds are read from. */
  setDistanceQuantiles(x: DistanceQuantiles): void {
    this.distanceQuantiles = checkDistanceQuantiles(x, 'distanceQuantiles');
  }

  /**
   * The distance beyond which a prompt is out of distribution: the `quantile` of the training prompts' distances
   * to their nearest centroid (linear between the kept levels); undefined for a router fitted before they were kept.
   */
  oodThreshold(quantile = 0.99): number | undefined {
    const x = this.distanceQuantiles;
    if (!x) return undefined;
    if (quantile <= x.q[0]) return x.d[0];
    for (let i = 1; i < x.q.length; i++)
      if (quantile <= x.q[i]) {
        const t = (quantile - x.q[i - 1]) / (x.q[i] - x.q[i - 1]);
        return x.d[i - 1] + t * (x.d[i] - x.d[i - 1]);
      }
    return x.d[x.d.length - 1];
  }

  /** Flags the prompts beyond the threshold and sends them to the fallback (the allowed LLM with the lowest predicted error over the training distribution, or the one named). */
  private outOfDistribution(p: ReturnType<Router['prepare']>, o: { threshold: number; fallback: number | 'best' | 'route' }): Uint8Array {
    const n = p.out.choice.length;
    const m = p.s.names.length;
    const flags = new Uint8Array(n);
    const ok = (i: number, j: number) => !p.allowed || p.allowed[p.allowedPerRow ? i * m + j : j] === 1;
    for (let i = 0; i < n; i++) {
      if (!(p.out.distance[i] > o.threshold)) continue;
      flags[i] = 1;
      if (o.fallback === 'route') continue;
      let pick = typeof o.fallback === 'number' && ok(i, o.fallback) ? o.fallback : -1;
      if (pick < 0)
        for (let j = 0; j < m; j++) if (ok(i, j) && !Number.isNaN(p.s.overall[j]) && (pick < 0 || p.s.overall[j] < p.s.overall[pick])) pick = j;
      if (pick < 0) continue;
      p.out.choice[i] = pick;
      p.out.chosen[i] = p.out.gamma.length ? p.out.gamma[i * m + pick] : p.psi[pick * this.k + p.out.cluster[i]];
    }
    return flags;
  }

  /**
   * The quality floor, decided by the one argmin (src/router/decide.ts): among the allowed LLMs whose predicted
   * error is <= ε, the lowest cost (equal costs: the LLM listed first); rows where none qualifies keep the engine's
   * λ = 0 decision, the lowest predicted error.
   */
  private qualityFloor(p: ReturnType<Router['prepare']>, eps: number): void {
    const m = p.s.names.length;
    const n = p.out.choice.length;
    const g = p.out.gamma;
    if (n === 0) return;
    const feasible = new Uint8Array(n * m);
    const costRows = new Float32Array(n * m);
    const any = new Uint8Array(n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++) {
        const t = i * m + j;
        costRows[t] = p.s.cost[j];
        const ok = (!p.allowed || p.allowed[p.allowedPerRow ? t : j] === 1) && g[t] <= eps;
        feasible[t] = ok ? 1 : 0;
        if (ok) any[i] = 1;
      }
    // score = cost (λ = 0 on a "predicted error" that is the cost); the evidence rule applies as everywhere
    const ev = p.evidence ? { flags: p.evidence, cells: this.cells?.count ?? this.k, cellOf: this.cells ? p.out.cell : p.out.cluster } : null;
    const pick = argminRows(costRows, p.s.cost, n, m, { lambda: 0, allowed: feasible, evidence: ev });
    for (let i = 0; i < n; i++) {
      if (!any[i] || pick[i] < 0) continue;
      p.out.choice[i] = pick[i];
      p.out.chosen[i] = g[i * m + pick[i]];
    }
  }

  /** The pool part of a native call: Ψ (or its risk-adjusted form), costs, λ, masks, slope and evidence. */
  private poolArgs(p: ReturnType<Router['prepare']>) {
    const d = this.prior?.difficulty;
    return {
      psi: p.psi,
      cost: p.s.cost,
      m: p.s.names.length,
      lambda: p.lambda,
      allowed: p.allowed,
      allowedPerRow: p.allowedPerRow,
      evidence: p.evidence,
      ...(p.evidence && this.cells ? { evidenceCells: this.cells.count } : {}),
      ...(d && p.psiLogit ? { psiLogit: p.psiLogit, slope: d.slope } : {}),
    };
  }

  /** Everything a native route takes after the embedding (native/binding: read_route_parts). */
  /** The centroids' squared norms, computed once by the engine (most of the cost of routing one prompt otherwise). */
  private norms: { centroids: Float32Array; cells?: Float32Array } | undefined;
  private centroidNorms() {
    if (!this.norms)
      this.norms = {
        centroids: call(() => native().centroidNorms(this.centroids, this.k, this.dim)),
        ...(this.cells ? { cells: call(() => native().centroidNorms(this.cells!.centroids, this.cells!.count, this.dim)) } : {}),
      };
    return this.norms;
  }

  private routeParts(p: ReturnType<Router['prepare']>): NativeRouteParts {
    const d = this.prior?.difficulty;
    const c = this.cells;
    const norms = this.centroidNorms();
    return {
      centroids: this.centroids,
      centroidNorms: norms.centroids,
      ...(norms.cells ? { evidenceNorms: norms.cells } : {}),
      k: this.k,
      ...this.poolArgs(p),
      ...(d && p.psiLogit ? { difficulty: { w: d.w, w0: d.w0, mu: d.mu } } : {}),
      ...(c ? { evidenceCells: c.count, evidenceCentroids: c.centroids, evidenceStart: c.start, cellOut: p.out.cell } : {}),
      choice: p.out.choice,
      cluster: p.out.cluster,
      distance: p.out.distance,
      gamma: p.out.gamma.length ? p.out.gamma : null,
      chosen: p.out.chosen,
    };
  }

  private routeArgs(texts: string[], p: ReturnType<Router['prepare']>): NativeRouteArgs {
    return { texts, ...this.routeParts(p) };
  }

  private vectorArgs(embeddings: Float32Array, p: ReturnType<Router['prepare']>, sync: boolean): NativeVectorRouteArgs {
    const map = this.map ? { map: { params: this.map.params, config: this.map.config } } : {};
    return { embeddings, dim: this.dim, ...this.routeParts(p), ...map, sync };
  }

  /** Whether the router embeds prompt texts itself (hashed or remote embedder), rather than taking embeddings. */
  get takesText(): boolean {
    return !!(this.hashed || this.remote);
  }

  /** Whether the router embeds texts in the engine (so that routeBatchSync works). */
  get embedsNatively(): boolean {
    return !!this.hashed;
  }

  /** The router's text embedder. */
  get textEmbedder(): TextEmbedder | undefined {
    return this.hashed ?? this.remote;
  }

  /** Embeds prompt texts with the router's embedder (native hashed, or the remote endpoint). */
  async embedTexts(texts: string[]): Promise<Float32Array> {
    const e = this.textEmbedder;
    if (!e) throw new UnirouteError('INVALID_ARGUMENT', `this router takes precomputed ${this.dim}-d embeddings, not texts: use routeEmbeddings()`);
    checkTexts(texts);
    return e.embed(texts);
  }

  private requireHashed(): HashedEmbedder {
    if (!this.hashed)
      throw new UnirouteError(
        'INVALID_ARGUMENT',
        this.remote ? 'this router embeds through a remote endpoint: use the async routeBatch()' : `this router takes precomputed ${this.dim}-d embeddings, not texts: use routeEmbeddings()`,
      );
    return this.hashed;
  }

  /** Routes a batch of prompt texts off the event loop. */
  async routeBatch(texts: string[], opts: RouteOptions = {}): Promise<RouteBatch> {
    if (opts.mix) return this.mixed(opts, (o) => this.routeBatch(texts, o), (rows, o) => this.routeBatch(rows.map((i) => texts[i]), o), texts.length);
    // the fused kernel serves a hashed router with nearest centroids; the others embed, then route the vectors
    if (!this.hashed || this.map) return this.routeEmbeddings(await this.embedTexts(texts), opts);
    const h = this.hashed;
    checkTexts(texts);
    const p = this.prepare(texts.length, opts);
    if (texts.length > 0) await callAsync(() => h.nativeHandle.route(this.routeArgs(texts, p)));
    return this.batchResult(p);
  }

  /** A mix (RouteOptions.mix): the whole batch at λ, then the rows it picks again at mix.lambda. */
  private async mixed(opts: RouteOptions, all: (o: RouteOptions) => Promise<RouteBatch>, some: (rows: number[], o: RouteOptions) => Promise<RouteBatch>, n: number): Promise<RouteBatch> {
    const mix = opts.mix!;
    if (!(Number.isFinite(mix.lambda) && mix.lambda >= 0 && mix.share >= 0 && mix.share <= 1))
      throw new UnirouteError('INVALID_ARGUMENT', '`mix` needs a lambda >= 0 and a share in [0, 1]');
    const offset = mix.offset ?? 0;
    const b = await all({ ...opts, mix: undefined });
    const rows: number[] = [];
    for (let i = 0; i < n; i++) if (mixedRow(offset + i, mix.share)) rows.push(i);
    if (rows.length === 0) return b;
    const o = await some(rows, { ...opts, mix: undefined, tradeoff: undefined, lambda: mix.lambda });
    rows.forEach((i, j) => {
      b.choice[i] = o.choice[j];
      b.chosenError[i] = o.chosenError[j];
    });
    return b;
  }

  /** Routes a small batch on the calling thread (cheaper than a thread hop for a few prompts). */
  routeBatchSync(texts: string[], opts: RouteOptions = {}): RouteBatch {
    const h = this.requireHashed();
    checkTexts(texts);
    if (this.map) return this.routeEmbeddingsSync(h.embedSync(texts), opts);
    const p = this.prepare(texts.length, opts);
    if (texts.length > 0) call(() => h.nativeHandle.routeSync(this.routeArgs(texts, p)));
    return this.batchResult(p);
  }

  /**
   * Routes rows of embeddings (n x dim, row-major: precomputed, or the learned map's input) in the engine, off the
   * event loop, in bounded chunks: nearest centroid, the learned map, difficulty, evidence, argmin.
   */
  async routeEmbeddings(embeddings: Float32Array, opts: RouteOptions = {}): Promise<RouteBatch> {
    if (opts.mix)
      return this.mixed(opts, (o) => this.routeEmbeddings(embeddings, o), (rows, o) => this.routeEmbeddings(gatherRows(embeddings, rows, this.dim), o), embeddings.length / this.dim);
    checkEmbeddings(embeddings, this.dim);
    const p = this.prepare(embeddings.length / this.dim, opts);
    if (embeddings.length > 0) await callAsync(() => native().routeVectors(this.vectorArgs(embeddings, p, false))!);
    return this.batchResult(p);
  }

  /** The same on the calling thread (a few prompts). */
  routeEmbeddingsSync(embeddings: Float32Array, opts: RouteOptions = {}): RouteBatch {
    checkEmbeddings(embeddings, this.dim);
    const p = this.prepare(embeddings.length / this.dim, opts);
    if (embeddings.length > 0) call(() => native().routeVectors(this.vectorArgs(embeddings, p, true)));
    return this.batchResult(p);
  }

  /**
   * Finds λ for a target on these (unlabelled) prompts: the most accurate routing with mean cost <= maxCost, or
   * the cheapest with mean predicted accuracy >= minAccuracy (paper App. E).
   */
  async calibrateLambda(texts: string[], target: CalibrationTarget, opts: Omit<RouteOptions, 'lambda' | 'models'> & { models?: string[] } = {}): Promise<Calibration> {
    const b = await this.routeBatch(texts, { ...opts, lambda: 0 });
    let allowed: Uint8Array | null = null;
    if (opts.models) {
      allowed = new Uint8Array(b.models.length);
      for (const m of opts.models) allowed[b.models.indexOf(m)] = 1;
    }
    return calibrateLambda(b, target, allowed);
  }

  /**
   * Which of these candidate prompts (texts, or rows of embeddings for a precomputed router) to label next for an
   * LLM (src/router/suggest.ts): indices into the candidates, in the order picked.
   */
  async suggestLabels(candidates: string[] | Float32Array, opts: SuggestOptions): Promise<Suggestion[]> {
    const emb = candidates instanceof Float32Array ? checkEmbeddings(candidates, this.dim, 'candidates') : await this.embedTexts(candidates);
    const n = emb.length / this.dim;
    if (n === 0) throw new UnirouteError('INVALID_ARGUMENT', 'suggesting labels needs at least one candidate prompt');
    const { cluster } = this.assignEmbeddings(emb);
    const cell = this.cellsOf(emb, cluster);
    const others = this.pool.filter((e) => e.name !== opts.model).map((e) => e.name);
    const batch = others.length ? await this.routeEmbeddings(emb, { lambda: opts.lambda, models: others, evidence: 'ignore', ood: false }) : null;
    return pickSuggestions(this, cluster, cell, batch, opts);
  }

  /** Routes texts and explains each decision: every pooled LLM's predicted error and cost. */
  async route(texts: string[], opts: RouteOptions = {}): Promise<RouteDecision[]> {
    return explain(await this.routeBatch(texts, opts));
  }

  async assignTexts(texts: string[]): Promise<{ cluster: Int32Array; distance: Float32Array }> {
    const emb = await this.embedTexts(texts);
    return this.assignEmbeddings(emb);
  }

  assignEmbeddings(embeddings: Float32Array): { cluster: Int32Array; distance: Float32Array } {
    checkEmbeddings(embeddings, this.dim);
    const n = embeddings.length / this.dim;
    const cluster = new Int32Array(n);
    const distance = new Float32Array(n);
    call(() => native().assignSync(embeddings, n, this.dim, this.centroids, this.k, cluster, distance));
    return { cluster, distance };
  }

  // ---- persistence --------------------------------------------------------------------------------------------

  toArtifact(gzip = false): Buffer {
    const { manifest, tensors } = this.artifactParts();
    return encodeArtifact(manifest, tensors, gzip);
  }

  private artifactParts(): { manifest: Record<string, unknown>; tensors: TensorMap } {
    const m = this.pool.length;
    const sums = new Float32Array(m * this.k);
    const counts = new Float32Array(m * this.k);
    this.pool.forEach((e, j) => {
      sums.set(e.errorSums, j * this.k);
      counts.set(e.counts, j * this.k);
    });
    const tensors: TensorMap = {
      centroids: { data: this.centroids, shape: [this.k, this.dim] },
      'pool.error_sums': { data: sums, shape: [m, this.k] },
      'pool.counts': { data: counts, shape: [m, this.k] },
    };
    if (this.map) tensors['map.params'] = { data: this.map.params, shape: [this.map.params.length] };
    if (this.prior) {
      tensors['prior.cluster_logit'] = { data: this.prior.clusterLogit, shape: [this.k] };
      if (this.prior.difficulty) {
        tensors['prior.difficulty_w'] = { data: this.prior.difficulty.w, shape: [this.dim] };
        tensors['prior.difficulty_mu'] = { data: this.prior.difficulty.mu, shape: [this.k] };
      }
    }
    if (this.clusterShare) tensors['prior.cluster_share'] = { data: this.clusterShare, shape: [this.k] };
    if (this.cells) {
      const E = this.cells.count;
      tensors['evidence.centroids'] = { data: this.cells.centroids, shape: [E, this.dim] };
      tensors['evidence.share'] = { data: this.cells.share, shape: [E] };
      tensors['evidence.start'] = { data: this.cells.start, shape: [this.k + 1] };
      // -1 marks an entry with no cell counts (evidence everywhere)
      const cc = new Float32Array(m * E);
      this.pool.forEach((e, j) => (e.cellCounts ? cc.set(e.cellCounts, j * E) : cc.fill(-1, j * E, (j + 1) * E)));
      tensors['pool.cell_counts'] = { data: cc, shape: [m, E] };
    }
    if (this.hashed) {
      const B = 2 ** (this.embedderSpec as HashedEmbedderSpec).bucketsLog2;
      tensors['embedder.projection'] = { data: this.hashed.projection, shape: [B, this.dim] };
      tensors['embedder.scale'] = { data: this.hashed.scale, shape: [B] };
    }
    const manifest = {
      embedder: this.embedderSpec,
      clusters: this.k,
      priorStrength: this.priorStrength,
      defaultLambda: this.defaultLambda,
      minEvidence: this.minEvidence,
      ...(this.cells ? { evidenceCells: this.cells.count } : {}),
      ...(this.prior?.difficulty ? { difficulty: { w0: this.prior.difficulty.w0, slope: this.prior.difficulty.slope } } : {}),
      ...(this.distanceQuantiles ? { distanceQuantiles: this.distanceQuantiles } : {}),
      pool: this.pool.map((e) => ({ name: e.name, costPerQuery: e.costPerQuery })),
      clusterMap: this.map ? { kind: 'learned', config: this.map.config } : { kind: 'nearest-centroid' },
      info: this.info,
    };
    return { manifest, tensors };
  }

  static fromArtifact(buf: Buffer, source = 'artifact', expect?: { embedder?: Partial<EmbedderSpec> }): Router {
    const { manifest, tensors } = decodeArtifact(buf, source);
    const bad = (why: string): never => {
      throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${why}`);
    };
    const spec = manifest?.embedder as EmbedderSpec;
    if (!spec || (spec.kind !== 'hashed-lsa' && spec.kind !== 'precomputed' && spec.kind !== 'openai')) bad('unknown embedder kind');
    if (!Number.isInteger(spec.dim) || spec.dim < 1 || spec.dim > 65536) bad(`the embedding dimension ${String(spec.dim)} is not a whole number in [1, 65536]`);
    if (expect?.embedder) {
      for (const [key, v] of Object.entries(expect.embedder))
        if (v !== undefined && (spec as any)[key] !== v)
          throw new UnirouteError(
            'ARTIFACT_MISMATCH',
            `${source} was fitted with embedder ${key} = ${JSON.stringify((spec as any)[key])}, but ${JSON.stringify(v)} is required`,
          );
    }
    const k = manifest.clusters;
    const pool = manifest.pool as Array<{ name: string; costPerQuery: number }>;
    if (!Number.isInteger(k) || k < 1 || !Array.isArray(pool)) bad('manifest lacks clusters or pool');
    const need = (name: string, len: number) => {
      const t = tensors[name];
      if (!t) bad(`tensor ${name} is missing`);
      if (t.length !== len) bad(`tensor ${name} has ${t.length} values, expected ${len}`);
      return t;
    };
    const centroids = need('centroids', k * spec.dim) as Float32Array;
    const sums = need('pool.error_sums', pool.length * k) as Float32Array;
    const counts = need('pool.counts', pool.length * k) as Float32Array;
    let remote: RemoteEmbedder | undefined;
    if (spec.kind === 'openai') {
      if (typeof spec.model !== 'string' || typeof spec.baseUrl !== 'string') bad('the openai embedder lacks its model or base URL');
      // UNIROUTE_EMBEDDER_URL points the router at another server of the same model
      remote = new RemoteEmbedder({ ...(spec as RemoteEmbedderSpec), baseUrl: process.env.UNIROUTE_EMBEDDER_URL ?? spec.baseUrl });
    }
    let hashed: HashedEmbedder | undefined;
    if (spec.kind === 'hashed-lsa') {
      const B = 2 ** spec.bucketsLog2;
      hashed = new HashedEmbedder(
        spec,
        need('embedder.projection', B * spec.dim) as Int8Array,
        need('embedder.scale', B) as Float32Array,
      );
    }
    let map: LearnedMap | undefined;
    if (manifest.clusterMap?.kind === 'learned') {
      const t = tensors['map.params'];
      if (!(t instanceof Float32Array)) bad('the learned map\'s parameters are missing');
      map = { config: manifest.clusterMap.config, params: t as Float32Array };
      // the engine checks the declared network against its parameters (a forward pass of no rows), at load
      try {
        native().mlpForward(map.params, map.config, new Float32Array(0), 0, new Float32Array(0));
      } catch (e) {
        bad(`the learned map's parameters do not fit its declared network (${(e as Error).message})`);
      }
    }
    let prior: PsiPrior | undefined;
    if (tensors['prior.cluster_logit']) {
      prior = { clusterLogit: need('prior.cluster_logit', k) as Float32Array };
      if (manifest.difficulty) {
        const { w0, slope } = manifest.difficulty;
        if (typeof w0 !== 'number' || typeof slope !== 'number') bad('the difficulty model lacks its offset or slope');
        prior.difficulty = { w: need('prior.difficulty_w', spec.dim) as Float32Array, mu: need('prior.difficulty_mu', k) as Float32Array, w0, slope };
      }
    }
    const clusterShare = tensors['prior.cluster_share'] ? (need('prior.cluster_share', k) as Float32Array) : undefined;
    let cells: EvidenceCells | undefined;
    let cellCounts: Float32Array | undefined;
    if (tensors['evidence.centroids']) {
      const E = manifest.evidenceCells;
      if (!Number.isInteger(E) || E < 1) bad('evidenceCells is missing or not a positive integer');
      const start = need('evidence.start', k + 1);
      if (!(start instanceof Int32Array)) bad('evidence.start is not I32');
      cells = {
        count: E,
        centroids: need('evidence.centroids', E * spec.dim) as Float32Array,
        share: need('evidence.share', E) as Float32Array,
        start: start as Int32Array,
      };
      cellCounts = need('pool.cell_counts', pool.length * E) as Float32Array;
    }
    const validQuantiles = (x: DistanceQuantiles) => {
      try {
        return checkDistanceQuantiles(x, 'distanceQuantiles');
      } catch (e) {
        return bad((e as Error).message);
      }
    };
    return new Router({
      embedder: spec,
      hashed,
      remote,
      map,
      centroids,
      k,
      prior,
      clusterShare,
      cells,
      minEvidence: manifest.minEvidence ?? 1,
      ...(manifest.distanceQuantiles !== undefined ? { distanceQuantiles: validQuantiles(manifest.distanceQuantiles) } : {}),
      priorStrength: manifest.priorStrength ?? 0,
      defaultLambda: manifest.defaultLambda ?? 0,
      info: manifest.info ?? {},
      pool: pool.map((p, j) => ({
        name: p.name,
        costPerQuery: p.costPerQuery,
        errorSums: sums.slice(j * k, (j + 1) * k),
        counts: counts.slice(j * k, (j + 1) * k),
        ...(cells && cellCounts && cellCounts[j * cells.count] >= 0 ? { cellCounts: cellCounts.slice(j * cells.count, (j + 1) * cells.count) } : {}),
      })),
    });
  }

  /** Saves atomically; gzip (for a `.gz` path) runs on the thread pool, so a server keeps serving meanwhile. */
  async save(path: string, opts: { gzip?: boolean } = {}): Promise<void> {
    const raw = this.toArtifact(false);
    await writeFileAtomic(path, (opts.gzip ?? path.endsWith('.gz')) ? await gzipAsync(raw, { level: 9 }) : raw);
  }

  /**
   * The fitted model's identity: a sha256 over the embedder, centroids, learned map, prior, evidence cells, distance
   * quantiles and fit information, not the pool or the settings. A pool store is keyed by it.
   */
  modelHash(): string {
    const { manifest, tensors } = this.artifactParts();
    const h = createHash('sha256');
    // settings a user may change (prior strength, default λ, min evidence) and the pool are not the model
    const { pool: _p, priorStrength: _s, defaultLambda: _l, minEvidence: _e, ...fitted } = manifest;
    h.update(JSON.stringify(fitted));
    for (const name of Object.keys(tensors).sort()) {
      if (name.startsWith('pool.')) continue;
      const t = tensors[name];
      h.update(`\u0000${name}:${t.shape.join('x')}:${t.data.constructor.name}\u0000`);
      h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    return h.digest('hex');
  }

  /**
   * Replaces the whole pool at once (from a pool store): every entry is checked first, so a bad one changes
   * nothing; routing sees the old pool or the new one, never a mix.
   */
  setPool(entries: PoolEntry[]): void {
    this.checkEntries(entries);
    this.pool = entries.slice();
    this.snap = undefined;
  }

  /** Checks an entry against this router (name, cost, statistics, cell counts) without adding it. */
  checkEntry(e: PoolEntry): void {
    checkName(e.name);
    checkCost(e.name, e.costPerQuery);
    this.checkStatsOf(e);
  }

  /** Checks a whole pool: every entry, and no name twice. */
  checkEntries(entries: PoolEntry[]): void {
    const seen = new Set<string>();
    for (const e of entries) {
      this.checkEntry(e);
      if (seen.has(e.name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${e.name}" appears twice`);
      seen.add(e.name);
    }
  }

  /** Puts an entry in the pool: in the place of the LLM of that name (its position kept), or at the end. */
  upsertEntry(e: PoolEntry): void {
    this.checkEntry(e);
    const i = this.pool.findIndex((x) => x.name === e.name);
    const pool = this.pool.slice();
    if (i < 0) pool.push(e);
    else pool[i] = e;
    this.pool = pool;
    this.snap = undefined;
  }

  /** Copies of every pool entry, in pool order. */
  poolEntries(): PoolEntry[] {
    return this.pool.map((e) => this.exportModel(e.name));
  }

  static async load(path: string, expect?: { embedder?: Partial<EmbedderSpec> }): Promise<Router> {
    let buf: Buffer;
    try {
      buf = await fs.readFile(path);
    } catch (e) {
      throw new UnirouteError('NOT_FOUND', `cannot read router file ${path}: ${(e as Error).message}`);
    }
    return Router.fromArtifact(buf, path, expect);
  }
}

/**
 * Explains each decision: every pooled LLM's predicted error and cost, its outcomes in the prompt's cluster, whether
 * they count as evidence, and an approximate 95 % interval (Ψ ± 1.96 sd in the cluster, moved by the prompt's
 * difficulty as the prediction is).
 */
export function explain(b: RouteBatch): RouteDecision[] {
  return Array.from(b.choice, (_, i) => explainRow(b, i));
}

const clampedLogit = (p: number) => logit(Math.min(1 - 1e-6, Math.max(1e-6, p)));

/**
 * The one JSON shape of a decision, shared by the CLI and the HTTP API: {model, cluster, distance, predicted_error,
 * cost, ood} and, when explained, candidates keyed by LLM: {predicted_error, cost, outcomes, evidence, interval}.
 */
/** The JSON of decision records: numbers other than costs to 5 decimals (what `uniroute route` writes). */
export const decisionReplacer = (key: string, v: unknown) => (typeof v === 'number' && key !== 'cost' && !Number.isInteger(v) ? +v.toFixed(5) : v);

/** One decision as `uniroute route` writes it (with `id` first when given): the library's decision, serialised. */
export function decisionJson(d: RouteDecision, withCandidates: boolean, id?: unknown): string {
  return JSON.stringify(id === undefined ? decisionRecord(d, withCandidates) : { id, ...decisionRecord(d, withCandidates) }, decisionReplacer);
}

export function decisionRecord(d: RouteDecision, withCandidates: boolean): Record<string, unknown> {
  const rec: Record<string, unknown> = {
    model: d.model,
    cluster: d.cluster,
    distance: d.distance,
    predicted_error: d.predictedError,
    cost: d.cost,
    ood: d.ood,
  };
  if (withCandidates)
    rec.candidates = Object.fromEntries(
      d.candidates.map((c) => [c.model, { predicted_error: c.predictedError, cost: c.cost, outcomes: c.outcomes, evidence: c.evidence, interval: c.interval }]),
    );
  return rec;
}

/** The explanation of decision i of a batch. */
export function explainRow(b: RouteBatch, i: number): RouteDecision {
  const m = b.models.length;
  const K = b.k;
  const c = b.choice[i];
  const k = b.cluster[i];
  if (b.predictedError.length === 0)
    return { model: b.models[c], cluster: k, distance: b.distance[i], predictedError: b.chosenError[i], cost: b.costs[c], ood: b.ood[i] === 1, candidates: [] };
  // the prompt's shift in logit space (one for every LLM), read back from the first candidate's prediction
  const g0 = b.predictedError[i * m];
  const p0 = b.psi[k];
  const shift = Math.abs(g0 - p0) > 1e-6 ? clampedLogit(g0) - clampedLogit(p0) : 0;
  const move = (p: number) => (shift === 0 ? p : 1 / (1 + Math.exp(-(clampedLogit(p) + shift))));
  const candidates: Candidate[] = b.models.map((model, j) => {
    const t = j * K + k;
    const n = b.counts[t];
    const lo = Math.max(0, b.psi[t] - 1.96 * b.sd[t]);
    const hi = Math.min(1, b.psi[t] + 1.96 * b.sd[t]);
    return {
      model,
      predictedError: b.predictedError[i * m + j],
      cost: b.costs[j],
      outcomes: n,
      evidence: b.evidenceFlags ? b.evidenceFlags[j * b.evidenceStride + b.cellOf[i]] === 1 : true,
      interval: [move(lo), move(hi)],
    };
  });
  return {
    model: b.models[c],
    cluster: k,
    distance: b.distance[i],
    predictedError: b.predictedError[i * m + c],
    cost: b.costs[c],
    ood: b.ood[i] === 1,
    candidates,
  };
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > 256)
    throw new UnirouteError('INVALID_ARGUMENT', 'an LLM name must be a non-empty string of at most 256 characters');
}

/** Costs are scored in float32: beyond 1e30 (or any non-finite value) a cost would poison every decision. */
const MAX_COST = 1e30;
function checkCost(name: string, c: unknown): void {
  if (typeof c !== 'number' || !Number.isFinite(c) || c < 0 || c > MAX_COST)
    throw new UnirouteError('NO_COST', `LLM "${name}" needs a cost per query in [0, ${MAX_COST}] (got ${String(c)})`);
}

function checkPriorStrength(a: unknown): void {
  if (typeof a !== 'number' || !Number.isFinite(a) || a < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `priorStrength must be a finite number >= 0 (got ${String(a)})`);
}

function checkMinEvidence(n: unknown): void {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `minEvidence must be a finite number >= 0 (got ${String(n)})`);
}

/** Sums and counts: k finite values each, counts >= sums >= 0. */
function checkStats(e: OutcomeStats & { name?: string }, k: number): void {
  const who = e.name ? `LLM "${e.name}"` : 'an LLM';
  if (!(e.errorSums instanceof Float32Array) || !(e.counts instanceof Float32Array) || e.errorSums.length !== k || e.counts.length !== k)
    throw new UnirouteError('DIMENSION_MISMATCH', `${who} needs ${k} error sums and ${k} counts (Float32Array)`);
  for (let c = 0; c < k; c++) {
    const s = e.errorSums[c];
    const n = e.counts[c];
    if (!Number.isFinite(s) || !Number.isFinite(n) || s < 0 || n < 0 || s > n + 1e-3)
      throw new UnirouteError('INVALID_ARGUMENT', `${who} has invalid statistics in cluster ${c}: error sum ${s}, count ${n} (need 0 <= sum <= count, finite)`);
  }
}

function checkPrior(p: PsiPrior, k: number, dim: number): void {
  const finite = (a: Float32Array, name: string, len: number) => {
    if (!(a instanceof Float32Array) || a.length !== len)
      throw new UnirouteError('DIMENSION_MISMATCH', `the prior's ${name} has ${a?.length ?? 0} values, expected ${len}`);
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new UnirouteError('NON_FINITE', `the prior's ${name} has a non-finite value at ${i}`);
  };
  finite(p.clusterLogit, 'cluster logits', k);
  if (p.difficulty) {
    finite(p.difficulty.w, 'difficulty weights', dim);
    finite(p.difficulty.mu, 'difficulty means', k);
    if (!Number.isFinite(p.difficulty.w0) || !Number.isFinite(p.difficulty.slope))
      throw new UnirouteError('NON_FINITE', "the prior's difficulty offset and slope must be finite");
  }
}
