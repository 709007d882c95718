/**
 * Which prompts to label next for a new (or thinly evidenced) LLM: the N candidate prompts whose outcomes would
 * most improve routing. Half the budget is spread over the evidence cells in proportion to the candidates'
 * traffic (so that the LLM gains evidence where prompts arrive, at an even density); the other half goes, one
 * label at a time, to the cluster where a label is worth most: traffic × how much it narrows the posterior of the
 * LLM's Ψ there × how close the LLM is to winning there (when the pool has other LLMs to compare with). Within a
 * cluster, labels go to its busiest cells first. Deterministic for a seed; a prompt is never suggested twice.
 */
import { UnirouteError } from '../errors.js';
import { permutation } from '../data/dataset.js';
import { psiRow, type OutcomeStats } from './evidence.js';
import type { RouteBatch, Router } from './router.js';

export interface SuggestOptions {
  /** How many prompts to suggest. */
  budget: number;
  /** The LLM to label for: one in the pool (its outcomes so far count), or a new name (default: a new LLM). */
  model?: string;
  /** The new LLM's cost per query (for "close to winning"; default: not used). */
  costPerQuery?: number;
  /** λ of the routing the labels should improve (default: the router's). */
  lambda?: number;
  seed?: number;
}

export interface Suggestion {
  /** Index into the candidates. */
  index: number;
  cluster: number;
  cell: number;
  /** 'coverage' (the traffic-proportional half) or 'value' (the greedy half). */
  reason: 'coverage' | 'value';
}

/**
 * Picks from candidates already routed (their clusters, cells and, for closeness, the pool's predicted errors).
 * `batch` is the candidates routed among the pool without the target LLM (null when the pool has no other LLM).
 */
export function pickSuggestions(
  router: Router,
  cluster: Int32Array,
  cell: Int32Array,
  batch: RouteBatch | null,
  opts: SuggestOptions,
): Suggestion[] {
  const n = cluster.length;
  const budget = opts.budget;
  if (!Number.isInteger(budget) || budget < 1) throw new UnirouteError('INVALID_ARGUMENT', `the budget must be a whole number >= 1 (got ${String(budget)})`);
  const K = router.k;
  const E = router.cells?.count ?? K;
  const seed = opts.seed ?? 1;
  // the target's statistics so far
  let stats: OutcomeStats = { errorSums: new Float32Array(K), counts: new Float32Array(K) };
  let cost = opts.costPerQuery;
  if (opts.model !== undefined && router.has(opts.model)) {
    const e = router.exportModel(opts.model);
    stats = { errorSums: e.errorSums.slice(), counts: e.counts.slice() };
    cost ??= e.costPerQuery;
  }
  // candidates per cell, in a seeded order
  const order = permutation(n, seed * 7 + 3);
  const byCell: number[][] = Array.from({ length: E }, () => []);
  for (const i of order) byCell[cell[i]].push(i);
  const cellOfCluster: number[][] = Array.from({ length: K }, () => []);
  const cellCluster = new Int32Array(E).fill(-1);
  for (let i = 0; i < n; i++) if (cellCluster[cell[i]] < 0) cellCluster[cell[i]] = cluster[i];
  for (let c = 0; c < E; c++) if (cellCluster[c] >= 0) cellOfCluster[cellCluster[c]].push(c);
  const traffic = new Float64Array(K);
  for (let i = 0; i < n; i++) traffic[cluster[i]] += 1 / n;
  const taken = new Uint8Array(n);
  const pickedInCell = new Int32Array(E);
  const out: Suggestion[] = [];
  const take = (c: number, reason: Suggestion['reason']): boolean => {
    const list = byCell[c];
    while (list.length) {
      const i = list.shift()!;
      if (taken[i]) continue;
      taken[i] = 1;
      pickedInCell[c]++;
      // the label is not known yet: count it at the current posterior mean
      const k = cluster[i];
      const mean = psiRow(stats, router.priorStrength, router.prior).psi[k];
      stats.counts[k] += 1;
      stats.errorSums[k] += mean;
      out.push({ index: i, cluster: cluster[i], cell: c, reason });
      return true;
    }
    return false;
  };
  const want = Math.min(budget, n);
  // 1. coverage: half the budget over the cells in proportion to traffic (largest remainders, ties to the lower cell)
  const half = Math.ceil(want / 2);
  const quota = byCell.map((l) => (l.length * half) / n);
  const alloc = quota.map(Math.floor);
  let left = half - alloc.reduce((a, b) => a + b, 0);
  const rema = [...quota.keys()].sort((a, b) => quota[b] - Math.floor(quota[b]) - (quota[a] - Math.floor(quota[a])) || a - b);
  for (const c of rema) {
    if (left <= 0) break;
    alloc[c]++;
    left--;
  }
  for (let c = 0; c < E; c++) for (let t = 0; t < alloc[c]; t++) take(c, 'coverage');
  // 2. value: greedy over clusters
  const closeness = new Float64Array(K).fill(1);
  const lambda = opts.lambda ?? router.defaultLambda;
  // the best score among the other LLMs, per candidate
  let others: Float64Array | null = null;
  if (batch) {
    const m = batch.models.length;
    others = new Float64Array(n).fill(Infinity);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++)
        if (batch.models[j] !== opts.model) others[i] = Math.min(others[i], batch.predictedError[i * m + j] + lambda * batch.costs[j]);
    if (!others.every(Number.isFinite)) others = null; // the target is the only LLM
  }
  const updateCloseness = () => {
    if (!others) return;
    const row = psiRow(stats, router.priorStrength, router.prior);
    const sum = new Float64Array(K);
    const cnt = new Float64Array(K);
    for (let i = 0; i < n; i++) {
      const best = others[i];
      const k = cluster[i];
      const sd = row.sd[k];
      const margin = row.psi[k] + lambda * (cost ?? 0) - best;
      sum[k] += Math.exp(-(margin * margin) / (2 * (sd * sd + 1e-4)));
      cnt[k]++;
    }
    for (let k = 0; k < K; k++) closeness[k] = cnt[k] ? sum[k] / cnt[k] : 0;
  };
  while (out.length < want) {
    updateCloseness();
    const now = psiRow(stats, router.priorStrength, router.prior).sd;
    let bestK = -1;
    let bestV = -Infinity;
    for (let k = 0; k < K; k++) {
      if (!cellOfCluster[k].some((c) => byCell[c].some((i) => !taken[i]))) continue;
      const next = { errorSums: stats.errorSums, counts: stats.counts.slice() };
      next.counts[k] += 1;
      const gain = now[k] - psiRow(next, router.priorStrength, router.prior).sd[k];
      const v = traffic[k] * Math.max(gain, 0) * closeness[k];
      if (v > bestV + 1e-15) {
        bestV = v;
        bestK = k;
      }
    }
    if (bestK < 0) break;
    // the busiest cell of the cluster, relative to what it already got
    const cells = cellOfCluster[bestK].filter((c) => byCell[c].some((i) => !taken[i]));
    cells.sort((a, b) => byCell[b].length / (1 + pickedInCell[b]) - byCell[a].length / (1 + pickedInCell[a]) || a - b);
    if (!take(cells[0], 'value')) break;
  }
  return out;
}
