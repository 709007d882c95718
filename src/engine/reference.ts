/**
 * Plain TypeScript reference implementations of the native kernels: the specification the tests check the
 * addon against, and the baseline the benchmarks report ratios to. Never used on a hot path.
 */

const SALT_WORD = 0x5bd1e995;
const SALT_BIGRAM = 0x27d4eb2f;
const SALT_CHAR = 0x165667b1;
const BIGRAM_MUL = 0x9e3779b1 | 0;

export function fnv1a32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);
const isWord = (c: number) => (c >= 48 && c <= 57) || (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c >= 0x80;

/** Distinct hashed features of a text, in order of first occurrence, with weight 1 + ln(count). */
export function referenceFeatures(text: string, bucketsLog2: number, charN: number): Array<[number, number]> {
  const raw = Buffer.from(text, 'utf8');
  const norm: number[] = [];
  let pending = false;
  for (const c of raw) {
    if (isSpace(c)) {
      pending = norm.length > 0;
      continue;
    }
    if (pending) {
      norm.push(32);
      pending = false;
    }
    norm.push(c >= 65 && c <= 90 ? c + 32 : c);
  }
  const p = Uint8Array.from(norm);
  const shift = 32 - bucketsLog2;
  const counts = new Map<number, number>();
  const add = (h: number) => {
    const b = Math.imul(h, BIGRAM_MUL) >>> shift;
    counts.set(b, (counts.get(b) ?? 0) + 1);
  };
  let prev: number | null = null;
  let i = 0;
  while (i < p.length) {
    if (p[i] === 32) {
      i++;
      continue;
    }
    let j = i + 1;
    if (isWord(p[i])) while (j < p.length && isWord(p[j])) j++;
    const t = fnv1a32(p, i, j);
    add(t ^ SALT_WORD);
    if (prev !== null) add(Math.imul(prev, BIGRAM_MUL) ^ t ^ SALT_BIGRAM);
    prev = t;
    i = j;
  }
  if (p.length > 0) {
    if (p.length < charN) add(fnv1a32(p) ^ SALT_CHAR);
    else for (let k = 0; k + charN <= p.length; k++) add(fnv1a32(p, k, k + charN) ^ SALT_CHAR);
  }
  return [...counts].map(([b, c]) => [b, 1 + Math.log(c)]);
}

export interface ReferenceProjection {
  bucketsLog2: number;
  dim: number;
  charN: number;
  projection: Int8Array;
  scale: Float32Array;
}

export function referenceEmbed(p: ReferenceProjection, text: string, out = new Float64Array(p.dim)): Float64Array {
  out.fill(0);
  for (const [b, w] of referenceFeatures(text, p.bucketsLog2, p.charN)) {
    const s = w * p.scale[b];
    if (s === 0) continue;
    const base = b * p.dim;
    for (let d = 0; d < p.dim; d++) out[d] += s * p.projection[base + d];
  }
  let ss = 0;
  for (let d = 0; d < p.dim; d++) ss += out[d] * out[d];
  if (ss > 0) {
    const inv = 1 / Math.sqrt(ss);
    for (let d = 0; d < p.dim; d++) out[d] *= inv;
  }
  return out;
}

/** Nearest centroid by direct squared Euclidean distance (ties: lowest index). */
export function referenceAssign(
  x: ArrayLike<number>,
  xOffset: number,
  d: number,
  centroids: ArrayLike<number>,
  k: number,
): { index: number; distance: number; gap: number } {
  let best = Infinity;
  let second = Infinity;
  let arg = 0;
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const t = x[xOffset + j] - centroids[c * d + j];
      s += t * t;
    }
    if (s < best) {
      second = best;
      best = s;
      arg = c;
    } else if (s < second) second = s;
  }
  return { index: arg, distance: Math.sqrt(best), gap: second - best };
}

/** argmin_m psi[m][cluster] + lambda * cost[m] over allowed m; ties: lower cost, then lower index. */
export function referenceScore(
  psi: ArrayLike<number>,
  cost: ArrayLike<number>,
  m: number,
  k: number,
  cluster: number,
  lambda: number,
  allowed?: ArrayLike<number> | null,
): number {
  let best = -1;
  let bs = Infinity;
  let bc = 0;
  for (let j = 0; j < m; j++) {
    if (allowed && !allowed[j]) continue;
    // as the engine: float32 inputs and λ, the score in double (native/core/score.cpp)
    const s = psi[j * k + cluster] + Math.fround(lambda) * cost[j];
    if (best < 0 || s < bs || (s === bs && cost[j] < bc)) {
      best = j;
      bs = s;
      bc = cost[j];
    }
  }
  return best;
}

/** Sum of squared distances of each point to its assigned centroid. */
export function kmeansObjective(x: Float32Array, n: number, d: number, centroids: ArrayLike<number>, assign: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const c = assign[i];
    for (let j = 0; j < d; j++) {
      const t = x[i * d + j] - centroids[c * d + j];
      s += t * t;
    }
  }
  return s;
}

/** Reference k-means: k-means++ seeding (one trial per centre) and Lloyd iterations, with a seeded PRNG. */
export function referenceKMeans(
  x: Float32Array,
  n: number,
  d: number,
  k: number,
  seed = 1,
  maxIter = 300,
): { centroids: Float64Array; assignments: Int32Array; inertia: number } {
  const rand = mulberry32(seed);
  const C = new Float64Array(k * d);
  const closest = new Float64Array(n).fill(Infinity);
  let first = Math.floor(rand() * n);
  for (let c = 0; c < k; c++) {
    if (c > 0) {
      let pot = 0;
      for (let i = 0; i < n; i++) pot += closest[i];
      let r = rand() * pot;
      first = n - 1;
      for (let i = 0; i < n; i++) {
        r -= closest[i];
        if (r < 0) {
          first = i;
          break;
        }
      }
    }
    for (let j = 0; j < d; j++) C[c * d + j] = x[first * d + j];
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += (x[i * d + j] - C[c * d + j]) ** 2;
      closest[i] = Math.min(closest[i], s);
    }
  }
  const A = new Int32Array(n).fill(-1);
  for (let it = 0; it < maxIter; it++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const a = referenceAssign(x, i * d, d, C, k).index;
      if (a !== A[i]) changed++;
      A[i] = a;
    }
    if (changed === 0) break;
    const sums = new Float64Array(k * d);
    const counts = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      counts[A[i]]++;
      for (let j = 0; j < d; j++) sums[A[i] * d + j] += x[i * d + j];
    }
    for (let c = 0; c < k; c++) if (counts[c] > 0) for (let j = 0; j < d; j++) C[c * d + j] = sums[c * d + j] / counts[c];
  }
  return { centroids: C, assignments: A, inertia: kmeansObjective(x, n, d, C, A) };
}

/** A small seeded PRNG (mulberry32) for references and tests. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
