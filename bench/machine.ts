/**
 * What every bench row and header names: the CPU (model, cores, its AVX2 / AVX-512 flags), the CPU kernels'
 * instruction set (the active one, whether UNIROUTE_ISA forced it, what this CPU runs) and Node; and the sgemm
 * comparison (build/uniroute_bench_blas) run with OpenBLAS forced to the core that matches a forced instruction
 * set, so that both sides run the same kind of CPU.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { backendInfo } from '../src/engine/native.js';
import { blasCoreFor } from './kmeans.js';

export interface Machine {
  cpu: string;
  cores: number;
  /** avx2 / avx512f as /proc/cpuinfo lists them (empty where it cannot be read). */
  cpu_flags: string[];
  isa: string;
  isa_forced: boolean;
  isa_supported: string[];
  node: string;
}

export function machineInfo(): Machine {
  let flags: string[] = [];
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) flags = m[1].split(/\s+/).filter((f) => f === 'avx2' || f === 'avx512f');
  } catch {
    // not Linux: the flags stay unknown
  }
  const isa = backendInfo().isa;
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    cpu_flags: flags,
    isa: isa.active,
    isa_forced: isa.forced,
    isa_supported: isa.supported,
    node: process.version,
  };
}

/** "AMD EPYC, 2 cores (avx2 avx512f); kernels avx512 (the best this CPU runs: baseline, avx2, avx512)" */
export function machineLine(m: Machine = machineInfo()): string {
  const isa = m.isa_forced ? `${m.isa}, forced by UNIROUTE_ISA (this CPU runs ${m.isa_supported.join(', ')})` : `${m.isa} (the best this CPU runs: ${m.isa_supported.join(', ')})`;
  return `${m.cpu}, ${m.cores} cores (${m.cpu_flags.join(' ') || 'no avx2'}); CPU kernels ${isa}`;
}

export interface BlasRow {
  name: string;
  isa: string;
  blas_core: string;
  threads: number;
  clock: string;
  shape: string;
  prompts_per_s: number;
  gflops: number;
  sgemm_gflops: number;
  vs_sgemm: number;
  [k: string]: unknown;
}

/**
 * The engine's blocked kernels against cblas_sgemm on the same shapes (assignment at K = 30 and 64, soft scoring),
 * or null where build/uniroute_bench_blas was not built (no OpenBLAS at build time).
 */
export function blasRows(opts: { n: number; d: number; k: number; m: number; threads: number; rounds: number }): BlasRow[] | null {
  const blas = join(process.cwd(), 'build', 'uniroute_bench_blas');
  if (!existsSync(blas)) return null;
  const isa = backendInfo().isa;
  const core = blasCoreFor(isa.active, isa.forced);
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(opts.threads), UNIROUTE_ISA: isa.forced ? isa.active : '' };
  if (core) env.OPENBLAS_CORETYPE = core;
  const r = spawnSync(blas, [opts.n, opts.d, opts.k, opts.m, opts.threads, opts.rounds].map(String), { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`uniroute_bench_blas failed (exit ${r.status}): ${r.stderr.trim().split('\n').pop()}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as BlasRow);
}
