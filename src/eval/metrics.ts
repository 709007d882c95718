/** Deferral curves and their normalised area (PAPER.md: "Area", RouterBench AIQ style). */
import { argminRows } from '../decide/argmin.js';

export interface CurvePoint {
  cost: number;
  quality: number;
  lambda?: number;
}

/** The curve made non-decreasing: sorted by cost, quality replaced by its running maximum. */
export function monotoneCurve(points: CurvePoint[]): CurvePoint[] {
  const s = points.filter((p) => Number.isFinite(p.cost) && Number.isFinite(p.quality)).sort((a, b) => a.cost - b.cost || a.quality - b.quality);
  const out: CurvePoint[] = [];
  let best = -Infinity;
  for (const p of s) {
    best = Math.max(best, p.quality);
    out.push({ ...p, quality: best });
  }
  return out;
}

/** Quality of the non-decreasing, piecewise-linear curve at cost x (flat beyond its ends). */
export function curveAt(curve: CurvePoint[], x: number): number {
  if (curve.length === 0) return NaN;
  if (x <= curve[0].cost) return curve[0].quality;
  const last = curve[curve.length - 1];
  if (x >= last.cost) return last.quality;
  for (let i = 1; i < curve.length; i++) {
    const a = curve[i - 1];
    const b = curve[i];
    if (x <= b.cost) return b.cost === a.cost ? b.quality : a.quality + ((b.quality - a.quality) * (x - a.cost)) / (b.cost - a.cost);
  }
  return last.quality;
}

/**
 * Mean quality over [cMin, cMax]: the area under the non-decreasing curve between the cheapest and the most
 * expensive LLM's cost, divided by that range. With cMin = cMax, the quality at that cost.
 */
export function deferralArea(points: CurvePoint[], cMin: number, cMax: number): number {
  const c = monotoneCurve(points);
  if (c.length === 0) return NaN;
  if (!(cMax > cMin)) return curveAt(c, cMin);
  const xs = [cMin, ...c.map((p) => p.cost).filter((x) => x > cMin && x < cMax), cMax];
  let area = 0;
  for (let i = 1; i < xs.length; i++) area += ((curveAt(c, xs[i - 1]) + curveAt(c, xs[i])) / 2) * (xs[i] - xs[i - 1]);
  return area / (cMax - cMin);
}

/** λ values that sweep from "most accurate" (0) to "cheapest", scaled to the costs. */
export function lambdaGrid(costs: ArrayLike<number>, steps = 64): number[] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < costs.length; i++) {
    lo = Math.min(lo, costs[i]);
    hi = Math.max(hi, costs[i]);
  }
  const range = hi - lo > 0 ? hi - lo : Math.max(hi, 1e-12);
  const grid = [0];
  for (let i = 0; i < steps; i++) grid.push((10 ** (-3 + (6 * i) / (steps - 1))) / range);
  return grid;
}

/**
 * Deferral curve of a router on labelled prompts: for each λ, route every prompt among the LLMs that have an
 * outcome on it (the engine's argmin, src/router/decide.ts) and record mean cost and mean quality.
 * gamma: n x m predicted errors; correct: n x m outcomes (NaN = none).
 */
export function routerCurve(
  gamma: Float32Array,
  correct: Float32Array,
  costs: ArrayLike<number>,
  n: number,
  m: number,
  lambdas = lambdaGrid(costs),
): CurvePoint[] {
  const c32 = Float32Array.from(costs);
  let allowed: Uint8Array | null = null;
  for (let t = 0; t < n * m; t++)
    if (Number.isNaN(correct[t])) {
      allowed = Uint8Array.from(correct.subarray(0, n * m), (y) => (Number.isNaN(y) ? 0 : 1));
      break;
    }
  // a prompt that no LLM has an outcome on is left out (all-zero row)
  const rows: number[] = [];
  for (let i = 0; i < n; i++) {
    let any = !allowed;
    for (let j = 0; j < m && !any; j++) any = allowed![i * m + j] === 1;
    if (any) rows.push(i);
  }
  const pts: CurvePoint[] = [];
  for (const lambda of lambdas) {
    const choice = argminRows(gamma, c32, n, m, { lambda, allowed });
    let cs = 0;
    let qs = 0;
    for (const i of rows) {
      const best = choice[i];
      cs += costs[best];
      qs += correct[i * m + best];
    }
    if (rows.length > 0) pts.push({ lambda, cost: cs / rows.length, quality: qs / rows.length });
  }
  return pts;
}

/** Upper convex hull of the points, non-decreasing in quality (what random mixing between LLMs achieves). */
export function upperHull(points: CurvePoint[]): CurvePoint[] {
  const s = monotoneCurve(points);
  // drop dominated points (same or higher cost, no better quality), then the upper hull
  const pts: CurvePoint[] = [];
  for (const p of s) if (pts.length === 0 || p.quality > pts[pts.length - 1].quality) pts.push(p);
  const hull: CurvePoint[] = [];
  for (const p of pts) {
    while (hull.length >= 2) {
      const a = hull[hull.length - 2];
      const b = hull[hull.length - 1];
      // b lies on or below the segment a -> p: remove it
      if ((b.quality - a.quality) * (p.cost - a.cost) <= (p.quality - a.quality) * (b.cost - a.cost)) hull.pop();
      else break;
    }
    hull.push(p);
  }
  return hull;
}

/**
 * Quality-neutral cost: the least cost at which the non-decreasing curve reaches `target` quality, divided by
 * `refCost` (the most accurate LLM's cost); null when the curve never reaches it.
 */
export function qualityNeutralCost(points: CurvePoint[], target: number, refCost: number): number | null {
  const c = monotoneCurve(points);
  if (c.length === 0) return null;
  if (c[0].quality >= target) return c[0].cost / refCost;
  for (let i = 1; i < c.length; i++) {
    const a = c[i - 1];
    const b = c[i];
    if (b.quality >= target) {
      const x = b.quality === a.quality ? b.cost : a.cost + ((target - a.quality) * (b.cost - a.cost)) / (b.quality - a.quality);
      return x / refCost;
    }
  }
  return null;
}

/** RouterBench's AIQ: the area under the upper convex hull of the curve, over [cMin, cMax], divided by the range. */
export function aiq(points: CurvePoint[], cMin: number, cMax: number): number {
  return deferralArea(upperHull(points), cMin, cMax);
}
