/**
 * Calibrating λ to a user's terms (paper App. E): a line search over λ on unlabelled prompts. For each λ the
 * decision per prompt is argmin predicted error + λ·cost; the mean cost of the decisions never rises with λ and the
 * predicted accuracy never rises either, so a bisection finds the most accurate routing within a cost budget, or
 * the cheapest routing that keeps a predicted accuracy.
 */
import { UnirouteError } from '../errors.js';
import type { RouteBatch } from './router.js';
import { argminRows } from '../decide/argmin.js';

export interface CalibrationTarget {
  /** Mean cost per query at most this (the most accurate routing that fits). */
  maxCost?: number;
  /** Mean predicted accuracy (1 - predicted error) at least this (the cheapest routing that keeps it). */
  minAccuracy?: number;
}

export interface Calibration {
  lambda: number;
  meanCost: number;
  predictedAccuracy: number;
  /** False when no λ meets the target (the closest routing is returned: all-cheapest or all-most-accurate). */
  feasible: boolean;
  /**
   * When no single λ lands within 5 % of the target: a share of the prompts is routed at the λ on the other side
   * of the breakpoint (pass it as RouteOptions.mix). meanCost and predictedAccuracy are then the mix's, on the
   * calibration prompts, with the same assignment of prompts that routing uses.
   */
  mix?: { lambda: number; share: number };
}

/** The prompts a mix routes at its other λ: index i (0-based, across batches) when frac((i + 1) φ) < share. */
export function mixedRow(i: number, share: number): boolean {
  const x = (i + 1) * 0.6180339887498949;
  return x - Math.floor(x) < share;
}

/** Mean cost and predicted accuracy of routing the batch at λ (the engine's argmin); with `mix`, the rows mixedRow
 * picks are routed at mix.lambda. Out-of-distribution rows decided on the prior carry the prior's errors, so λ
 * moves them as it moves the others. */
export function routeStats(b: RouteBatch, lambda: number, allowed?: Uint8Array | null, mix?: { lambda: number; share: number }): { meanCost: number; predictedAccuracy: number } {
  const m = b.models.length;
  const n = b.choice.length;
  const choice = argminRows(b.predictedError, b.costs, n, m, { lambda, allowed });
  if (mix) {
    const other = argminRows(b.predictedError, b.costs, n, m, { lambda: mix.lambda, allowed });
    for (let i = 0; i < n; i++) if (mixedRow(i, mix.share)) choice[i] = other[i];
  }
  // out-of-distribution prompts sent to a fixed fallback go there whatever λ is
  if (b.oodFixed) for (let i = 0; i < n; i++) if (b.ood[i] === 1) choice[i] = b.choice[i];
  let cost = 0;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    const best = choice[i];
    cost += b.costs[best];
    acc += 1 - b.predictedError[i * m + best];
  }
  return { meanCost: cost / n, predictedAccuracy: acc / n };
}

export function calibrateLambda(b: RouteBatch, target: CalibrationTarget, allowed?: Uint8Array | null): Calibration {
  const { maxCost, minAccuracy } = target;
  if ((maxCost === undefined) === (minAccuracy === undefined))
    throw new UnirouteError('INVALID_ARGUMENT', 'give exactly one of maxCost or minAccuracy');
  if (maxCost !== undefined && !(Number.isFinite(maxCost) && maxCost >= 0)) throw new UnirouteError('INVALID_ARGUMENT', '`maxCost` must be a finite number >= 0');
  if (minAccuracy !== undefined && !(minAccuracy >= 0 && minAccuracy <= 1)) throw new UnirouteError('INVALID_ARGUMENT', '`minAccuracy` must be in [0, 1]');
  if (b.choice.length === 0) throw new UnirouteError('INVALID_ARGUMENT', 'calibration needs at least one prompt');
  const costs = Array.from(b.costs).filter((_, j) => !allowed || allowed[j]);
  const sorted = [...new Set(costs)].sort((x, y) => x - y);
  let gap = Infinity;
  for (let i = 1; i < sorted.length; i++) gap = Math.min(gap, sorted[i] - sorted[i - 1]);
  // at hi every prompt goes to the cheapest LLM (predicted errors differ by at most 1)
  const hi0 = Number.isFinite(gap) && gap > 0 ? 2 / gap : 1;
  const at = (l: number, mix?: { lambda: number; share: number }) => ({ lambda: l, ...routeStats(b, l, allowed, mix) });
  const ok = (s: ReturnType<typeof at>) => (maxCost !== undefined ? s.meanCost <= maxCost + 1e-15 : s.predictedAccuracy >= minAccuracy! - 1e-12);
  const zero = at(0);
  const top = at(hi0);
  if (maxCost !== undefined) {
    if (ok(zero)) return { ...zero, feasible: true };
    if (!ok(top)) return { ...top, feasible: false };
    // smallest λ within budget: the most accurate routing that fits
    const [lo, hi] = bisect(0, hi0, (l) => ok(at(l)));
    // step off the breakpoint (towards cheaper, still within budget) so that the engine's float32 arithmetic makes
    // the same decisions as this search
    const safe = at(hi * (1 + SAFETY));
    const single = ok(safe) ? safe : at(hi);
    return { ...landed(single, at(lo * (1 - SAFETY)), (st) => st.meanCost, maxCost, 0.05 * maxCost, at, ok), feasible: true };
  }
  if (!ok(zero)) return { ...zero, feasible: false };
  if (ok(top)) return { ...top, feasible: true };
  // largest λ that keeps the accuracy: the cheapest routing that does
  const [lo, hi] = bisect(0, hi0, (l) => ok(at(l)));
  const safe = at(lo * (1 - SAFETY));
  const single = ok(safe) ? safe : at(lo);
  // for accuracy the "amount" to land on is the accuracy above the target, read from the other side
  return { ...landed(single, at(hi * (1 + SAFETY)), (st) => st.predictedAccuracy, minAccuracy!, 0.002, at, ok), feasible: true };
}

type Point = { lambda: number; meanCost: number; predictedAccuracy: number };
/**
 * A single λ that already lands within `tolerance` of the target (5 % of a cost, 0.2 points of accuracy) is kept. Otherwise a share of the prompts goes to the
 * neighbouring λ across the breakpoint (`over`, which alone misses the target), the largest share whose realised
 * mix on these prompts still meets it: the paper's curves join neighbouring points the same way.
 */
function landed(single: Point, over: Point, value: (p: Point) => number, target: number, tolerance: number, at: (l: number, mix?: { lambda: number; share: number }) => Point, ok: (p: Point) => boolean): Calibration | Point {
  const near = (p: Point) => Math.abs(value(p) - target) <= tolerance;
  if (near(single) || value(over) === value(single) || ok(over)) return single;
  // the share that puts the expected value on the target, then backed off until the realised mix meets it
  let share = Math.min(1, Math.max(0, (target - value(single)) / (value(over) - value(single))));
  for (let it = 0; it < 60 && share > 0; it++) {
    const p = at(single.lambda, { lambda: over.lambda, share });
    if (ok(p)) return { ...p, lambda: single.lambda, feasible: true, mix: { lambda: over.lambda, share } };
    share *= 0.98;
  }
  return single;
}

/** Narrows [lo, hi] around the λ where `ok` flips (ok(lo) !== ok(hi)); both ends keep their side. */
function bisect(lo: number, hi: number, ok: (lambda: number) => boolean): [number, number] {
  const left = ok(lo);
  for (let it = 0; it < 100; it++) {
    const mid = (lo + hi) / 2;
    if (ok(mid) === left) lo = mid;
    else hi = mid;
  }
  return [lo, hi];
}

/** Relative step away from a decision breakpoint: far above float32 rounding of the scores. */
const SAFETY = 1e-3;
