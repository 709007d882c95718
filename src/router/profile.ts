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
export function errorVector(s: ErrorStats, priorStrength: number, out: Float32Array = new Float32Array(s.counts.length)): Float32Array {
  const overall = overallError(s);
  for (let c = 0; c < s.counts.length; c++) {
    const n = s.counts[c];
    out[c] = n + priorStrength > 0 && n > 0 ? (s.errorSums[c] + priorStrength * overall) / (n + priorStrength) : overall;
  }
  return out;
}

/**
 * Psi of every LLM at once (M x k, row per LLM): Y holds correctness (rows x M, NaN = no outcome) and clusters the
 * cluster of each row. The same numbers as errorVector(errorStats(...)) per LLM, in one pass over the rows.
 */
export function errorVectors(clusters: ArrayLike<number>, Y: Float32Array, M: number, k: number, priorStrength: number): Float32Array {
  const rows = clusters.length;
  if (Y.length !== rows * M) throw new UnirouteError('DIMENSION_MISMATCH', `${rows} cluster ids but ${Y.length / M} outcome rows`);
  const errorSums = new Float32Array(M * k);
  const counts = new Float32Array(M * k);
  for (let i = 0; i < rows; i++) {
    const c = clusters[i];
    for (let j = 0; j < M; j++) {
      const y = Y[i * M + j];
      if (Number.isNaN(y)) continue;
      if (!(y >= 0 && y <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `outcome ${i} is ${y}; \`correct\` must be in [0, 1]`);
      errorSums[j * k + c] += 1 - y;
      counts[j * k + c] += 1;
    }
  }
  const psi = new Float32Array(M * k);
  for (let j = 0; j < M; j++) {
    const part = (a: Float32Array) => a.subarray(j * k, (j + 1) * k);
    errorVector({ errorSums: part(errorSums), counts: part(counts) }, priorStrength, part(psi));
  }
  return psi;
}

/** Predicted errors under hard assignment: gamma[i][j] = Psi_j[cluster_i] (rows x M). */
export function hardGamma(psi: Float32Array, clusters: ArrayLike<number>, k: number, M: number): Float32Array {
  const g = new Float32Array(clusters.length * M);
  for (let i = 0; i < clusters.length; i++) for (let j = 0; j < M; j++) g[i * M + j] = psi[j * k + clusters[i]];
  return g;
}
