/**
 * The CI check on the CPU at hand: the engine's kernels against their peers, run in the same process tree, on
 * whatever CPU CI drew. Fails (exit 1) when nearest-centroid assignment falls below 0.8x OpenBLAS sgemm's GFLOP/s
 * on the same shape (65,536 x 256 by 256 x 30 and 256 x 64, one thread, thread CPU clock) or k-means takes longer
 * than scikit-learn's KMeans on the same points (one thread each, CPU clock, the quick sets), printing the CPU, its
 * instruction set and every ratio. Soft scoring against sgemm is printed, not gated. Where OpenBLAS or
 * scikit-learn is missing it says so and fails: CI installs both (.ci/run).
 *   npm run bench -- --check
 */
import { blasRows, machineInfo, machineLine } from './machine.js';
import { runKMeansBench } from './kmeans.js';

export const ASSIGN_MIN_VS_SGEMM = 0.8;
export const KMEANS_MAX_VS_SKLEARN = 1.0;

export async function runCheck(log: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<boolean> {
  const m = machineInfo();
  log(`bench check: ${machineLine(m)}`);
  const failures: string[] = [];
  const blas = blasRows({ n: 65536, d: 256, k: 30, m: 71, threads: 1, rounds: 3 });
  if (!blas) {
    failures.push('build/uniroute_bench_blas is not built (install libopenblas-dev and rebuild)');
  } else {
    for (const r of blas) {
      const gated = r.name.startsWith('assign');
      const ok = !gated || r.vs_sgemm >= ASSIGN_MIN_VS_SGEMM;
      log(
        `  ${r.name} ${r.shape} (isa ${r.isa}, OpenBLAS ${r.blas_core}, ${r.threads} thread, ${r.clock} clock): ` +
          `${r.gflops.toFixed(1)} GFLOP/s, sgemm ${r.sgemm_gflops.toFixed(1)}: ${r.vs_sgemm.toFixed(2)}x` +
          (gated ? (ok ? ` (>= ${ASSIGN_MIN_VS_SGEMM})` : ` FAILS (< ${ASSIGN_MIN_VS_SGEMM})`) : ' (reported)'),
      );
      if (!ok) failures.push(`${r.name}: ${r.vs_sgemm.toFixed(2)}x sgemm < ${ASSIGN_MIN_VS_SGEMM}`);
    }
  }
  const km = await runKMeansBench({ quick: true, threads: 1, repeats: 2, log: (s) => log(`  ${s}`) });
  if (!km) {
    failures.push('scikit-learn is not installed (apt-get install python3-sklearn)');
  } else {
    for (const r of km) {
      if (r.time_ratio > KMEANS_MAX_VS_SKLEARN)
        failures.push(`k-means ${r.data} k=${r.k}: ${r.time_ratio.toFixed(2)}x scikit-learn's time > ${KMEANS_MAX_VS_SKLEARN}`);
    }
  }
  if (failures.length) {
    log(`bench check FAILED on ${m.cpu} (isa ${m.isa}):\n  ${failures.join('\n  ')}`);
    return false;
  }
  log(`bench check passed on ${m.cpu} (isa ${m.isa}): assignment >= ${ASSIGN_MIN_VS_SGEMM}x sgemm, k-means <= ${KMEANS_MAX_VS_SKLEARN}x scikit-learn`);
  return true;
}
