/**
 * The Batch API's bench: throughput against the online chat route, and a replica killed with -9 mid-job.
 *
 *   node dist/bench/batch.js [--lines 100000] [--concurrency 64] [--rounds 1] [--fault-lines 20000] [--no-faults] [--quick]
 *
 * Throughput: a stand-in upstream (its own process, a fixed 20 ms per answer), one redis-server, two `uniroute
 * serve` replicas on it (the built-in router, every LLM of its pool an upstream on the stand-in). The peer: the
 * same N requests sent to the replicas' online route POST /v1/chat/completions by a client here at C concurrent
 * requests (C/2 on each replica, keep-alive). The batch: the same N lines as one job (uploaded to one replica), its
 * lines taken by both replicas from the BullMQ queue with batch.concurrency C/2 each (so C in flight), from the
 * start of its upload to `completed`. Both routed ("model": "uniroute"). The ratio is batch lines/s over online lines/s,
 * with both replicas' RSS sampled every second during the job.
 *
 * Faults: a job of --fault-lines lines on two fresh replicas; one is killed with -9 a third of the way; the other
 * finishes. Lines lost (no output record), doubled (twice in the output), upstream calls repeated, and the lines
 * the killed replica had in flight (it sent them; the other replica wrote their answer).
 *
 * Writes results/bench/batch.jsonl.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { startLocalRedis } from './redis-server.js';
import { startChild } from './load.js';
import { batchLines, startStandIn } from './batch-standin.js';

const argv = process.argv.slice(2);
const has = (n: string) => argv.includes(n);
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const here = fileURLToPath(import.meta.url);
const bin = resolve(here, '..', '..', '..', 'bin', 'uniroute.js');

if (argv[0] === '--child') {
  // the stand-in upstream in a process of its own
  const s = await startStandIn({ delayMs: Number(argv[2] ?? 20), keepIds: argv[3] === 'ids' });
  process.send!({ url: s.url });
} else await main();

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function serve(args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--no-concurrent-recompilation', bin, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((ok, fail) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /serving on (http:\/\/[^\s]+)/.exec(err);
      if (m) ok({ proc, url: m[1] });
      if (err.length > 100_000) err = err.slice(-10_000); // its log lines (batch done, ...) are not kept
    });
    proc.on('exit', (c) => fail(new Error(`serve exited (${c}): ${err}`)));
  });
}

async function main(): Promise<void> {
  const quick = has('--quick');
  const N = arg('--lines', quick ? 5000 : 100_000);
  const C = arg('--concurrency', 64);
  const rounds = arg('--rounds', 1);
  const faultLines = arg('--fault-lines', quick ? 3000 : 20_000);
  const out = join('results', 'bench');
  mkdirSync(out, { recursive: true });
  const resultFile = join(out, 'batch.jsonl');
  const cpu = cpus()[0]?.model ?? 'unknown';
  const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/\b(avx2|avx512f)\b/g);
  const machine = { cpu, cores: cpus().length, isa: [...new Set(flags ?? [])].sort().join(' '), load_at_start: loadavg().map((x) => Number(x.toFixed(2))) };
  const report = (o: Record<string, unknown>) => {
    const line = JSON.stringify({ ...o, machine: { ...machine, load_now: loadavg().map((x) => Number(x.toFixed(2))) } });
    console.log(line);
    appendFileSync(resultFile, `${line}\n`);
  };

  const redis = await startLocalRedis();
  if (!redis) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-bench-batch-'));
  const children: ChildProcess[] = [];
  try {
    const router = await Router.load(defaultRouterPath());
    const names = router.snapshot().names;
    const standin = await startChild(here, ['standin', '20', 'ids']);
    children.push(standin.proc);
    const upUrl = standin.url;
    const stats = async () => (await (await fetch(upUrl.replace(/\/v1$/, '/stats'))).json()) as { total: number; open: number; calls: Record<string, number>; ids: Record<string, string[]> };
    const cfg = (batch: Record<string, unknown>) => {
      const p = join(dir, `gw-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(p, JSON.stringify({ upstreams: Object.fromEntries(names.map((n, i) => [n, { base_url: upUrl, max_connections: 2 * C, price: { input_per_1m: 0.1 * (i + 1), output_per_1m: 0.4 * (i + 1) } }])), batch: { dir: join(dir, 'batch'), share: 1, ...batch } }));
      return p;
    };

    // ---- throughput ----
    const lines = batchLines(N, 'uniroute');
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, lines.join('\n') + '\n');
    const bodies = lines.map((l) => JSON.stringify(JSON.parse(l).body));
    for (let round = 0; round < rounds; round++) {
      const pool = `${redis.url}?prefix=bench${round}:`;
      const gw = cfg({ concurrency: C / 2, chunk_lines: 64 });
      const reps = [await serve(['--config', gw, '--pool', pool]), await serve(['--config', gw, '--pool', pool])];
      children.push(...reps.map((r) => r.proc));
      const online = async (count: number) => {
        const pools = reps.map((r) => new Pool(r.url, { connections: C / 2, pipelining: 1 }));
        let next = 0;
        let errors = 0;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: C }, async (_, k) => {
            const p = pools[k % 2];
            for (let i = next++; i < count; i = next++) {
              const r = await p.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[i % bodies.length] });
              await r.body.dump();
              if (r.statusCode !== 200) errors++;
            }
          }),
        );
        const s = (performance.now() - t0) / 1000;
        await Promise.all(pools.map((p) => p.close()));
        return { lines_per_s: count / s, seconds: s, errors };
      };
      const batch = async () => {
        const before = reps.map((r) => Number(rssMb(r.proc.pid!).toFixed(1)));
        const t0 = performance.now(); // the upload counts: the online peer needs none
        const form = new FormData();
        form.append('purpose', 'batch');
        form.append('file', await (await import('node:fs')).openAsBlob(input), 'in.jsonl');
        const f = (await (await fetch(`${reps[0].url}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
        const uploadS = (performance.now() - t0) / 1000;
        const rss: Array<{ at: number; done: number; mb: number[] }> = [];
        const b0 = (await (await fetch(`${reps[0].url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json()) as { id: string };
        let b: any;
        let lastSample = 0;
        for (;;) {
          b = await (await fetch(`${reps[1].url}/v1/batches/${b0.id}`)).json();
          const now = performance.now();
          if (now - lastSample >= 1000) {
            lastSample = now;
            rss.push({ at: (now - t0) / 1000, done: b.request_counts.completed + b.request_counts.failed, mb: reps.map((r) => Number(rssMb(r.proc.pid!).toFixed(1))) });
          }
          if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        const s = (performance.now() - t0) / 1000;
        const at = (q: number) => rss.find((x) => x.done >= q * N) ?? rss[rss.length - 1];
        return { lines_per_s: N / s, seconds: s, upload_seconds: Number(uploadS.toFixed(2)), status: b.status, counts: b.request_counts, cost: b.uniroute, rss_mb: { before: before, at_10pct: at(0.1)?.mb, at_50pct: at(0.5)?.mb, at_90pct: at(0.9)?.mb, max: [0, 1].map((j) => Math.max(...rss.map((x) => x.mb[j]))) } };
      };
      await online(Math.min(2000, N)); // warm both replicas (connections, JIT)
      const first = round % 2 === 0 ? 'online' : 'batch';
      const o1 = first === 'online' ? await online(N) : undefined;
      const bt = await batch();
      const o2 = o1 ?? (await online(N));
      report({ name: 'batch-vs-online', round, lines: N, concurrency: C, upstream_ms: 20, replicas: 2, first, online: o2, batch: bt, throughput_ratio: Number((bt.lines_per_s / o2.lines_per_s).toFixed(3)), goal: '>= 0.8' });
      for (const r of reps) r.proc.kill('SIGKILL');
    }

    // ---- faults: a replica killed with -9 mid-job ----
    if (!has('--no-faults')) {
      const pool = `${redis.url}?prefix=fault:`;
      const conc = 16;
      const gw = cfg({ concurrency: conc, chunk_lines: 32, lock_ms: 3000, line_retries: 0 });
      const reps = [await serve(['--config', gw, '--pool', pool]), await serve(['--config', gw, '--pool', pool])];
      children.push(...reps.map((r) => r.proc));
      const fl = batchLines(faultLines, 'uniroute', 1_000_000);
      const fin = join(dir, 'fault.jsonl');
      writeFileSync(fin, fl.join('\n') + '\n');
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', await (await import('node:fs')).openAsBlob(fin), 'fault.jsonl');
      const f = (await (await fetch(`${reps[1].url}/v1/files`, { method: 'POST', body: form })).json()) as { id: string };
      const b0 = (await (await fetch(`${reps[1].url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json()) as { id: string };
      const get = async () => (await (await fetch(`${reps[1].url}/v1/batches/${b0.id}`)).json()) as any;
      for (;;) {
        const b = await get();
        if (b.request_counts.completed >= faultLines / 3) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const killedPid = reps[0].proc.pid!;
      reps[0].proc.kill('SIGKILL');
      const upOpenAtKill = (await stats()).open;
      const t0 = performance.now();
      let b: any;
      for (;;) {
        b = await get();
        if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const text = await (await fetch(`${reps[1].url}/v1/files/${b.output_file_id}/content`)).text();
      const outLines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const seen = new Map<string, number>();
      const answeredBy = new Map<string, string>();
      for (const l of outLines) {
        seen.set(l.custom_id, (seen.get(l.custom_id) ?? 0) + 1);
        answeredBy.set(l.custom_id, String(l.response.request_id).split('-')[0]);
      }
      const st = await stats();
      let lost = 0;
      let doubled = 0;
      let repeats = 0;
      let inFlight = 0;
      const killed = `.${killedPid}`;
      for (const l of fl) {
        const id = JSON.parse(l).custom_id as string;
        const n = seen.get(id) ?? 0;
        if (n === 0) lost++;
        if (n > 1) doubled++;
        repeats += Math.max(0, (st.calls[id] ?? 0) - 1);
        if ((st.ids[id] ?? []).some((r) => r.split('-')[0].endsWith(killed)) && !answeredBy.get(id)?.endsWith(killed)) inFlight++;
      }
      report({ name: 'batch-kill-9', lines: faultLines, replicas: 2, concurrency_per_replica: conc, lock_ms: 3000, status: b.status, counts: b.request_counts, lost, doubled, upstream_calls_repeated: repeats, lines_in_flight_on_killed: inFlight, upstream_open_at_kill: upOpenAtKill, seconds_to_finish_after_kill: Number(((performance.now() - t0) / 1000).toFixed(1)), ok: lost === 0 && doubled === 0 && repeats <= inFlight });
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await redis.stop();
  }
}
