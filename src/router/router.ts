/**
 * The router: an embedder, K centroids (the cluster map) and a pool of LLMs, each with an error vector Psi and a
 * cost per query. route(x) = argmin_m Psi_m[k(x)] + lambda * cost_m over the allowed LLMs (Proposition 1).
 */
import { promises as fs } from 'node:fs';
import { UnirouteError } from '../errors.js';
import { call, callAsync, native, type MlpConfig, type NativeRouteArgs } from '../engine/native.js';
import {
  HashedEmbedder,
  checkEmbeddings,
  checkTexts,
  embeddingsFromRows,
  type EmbedderSpec,
  type HashedEmbedderSpec,
} from '../embed/embedder.js';
import { decodeArtifact, encodeArtifact, writeFileAtomic, type TensorMap } from './artifact.js';
import { errorStats, errorVector, overallError, type ErrorStats } from './profile.js';
import { calibrateLambda, type Calibration, type CalibrationTarget } from './calibrate.js';

export interface PoolEntry extends ErrorStats {
  name: string;
  costPerQuery: number;
}

export interface ModelInfo {
  name: string;
  costPerQuery: number;
  outcomes: number;
  overallError: number;
  errorVector: number[];
}

export interface Outcome {
  text?: string;
  embedding?: ArrayLike<number>;
  correct: number;
}

export interface RouteOptions {
  /** Error-per-cost trade-off; 0 picks the lowest predicted error. Default: the router's defaultLambda. */
  lambda?: number;
  /** The allowed LLMs: one list for every prompt, or one list per prompt. Default: the whole pool. */
  models?: string[] | string[][];
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
  /** n x m predicted errors, row-major. */
  predictedError: Float32Array;
}

export interface RouteDecision {
  model: string;
  cluster: number;
  distance: number;
  predictedError: number;
  cost: number;
  candidates: Array<{ model: string; predictedError: number; cost: number }>;
}

interface Snapshot {
  names: string[];
  index: Map<string, number>;
  psi: Float32Array;
  cost: Float32Array;
}

/** The learned cluster map (paper §5.2): z(x) = softmax(f(φ(x))) over the K clusters. */
export interface LearnedMap {
  config: MlpConfig;
  params: Float32Array;
}

export interface RouterState {
  embedder: EmbedderSpec;
  hashed?: HashedEmbedder;
  centroids: Float32Array;
  k: number;
  priorStrength: number;
  defaultLambda?: number;
  info?: Record<string, unknown>;
  pool?: PoolEntry[];
  map?: LearnedMap;
}

export class Router {
  readonly embedderSpec: EmbedderSpec;
  readonly hashed: HashedEmbedder | undefined;
  readonly centroids: Float32Array;
  readonly k: number;
  readonly dim: number;
  priorStrength: number;
  defaultLambda: number;
  info: Record<string, unknown>;
  readonly map: LearnedMap | undefined;
  private pool: PoolEntry[] = [];
  private snap: Snapshot | undefined;

  constructor(s: RouterState) {
    this.embedderSpec = s.embedder;
    this.hashed = s.hashed;
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
    return this.pool.map((e) => ({
      name: e.name,
      costPerQuery: e.costPerQuery,
      outcomes: e.counts.reduce((a, b) => a + b, 0),
      overallError: overallError(e),
      errorVector: Array.from(errorVector(e, this.priorStrength)),
    }));
  }

  /** Adds an LLM from its outcomes on validation prompts (texts, or embeddings for a precomputed router). */
  async addModel(name: string, opts: { costPerQuery: number; outcomes: Outcome[] }): Promise<ModelInfo> {
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
    let clusters: Int32Array;
    if (this.hashed) {
      const texts = outcomes.map((o) => o.text as string);
      checkTexts(texts, 'outcomes[].text');
      clusters = (await this.assignTexts(texts)).cluster;
    } else {
      const rows = outcomes.map((o, i) => {
        if (!o.embedding) throw new UnirouteError('INVALID_ARGUMENT', `outcomes[${i}].embedding is required by a precomputed-embedding router`);
        return o.embedding;
      });
      clusters = this.assignEmbeddings(embeddingsFromRows(rows, this.dim, 'outcomes[].embedding')).cluster;
    }
    return this.addModelFromClusters(name, opts.costPerQuery, clusters, correct);
  }

  /** Adds an LLM from the cluster ids of its validation prompts and its outcomes on them (NaN = no outcome). */
  addModelFromClusters(name: string, costPerQuery: number, clusters: Int32Array, correct: Float32Array): ModelInfo {
    checkName(name);
    if (this.has(name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool; remove it first`);
    checkCost(name, costPerQuery);
    const stats = errorStats(clusters, correct, this.k);
    if (!(stats.counts.reduce((a, b) => a + b, 0) > 0))
      throw new UnirouteError('INVALID_ARGUMENT', `LLM "${name}" has no usable outcome`);
    this.insert({ name, costPerQuery, ...stats });
    return this.models().find((m) => m.name === name)!;
  }

  removeModel(name: string): void {
    const i = this.pool.findIndex((e) => e.name === name);
    if (i < 0) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool (pool: ${this.pool.map((e) => e.name).join(', ') || 'empty'})`);
    this.pool = this.pool.filter((_, j) => j !== i);
    this.snap = undefined;
  }

  /** A copy of an LLM's entry (to undo a removal). */
  exportModel(name: string): PoolEntry {
    const e = this.pool.find((x) => x.name === name);
    if (!e) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
    return { ...e, errorSums: e.errorSums.slice(), counts: e.counts.slice() };
  }

  importModel(e: PoolEntry): void {
    checkName(e.name);
    if (this.has(e.name)) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${e.name}" is already in the pool`);
    checkCost(e.name, e.costPerQuery);
    this.insert(e);
  }

  setPriorStrength(a: number): void {
    checkPriorStrength(a);
    this.priorStrength = a;
    this.snap = undefined;
  }

  private insert(e: PoolEntry): void {
    if (e.errorSums.length !== this.k || e.counts.length !== this.k)
      throw new UnirouteError('DIMENSION_MISMATCH', `LLM "${e.name}" has statistics for ${e.counts.length} clusters; the router has ${this.k}`);
    this.pool = [...this.pool, e];
    this.snap = undefined;
  }

  /** An immutable view of the pool; a change builds a new one, so a batch never sees a torn pool. */
  snapshot(): Snapshot {
    if (this.snap) return this.snap;
    const m = this.pool.length;
    const psi = new Float32Array(m * this.k);
    const cost = new Float32Array(m);
    this.pool.forEach((e, j) => {
      errorVector(e, this.priorStrength, psi.subarray(j * this.k, (j + 1) * this.k));
      cost[j] = e.costPerQuery;
    });
    const names = this.pool.map((e) => e.name);
    this.snap = { names, index: new Map(names.map((n, i) => [n, i])), psi, cost };
    return this.snap;
  }

  // ---- routing ------------------------------------------------------------------------------------------------

  private prepare(n: number, opts: RouteOptions) {
    const s = this.snapshot();
    if (s.names.length === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty: add an LLM first');
    const lambda = opts.lambda ?? this.defaultLambda;
    if (typeof lambda !== 'number' || !Number.isFinite(lambda) || lambda < 0)
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a finite number >= 0 for \`lambda\` but received ${String(lambda)}`);
    const m = s.names.length;
    let allowed: Uint8Array | null = null;
    let allowedPerRow = false;
    const toMask = (list: unknown, out: Uint8Array, where: string) => {
      if (!Array.isArray(list) || list.length === 0)
        throw new UnirouteError('INVALID_ARGUMENT', `\`${where}\` must be a non-empty list of LLM names`);
      for (const name of list) {
        const j = s.index.get(name);
        if (j === undefined) throw new UnirouteError('UNKNOWN_MODEL', `\`${where}\` names "${String(name)}", which is not in the pool`);
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
      lambda,
      allowed,
      allowedPerRow,
      out: {
        choice: new Int32Array(n),
        cluster: new Int32Array(n),
        distance: new Float32Array(n),
        gamma: new Float32Array(n * m),
      },
    };
  }

  private batchResult(p: ReturnType<Router['prepare']>): RouteBatch {
    return {
      models: p.s.names,
      costs: p.s.cost,
      lambda: p.lambda,
      choice: p.out.choice,
      cluster: p.out.cluster,
      distance: p.out.distance,
      predictedError: p.out.gamma,
    };
  }

  private routeArgs(texts: string[], p: ReturnType<Router['prepare']>): NativeRouteArgs {
    return {
      texts,
      centroids: this.centroids,
      k: this.k,
      psi: p.s.psi,
      cost: p.s.cost,
      m: p.s.names.length,
      lambda: p.lambda,
      allowed: p.allowed,
      allowedPerRow: p.allowedPerRow,
      ...p.out,
    };
  }

  private requireHashed(): HashedEmbedder {
    if (!this.hashed)
      throw new UnirouteError('INVALID_ARGUMENT', `this router takes precomputed ${this.dim}-d embeddings, not texts: use routeEmbeddings()`);
    return this.hashed;
  }

  /** Routes a batch of prompt texts off the event loop. */
  async routeBatch(texts: string[], opts: RouteOptions = {}): Promise<RouteBatch> {
    const h = this.requireHashed();
    checkTexts(texts);
    if (this.map) return this.routeEmbeddings(await h.embed(texts), opts);
    const p = this.prepare(texts.length, opts);
    if (texts.length > 0) await callAsync(() => h.nativeHandle.route(this.routeArgs(texts, p)));
    return this.batchResult(p);
  }

  /** Routes a small batch on the calling thread (cheaper than a thread hop for a few prompts). */
  routeBatchSync(texts: string[], opts: RouteOptions = {}): RouteBatch {
    const h = this.requireHashed();
    checkTexts(texts);
    if (this.map) return this.routeEmbeddings(h.embedSync(texts), opts);
    const p = this.prepare(texts.length, opts);
    if (texts.length > 0) call(() => h.nativeHandle.routeSync(this.routeArgs(texts, p)));
    return this.batchResult(p);
  }

  /** Routes rows of precomputed embeddings (n x dim, row-major). */
  routeEmbeddings(embeddings: Float32Array, opts: RouteOptions = {}): RouteBatch {
    checkEmbeddings(embeddings, this.dim);
    const n = embeddings.length / this.dim;
    const p = this.prepare(n, opts);
    const a = this.assignEmbeddings(embeddings);
    p.out.cluster.set(a.cluster);
    p.out.distance.set(a.distance);
    let membership: Float32Array | undefined;
    if (this.map && n > 0) {
      membership = new Float32Array(n * this.k);
      const map = this.map;
      call(() => native().mlpForward(map.params, map.config, embeddings, n, membership!));
    }
    if (n > 0)
      call(() =>
        native().scoreSync({
          ...(membership ? { membership } : { clusters: p.out.cluster }),
          psi: p.s.psi,
          cost: p.s.cost,
          m: p.s.names.length,
          k: this.k,
          lambda: p.lambda,
          allowed: p.allowed,
          allowedPerRow: p.allowedPerRow,
          choice: p.out.choice,
          gamma: p.out.gamma,
        }),
      );
    return this.batchResult(p);
  }

  /**
   * Finds λ for a target on these (unlabelled) prompts: the most accurate routing with mean cost <= maxCost, or
   * the cheapest with mean predicted accuracy >= minAccuracy (paper App. E).
   */
  async calibrateLambda(texts: string[], target: CalibrationTarget, opts: { models?: string[] } = {}): Promise<Calibration> {
    const b = await this.routeBatch(texts, { lambda: 0, models: opts.models });
    let allowed: Uint8Array | null = null;
    if (opts.models) {
      allowed = new Uint8Array(b.models.length);
      for (const m of opts.models) allowed[b.models.indexOf(m)] = 1;
    }
    return calibrateLambda(b, target, allowed);
  }

  /** Routes texts and explains each decision: every pooled LLM's predicted error and cost. */
  async route(texts: string[], opts: RouteOptions = {}): Promise<RouteDecision[]> {
    return explain(await this.routeBatch(texts, opts));
  }

  async assignTexts(texts: string[]): Promise<{ cluster: Int32Array; distance: Float32Array }> {
    const emb = await this.requireHashed().embed(texts);
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
      pool: this.pool.map((e) => ({ name: e.name, costPerQuery: e.costPerQuery })),
      clusterMap: this.map ? { kind: 'learned', config: this.map.config } : { kind: 'nearest-centroid' },
      info: this.info,
    };
    return encodeArtifact(manifest, tensors, gzip);
  }

  static fromArtifact(buf: Buffer, source = 'artifact', expect?: { embedder?: Partial<EmbedderSpec> }): Router {
    const { manifest, tensors } = decodeArtifact(buf, source);
    const bad = (why: string): never => {
      throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${why}`);
    };
    const spec = manifest?.embedder as EmbedderSpec;
    if (!spec || (spec.kind !== 'hashed-lsa' && spec.kind !== 'precomputed')) bad('unknown embedder kind');
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
    }
    return new Router({
      embedder: spec,
      hashed,
      map,
      centroids,
      k,
      priorStrength: manifest.priorStrength ?? 0,
      defaultLambda: manifest.defaultLambda ?? 0,
      info: manifest.info ?? {},
      pool: pool.map((p, j) => ({
        name: p.name,
        costPerQuery: p.costPerQuery,
        errorSums: sums.slice(j * k, (j + 1) * k),
        counts: counts.slice(j * k, (j + 1) * k),
      })),
    });
  }

  async save(path: string, opts: { gzip?: boolean } = {}): Promise<void> {
    await writeFileAtomic(path, this.toArtifact(opts.gzip ?? path.endsWith('.gz')));
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

export function explain(b: RouteBatch): RouteDecision[] {
  const m = b.models.length;
  const out: RouteDecision[] = new Array(b.choice.length);
  for (let i = 0; i < b.choice.length; i++) {
    const c = b.choice[i];
    const candidates = b.models.map((model, j) => ({ model, predictedError: b.predictedError[i * m + j], cost: b.costs[j] }));
    out[i] = {
      model: b.models[c],
      cluster: b.cluster[i],
      distance: b.distance[i],
      predictedError: b.predictedError[i * m + c],
      cost: b.costs[c],
      candidates,
    };
  }
  return out;
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > 256)
    throw new UnirouteError('INVALID_ARGUMENT', 'an LLM name must be a non-empty string of at most 256 characters');
}

function checkCost(name: string, c: unknown): void {
  if (typeof c !== 'number' || !Number.isFinite(c) || c < 0)
    throw new UnirouteError('NO_COST', `LLM "${name}" needs a finite cost per query >= 0 (got ${String(c)})`);
}

function checkPriorStrength(a: unknown): void {
  if (typeof a !== 'number' || !Number.isFinite(a) || a < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `priorStrength must be a finite number >= 0 (got ${String(a)})`);
}
