/**
 * A pool snapshot: what decisions read, built once per pool version. Every LLM's posterior (Ψ, its sd, the α grid),
 * costs, the pool's prior over clusters, and where each LLM has evidence (information for explanations and
 * coverage; no decision reads it). Immutable: a change of the pool builds a new one, so a batch never sees a torn
 * pool. Posterior rows are cached per pool entry, so feedback on one LLM recomputes one row.
 */
import { logit, psiRow, type OutcomeStats, type PsiPrior, type PsiRow } from './posterior.js';

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

/** What a snapshot needs of the fitted model. */
export interface ModelView {
  k: number;
  prior: PsiPrior | undefined;
  priorStrength: number;
  clusterShare: Float32Array | undefined;
  cells: EvidenceCells | undefined;
  minEvidence: number;
}

export interface Snapshot {
  names: string[];
  index: Map<string, number>;
  entries: PoolEntry[];
  /** Each LLM's posterior, in pool order. */
  rows: PsiRow[];
  /** m x k: Ψ (posterior mean), its sd, outcome counts. */
  psi: Float32Array;
  sd: Float32Array;
  counts: Float32Array;
  /** logit Ψ (with a difficulty model). */
  psiLogit: Float32Array | null;
  /** m x cells (or m x k) evidence flags, for explanations only (null when minEvidence is 0). */
  evidence: Uint8Array | null;
  cost: Float32Array;
  /**
   * Each LLM's predicted error over the whole training distribution: Ψ averaged over the clusters by their share of
   * the training prompts (the pool's prior over clusters). An out-of-distribution prompt is decided on it.
   */
  overall: Float64Array;
  /** Ψ + κ·sd (its logit, its share-weighted mean) per κ asked for, a few kept. */
  risky: Map<number, { psi: Float32Array; psiLogit: Float32Array | null; overall: Float64Array }>;
  /** Per-snapshot caches (the operating point, built on first use). */
  cache: Map<string, unknown>;
}

/**
 * Where an LLM has evidence, by cell: at least minEvidence outcomes, and outcomes per unit of prompt mass
 * (count / share) at least EVIDENCE_DENSITY of the LLM's own typical rate (the median over the cells it touched).
 * An LLM sampled from the whole prompt distribution has about the same rate everywhere; one graded on a single
 * benchmark has its full rate on that benchmark's cells and a small one in cells it only grazes.
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

/**
 * Where an LLM has evidence: one flag per evidence cell (per cluster without cells). An entry with no cell counts
 * has evidence in every cell of a cluster where it has at least `need` outcomes.
 */
export function evidenceRow(view: ModelView, e: OutcomeStats & { cellCounts?: Float32Array }, need: number): Uint8Array {
  if (view.cells && e.cellCounts) return evidenceFlags(e.cellCounts, view.cells.share, need);
  const byCluster = Uint8Array.from(e.counts, (n) => (n >= need ? 1 : 0));
  if (!view.cells) return byCluster;
  const { start, count } = view.cells;
  const row = new Uint8Array(count);
  for (let k = 0; k < view.k; k++) row.fill(byCluster[k], start[k], start[k + 1]);
  return row;
}

/** Share of the fitted prompts in cells (or clusters) where the LLM has evidence (uniform shares without a record). */
export function coverageOf(view: ModelView, e: OutcomeStats & { cellCounts?: Float32Array }): number {
  const flags = evidenceRow(view, e, Math.max(view.minEvidence, 1e-9));
  const share = view.cells ? view.cells.share : view.clusterShare;
  let cov = 0;
  for (let c = 0; c < flags.length; c++) if (flags[c]) cov += share ? share[c] : 1 / flags.length;
  return Math.min(1, cov);
}

const clampedLogit = (p: number) => logit(Math.min(1 - 1e-6, Math.max(1e-6, p)));
export const logitOf = (psi: Float32Array) => psi.map(clampedLogit);

/** Ψ averaged over the clusters by their share of the training prompts (uniform without a record), per LLM. */
export function shareWeighted(view: ModelView, psi: Float32Array, m: number): Float64Array {
  const K = view.k;
  const out = new Float64Array(m);
  let total = 0;
  for (let c = 0; c < K; c++) total += view.clusterShare ? view.clusterShare[c] : 1;
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let c = 0; c < K; c++) s += (view.clusterShare ? view.clusterShare[c] : 1) * psi[j * K + c];
    out[j] = total > 0 ? s / total : NaN;
  }
  return out;
}

const rowCache = new WeakMap<PoolEntry, { strength: number; prior: PsiPrior | undefined; row: PsiRow }>();

/** An entry's posterior under this model (cached per entry object: entries are replaced, never edited). */
export function posteriorOf(view: ModelView, e: PoolEntry): PsiRow {
  const hit = rowCache.get(e);
  if (hit && hit.strength === view.priorStrength && hit.prior === view.prior) return hit.row;
  const row = psiRow(e, view.priorStrength, view.prior);
  rowCache.set(e, { strength: view.priorStrength, prior: view.prior, row });
  return row;
}

export function buildSnapshot(view: ModelView, pool: PoolEntry[]): Snapshot {
  const m = pool.length;
  const K = view.k;
  const psi = new Float32Array(m * K);
  const sd = new Float32Array(m * K);
  const counts = new Float32Array(m * K);
  const cost = new Float32Array(m);
  const rows = pool.map((e, j) => {
    const row = posteriorOf(view, e);
    psi.set(row.psi, j * K);
    sd.set(row.sd, j * K);
    counts.set(e.counts, j * K);
    cost[j] = e.costPerQuery;
    return row;
  });
  let evidence: Uint8Array | null = null;
  const E = view.cells?.count ?? K;
  if (view.minEvidence > 0) {
    evidence = new Uint8Array(m * E);
    pool.forEach((e, j) => evidence!.set(evidenceRow(view, e, view.minEvidence), j * E));
  }
  const names = pool.map((e) => e.name);
  return {
    names,
    index: new Map(names.map((n, i) => [n, i])),
    entries: pool.slice(),
    rows,
    psi,
    sd,
    counts,
    psiLogit: view.prior?.difficulty ? logitOf(psi) : null,
    evidence,
    cost,
    overall: shareWeighted(view, psi, m),
    risky: new Map(),
    cache: new Map(),
  };
}

/** Ψ + κ·sd (capped at 1), its logit and its share-weighted mean, for a risk κ > 0 (a few kept per snapshot). */
export function riskAdjusted(view: ModelView, s: Snapshot, risk: number) {
  let r = s.risky.get(risk);
  if (!r) {
    const p = s.psi.map((v, t) => Math.min(1, v + risk * s.sd[t]));
    r = { psi: p, psiLogit: s.psiLogit ? logitOf(p) : null, overall: shareWeighted(view, p, s.names.length) };
    if (s.risky.size >= 8) s.risky.delete(s.risky.keys().next().value!);
    s.risky.set(risk, r);
  }
  return r;
}
