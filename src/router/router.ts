/**
 * The router: a thin facade over the fitted model (an embedder, K centroids or a learned cluster map, the prior),
 * the LLM pool (per-cluster outcome sums and counts, costs), and the decision core (src/decide/): the posterior of
 * every LLM's Ψ, the one rule route(x) = argmin_m γ_m(x) + λ·c_m over the allowed LLMs (Proposition 1), the
 * out-of-distribution rule, exploration, and the default operating point, which follows the pool.
 */
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { UnirouteError, didYouMean } from '../errors.js';
import { call, callAsync, native, type MlpConfig, type NativeRouteArgs, type NativeRouteModel, type NativeRouteModelParts, type NativeRouteParts, type NativeVectorRouteArgs } from '../engine/native.js';
import { HashedEmbedder, checkEmbeddings, checkTexts, embeddingsFromRows, type EmbedderSpec, type TextEmbedder } from '../embed/embedder.js';
import type { RemoteEmbedder } from '../embed/remote.js';
import { encodeArtifact, writeFileAtomic } from './artifact.js';
// persist.ts imports Router back; the cycle is safe because neither uses the other at load time
import * as persist from './persist.js';
import { overallErrorOf, statsOf, totalOutcomes, type OutcomeStats, type PsiPrior } from '../decide/posterior.js';
import { buildSnapshot, coverageOf, posteriorOf, shareWeighted, type EvidenceCells, type ModelView, type PoolEntry, type Snapshot } from '../decide/snapshot.js';
import { finish, lambdaForTradeoff, prepare, tradeoffScale, type DecideModel, type Prepared } from '../decide/policy.js';
import { explain } from '../decide/explain.js';
import { operatingPointFromPredictions, type OperatingPoint } from '../decide/operating.js';
import type { RouteBatch, RouteDecision, RouteOptions } from '../decide/types.js';
import { gatherRows } from './select.js';
import { calibrateLambda, mixedRow, type Calibration, type CalibrationTarget } from './calibrate.js';
import { pickSuggestions, type SuggestOptions, type Suggestion } from './suggest.js';
import {
  checkCost,
  checkDistanceQuantiles,
  checkMinEvidence,
  checkName,
  checkPrior,
  checkPriorStrength,
  checkStats,
  type DistanceQuantiles,
} from './checks.js';

const gzipAsync = promisify(gzip);

export type { PoolEntry, EvidenceCells } from '../decide/snapshot.js';
export { evidenceFlags, EVIDENCE_DENSITY } from '../decide/snapshot.js';
export type { RouteOptions, RouteBatch, RouteDecision, Candidate } from '../decide/types.js';
export { explain, explainRow, decisionRecord, decisionJson, decisionReplacer } from '../decide/explain.js';
export { DISTANCE_LEVELS, type DistanceQuantiles } from './checks.js';
export type { OperatingPoint } from '../decide/operating.js';

/** A new LLM: its cost per query and its outcomes on labelled prompts. */
export interface AddModelSpec {
  costPerQuery: number;
  outcomes: Outcome[];
}

export interface ModelInfo {
  name: string;
  costPerQuery: number;
  outcomes: number;
  /** The error rate observed in its outcomes (NaN without one). */
  overallError: number;
  /** The posterior mean error over the training distribution: Ψ averaged by the clusters' share of the train prompts. */
  predictedError: number;
  /** Ψ: the posterior mean error per cluster. */
  errorVector: number[];
  /** Its posterior sd per cluster. */
  errorSd: number[];
  /** Outcomes per cluster. */
  counts: number[];
  /** Share of the fitted prompts that fall in cells (or clusters) where this LLM has evidence (>= minEvidence outcomes). */
  coverage: number;
  /** The posterior mean and sd of its ability α (0 and 0 without a prior). */
  ability: { mean: number; sd: number };
}

export interface Outcome {
  text?: string;
  embedding?: ArrayLike<number>;
  correct: number;
}

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
  /**
   * A fixed default λ. Without one, a router with kept prompts uses the pool's operating point (recomputed after
   * every change of the pool), and one without uses 0.
   */
  defaultLambda?: number;
  info?: Record<string, unknown>;
  pool?: PoolEntry[];
  map?: LearnedMap;
  /** The fitted prior of Ψ (two-factor cluster logits, ability prior, difficulty model); absent in old routers. */
  prior?: PsiPrior;
  /** Share of the train prompts in each cluster (the pool's prior over clusters, coverage). */
  clusterShare?: Float32Array;
  /** Evidence cells (default: the clusters themselves). */
  cells?: EvidenceCells;
  /** Outcomes in a cell below which an LLM has no evidence there (default 1; 0 disables). Information only. */
  minEvidence?: number;
  /** Quantiles of the training prompts' distances to their nearest centroid (for out-of-distribution prompts). */
  distanceQuantiles?: DistanceQuantiles;
  /** Embeddings of training prompts kept for the operating point (rows x dim). */
  keptPrompts?: Float32Array;
}

/** The state's types, before anything is read from it: a caller's mistake is a coded error, never a TypeError. */
function checkState(s: RouterState): void {
  const bad = (why: string): never => {
    throw new UnirouteError('INVALID_ARGUMENT', `new Router(): ${why}`);
  };
  if (typeof s !== 'object' || s === null) bad('expected a state object');
  if (typeof s.k !== 'number' || !Number.isInteger(s.k) || s.k < 1) bad(`k must be a positive integer, got ${String(s.k)}`);
  const e = s.embedder as { kind?: unknown; dim?: unknown } | undefined;
  if (typeof e !== 'object' || e === null) return bad('`embedder` (the embedder spec: {kind, dim, ...}) is required');
  if (e.kind !== 'hashed-lsa' && e.kind !== 'precomputed' && e.kind !== 'openai') bad(`embedder.kind must be "hashed-lsa", "precomputed" or "openai" (got ${JSON.stringify(e.kind)})`);
  if (typeof e.dim !== 'number' || !Number.isInteger(e.dim) || e.dim < 1) bad(`the embedding dimension (embedder.dim) must be a positive integer, got ${String(e.dim)}`);
  if (!(s.centroids instanceof Float32Array)) bad('`centroids` must be a Float32Array of k x dim values');
  for (let i = 0; i < s.centroids.length; i++) if (!Number.isFinite(s.centroids[i])) throw new UnirouteError('NON_FINITE', `new Router(): centroids have a non-finite value at ${i}`);
  if (s.cells) {
    if (!(s.cells.share instanceof Float32Array) || !(s.cells.centroids instanceof Float32Array)) bad('evidence cells need Float32Array centroids and shares');
    if (!s.cells.share.every((v) => Number.isFinite(v) && v >= 0)) throw new UnirouteError('INVALID_ARGUMENT', 'new Router(): evidence cell shares must be finite and >= 0');
  }
  if (s.pool !== undefined && !Array.isArray(s.pool)) bad('`pool` must be a list of entries');
}

export class Router {
  readonly embedderSpec: EmbedderSpec;
  readonly hashed: HashedEmbedder | undefined;
  readonly remote: RemoteEmbedder | undefined;
  readonly centroids: Float32Array;
  readonly k: number;
  readonly dim: number;
  priorStrength: number;
  /** The fixed default λ, when one was set (otherwise the pool's operating point). */
  fixedLambda: number | undefined;
  info: Record<string, unknown>;
  readonly map: LearnedMap | undefined;
  readonly prior: PsiPrior | undefined;
  readonly clusterShare: Float32Array | undefined;
  readonly cells: EvidenceCells | undefined;
  minEvidence: number;
  distanceQuantiles: DistanceQuantiles | undefined;
  keptPrompts: Float32Array | undefined;
  private pool: PoolEntry[] = [];
  private snap: Snapshot | undefined;

  constructor(s: RouterState) {
    checkState(s);
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
    if (!Number.isInteger(this.dim) || this.dim < 1) throw new UnirouteError('INVALID_ARGUMENT', `the embedding dimension must be a positive integer, got ${this.dim}`);
    if (s.centroids.length !== s.k * this.dim)
      throw new UnirouteError('DIMENSION_MISMATCH', `centroids have ${s.centroids.length} values, expected k x dim = ${s.k * this.dim}`);
    if (s.embedder.kind === 'hashed-lsa' && !s.hashed) throw new UnirouteError('INVALID_ARGUMENT', 'a hashed-lsa router needs its fitted embedder');
    checkPriorStrength(s.priorStrength);
    this.centroids = s.centroids;
    this.priorStrength = s.priorStrength;
    if (s.defaultLambda !== undefined && !(Number.isFinite(s.defaultLambda) && s.defaultLambda >= 0))
      throw new UnirouteError('INVALID_ARGUMENT', `the default lambda must be a finite number >= 0 (got ${s.defaultLambda})`);
    this.fixedLambda = s.defaultLambda;
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
    if (s.clusterShare && !s.clusterShare.every((v) => Number.isFinite(v) && v >= 0))
      throw new UnirouteError('INVALID_ARGUMENT', 'clusterShare must hold finite shares >= 0');
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
    if (s.keptPrompts) this.setKeptPrompts(s.keptPrompts);
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
    const row = posteriorOf(this, e);
    return {
      name: e.name,
      costPerQuery: e.costPerQuery,
      outcomes: totalOutcomes(e),
      overallError: overallErrorOf(e),
      predictedError: shareWeighted(this, row.psi, 1)[0],
      errorVector: Array.from(row.psi),
      errorSd: Array.from(row.sd),
      counts: Array.from(e.counts),
      coverage: this.coverageOf(e),
      ability: { mean: row.ability, sd: row.abilitySd },
    };
  }

  /** Share of the fitted prompts in cells (or clusters) where the LLM has evidence (uniform shares without a record). */
  coverageOf(e: OutcomeStats & { cellCounts?: Float32Array }): number {
    return coverageOf(this, e);
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
    if (!Array.isArray(outcomes) || outcomes.length === 0) throw new UnirouteError('INVALID_ARGUMENT', `LLM "${name}" needs at least one outcome`);
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
    if (!(totalOutcomes(stats) > 0)) throw new UnirouteError('INVALID_ARGUMENT', `LLM "${name}" has no usable outcome`);
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
    if (this.has(e.name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${e.name}" is already in the pool`);
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

  /** Replaces the whole pool at once (from a pool store): every entry is checked first, so a bad one changes nothing. */
  setPool(entries: PoolEntry[]): void {
    this.checkEntries(entries);
    this.pool = entries.slice();
    this.snap = undefined;
  }

  /** Checks an entry against this router (name, cost, statistics, cell counts) without adding it. */
  checkEntry(e: PoolEntry): void {
    checkName(e.name);
    checkCost(e.name, e.costPerQuery);
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

  private insert(e: PoolEntry): void {
    this.checkEntry(e);
    if (this.has(e.name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${e.name}" appears twice`);
    this.pool = [...this.pool, e];
    this.snap = undefined;
  }

  /** An immutable view of the pool (src/decide/snapshot.ts); a change builds a new one. */
  snapshot(): Snapshot {
    if (!this.snap) this.snap = buildSnapshot(this as ModelView, this.pool);
    return this.snap;
  }

  // ---- the operating point ------------------------------------------------------------------------------------

  /** Keeps training prompts' embeddings (rows x dim) for the operating point; a copy is checked and kept. */
  setKeptPrompts(E: Float32Array | undefined): void {
    if (E === undefined) {
      this.keptPrompts = undefined;
    } else {
      checkEmbeddings(E, this.dim, 'keptPrompts');
      this.keptPrompts = E.slice();
    }
    this.snap = undefined;
  }

  /**
   * The default operating point of the current pool (src/decide/operating.ts): computed on the kept prompts once per
   * pool snapshot, so it follows every change of the pool and is the same on every replica at the same version.
   * Undefined for a router without kept prompts (fitted before they were kept).
   */
  operatingPoint(s: Snapshot = this.snapshot()): OperatingPoint | undefined {
    if (!this.keptPrompts || s.names.length === 0) return undefined;
    const hit = s.cache.get('operating') as OperatingPoint | undefined;
    if (hit) return hit;
    const n = this.keptPrompts.length / this.dim;
    const p = prepare(this.decideView(), s, n, { lambda: 0, ood: false, explain: true }, !!this.map);
    if (n > 0) call(() => native().routeVectors(this.vectorArgs(this.keptPrompts!, p, true)));
    const op = operatingPointFromPredictions(p.out.gamma, s.cost, s.names, n);
    s.cache.set('operating', op);
    return op;
  }

  /** The λ in force when a request gives none: the fixed one, else the pool's operating point, else 0. */
  get defaultLambda(): number {
    return this.defaultLambdaOf(this.snapshot());
  }

  /** Fixes the default λ (undefined: back to the pool's operating point). */
  set defaultLambda(v: number | undefined) {
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      throw new UnirouteError('INVALID_ARGUMENT', `the default lambda must be a finite number >= 0 (got ${String(v)})`);
    this.fixedLambda = v;
  }

  defaultLambdaOf(s: Snapshot): number {
    if (this.fixedLambda !== undefined) return this.fixedLambda;
    if (s.names.length === 0) return 0;
    return this.operatingPoint(s)?.lambda ?? 0;
  }

  // ---- routing ------------------------------------------------------------------------------------------------

  /** λ₁ of the `tradeoff` scale (src/decide/policy.ts). */
  tradeoffScale(): number {
    return tradeoffScale(this.snapshot(), this.k);
  }

  /** The λ of `tradeoff` t in [0, 1] (see RouteOptions.tradeoff). */
  lambdaForTradeoff(t: number): number {
    return lambdaForTradeoff(this.snapshot(), this.k, t);
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

  private prepare(n: number, opts: RouteOptions): Prepared {
    return prepare(this.decideView(), this.snapshot(), n, opts, !!this.map);
  }

  /** The model as the decision core sees it. */
  private decideView(): DecideModel {
    return {
      k: this.k,
      prior: this.prior,
      priorStrength: this.priorStrength,
      clusterShare: this.clusterShare,
      cells: this.cells,
      minEvidence: this.minEvidence,
      oodThreshold: (q) => this.oodThreshold(q),
      defaultLambda: (s) => this.defaultLambdaOf(s),
    };
  }

  private batchResult(p: Prepared): RouteBatch {
    return finish(this.decideView(), p);
  }

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

  /** Everything a native route takes after the embedding (native/binding: read_route_parts). */
  private routeParts(p: Prepared): NativeRouteParts {
    // the per-call fields added to the fixed parts' object (spreading it into a new one cost 17 us a call)
    const o = this.routeModelParts(p) as NativeRouteParts;
    o.lambda = p.lambda;
    o.allowed = p.allowed;
    o.allowedPerRow = p.allowedPerRow;
    if (this.cells) o.cellOut = p.out.cell;
    o.choice = p.out.choice;
    o.cluster = p.out.cluster;
    o.distance = p.out.distance;
    o.gamma = p.out.gamma.length ? p.out.gamma : null;
    o.chosen = p.out.chosen;
    return o;
  }

  /** The fixed parts of a route: the model's and the snapshot's (or its risk-adjusted Ψ's), not the call's. */
  private routeModelParts(p: Prepared): Omit<NativeRouteModelParts, 'dim'> {
    const d = this.prior?.difficulty;
    const c = this.cells;
    const norms = this.centroidNorms();
    return {
      centroids: this.centroids,
      centroidNorms: norms.centroids,
      ...(norms.cells ? { evidenceNorms: norms.cells } : {}),
      k: this.k,
      psi: p.psi,
      cost: p.s.cost,
      m: p.s.names.length,
      evidence: null,
      ...(d && p.psiLogit ? { psiLogit: p.psiLogit, slope: d.slope, difficulty: { w: d.w, w0: d.w0, mu: d.mu } } : {}),
      ...(c ? { evidenceCells: c.count, evidenceCentroids: c.centroids, evidenceStart: c.start } : {}),
    };
  }

  /**
   * The engine's copy of a route's fixed parts, checked once and kept with the snapshot (one per risk-adjusted Ψ,
   * a few at most): a one-prompt route then passes only λ, the mask and the outputs, not the ~60 kB of centroids,
   * Ψ and cells that every call checked again.
   */
  private nativeRouteModel(p: Prepared): NativeRouteModel {
    let models = p.s.cache.get('native-route-model') as Map<Float32Array, NativeRouteModel> | undefined;
    if (!models) p.s.cache.set('native-route-model', (models = new Map()));
    let model = models.get(p.psi);
    if (!model) {
      if (models.size >= 9) models.clear(); // riskAdjusted keeps 8 Ψ per snapshot, plus the plain one
      const parts = { dim: this.dim, ...this.routeModelParts(p) };
      model = call(() => native().routeModel(parts));
      models.set(p.psi, model);
    }
    return model;
  }

  private routeArgs(texts: string[], p: Prepared): NativeRouteArgs {
    const o = this.routeParts(p) as NativeRouteArgs;
    o.texts = texts;
    return o;
  }

  private vectorArgs(embeddings: Float32Array, p: Prepared, sync: boolean): NativeVectorRouteArgs {
    const o = this.routeParts(p) as NativeVectorRouteArgs;
    o.embeddings = embeddings;
    o.dim = this.dim;
    if (this.map) o.map = { params: this.map.params, config: this.map.config };
    o.sync = sync;
    return o;
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
    if (texts.length > 0) {
      const model = this.nativeRouteModel(p);
      const o = p.out;
      call(() =>
        h.nativeHandle.routeModelSync(model, texts, p.lambda, p.allowed, p.allowedPerRow, o.choice, o.cluster, o.distance, o.gamma.length ? o.gamma : null, o.chosen, this.cells ? o.cell : null),
      );
    }
    return this.batchResult(p);
  }

  /**
   * Routes rows of embeddings (n x dim, row-major: precomputed, or the learned map's input) in the engine, off the
   * event loop, in bounded chunks: nearest centroid, the learned map, difficulty, argmin.
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
    const b = await this.routeBatch(texts, { ...opts, lambda: 0, tradeoff: undefined, explore: 0 });
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
    const texts = candidates instanceof Float32Array ? undefined : candidates;
    if (candidates instanceof Float32Array) checkEmbeddings(candidates, this.dim, 'candidates');
    else checkTexts(candidates, 'candidates');
    const n = texts ? texts.length : (candidates as Float32Array).length / this.dim;
    if (n === 0) throw new UnirouteError('INVALID_ARGUMENT', 'suggesting labels needs at least one candidate prompt');
    // in chunks, yielding between them: a large set of candidates never holds the event loop for long
    const CHUNK = 512;
    const cluster = new Int32Array(n);
    const cell = new Int32Array(n);
    const others = this.pool.filter((e) => e.name !== opts.model).map((e) => e.name);
    let batch: { models: string[]; costs: Float32Array; predictedError: Float32Array } | null = null;
    for (let b = 0; b < n; b += CHUNK) {
      const e = Math.min(n, b + CHUNK);
      const emb = texts ? await this.embedTexts(texts.slice(b, e)) : (candidates as Float32Array).subarray(b * this.dim, e * this.dim);
      const a = this.assignEmbeddings(emb);
      cluster.set(a.cluster, b);
      cell.set(this.cellsOf(emb, a.cluster), b);
      if (others.length) {
        const part = await this.routeEmbeddings(emb, { lambda: opts.lambda, models: others, ood: false });
        if (!batch) batch = { models: part.models, costs: part.costs, predictedError: new Float32Array(n * part.models.length) };
        else if (part.models.length !== batch.models.length || part.models.some((m, j) => m !== batch!.models[j]))
          throw new UnirouteError('VERSION_CONFLICT', 'the pool changed while labels were being suggested; ask again');
        batch.predictedError.set(part.predictedError, b * part.models.length);
      }
      if (e < n) await new Promise((r) => setImmediate(r));
    }
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

  // ---- persistence (src/router/persist.ts) ----------------------------------------------------------------------

  toArtifact(gzip = false): Buffer {
    const { manifest, tensors } = persist.artifactParts(this);
    return encodeArtifact(manifest, tensors, gzip);
  }

  /** A router from a file's bytes, every value checked (src/router/persist.ts); `load` is what the operator allows. */
  static fromArtifact(buf: Buffer, source = 'artifact', expect?: { embedder?: Partial<EmbedderSpec> }, load?: persist.LoadOptions): Router {
    return persist.routerFromArtifact(buf, source, expect, load);
  }

  /** Saves atomically; gzip (for a `.gz` path) runs on the thread pool, so a server keeps serving meanwhile. */
  async save(path: string, opts: { gzip?: boolean } = {}): Promise<void> {
    const raw = this.toArtifact(false);
    await writeFileAtomic(path, (opts.gzip ?? path.endsWith('.gz')) ? await gzipAsync(raw, { level: 9 }) : raw);
  }

  /** The fitted model's identity (src/router/persist.ts); a pool store is keyed by it. */
  modelHash(): string {
    return persist.modelHashOf(this);
  }

  static async load(path: string, expect?: { embedder?: Partial<EmbedderSpec> }, load?: persist.LoadOptions): Promise<Router> {
    let buf: Buffer;
    try {
      buf = await fs.readFile(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
      throw new UnirouteError('NOT_FOUND', `cannot read router file ${path}: ${why}`);
    }
    return Router.fromArtifact(buf, path, expect, load);
  }
}
