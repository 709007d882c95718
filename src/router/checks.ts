/** Checks of the values a router is made of, the same whether they come from a caller, a store or a file. */
import { UnirouteError } from '../errors.js';
import type { OutcomeStats, PsiPrior } from '../decide/posterior.js';

export function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > 256)
    throw new UnirouteError('INVALID_ARGUMENT', 'an LLM name must be a non-empty string of at most 256 characters');
}

/** Costs are scored in float32: beyond 1e30 (or any non-finite value) a cost would poison every decision. */
export const MAX_COST = 1e30;
export function checkCost(name: string, c: unknown): void {
  if (typeof c !== 'number' || !Number.isFinite(c) || c < 0 || c > MAX_COST)
    throw new UnirouteError('NO_COST', `LLM "${name}" needs a cost per query in [0, ${MAX_COST}] (got ${String(c)})`);
}

export function checkPriorStrength(a: unknown): void {
  if (typeof a !== 'number' || !Number.isFinite(a) || a < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `priorStrength must be a finite number >= 0 (got ${String(a)})`);
}

export function checkMinEvidence(n: unknown): void {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `minEvidence must be a finite number >= 0 (got ${String(n)})`);
}

/** Sums and counts: k finite values each, counts >= sums >= 0. */
export function checkStats(e: OutcomeStats & { name?: string }, k: number): void {
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

export function checkPrior(p: PsiPrior, k: number, dim: number): void {
  const finite = (a: Float32Array, name: string, len: number) => {
    if (!(a instanceof Float32Array) || a.length !== len)
      throw new UnirouteError('DIMENSION_MISMATCH', `the prior's ${name} has ${a?.length ?? 0} values, expected ${len}`);
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new UnirouteError('NON_FINITE', `the prior's ${name} has a non-finite value at ${i}`);
  };
  finite(p.clusterLogit, 'cluster logits', k);
  if (p.ability && !(Number.isFinite(p.ability.mean) && p.ability.sd > 0 && p.ability.sd < 100))
    throw new UnirouteError('NON_FINITE', "the prior's ability needs a finite mean and an sd in (0, 100)");
  if (p.deviation && !(p.deviation.share >= 0 && p.deviation.share < 1 && p.deviation.strength > 0 && Number.isFinite(p.deviation.strength)))
    throw new UnirouteError('INVALID_ARGUMENT', "the prior's deviation needs a share in [0, 1) and a strength > 0");
  if (p.outcomeWeight !== undefined && !(p.outcomeWeight >= 1 && p.outcomeWeight <= 20))
    throw new UnirouteError('INVALID_ARGUMENT', "the prior's outcome weight must be in [1, 20]");
  if (p.groups && !(p.groups.of instanceof Int32Array && p.groups.of.length === k && p.groups.abilities.length > 0 && p.groups.of.every((g) => g >= 0 && g < p.groups!.abilities.length)))
    throw new UnirouteError('DIMENSION_MISMATCH', `the prior's ability groups need a group in [0, ${p.groups.abilities.length}) for each of the ${k} clusters`);
  if (p.ability?.points && !(p.ability.points.length > 0 && p.ability.points.every((x) => Number.isFinite(x)) && (p.ability.bandwidth ?? 0) > 0))
    throw new UnirouteError('NON_FINITE', "the prior's ability points must be finite, with a bandwidth > 0");
  if (p.difficulty) {
    finite(p.difficulty.w, 'difficulty weights', dim);
    finite(p.difficulty.mu, 'difficulty means', k);
    if (!Number.isFinite(p.difficulty.w0) || !Number.isFinite(p.difficulty.slope))
      throw new UnirouteError('NON_FINITE', "the prior's difficulty offset and slope must be finite");
  }
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

export function checkDistanceQuantiles(x: DistanceQuantiles, where: string): DistanceQuantiles {
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
