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

/**
 * A router file is untrusted input: its manifest and tensors are checked value by value, the same way whether the
 * file carries valid checksums or not (a checksum tells corruption, not intent: anyone can recompute it). These
 * are the checks of the shapes and types; the Router constructor then checks what the values mean (every pool
 * entry as the admin API checks an addition: name, cost in [0, 1e30], 0 <= sums <= counts, finite).
 */
export const MAX_CLUSTERS = 65_536;
export const MAX_DIM = 65_536;
export const MAX_POOL = 100_000;

/** Throws BAD_ARTIFACT naming the file and the problem. */
export function badFile(source: string, why: string): never {
  throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${why}`);
}

const isObj = (x: unknown): x is Record<string, any> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** The manifest's top-level types, before any value is used. */
export function checkManifestShape(m: unknown, source: string): asserts m is Record<string, any> {
  const bad = (why: string) => badFile(source, why);
  if (!isObj(m)) bad('its manifest is not a JSON object');
  const man = m as Record<string, any>;
  if (!isObj(man.embedder)) bad('the manifest has no embedder object');
  const e = man.embedder;
  if (e.kind !== 'hashed-lsa' && e.kind !== 'precomputed' && e.kind !== 'openai') bad(`unknown embedder kind ${JSON.stringify(e.kind)}`);
  if (!Number.isInteger(e.dim) || e.dim < 1 || e.dim > MAX_DIM) bad(`the embedding dimension ${JSON.stringify(e.dim)} is not a whole number in [1, ${MAX_DIM}]`);
  if (e.kind === 'hashed-lsa') {
    if (!Number.isInteger(e.bucketsLog2) || e.bucketsLog2 < 4 || e.bucketsLog2 > 24) bad(`embedder.bucketsLog2 ${JSON.stringify(e.bucketsLog2)} is not a whole number in [4, 24]`);
    if (!Number.isInteger(e.charN) || e.charN < 1 || e.charN > 16) bad(`embedder.charN ${JSON.stringify(e.charN)} is not a whole number in [1, 16]`);
    if (e.dim > 4096) bad(`the hashed embedder's dimension ${e.dim} is above 4096`);
  }
  if (e.kind === 'precomputed' && e.name !== undefined && (typeof e.name !== 'string' || e.name.length > 256)) bad('embedder.name must be a string of at most 256 characters');
  if (e.kind === 'openai') {
    if (typeof e.model !== 'string' || e.model.length === 0 || e.model.length > 256) bad('the openai embedder needs its model name (a string of at most 256 characters)');
    if (typeof e.baseUrl !== 'string' || e.baseUrl.length > 2048) bad('the openai embedder needs its base URL (a string)');
    let u: URL | undefined;
    try {
      u = new URL(e.baseUrl);
    } catch {
      bad(`the openai embedder's base URL ${JSON.stringify(e.baseUrl.slice(0, 80))} is not a URL`);
    }
    if (u!.protocol !== 'http:' && u!.protocol !== 'https:') bad('the openai embedder\'s base URL is not http(s)');
    if (u!.username || u!.password) bad('the openai embedder\'s base URL carries credentials');
  }
  if (!Number.isInteger(man.clusters) || man.clusters < 1 || man.clusters > MAX_CLUSTERS) bad(`clusters ${JSON.stringify(man.clusters)} is not a whole number in [1, ${MAX_CLUSTERS}]`);
  if (!Array.isArray(man.pool) || man.pool.length > MAX_POOL) bad(`the manifest's pool is not a list (of at most ${MAX_POOL} LLMs)`);
  man.pool.forEach((p: unknown, i: number) => {
    if (!isObj(p)) bad(`pool[${i}] is not an object`);
    const q = p as Record<string, unknown>;
    if (typeof q.name !== 'string' || q.name.trim() === '' || q.name.length > 256) bad(`pool[${i}].name must be a non-empty string of at most 256 characters`);
    if (typeof q.costPerQuery !== 'number' || !Number.isFinite(q.costPerQuery) || q.costPerQuery < 0 || q.costPerQuery > MAX_COST)
      bad(`LLM "${q.name}" needs a cost per query in [0, ${MAX_COST}] (got ${JSON.stringify(q.costPerQuery)})`);
  });
  const num = (key: string, ok: (v: number) => boolean, what: string) => {
    const v = man[key];
    if (v !== undefined && v !== null && !(typeof v === 'number' && Number.isFinite(v) && ok(v))) bad(`${key} ${JSON.stringify(v)} is not ${what}`);
  };
  num('priorStrength', (v) => v >= 0, 'a finite number >= 0');
  num('defaultLambda', (v) => v >= 0, 'a finite number >= 0');
  num('minEvidence', (v) => v >= 0, 'a finite number >= 0');
  if (man.evidenceCells !== undefined && !(Number.isInteger(man.evidenceCells) && man.evidenceCells >= 1 && man.evidenceCells <= 16 * MAX_CLUSTERS))
    bad(`evidenceCells ${JSON.stringify(man.evidenceCells)} is not a whole number >= 1`);
  if (man.info !== undefined && !isObj(man.info)) bad('info is not an object');
  if (man.clusterMap !== undefined) {
    if (!isObj(man.clusterMap) || (man.clusterMap.kind !== 'learned' && man.clusterMap.kind !== 'nearest-centroid')) bad('clusterMap must be {"kind": "nearest-centroid"} or a learned map');
    if (man.clusterMap.kind === 'learned' && !isObj(man.clusterMap.config)) bad('the learned map has no config object');
  }
  for (const key of ['difficulty', 'ability', 'deviation', 'abilityGroups', 'distanceQuantiles'])
    if (man[key] !== undefined && !isObj(man[key])) bad(`${key} is not an object`);
}

/** Every value of a float tensor is finite (`min`: and at least this). */
export function checkFiniteTensor(t: Float32Array, name: string, source: string, min = -Infinity): void {
  for (let i = 0; i < t.length; i++) {
    const v = t[i];
    if (!Number.isFinite(v) || v < min) badFile(source, `tensor ${name} has ${Number.isFinite(v) ? `a value below ${min}` : 'a non-finite value'} at ${i}`);
  }
}
