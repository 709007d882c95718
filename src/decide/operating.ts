/**
 * The default operating point: the λ a router uses when a request gives none. It is a function of the pool: the
 * fitted model keeps a sample of its training prompts (their embeddings), and after every change of the pool (an
 * LLM added or removed, feedback) the point is recomputed on them, deterministically, so that every replica at the
 * same pool version agrees. On those prompts each λ of a grid gives a mean cost and a mean predicted accuracy
 * (1 − the chosen LLM's predicted error); the point is the cheapest λ whose predicted accuracy is within
 * `tolerance` (1 point) of λ = 0's, the lowest predicted error. λ = 0 stays available by asking for it.
 */
import { lambdaGrid } from '../eval/metrics.js';
import { argminRows } from './argmin.js';

export interface OperatingPoint {
  lambda: number;
  /** On the kept prompts: mean cost and (predicted) accuracy at the point and at λ = 0. */
  expectedCost: number;
  expectedAccuracy: number;
  costAtZero: number;
  accuracyAtZero: number;
  /** The best single LLM on those prompts (by the same measure), for reference. */
  bestSingle: { model: string; accuracy: number; cost: number } | null;
  prompts: number;
  /** 'predicted': from the pool's posterior on the kept prompts; 'labels': from outcomes (a fit-time record). */
  basis?: 'predicted' | 'labels';
  /** The pool version it was computed for, when known. */
  poolVersion?: number;
  /** The whole curve on those prompts (λ ascending): what presets with a cost or accuracy target are resolved on. */
  curve?: Array<{ lambda: number; cost: number; accuracy: number }>;
}

/** The tolerance of the rule: the default point gives up at most this much predicted accuracy against λ = 0. */
export const OPERATING_TOLERANCE = 0.01;

/**
 * The operating point from the predicted errors of the kept prompts (n x m, the pool's order) and the LLMs' costs:
 * the curve over a 48-point λ grid through the one argmin, then the rule above.
 */
export function operatingPointFromPredictions(predicted: Float32Array, costs: Float32Array, names: string[], n: number, tolerance = OPERATING_TOLERANCE): OperatingPoint {
  const m = names.length;
  const lambdas = lambdaGrid(Array.from(costs), 48);
  const curve = lambdas.map((lambda) => {
    const choice = argminRows(predicted, costs, n, m, { lambda });
    let c = 0;
    let a = 0;
    for (let i = 0; i < n; i++) {
      c += costs[choice[i]];
      a += 1 - predicted[i * m + choice[i]];
    }
    return { lambda, cost: n ? c / n : NaN, accuracy: n ? a / n : NaN };
  });
  let best: OperatingPoint['bestSingle'] = null;
  for (let j = 0; j < m; j++) {
    let a = 0;
    for (let i = 0; i < n; i++) a += 1 - predicted[i * m + j];
    if (n && (!best || a / n > best.accuracy)) best = { model: names[j], accuracy: a / n, cost: costs[j] };
  }
  const zero = curve[0];
  const within = curve.filter((p) => p.accuracy >= zero.accuracy - tolerance - 1e-12);
  const pick = within.reduce((a, p) => (p.cost < a.cost - 1e-15 || (Math.abs(p.cost - a.cost) <= 1e-15 && p.lambda > a.lambda) ? p : a), zero);
  return {
    lambda: pick.lambda,
    expectedCost: pick.cost,
    expectedAccuracy: pick.accuracy,
    costAtZero: zero.cost,
    accuracyAtZero: zero.accuracy,
    bestSingle: best,
    prompts: n,
    basis: 'predicted',
    curve,
  };
}

/**
 * λ for a target, on an operating point's curve: the most accurate point with mean cost <= maxCost, or the
 * cheapest with accuracy >= minAccuracy. `met` is false when no point meets it (then the closest: the cheapest
 * point, or the most accurate).
 */
export function lambdaForTarget(op: OperatingPoint | undefined, target: { maxCost?: number; minAccuracy?: number }): { lambda: number; cost: number; accuracy: number; met: boolean } | null {
  const pts = (op?.curve ?? []).filter((p) => Number.isFinite(p.cost) && Number.isFinite(p.accuracy));
  if (pts.length === 0) return null;
  if (target.maxCost !== undefined) {
    const ok = pts.filter((p) => p.cost <= target.maxCost! + 1e-15);
    if (ok.length === 0) return { ...pts.reduce((a, p) => (p.cost < a.cost ? p : a)), met: false };
    return { ...ok.reduce((a, p) => (p.accuracy > a.accuracy || (p.accuracy === a.accuracy && p.cost < a.cost) ? p : a)), met: true };
  }
  const ok = pts.filter((p) => p.accuracy >= (target.minAccuracy ?? 0) - 1e-12);
  if (ok.length === 0) return { ...pts.reduce((a, p) => (p.accuracy > a.accuracy ? p : a)), met: false };
  return { ...ok.reduce((a, p) => (p.cost < a.cost || (p.cost === a.cost && p.accuracy > a.accuracy) ? p : a)), met: true };
}

/** Sums of cost and accuracy per λ of a grid, over prompts with outcomes (a label-based curve, for reports). */
export class CurveAccumulator {
  readonly cost: Float64Array;
  readonly acc: Float64Array;
  readonly count: Float64Array;
  constructor(points: number) {
    this.cost = new Float64Array(points);
    this.acc = new Float64Array(points);
    this.count = new Float64Array(points);
  }
  /** The decisions `choice` at grid point t for rows whose outcomes are Y (rows x m, NaN = none: not counted). */
  add(t: number, choice: ArrayLike<number>, Y: Float32Array, m: number, costs: ArrayLike<number>): void {
    for (let i = 0; i < choice.length; i++) {
      const j = choice[i];
      const y = Y[i * m + j];
      if (Number.isNaN(y)) continue;
      this.cost[t] += costs[j];
      this.acc[t] += y;
      this.count[t]++;
    }
  }
  point(t: number, lambda: number) {
    const k = this.count[t];
    return { lambda, cost: k ? this.cost[t] / k : NaN, accuracy: k ? this.acc[t] / k : NaN };
  }
}
