/** LLM profiles: the error vector Psi of an LLM from its outcomes on validation prompts (paper eq. 12). */
import { UnirouteError } from '../errors.js';

export interface ErrorStats {
  /** Sum of errors (1 - correct) of the LLM's outcomes per cluster. */
  errorSums: Float32Array;
  /** Number of outcomes per cluster. */
  counts: Float32Array;
}

/** Accumulates per-cluster error sums and counts. `correct[i]` in [0, 1]; NaN means "no outcome". */
export function errorStats(clusters: ArrayLike<number>, correct: ArrayLike<number>, k: number): ErrorStats {
  if (clusters.length !== correct.length)
    throw new UnirouteError('DIMENSION_MISMATCH', `${clusters.length} cluster ids but ${correct.length} outcomes`);
  const errorSums = new Float32Array(k);
  const counts = new Float32Array(k);
  for (let i = 0; i < clusters.length; i++) {
    const y = correct[i];
    if (Number.isNaN(y)) continue;
    if (!(y >= 0 && y <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `outcome ${i} is ${y}; \`correct\` must be in [0, 1]`);
    const c = clusters[i];
    errorSums[c] += 1 - y;
    counts[c] += 1;
  }
  return { errorSums, counts };
}

export function overallError(s: ErrorStats): number {
  let e = 0;
  let n = 0;
  for (let c = 0; c < s.counts.length; c++) {
    e += s.errorSums[c];
    n += s.counts[c];
  }
  return n > 0 ? e / n : NaN;
}

/**
 * Psi_c = (errorSum_c + a * overall) / (count_c + a): per-cluster mean error shrunk toward the LLM's overall error
 * with prior strength a (a = 0 is the paper's plain mean). A cluster with no outcome takes the overall error.
 */
export function errorVector(s: ErrorStats, priorStrength: number, out = new Float32Array(s.counts.length)): Float32Array {
  const overall = overallError(s);
  for (let c = 0; c < s.counts.length; c++) {
    const n = s.counts[c];
    out[c] = n + priorStrength > 0 && n > 0 ? (s.errorSums[c] + priorStrength * overall) / (n + priorStrength) : overall;
  }
  return out;
}
