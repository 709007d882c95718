/**
 * The microbenchmark suite: embed, assign, score and end-to-end routing throughput on the prompts of ../shared/data
 * (synthetic prompts where it is absent, said in every row), against batch size, thread count and backend (CUDA
 * rows where a GPU is usable), each with its ratio to the TypeScript reference measured in the same run; the
 * centroid and scoring kernels against OpenBLAS sgemm on the same shapes where `uniroute_bench_blas` was built.
 * Writes results/bench/{bench.jsonl, bench.md, bench.svg}.
 *   npm run bench [-- --quick] [--json]
 *   npm run bench -- --kmeans [--quick] [--threads N]   only the k-means comparison with scikit-learn (bench/kmeans.ts)
 *   npm run bench -- --check              the CI check on the CPU at hand (bench/check.ts): exit 1 when assignment
 *                                          falls below 0.8x sgemm or k-means above 1.0x scikit-learn
 * Every header and row names the CPU and the CPU kernels' instruction set (UNIROUTE_ISA=baseline|avx2|avx512 forces
 * one; OpenBLAS is then forced to the matching core).
 *   npm run bench -- --route-stream [--prompts N] [--quick]   only `uniroute route` on N streamed prompts
 *                                          (default 10 M; 500 k with --quick) against the in-memory figure
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { readPrompts } from '../src/data/dataset.js';
import { backendInfo, getThreads, native, setBackend, setThreads } from '../src/engine/native.js';
import { referenceAssign, referenceEmbed, referenceFeatures, referenceScore } from '../src/engine/reference.js';
import { Router } from '../src/router/router.js';
import { lineChart } from '../src/plot/svg.js';
import { defaultRouterPath } from '../src/defaults.js';
import { blasRows, machineInfo, machineLine } from './machine.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const asJson = args.has('--json');
const minSeconds = quick ? 0.25 : 1.0;
if (args.has('--kmeans')) {
  const { runKMeansBench } = await import('./kmeans.js');
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--threads');
  const threads = at >= 0 ? Number(argv[at + 1]) : undefined;
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) throw new Error('--threads must be a whole number >= 1');
  process.stderr.write(`k-means bench: ${machineLine()}\n`);
  await runKMeansBench({ quick, threads });
  process.exit(0);
}
if (args.has('--check')) {
  const { runCheck } = await import('./check.js');
  process.exit((await runCheck()) ? 0 : 1);
}
if (args.has('--route-stream')) {
  const { runRouteStreamBench } = await import('./route-stream.js');
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--prompts');
  const prompts = at >= 0 ? Number(argv[at + 1]) : quick ? 500_000 : 10_000_000;
  if (!Number.isInteger(prompts) || prompts < 1) throw new Error('--prompts must be a whole number >= 1');
  await runRouteStreamBench({ prompts });
  process.exit(0);
}

interface Row {
  name: string;
  backend: 'cpu' | 'cuda';
  batch: number;
  threads: number;
  prompts_per_s: number;
  per_core_prompts_per_s?: number;
  gflops?: number;
  gbps?: number;
  vs_reference: number | null;
  [k: string]: unknown;
}
const rows: Row[] = [];
const emit = (r: Row) => {
  rows.push(r);
  if (asJson) process.stdout.write(JSON.stringify(r) + '\n');
  else process.stderr.write(`${r.name} ${r.backend} batch ${r.batch} threads ${r.threads}: ${Math.round(r.prompts_per_s).toLocaleString('en-US')} prompts/s\n`);
};

/**
 * Items per second of fn (wall clock), run for at least minSeconds after a warm-up. lastCpuRate: by the process's
 * CPU time of the fastest call (on one thread, the per-core figure that other processes on a busy machine blur
 * least: time they were given is not counted).
 */
let lastCpuRate = 0;
async function rate(items: number, fn: () => unknown | Promise<unknown>, min = minSeconds): Promise<number> {
  await fn();
  let n = 0;
  let cpuBest = Infinity;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < min * 1000 || n < 3) {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    cpuBest = Math.min(cpuBest, (c.user + c.system) / 1e6);
    n++;
    t = performance.now();
  }
  lastCpuRate = items / cpuBest;
  return (items * n) / ((t - t0) / 1000);
}

const dataDir = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'));
let texts: string[] = [];
for (const name of ['routerbench', 'zeroeval']) {
  const f = join(dataDir, name, 'prompts.jsonl');
  if (existsSync(f)) texts.push(...(await readPrompts(f)).map((p) => p.text));
}
const source = texts.length ? `${texts.length} real prompts from ${dataDir}` : 'synthetic prompts (../shared/data absent)';
if (!texts.length) {
  const words = 'the of a to solve python function integral empire war list return number compute'.split(' ');
  texts = Array.from({ length: 6000 }, (_, i) => Array.from({ length: 150 }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' '));
}
// the issue's GPU goal is stated on 600-character prompts: the same prompts cut to 600 characters
const texts600 = texts.filter((t) => t.length >= 600).map((t) => t.slice(0, 600));
const meanChars = Math.round(texts.reduce((a, t) => a + t.length, 0) / texts.length);

const router = await Router.load(defaultRouterPath());
const h = router.hashed!;
const D = router.dim;
const K = router.k;
const snap = router.snapshot();
const M = snap.names.length;
const proj = { ...h.spec, projection: h.projection, scale: h.scale };
const refN = quick ? 60 : 300;
const refTexts = texts.slice(0, refN);
const meanFeatures = refTexts.reduce((a, t) => a + referenceFeatures(t, h.spec.bucketsLog2, h.spec.charN).length, 0) / refN;
const machine = machineInfo();
if (!asJson) process.stderr.write(`bench: ${machineLine(machine)}\n`);
const common = { data: source, mean_chars: meanChars, dim: D, clusters: K, models: M };

// TypeScript references, same process, same prompts
const refEmbed = await rate(refN, () => refTexts.forEach((t) => referenceEmbed(proj, t)));
const emb = h.embedSync(texts);
const n = texts.length;
const refAssign = await rate(refN, () => {
  for (let i = 0; i < refN; i++) referenceAssign(emb, i * D, D, router.centroids, K);
});
const clusters = new Int32Array(n);
native().assignSync(emb, n, D, router.centroids, K, clusters, null);
const refScore = await rate(n, () => {
  for (let i = 0; i < n; i++) referenceScore(snap.psi, snap.cost, M, K, clusters[i], 0);
});
const refRoute = await rate(refN, () => {
  const e = new Float64Array(D);
  for (const t of refTexts) {
    referenceEmbed(proj, t, e);
    referenceScore(snap.psi, snap.cost, M, K, referenceAssign(e, 0, D, router.centroids, K).index, 0);
  }
});

const cuda = backendInfo().cuda;
const backends: Array<'cpu' | 'cuda'> = cuda.available ? ['cpu', 'cuda'] : ['cpu'];
const threadCounts = [...new Set([1, Math.min(2, cpus().length), cpus().length])];
const routeBatches = quick ? [16, 4096] : [1, 16, 256, 4096, 16384];

for (const backend of backends) {
  setBackend(backend);
  for (const threads of backend === 'cuda' ? [cpus().length] : threadCounts) {
    setThreads(threads);
    const t = getThreads();
    type Measured = { name: string; batch: number; prompts_per_s: number; vs_reference: number | null; gflops?: number; gbps?: number; mean_chars?: number; cpu_prompts_per_s?: number };
    const row = (r: Measured) => emit({ ...common, machine, ...r, backend, threads: t, per_core_prompts_per_s: r.prompts_per_s / t });
    const out = new Float32Array(n * D);
    const e = await rate(n, () => h.nativeHandle.embed(texts, out));
    // on one thread, also by CPU time: the per-core figure that a busy machine does not blur
    const cpuRate = backend === 'cpu' && t === 1 ? { cpu_prompts_per_s: lastCpuRate } : {};
    row({ name: 'embed', batch: n, prompts_per_s: e, vs_reference: e / refEmbed, gflops: (e * 2 * D * meanFeatures) / 1e9, gbps: (e * D * meanFeatures) / 1e9, ...cpuRate });
    const idx = new Int32Array(n);
    const a = await rate(n, () => native().assignSync(emb, n, D, router.centroids, K, idx, null));
    row({ name: 'assign', batch: n, prompts_per_s: a, vs_reference: a / refAssign, gflops: (a * 2 * D * K) / 1e9 });
    // the issue's shape: K = 30 centroids (30 of the prompts' own embeddings) over the same embeddings
    const C30 = emb.slice(0, 30 * D);
    const a30 = await rate(n, () => native().assignSync(emb, n, D, C30, 30, idx, null));
    row({ name: 'assign-k30', batch: n, prompts_per_s: a30, vs_reference: null, gflops: (a30 * 2 * D * 30) / 1e9 });
    const choice = new Int32Array(n);
    const s = await rate(n, () => native().scoreSync({ clusters, psi: snap.psi, cost: snap.cost, m: M, k: K, lambda: 0, choice }));
    row({ name: 'score', batch: n, prompts_per_s: s, vs_reference: s / refScore, gbps: (s * (M * 4 + 8)) / 1e9 });
    for (const batch of routeBatches) {
      const chunks: string[][] = [];
      const total = Math.min(n, batch * Math.max(1, Math.floor(quick ? 4096 / batch : 16384 / batch)));
      for (let i = 0; i < total; i += batch) chunks.push(texts.slice(i, i + batch));
      const r = await rate(total, async () => {
        for (const c of chunks) await router.routeBatch(c, { lambda: 0 });
      });
      row({ name: 'route-e2e', batch, prompts_per_s: r, vs_reference: r / refRoute });
    }
    if (texts600.length) {
      const r = await rate(texts600.length, () => router.routeBatch(texts600, { lambda: 0 }));
      row({ name: 'route-e2e-600chars', batch: texts600.length, prompts_per_s: r, vs_reference: null, mean_chars: 600 });
    }
  }
}
setBackend('cpu');
setThreads(0);

// kernels against sgemm on the same shapes (where OpenBLAS was found at build time): at K = 30 (the shape the
// engine's assignment goal is stated on) and 64 (a k-means step), and soft scoring; on one thread (thread CPU
// clock) and on every core (wall clock)
for (const threads of [...new Set([1, cpus().length])]) {
  const rs = blasRows({ n: 65536, d: D, k: 30, m: M, threads, rounds: quick ? 2 : 5 });
  if (!rs) {
    if (!asJson) process.stderr.write('sgemm comparison skipped: build/uniroute_bench_blas not built (install libopenblas-dev and rebuild)\n');
    break;
  }
  for (const r of rs) emit({ ...r, backend: 'cpu', batch: 65536, vs_reference: null, machine });
}

// reports
const dir = join('results', 'bench');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'bench.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const f = (x: number | undefined, d = 0) => (x === undefined || x === null ? '' : x.toLocaleString('en-US', { maximumFractionDigits: d }));
const md = [
  `# uniroute microbenchmarks`,
  '',
  `${source}; mean ${meanChars} chars, ${meanFeatures.toFixed(0)} distinct hashed features per prompt; D = ${D}, K = ${K}, ${M} LLMs; ${machineLine(machine)}; CUDA: ${cuda.available ? cuda.device?.name : `not used (${cuda.reason})`}.`,
  '',
  '| kernel | isa | batch | threads | prompts/s | per core | per core (CPU time) | GFLOP/s | GB/s | vs TS reference | vs sgemm |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name}${r.shape ? ` (${r.shape})` : ''} | ${r.backend === 'cuda' ? 'cuda' : (r.isa as string) ?? machine.isa} | ${r.batch} | ${r.threads} | ${f(r.prompts_per_s)} | ${f(r.per_core_prompts_per_s)} | ${f(r.cpu_prompts_per_s as number | undefined)} | ${f(r.gflops, 1)} | ${f(r.gbps, 1)} | ${r.vs_reference ? r.vs_reference.toFixed(1) + '×' : ''} | ${r.vs_sgemm ? `${(r.vs_sgemm as number).toFixed(2)}× (OpenBLAS ${r.blas_core})` : ''} |`),
  '',
].join('\n');
writeFileSync(join(dir, 'bench.md'), md);
writeFileSync(join(dir, 'bench.svg'), chart(rows.filter((r) => r.name === 'route-e2e')));
if (!asJson) process.stdout.write(md);

/** Throughput of end-to-end routing against batch size, one line per backend and thread count (log-log). */
function chart(rs: Row[]): string {
  const series = new Map<string, Row[]>();
  for (const r of rs) series.set(`${r.backend} ×${r.threads}`, [...(series.get(`${r.backend} ×${r.threads}`) ?? []), r]);
  return lineChart({
    title: 'End-to-end routing throughput against batch size',
    xLabel: 'prompts per batch (log)',
    yLabel: 'prompts/s (log)',
    xLog: true,
    yLog: true,
    width: 640,
    height: 380,
    xTicks: [...new Set(rs.map((r) => r.batch))],
    xFormat: (x) => String(x),
    yFormat: (y) => Math.round(y).toLocaleString('en-US'),
    series: [...series.entries()].map(([name, s]) => ({
      name,
      points: s.sort((a, b) => a.batch - b.batch).map((r) => ({ x: r.batch, y: r.prompts_per_s })),
    })),
  });
}
