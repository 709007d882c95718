/**
 * The default operating point: the λ a router uses when none is given. Chosen on labelled prompts that did not
 * describe the pool (train prompts at fit time; the validation prompts in `uniroute eval`): the cheapest λ whose
 * accuracy is within `tolerance` (1 point) of the best single LLM's; when no λ reaches it, the λ of the best
 * accuracy. λ = 0 (lowest predicted error) stays available by asking for it.
 */
import { lambdaGrid } from '../eval/metrics.js';
import type { Router } from './router.js';

export interface OperatingPoint {
  lambda: number;
  /** On the prompts it was chosen on: mean cost and accuracy at the point, at λ = 0, and of the best single LLM. */
  expectedCost: number;
  expectedAccuracy: number;
  costAtZero: number;
  accuracyAtZero: number;
  bestSingle: { model: string; accuracy: number; cost: number } | null;
  prompts: number;
  /** The whole curve on those prompts (λ ascending): what presets with a cost or accuracy target are resolved on. */
  curve?: Array<{ lambda: number; cost: number; accuracy: number }>;
}

/**
 * λ for a target, on a fitted router's validation curve: the most accurate point with mean cost <= maxCost, or the
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

/**
 * E: rows of embeddings; Y: their outcomes for the router's LLMs (rows x m in the pool's order, NaN = none).
 * A prompt counts when the chosen LLM has an outcome on it.
 */
export async function chooseOperatingPoint(router: Router, E: Float32Array, Y: Float32Array, tolerance = 0.01): Promise<OperatingPoint> {
  const snap = router.snapshot();
  const m = snap.names.length;
  const n = E.length / router.dim;
  const lambdas = lambdaGrid(snap.cost, 48);
  const acc = new CurveAccumulator(lambdas.length);
  for (let t = 0; t < lambdas.length; t++) {
    const b = await router.routeEmbeddings(E, { lambda: lambdas[t], explain: false, ood: false });
    acc.add(t, b.choice, Y, m, snap.cost);
  }
  return pickOperatingPoint(lambdas, acc, bestSingleOf(Y, n, m, snap.names, snap.cost), n, tolerance);
}

/** Sums of cost and accuracy per λ of a grid, over prompts scored in one or several parts (cross-fitting). */
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

/** The best single LLM among those with outcomes on (nearly) every prompt (rows x m outcomes, NaN = none). */
export function bestSingleOf(Y: Float32Array, n: number, m: number, names: string[], costs: ArrayLike<number>): OperatingPoint['bestSingle'] {
  let best: OperatingPoint['bestSingle'] = null;
  for (let j = 0; j < m; j++) {
    let q = 0;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const y = Y[i * m + j];
      if (Number.isNaN(y)) continue;
      q += y;
      k++;
    }
    if (k >= 0.9 * n && k > 0 && (!best || q / k > best.accuracy)) best = { model: names[j], accuracy: q / k, cost: costs[j] };
  }
  return best;
}

/** The rule on a measured curve (λ ascending): the cheapest point within `tolerance` of the best single LLM's accuracy. */
export function pickOperatingPoint(lambdas: number[], acc: CurveAccumulator, bestSingle: OperatingPoint['bestSingle'], n: number, tolerance = 0.01): OperatingPoint {
  const points = lambdas.map((l, t) => acc.point(t, l));
  const ok = points.filter((p) => Number.isFinite(p.accuracy));
  const zero = points[0];
  const bestAcc = Math.max(...ok.map((p) => p.accuracy));
  const target = (bestSingle ? bestSingle.accuracy : bestAcc) - tolerance;
  const within = ok.filter((p) => p.accuracy >= target - 1e-12);
  // the cheapest point that keeps the accuracy; ties to the larger λ
  const pick = within.length
    ? within.reduce((a, p) => (p.cost < a.cost - 1e-15 || (Math.abs(p.cost - a.cost) <= 1e-15 && p.lambda > a.lambda) ? p : a))
    : ok.reduce((a, p) => (p.accuracy > a.accuracy ? p : a));
  return {
    lambda: pick.lambda,
    expectedCost: pick.cost,
    expectedAccuracy: pick.accuracy,
    costAtZero: zero.cost,
    accuracyAtZero: zero.accuracy,
    bestSingle,
    prompts: n,
    curve: points.map((p) => ({ lambda: p.lambda, cost: p.cost, accuracy: p.accuracy })),
  };
}
