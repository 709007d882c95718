/**
 * Explaining decisions: every pooled LLM's predicted error and cost, its outcomes in the prompt's cluster, whether
 * it has evidence where the prompt lies (information: no rule reads it), the 95 % interval of its error there, and
 * why the decision is what it is when it is not the plain rule (out of distribution, exploration). One JSON shape
 * of a decision is shared by the CLI, the HTTP API and the library.
 */
import { intervalOf, logit } from './posterior.js';
import type { Candidate, RouteBatch, RouteDecision } from './types.js';

const clampedLogit = (p: number) => logit(Math.min(1 - 1e-6, Math.max(1e-6, p)));

/** Each snapshot's cell intervals, computed once (a snapshot's Ψ array is its identity). */
const intervals = new WeakMap<Float32Array, Map<number, [number, number]>>();
function cellInterval(b: RouteBatch, t: number): [number, number] {
  let m = intervals.get(b.psi);
  if (!m) intervals.set(b.psi, (m = new Map()));
  let v = m.get(t);
  if (!v) m.set(t, (v = intervalOf(b.psi[t], b.sd[t])));
  return v;
}

/** Each decision of a batch, explained. */
export function explain(b: RouteBatch): RouteDecision[] {
  return Array.from(b.choice, (_, i) => explainRow(b, i));
}

/** Why decision i is what it is, when it is not the plain rule on the prompt's cluster. */
function reasonOf(b: RouteBatch, i: number): string | undefined {
  if (b.ood.length && b.ood[i] === 1) {
    const where = `out of distribution: ${b.distance[i].toFixed(3)} from its nearest cluster, beyond ${b.oodThreshold?.toFixed(3)} (the OOD quantile of the training prompts)`;
    const f = b.oodFallback;
    if (f === 'prior') return `${where}; decided on the pool's prior over clusters (each LLM's error averaged over the clusters by their share) at lambda ${b.lambda.toPrecision(4)}`;
    if (f === 'best-overall') return `${where}; sent to the allowed LLM with the lowest error over the training distribution`;
    if (f === 'route') return `${where}; flagged only, decided on its nearest cluster`;
    return `${where}; sent to the named fallback LLM "${f}" when allowed`;
  }
  if (b.explored.length && b.explored[i] === 1) return 'exploration: decided on one draw of every candidate\'s error from its posterior (Thompson sampling), not on the mean';
  return undefined;
}

/** The explanation of decision i of a batch. */
export function explainRow(b: RouteBatch, i: number): RouteDecision {
  const m = b.models.length;
  const K = b.k;
  const c = b.choice[i];
  const k = b.cluster[i];
  const ood = b.ood[i] === 1;
  const explored = b.explored.length > 0 && b.explored[i] === 1;
  const reason = reasonOf(b, i);
  const head = { model: b.models[c], cluster: k, distance: b.distance[i], cost: b.costs[c], ood, ...(explored ? { explored } : {}) };
  if (b.predictedError.length === 0) return { ...head, predictedError: b.chosenError[i], candidates: [] };
  // the prompt's shift in logit space (one for every LLM), read back from the first candidate's prediction
  const priorRow = ood && b.oodFallback === 'prior';
  const g0 = b.predictedError[i * m];
  const p0 = (b.scored ?? b.psi)[k];
  const shift = !priorRow && Math.abs(g0 - p0) > 1e-6 ? clampedLogit(g0) - clampedLogit(p0) : 0;
  const move = (p: number) => (shift === 0 ? p : 1 / (1 + Math.exp(-(clampedLogit(p) + shift))));
  const candidates: Candidate[] = b.models.map((model, j) => {
    const t = j * K + k;
    const [lo, hi] = cellInterval(b, t);
    return {
      model,
      predictedError: b.predictedError[i * m + j],
      cost: b.costs[j],
      outcomes: b.counts[t],
      evidence: b.evidenceFlags ? b.evidenceFlags[j * b.evidenceStride + b.cellOf[i]] === 1 : true,
      interval: [move(lo), move(hi)],
    };
  });
  return { ...head, predictedError: b.predictedError[i * m + c], ...(reason ? { reason } : {}), candidates };
}

/**
 * A cost as the shortest decimal that reads back as the same float32: the pool holds costs as float32, and 0.005
 * is 0.004999999888241291 there; printed in full it is noise, to a fixed number of digits it loses small costs.
 * A value that is not a float32 (a cost computed in double precision) comes back unchanged.
 */
export function shortestCost(x: number): number {
  if (!Number.isFinite(x) || Number.isInteger(x) || Math.fround(x) !== x) return x;
  for (let p = 1; p <= 9; p++) {
    // the closest decimal of p digits; if any of p digits reads back as x, this one does
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

/** Costs seen, as JSON text (a pool has few distinct costs; bounded for a pool that changes without end). */
const costTexts = new Map<number, string>();
/** A cost as JSON text: shortestCost's number, written as JSON writes it (the same bytes as JSON.stringify of a decision record). */
export function costJson(x: number): string {
  let t = costTexts.get(x);
  if (t === undefined) {
    if (costTexts.size >= 4096) costTexts.clear();
    costTexts.set(x, (t = JSON.stringify(shortestCost(x))));
  }
  return t;
}

/** The JSON of decision records: costs as shortestCost gives them, other numbers to 5 decimals (what `uniroute route` writes). */
export const decisionReplacer = (key: string, v: unknown) =>
  typeof v !== 'number' || Number.isInteger(v) ? v : key === 'cost' ? shortestCost(v) : +v.toFixed(5);

/** One decision as `uniroute route` writes it (with `id` first when given): the library's decision, serialised. */
export function decisionJson(d: RouteDecision, withCandidates: boolean, id?: unknown): string {
  return JSON.stringify(id === undefined ? decisionRecord(d, withCandidates) : { id, ...decisionRecord(d, withCandidates) }, decisionReplacer);
}

/**
 * The one JSON shape of a decision, shared by the CLI and the HTTP API: {model, cluster, distance, predicted_error,
 * cost (shortestCost's), ood} (with `explored: true` when exploration decided it) and, when explained, `reason` (when not the plain
 * rule) and candidates keyed by LLM: {predicted_error, cost, outcomes, evidence, interval}.
 */
export function decisionRecord(d: RouteDecision, withCandidates: boolean): Record<string, unknown> {
  const rec: Record<string, unknown> = {
    model: d.model,
    cluster: d.cluster,
    distance: d.distance,
    predicted_error: d.predictedError,
    cost: shortestCost(d.cost),
    ood: d.ood,
  };
  if (d.explored) rec.explored = true;
  if (withCandidates) {
    if (d.reason) rec.reason = d.reason;
    rec.candidates = Object.fromEntries(
      d.candidates.map((c) => [c.model, { predicted_error: c.predictedError, cost: shortestCost(c.cost), outcomes: c.outcomes, evidence: c.evidence, interval: c.interval }]),
    );
  }
  return rec;
}
