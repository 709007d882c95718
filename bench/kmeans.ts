/**
 * uniroute's k-means against scikit-learn's KMeans (Lloyd, k-means++ seeding with the same 2 + log k local trials),
 * on the same points, with the same n_init and seed number, in one run: the real prompts of ../shared/data embedded
 * by the built-in router (K = 30 and 64) and 100,000 synthetic points (K = 64). Both sides use the same number of
 * threads (every core unless --threads N); on one thread both are timed by their CPU clock (time the machine gave
 * to other processes is not counted), on more by the wall clock. Each side runs `repeats` times, alternating, and
 * keeps its fastest run. Each inertia is recomputed in float64 from the labels and centres. Under a forced
 * UNIROUTE_ISA, scikit-learn's OpenBLAS is forced to the matching core (OPENBLAS_CORETYPE: avx512 SkylakeX, avx2
 * Haswell, baseline Core2), so both sides run the same kind of CPU. Skips clearly where python3 with scikit-learn
 * is not installed (Debian: python3-sklearn).
 *   npm run bench -- --kmeans [--quick] [--threads N]      writes results/bench/kmeans.json
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPrompts } from '../src/data/dataset.js';
import { backendInfo, getThreads, native, setThreads } from '../src/engine/native.js';
import { kmeansObjective, mulberry32 } from '../src/engine/reference.js';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';

export interface KMeansRow {
  data: string;
  n: number;
  d: number;
  k: number;
  n_init: number;
  uniroute_s: number;
  sklearn_s: number;
  uniroute_inertia: number;
  sklearn_inertia: number;
  uniroute_iterations: number;
  sklearn_iterations: number;
  time_ratio: number;
  inertia_ratio: number;
  threads: number;
  clock: 'cpu' | 'wall';
  isa: string;
  blas_core: string | null;
}

/** The OpenBLAS core that matches a forced instruction set (null: OpenBLAS picks by the CPU, as uniroute does). */
export function blasCoreFor(isa: string, forced: boolean): string | null {
  if (!forced) return null;
  return ({ avx512: 'SkylakeX', avx2: 'Haswell', baseline: 'Core2' } as Record<string, string>)[isa] ?? null;
}

const script = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'kmeans_sklearn.py');

/** The first python3 that imports sklearn (Debian's, then the one on PATH), or null. */
function findPython(): string | null {
  for (const py of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(py, ['-c', 'import sklearn, numpy; print(sklearn.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

/** Gaussian blobs: k centres N(0, 1) per coordinate, points at sd 0.5 around them; fixed seed. */
function blobs(n: number, d: number, k: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(u(), 1e-12))) * Math.cos(2 * Math.PI * u());
  const centres = Float32Array.from({ length: k * d }, normal);
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(u() * k);
    for (let j = 0; j < d; j++) x[i * d + j] = centres[c * d + j] + 0.5 * normal();
  }
  return x;
}

export async function runKMeansBench(
  opts: { quick?: boolean; threads?: number; repeats?: number; log?: (s: string) => void } = {},
): Promise<KMeansRow[] | null> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const py = findPython();
  if (!py) {
    log('k-means comparison skipped: python3 with scikit-learn not found (apt-get install python3-sklearn)');
    return null;
  }
  const nInit = opts.quick ? 2 : 5;
  const seed = 7;
  const threads = opts.threads ?? cpus().length;
  const repeats = opts.repeats ?? (opts.quick ? 2 : 3);
  const clock: 'cpu' | 'wall' = threads === 1 ? 'cpu' : 'wall';
  const isa = backendInfo().isa;
  const blasCore = blasCoreFor(isa.active, isa.forced);
  const pyEnv: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  if (blasCore) pyEnv.OPENBLAS_CORETYPE = blasCore;
  const savedThreads = getThreads();
  setThreads(threads);
  const sets: Array<{ data: string; x: Float32Array; n: number; d: number; ks: number[] }> = [];
  const dataDir = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'));
  const texts: string[] = [];
  for (const name of ['routerbench', 'zeroeval']) {
    const f = join(dataDir, name, 'prompts.jsonl');
    if (existsSync(f)) texts.push(...(await readPrompts(f)).map((p) => p.text));
  }
  if (texts.length) {
    const router = await Router.load(defaultRouterPath());
    const x = router.hashed!.embedSync(texts);
    sets.push({ data: `real prompts (routerbench + zeroeval, built-in embedder)`, x, n: texts.length, d: router.dim, ks: [30, 64] });
  } else {
    log(`real prompts skipped: ${dataDir} absent (set UNIROUTE_DATA)`);
  }
  const nSyn = opts.quick ? 20_000 : 100_000;
  sets.push({ data: 'synthetic gaussian blobs', x: blobs(nSyn, 256, 64, 11), n: nSyn, d: 256, ks: [64] });

  const dir = mkdtempSync(join(tmpdir(), 'uniroute-kmeans-'));
  const rows: KMeansRow[] = [];
  try {
    for (const set of sets) {
      const file = join(dir, 'points.f32');
      writeFileSync(file, Buffer.from(set.x.buffer, set.x.byteOffset, set.x.byteLength));
      for (const k of set.ks) {
        // uniroute: a warm-up on a slice, then the timed runs, alternating with scikit-learn's; the fastest of each
        await native().kmeans(set.x.subarray(0, Math.min(set.n, 2000) * set.d), Math.min(set.n, 2000), set.d, k, { seed, nInit });
        let uniS = Infinity;
        let km: Awaited<ReturnType<ReturnType<typeof native>['kmeans']>> | null = null;
        let sk: { seconds: number; inertia: number; iterations: number } | null = null;
        for (let rep = 0; rep < repeats; rep++) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          km = await native().kmeans(set.x, set.n, set.d, k, { seed, nInit });
          const c = process.cpuUsage(c0);
          uniS = Math.min(uniS, clock === 'cpu' ? (c.user + c.system) / 1e6 : (performance.now() - t0) / 1000);
          const r = spawnSync(py, [script, file, String(set.n), String(set.d), String(k), String(nInit), String(seed), clock], {
            encoding: 'utf8',
            env: pyEnv,
          });
          if (r.status !== 0) throw new Error(`scikit-learn run failed: ${r.stderr.trim().split('\n').pop()}`);
          const got = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; inertia: number; iterations: number };
          if (!sk || got.seconds < sk.seconds) sk = got;
        }
        const uniInertia = kmeansObjective(set.x, set.n, set.d, km!.centroids, km!.assignments);
        const row: KMeansRow = {
          data: set.data,
          n: set.n,
          d: set.d,
          k,
          n_init: nInit,
          uniroute_s: uniS,
          sklearn_s: sk!.seconds,
          uniroute_inertia: uniInertia,
          sklearn_inertia: sk!.inertia,
          uniroute_iterations: km!.iterations,
          sklearn_iterations: sk!.iterations,
          time_ratio: uniS / sk!.seconds,
          inertia_ratio: uniInertia / sk!.inertia,
          threads,
          clock,
          isa: isa.active,
          blas_core: blasCore,
        };
        rows.push(row);
        log(
          `k-means ${set.data} n=${set.n} d=${set.d} k=${k} n_init=${nInit}, ${threads} thread${threads > 1 ? 's' : ''} (${clock} clock), isa ${isa.active}` +
            `${blasCore ? ` (OpenBLAS ${blasCore})` : ''}: uniroute ${uniS.toFixed(3)} s, scikit-learn ${sk!.seconds.toFixed(3)} s ` +
            `(${row.time_ratio.toFixed(2)}× its time), inertia ${row.inertia_ratio.toFixed(4)}× its inertia`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    setThreads(savedThreads);
  }
  const out = join('results', 'bench');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'kmeans.json'), JSON.stringify(rows, null, 2) + '\n');
  log(`wrote ${join(out, 'kmeans.json')} (${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores)`);
  return rows;
}
