/**
 * Reference routers that read test labels, to say how much of the oracle's headroom a router could reach at all
 * with a given kind of knowledge. They are ceilings, not contenders:
 * - `oracle-benchmark`: each unseen LLM's true error on the test prompts of each benchmark. No router whose
 *   estimate depends on the prompt only through its benchmark (a cluster map whose clusters are the benchmarks, a
 *   perfect one) can beat it except by chance.
 * - `oracle-difficulty`: a per-LLM logistic model on [benchmark one-hot, the prompt's true difficulty] fitted on
 *   the LLM's validation outcomes, where the difficulty of a prompt is the training LLMs' true mean error on it
 *   (test prompts included). It is the issue's "difficulty feature" with a perfect difficulty model.
 */
import { ridgeSolve } from '../router/evidence.js';

/** Fits an L2-regularised logistic regression on rows of P features by Newton's method; returns the weights. */
export function fitLogistic(X: Float64Array, y: ArrayLike<number>, P: number, l2: number, iterations = 50): Float64Array {
  const n = y.length;
  if (X.length !== n * P) throw new RangeError(`${X.length} features for ${n} rows of ${P}`);
  const w = new Float64Array(P);
  const g = new Float64Array(P);
  const H = new Float64Array(P * P);
  for (let it = 0; it < iterations; it++) {
    g.fill(0);
    H.fill(0);
    for (let i = 0; i < n; i++) {
      let z = 0;
      for (let a = 0; a < P; a++) z += w[a] * X[i * P + a];
      const p = 1 / (1 + Math.exp(-z));
      const r = p - y[i];
      const s = p * (1 - p);
      for (let a = 0; a < P; a++) {
        const xa = X[i * P + a];
        if (xa === 0) continue;
        g[a] += r * xa;
        for (let b = 0; b < P; b++) H[a * P + b] += s * xa * X[i * P + b];
      }
    }
    for (let a = 0; a < P; a++) g[a] += l2 * w[a];
    const step = ridgeSolve(H, g, P, l2);
    let moved = 0;
    for (let a = 0; a < P; a++) {
      w[a] -= step[a];
      moved = Math.max(moved, Math.abs(step[a]));
    }
    if (moved < 1e-9) break;
  }
  return w;
}

/**
 * `oracle-benchmark`'s predicted errors (nTest × M): each LLM's mean error over the test prompts of each benchmark.
 * `bench` is the benchmark index of each test prompt, `correct` the test outcomes (nTest × M).
 */
export function benchmarkOracle(bench: Int32Array, B: number, correct: Float32Array, M: number): Float32Array {
  const n = bench.length;
  const sums = new Float64Array(B * M);
  const counts = new Float64Array(B);
  for (let i = 0; i < n; i++) {
    counts[bench[i]]++;
    for (let j = 0; j < M; j++) sums[bench[i] * M + j] += 1 - correct[i * M + j];
  }
  const out = new Float32Array(n * M);
  for (let i = 0; i < n; i++) for (let j = 0; j < M; j++) out[i * M + j] = sums[bench[i] * M + j] / counts[bench[i]];
  return out;
}

/**
 * `oracle-difficulty`'s predicted errors (nTest × M): per LLM, a logistic model (L2 = 1) on [benchmark one-hot,
 * difficulty − 0.5] fitted on its validation outcomes. `difficulty` holds each prompt's training-LLM mean error.
 */
export function difficultyOracle(
  val: { bench: Int32Array; difficulty: Float64Array; correct: Float32Array },
  test: { bench: Int32Array; difficulty: Float64Array },
  B: number,
  M: number,
): Float32Array {
  const P = B + 1;
  const features = (bench: Int32Array, d: Float64Array) => {
    const X = new Float64Array(bench.length * P);
    bench.forEach((b, i) => {
      X[i * P + b] = 1;
      X[i * P + B] = d[i] - 0.5;
    });
    return X;
  };
  const Xv = features(val.bench, val.difficulty);
  const Xt = features(test.bench, test.difficulty);
  const v = val.bench.length;
  const n = test.bench.length;
  const out = new Float32Array(n * M);
  for (let j = 0; j < M; j++) {
    const w = fitLogistic(Xv, Float64Array.from({ length: v }, (_, i) => 1 - val.correct[i * M + j]), P, 1);
    for (let i = 0; i < n; i++) {
      let z = 0;
      for (let a = 0; a < P; a++) z += w[a] * Xt[i * P + a];
      out[i * M + j] = 1 / (1 + Math.exp(-z));
    }
  }
  return out;
}
