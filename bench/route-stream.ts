/**
 * Batch routing at scale: `uniroute route` streaming N prompts (default 10 M) from a pipe to /dev/null, against the
 * engine's in-memory figure measured in the same run (Router.routeBatch on the same prompts, batches of 4,096, in
 * this process). The prompts are the real ones of ../shared/data (synthetic where absent), cycled, each line with
 * its own id. Peak RSS is the child's VmHWM from /proc (the kernel's high-water mark), read until it exits.
 *   npm run bench -- --route-stream [--prompts N] [--quick]    writes results/bench/route-stream.json
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPrompts } from '../src/data/dataset.js';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface RouteStreamRow {
  name: 'route-stream';
  prompts: number;
  seconds: number;
  prompts_per_s: number;
  peak_rss_mb: number;
  in_memory_prompts_per_s: number;
  vs_in_memory: number;
  mean_chars: number;
  threads: number;
  data: string;
}

function vmHwmMb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

export async function runRouteStreamBench(opts: { prompts?: number; log?: (s: string) => void } = {}): Promise<RouteStreamRow> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const total = opts.prompts ?? 10_000_000;
  const dataDir = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'));
  let texts: string[] = [];
  for (const name of ['routerbench', 'zeroeval']) {
    const f = join(dataDir, name, 'prompts.jsonl');
    if (existsSync(f)) texts.push(...(await readPrompts(f)).map((p) => p.text));
  }
  const data = texts.length ? `real prompts from ${dataDir}, cycled` : 'synthetic prompts (../shared/data absent)';
  if (!texts.length) {
    const words = 'the of a to solve python function integral empire war list return number compute'.split(' ');
    texts = Array.from({ length: 6000 }, (_, i) => Array.from({ length: 150 }, (_, j) => words[(i * 7 + j * 13) % words.length]).join(' '));
  }
  const meanChars = Math.round(texts.reduce((a, t) => a + t.length, 0) / texts.length);

  // the engine's in-memory figure: the same prompts, already in memory, batches of 4,096
  const router = await Router.load(defaultRouterPath());
  const batches: string[][] = [];
  for (let i = 0; i < texts.length; i += 4096) batches.push(texts.slice(i, i + 4096));
  await router.routeBatch(batches[0]);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 5000) for (const b of batches) n += (await router.routeBatch(b)).choice.length;
  const inMemory = n / ((performance.now() - t0) / 1000);
  log(`in memory: ${Math.round(inMemory).toLocaleString('en-US')} prompts/s (Router.routeBatch, batches of 4,096)`);

  // the CLI, streaming from a pipe
  const encoded = texts.map((t) => `,"text":${JSON.stringify(t)}}\n`);
  const child = spawn(process.execPath, [join(root, 'bin', 'uniroute.js'), 'route', '--input', '-', '--output', '/dev/null'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  let peak = 0;
  const poll = setInterval(() => (peak = Math.max(peak, vmHwmMb(child.pid!) ?? 0)), 100);
  const started = performance.now();
  const exited = new Promise<number>((res) => child.on('exit', (code) => res(code ?? -1)));
  let sent = 0;
  let lastLog = started;
  child.stdin.on('error', () => undefined);
  while (sent < total) {
    let block = '';
    const end = Math.min(total, sent + texts.length);
    for (let i = sent; i < end; i++) block += `{"id":${i}` + encoded[i % texts.length];
    sent = end;
    if (!child.stdin.write(block)) await new Promise((r) => child.stdin.once('drain', r));
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(`  sent ${sent.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}; child peak RSS so far ${peak.toFixed(0)} MB`);
    }
  }
  child.stdin.end();
  const code = await exited;
  clearInterval(poll);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`uniroute route exited with ${code}: ${stderr.trim().split('\n').pop()}`);
  const row: RouteStreamRow = {
    name: 'route-stream',
    prompts: total,
    seconds,
    prompts_per_s: total / seconds,
    peak_rss_mb: peak,
    in_memory_prompts_per_s: inMemory,
    vs_in_memory: total / seconds / inMemory,
    mean_chars: meanChars,
    threads: cpus().length,
    data,
  };
  log(
    `uniroute route, ${total.toLocaleString('en-US')} prompts through a pipe: ${seconds.toFixed(1)} s, ` +
      `${Math.round(row.prompts_per_s).toLocaleString('en-US')} prompts/s (${row.vs_in_memory.toFixed(2)}× in memory), peak RSS ${peak.toFixed(0)} MB`,
  );
  const out = join('results', 'bench');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'route-stream.json'), JSON.stringify(row, null, 2) + '\n');
  return row;
}
