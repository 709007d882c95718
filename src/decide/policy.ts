/**
 * The one decision rule, around the engine's argmin: a policy (λ, or a tradeoff, a floor, a risk κ, the allowed
 * LLMs) is checked and resolved against a pool snapshot (`prepare`), the engine scores and picks
 * argmin_m γ_m(x) + λ·c_m on the posterior mean (Ψ + κ·sd under a risk), and `finish` applies what the engine does
 * not: the quality floor, out-of-distribution prompts (decided on the pool's prior over clusters, at the same λ),
 * and exploration (Thompson draws from the posterior on a share of the prompts).
 */
import { UnirouteError, didYouMean } from '../errors.js';
import { argminRows } from './argmin.js';
import { mulberry32 } from '../engine/reference.js';
import { logit, sampleCell, sigmoid } from './posterior.js';
import { riskAdjusted, type ModelView, type Snapshot } from './snapshot.js';
import type { RouteBatch, RouteOptions } from './types.js';

/** What a decision needs of the fitted model beyond the snapshot. */
export interface DecideModel extends ModelView {
  /** The distance beyond which a prompt is out of distribution at this quantile (undefined: not recorded). */
  oodThreshold(quantile: number): number | undefined;
  /** The λ in force when a request gives none (the pool's operating point). */
  defaultLambda(s: Snapshot): number;
}

export type OodFallback = number | 'prior' | 'best' | 'route';

export interface Prepared {
  s: Snapshot;
  lambda: number;
  maxError: number | undefined;
  risk: number;
  ood: { threshold: number; fallback: OodFallback; name: string } | null;
  explain: boolean;
  allowed: Uint8Array | null;
  allowedPerRow: boolean;
  /** Ψ (or Ψ + κ·sd), its logit, and its share-weighted mean: what the engine and the OOD rule score. */
  psi: Float32Array;
  psiLogit: Float32Array | null;
  overall: Float64Array;
  explore: { rate: number; rand: () => number } | null;
  out: {
    choice: Int32Array;
    cluster: Int32Array;
    distance: Float32Array;
    gamma: Float32Array;
    chosen: Float32Array;
    cell: Int32Array;
  };
}

/** A seeded uniform source for exploration's draws (the project's one mulberry32). */
export const seededRandom = (seed: number): (() => number) => mulberry32(seed);

/**
 * λ₁: the smallest λ at which the cheapest LLM of the pool wins in every cluster on Ψ (error differences over
 * cost differences), the top of the `tradeoff` scale. A pool whose cheapest LLM is also never worse gets the λ at
 * which cost outweighs a whole error unit over the pool's cost spread.
 */
export function tradeoffScale(s: Snapshot, k: number): number {
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
    for (let c = 0; c < k; c++) hi = Math.max(hi, (s.psi[cheap * k + c] - s.psi[j * k + c]) / dc);
  }
  if (hi > 0 && Number.isFinite(hi)) return hi;
  return spread > 0 ? 1 / spread : 1;
}

/**
 * The λ at which cost outweighs any difference of predicted errors (which lie in [0, 1]): above it every decision
 * is the cheapest allowed LLM, whatever a prompt's difficulty or the risk.
 */
export function cheapestLambda(s: Snapshot): number {
  const c = Array.from(s.cost).sort((a, b) => a - b);
  let gap = Infinity;
  for (let j = 1; j < c.length; j++) if (c[j] - c[j - 1] > 0) gap = Math.min(gap, c[j] - c[j - 1]);
  return Number.isFinite(gap) ? 1.01 / gap : 1;
}

/** The λ of `tradeoff` t in [0, 1] (see RouteOptions.tradeoff): t = 1 is the cheapest allowed LLM everywhere. */
export function lambdaForTradeoff(s: Snapshot, k: number, t: number): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 1)
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in [0, 1] for \`tradeoff\` (0 = lowest predicted error, 1 = cheapest) but received ${String(t)}`);
  if (t === 0) return 0;
  const top = tradeoffScale(s, k);
  if (t === 1) return Math.max(top, cheapestLambda(s));
  return top * 10 ** (-4 * (1 - t));
}

/** Checks a policy against a snapshot and resolves it (λ, masks, risk, OOD, exploration) for n prompts. */
export function prepare(model: DecideModel, s: Snapshot, n: number, opts: RouteOptions, withMap: boolean): Prepared {
  if (s.names.length === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty: add an LLM first');
  if (opts.tradeoff !== undefined && opts.lambda !== undefined) throw new UnirouteError('INVALID_ARGUMENT', 'give `lambda` or `tradeoff`, not both');
  const lambda = opts.tradeoff !== undefined ? lambdaForTradeoff(s, model.k, opts.tradeoff) : (opts.lambda ?? model.defaultLambda(s));
  if (typeof lambda !== 'number' || !Number.isFinite(lambda) || lambda < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a finite number >= 0 for \`lambda\` but received ${String(lambda)}`);
  const m = s.names.length;
  const risk = opts.risk ?? 0;
  if (typeof risk !== 'number' || !Number.isFinite(risk) || risk < 0)
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a finite number >= 0 for \`risk\` but received ${String(risk)}`);
  const maxError = opts.maxError;
  if (maxError !== undefined && (typeof maxError !== 'number' || !Number.isFinite(maxError) || maxError < 0 || maxError > 1))
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in [0, 1] for \`maxError\` but received ${String(maxError)}`);
  if (opts.evidence !== undefined && opts.evidence !== 'ignore')
    throw new UnirouteError(
      'INVALID_ARGUMENT',
      opts.evidence === 'prefer'
        ? '`evidence: "prefer"` was removed: decisions rest on the posterior alone (an LLM with no outcome in a cluster has the wide prior there); use `risk` to keep thinly described LLMs out'
        : `Expected "ignore" (or nothing) for \`evidence\` but received ${JSON.stringify(opts.evidence)}`,
    );
  const explore = opts.explore ?? 0;
  if (typeof explore !== 'number' || !(explore >= 0 && explore <= 1))
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in [0, 1] for \`explore\` but received ${String(explore)}`);
  if (opts.exploreSeed !== undefined && !Number.isInteger(opts.exploreSeed))
    throw new UnirouteError('INVALID_ARGUMENT', `Expected a whole number for \`exploreSeed\` but received ${String(opts.exploreSeed)}`);
  let ood: Prepared['ood'] = null;
  if (opts.ood !== false) {
    const o = opts.ood ?? {};
    if (typeof o !== 'object' || o === null) throw new UnirouteError('INVALID_ARGUMENT', '`ood` must be false or {quantile, fallback}');
    const q = o.quantile ?? 0.99;
    if (typeof q !== 'number' || !(q > 0 && q <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `Expected a number in (0, 1] for \`ood.quantile\` but received ${String(q)}`);
    const f = o.fallback ?? 'prior';
    let fallback: OodFallback;
    if (f === 'prior') fallback = 'prior';
    else if (f === 'best-overall') fallback = 'best';
    else if (f === 'route') fallback = 'route';
    else {
      const j = s.index.get(f);
      if (j === undefined)
        throw new UnirouteError('UNKNOWN_MODEL', `\`ood.fallback\` names "${String(f)}", which is not in the pool${didYouMean(String(f), s.names)}; or give "prior", "best-overall" or "route"`);
      fallback = j;
    }
    const threshold = q < 1 ? model.oodThreshold(q) : undefined;
    if (threshold !== undefined) ood = { threshold, fallback, name: String(f) };
  }
  let psi = s.psi;
  let psiLogit = s.psiLogit;
  let overall = s.overall;
  if (risk > 0) ({ psi, psiLogit, overall } = riskAdjusted(model, s, risk));
  let allowed: Uint8Array | null = null;
  let allowedPerRow = false;
  const toMask = (list: unknown, out: Uint8Array, where: string) => {
    if (!Array.isArray(list) || list.length === 0) throw new UnirouteError('INVALID_ARGUMENT', `\`${where}\` must be a non-empty list of LLM names`);
    for (const name of list) {
      const j = s.index.get(name);
      if (j === undefined) throw new UnirouteError('UNKNOWN_MODEL', `\`${where}\` names "${String(name)}", which is not in the pool${didYouMean(String(name), s.names)}`);
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
  const explorer = explore > 0 && maxError === undefined ? { rate: explore, rand: seededRandom(opts.exploreSeed ?? Math.floor(Math.random() * 2 ** 31)) } : null;
  // the n x m matrix is also needed (then dropped) by the quality floor, by exploration, and by a fixed OOD fallback
  // (a learned map or a difficulty model make its error differ per prompt)
  // (the prior's decision needs only each LLM's share-weighted Ψ; a fixed fallback's error differs per prompt)
  const fixedFallback = !!ood && ood.fallback !== 'prior' && ood.fallback !== 'route';
  const needGamma = opts.explain !== false || maxError !== undefined || !!explorer || (fixedFallback && (withMap || !!model.prior?.difficulty));
  return {
    s,
    lambda: maxError !== undefined ? 0 : lambda,
    maxError,
    risk,
    ood,
    explain: opts.explain !== false,
    allowed,
    allowedPerRow,
    psi,
    psiLogit,
    overall,
    explore: explorer,
    out: {
      choice: new Int32Array(n),
      cluster: new Int32Array(n),
      distance: new Float32Array(n),
      gamma: new Float32Array(needGamma ? n * m : 0),
      chosen: new Float32Array(n),
      cell: new Int32Array(model.cells ? n : 0),
    },
  };
}

const isAllowed = (p: Prepared, i: number, j: number, m: number) => !p.allowed || p.allowed[p.allowedPerRow ? i * m + j : j] === 1;

/**
 * The quality floor, decided by the one argmin: among the allowed LLMs whose predicted error is <= ε, the lowest
 * cost (equal costs: the LLM listed first); rows where none qualifies keep the engine's λ = 0 decision.
 */
function qualityFloor(p: Prepared, eps: number): void {
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
      const ok = isAllowed(p, i, j, m) && g[t] <= eps;
      feasible[t] = ok ? 1 : 0;
      if (ok) any[i] = 1;
    }
  // score = cost (λ = 0 on a "predicted error" that is the cost)
  const pick = argminRows(costRows, p.s.cost, n, m, { lambda: 0, allowed: feasible });
  for (let i = 0; i < n; i++) {
    if (!any[i] || pick[i] < 0) continue;
    p.out.choice[i] = pick[i];
    p.out.chosen[i] = g[i * m + pick[i]];
  }
}

/** The better of two candidates by score, then cost, then pool order (the engine's tie rule). */
const better = (score: number, cost: number, j: number, bScore: number, bCost: number, b: number) =>
  b < 0 || score < bScore || (score === bScore && (cost < bCost || (cost === bCost && j < b)));

/**
 * Out-of-distribution prompts: flagged, and decided by the fallback. 'prior': every allowed LLM's predicted error is
 * its Ψ averaged over the clusters by their share (the pool's prior over clusters), and the usual rule applies to
 * it — argmin error + λ·cost, or the floor — so that an everyday prompt far from every cluster is decided by cost
 * like any other, not sent to the dearest LLM. 'best': the lowest such error. An LLM's index: that LLM when allowed.
 */
function outOfDistribution(p: Prepared, o: NonNullable<Prepared['ood']>): Uint8Array {
  const n = p.out.choice.length;
  const m = p.s.names.length;
  const flags = new Uint8Array(n);
  const g = p.out.gamma;
  const cost = p.s.cost;
  for (let i = 0; i < n; i++) {
    if (!(p.out.distance[i] > o.threshold)) continue;
    flags[i] = 1;
    if (o.fallback === 'route') continue;
    if (o.fallback === 'prior' && g.length) for (let j = 0; j < m; j++) g[i * m + j] = p.overall[j];
    let pick = typeof o.fallback === 'number' && isAllowed(p, i, o.fallback, m) ? o.fallback : -1;
    if (pick < 0 && o.fallback === 'prior' && p.maxError !== undefined) {
      // the floor on the prior: the cheapest allowed LLM whose prior error is <= ε, else the lowest prior error
      let bs = 0;
      let bc = 0;
      for (let j = 0; j < m; j++)
        if (isAllowed(p, i, j, m) && p.overall[j] <= p.maxError && better(cost[j], cost[j], j, bs, bc, pick)) [pick, bs, bc] = [j, cost[j], cost[j]];
    }
    if (pick < 0) {
      const lam = o.fallback === 'prior' && p.maxError === undefined ? p.lambda : 0;
      let bs = 0;
      let bc = 0;
      for (let j = 0; j < m; j++) {
        if (!isAllowed(p, i, j, m) || Number.isNaN(p.overall[j])) continue;
        const sc = p.overall[j] + lam * cost[j];
        if (better(sc, cost[j], j, bs, bc, pick)) [pick, bs, bc] = [j, sc, cost[j]];
      }
    }
    if (pick < 0) continue;
    p.out.choice[i] = pick;
    p.out.chosen[i] = o.fallback === 'prior' ? p.overall[pick] : g.length ? g[i * m + pick] : p.psi[pick * p.s.psi.length / m + p.out.cluster[i]];
  }
  return flags;
}

/**
 * Exploration: on a share of the in-distribution prompts, one Thompson draw of every allowed LLM's error in the
 * prompt's cluster from its posterior, moved by the prompt's difficulty as its mean is (in logit space), and the
 * same rule on the draws. A thin LLM's wide posterior makes it win some draws where it might be best.
 */
function explore(model: DecideModel, p: Prepared, oodFlags: Uint8Array): Uint8Array {
  const e = p.explore!;
  const n = p.out.choice.length;
  const m = p.s.names.length;
  const K = model.k;
  const flags = new Uint8Array(n);
  const g = p.out.gamma;
  const clamp = (x: number) => Math.min(1 - 1e-6, Math.max(1e-6, x));
  for (let i = 0; i < n; i++) {
    if (e.rand() >= e.rate || (oodFlags.length && oodFlags[i])) continue;
    flags[i] = 1;
    const k = p.out.cluster[i];
    let pick = -1;
    let bs = 0;
    let bc = 0;
    for (let j = 0; j < m; j++) {
      if (!isAllowed(p, i, j, m)) continue;
      const theta = sampleCell(p.s.rows[j], p.s.entries[j], k, model.priorStrength, model.prior, e.rand);
      const mean = p.s.psi[j * K + k];
      const draw = sigmoid(logit(clamp(g[i * m + j])) + logit(clamp(theta)) - logit(clamp(mean)));
      const sc = draw + p.lambda * p.s.cost[j];
      if (better(sc, p.s.cost[j], j, bs, bc, pick)) [pick, bs, bc] = [j, sc, p.s.cost[j]];
    }
    if (pick < 0) continue;
    p.out.choice[i] = pick;
    p.out.chosen[i] = g[i * m + pick];
  }
  return flags;
}

/** The decisions after the engine's argmin: floor, OOD, exploration; the batch as the library returns it. */
export function finish(model: DecideModel, p: Prepared): RouteBatch {
  if (p.maxError !== undefined) qualityFloor(p, p.maxError);
  const ood = p.ood ? outOfDistribution(p, p.ood) : new Uint8Array(0);
  const explored = p.explore ? explore(model, p, ood) : new Uint8Array(0);
  const fallback = p.ood ? (p.ood.fallback === 'best' ? 'best-overall' : p.ood.name) : undefined;
  return {
    models: p.s.names,
    costs: p.s.cost,
    lambda: p.lambda,
    choice: p.out.choice,
    cluster: p.out.cluster,
    distance: p.out.distance,
    predictedError: p.explain ? p.out.gamma : new Float32Array(0),
    chosenError: p.out.chosen,
    psi: p.s.psi,
    sd: p.s.sd,
    counts: p.s.counts,
    k: model.k,
    minEvidence: model.minEvidence,
    evidenceFlags: p.s.evidence,
    evidenceStride: model.cells?.count ?? model.k,
    cellOf: model.cells ? p.out.cell : p.out.cluster,
    ood,
    oodFixed: !!p.ood && (typeof p.ood.fallback === 'number' || p.ood.fallback === 'best'),
    ...(p.ood ? { oodFallback: fallback, oodThreshold: p.ood.threshold } : {}),
    risk: p.risk,
    scored: p.psi,
    explored,
  };
}
