/**
 * The Batch API over a fleet: two `uniroute serve` replicas and a `uniroute worker` on one real redis-server
 * (started here on a free port), the job's lines as BullMQ work items that every process takes a share of; any
 * replica answers status and results; a replica killed with -9 mid-job: its chunks are taken over once their
 * lock expires, no line lost, none written twice, upstream calls repeated only for lines in flight at the kill.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { batchLines, startStandIn, type StandIn } from '../bench/batch-standin.js';
import { makeSyntheticDataset, startRedis, startServe, NODE_CLI_FLAGS } from './helpers.js';

const LLMS = ['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'];
const REDIS_SKIP = 'redis-server is not installed: the fleet Batch API tests are skipped (.ci/run installs it; in CI they run)';
let routerPath: string;
let up: StandIn;
let redis: Awaited<ReturnType<typeof startRedis>> = null;
let dir: string;
let cfgPath: string;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  dir = mkdtempSync(join(tmpdir(), 'uniroute-fleet-'));
  routerPath = join(dir, 'r.uniroute');
  await fitted.save(routerPath);
  up = await startStandIn({ delayMs: 20, keepIds: true });
  cfgPath = join(dir, 'gw.json');
  writeFileSync(
    cfgPath,
    JSON.stringify({
      upstreams: Object.fromEntries(LLMS.map((n, i) => [n, { base_url: up.url, price: { input_per_1m: i + 1, output_per_1m: 2 * (i + 1) }, max_connections: 16 }])),
      batch: { dir: join(dir, 'batch'), concurrency: 8, chunk_lines: 10, lock_ms: 2000, line_retries: 0 },
    }),
  );
  redis = await startRedis();
  if (!redis) console.warn(REDIS_SKIP);
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await up?.close();
  await redis?.stop();
});

function startWorker(pool: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), 'worker', '--pool', pool, '--router', routerPath, '--config', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(proc);
  let err = '';
  return new Promise((ok, fail) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      if (/uniroute worker .* on redis/.test(err)) ok(proc);
    });
    proc.on('exit', (c) => fail(new Error(`worker exited early (${c}): ${err}`)));
  });
}

async function waitFor(client: OpenAI, id: string, ms = 90_000) {
  const t0 = Date.now();
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (['completed', 'failed', 'expired', 'cancelled'].includes(b.status)) return b;
    if (Date.now() - t0 > ms) throw new Error(`batch ${id} still ${b.status} after ${ms} ms: ${JSON.stringify(b.request_counts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const jsonl = async (client: OpenAI, id: string | null | undefined) => (id ? (await (await client.files.content(id)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const senderOf = (requestId: string) => requestId.split('-')[0];

/** Two `uniroute serve` replicas on one Redis pool (key prefix `prefix`), and an openai client for each. */
async function twoReplicas(prefix: string) {
  const pool = `${redis!.url}?prefix=${prefix}`;
  const a = await startServe(['--router', routerPath, '--config', cfgPath, '--pool', pool]);
  const b = await startServe(['--router', routerPath, '--config', cfgPath, '--pool', pool]);
  procs.push(a.proc, b.proc);
  return { pool, a, b, ca: new OpenAI({ baseURL: `${a.url}/v1`, apiKey: 'x', maxRetries: 0 }), cb: new OpenAI({ baseURL: `${b.url}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

/** Uploads `lines` as a file and starts a chat-completions batch on it. */
async function submit(client: OpenAI, lines: string[], name: string) {
  const f = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), name), purpose: 'batch' });
  return client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
}

/** Waits until at least `n` of the batch's lines are answered. */
async function untilCompleted(client: OpenAI, id: string, n: number) {
  for (;;) {
    const s = await client.batches.retrieve(id);
    if (s.request_counts!.completed >= n) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the Batch API over BullMQ on Redis', () => {
  it('two replicas and a worker share the lines; either replica answers status and results', async (t) => {
    if (!redis) return t.skip(REDIS_SKIP);
    const { pool, ca, cb } = await twoReplicas('fleet1:');
    await startWorker(pool);
    const lines = [...batchLines(400, 'uniroute', 0), '{"not": "json"', JSON.stringify({ custom_id: 'c5', method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', messages: [{ role: 'user', content: 'dup' }] } })];
    const b0 = await submit(ca, lines, 'fleet.jsonl');
    const done = await waitFor(cb, b0.id); // followed on the other replica
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 402, completed: 400, failed: 2 });
    const out = await jsonl(cb, done.output_file_id);
    expect(out).toHaveLength(400);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(400);
    expect((await jsonl(ca, done.error_file_id)).map((e) => e.error.code).sort()).toEqual(['duplicate_custom_id', 'invalid_json_line']);
    // every process took a share: the answers came from three senders (two serve, one worker)
    const senders = new Map<string, number>();
    for (const l of out) senders.set(senderOf(l.response.request_id), (senders.get(senderOf(l.response.request_id)) ?? 0) + 1);
    expect([...senders.keys()].filter((s) => s.startsWith('serve')).length).toBe(2);
    expect([...senders.keys()].filter((s) => s.startsWith('worker')).length).toBe(1);
    for (const n of senders.values()) expect(n).toBeGreaterThan(10);
    for (let i = 0; i < 400; i++) expect(up.calls.get(`c${i}`)).toBe(1);
    expect((done as any).uniroute.cost).toBeGreaterThan(0);
  });

  it('a replica killed with -9 mid-job: no line lost or doubled; repeats only among its lines in flight', async (t) => {
    if (!redis) return t.skip(REDIS_SKIP);
    const { a, cb } = await twoReplicas('fleet2:');
    const lines = batchLines(500, 'uniroute', 10_000);
    const b0 = await submit(cb, lines, 'kill.jsonl');
    await untilCompleted(cb, b0.id, 100);
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));
    const done = await waitFor(cb, b0.id);
    expect(done.request_counts).toEqual({ total: 500, completed: 500, failed: 0 });
    const out = await jsonl(cb, done.output_file_id);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(500);
    expect(out).toHaveLength(500);
    // the killed replica's name, from the answers it wrote before the kill
    const killed = [...new Set(out.map((l) => senderOf(l.response.request_id)))].find((s) => s.endsWith(`.${a.proc.pid}`));
    expect(killed).toBeDefined();
    let repeats = 0;
    let inFlight = 0; // lines the killed replica had sent whose answer was written by the other one
    const answeredBy = new Map(out.map((l) => [l.custom_id, senderOf(l.response.request_id)]));
    for (const l of lines) {
      const id = JSON.parse(l).custom_id;
      repeats += (up.calls.get(id) ?? 0) - 1;
      if ((up.ids.get(id) ?? []).some((r) => senderOf(r) === killed) && answeredBy.get(id) !== killed) inFlight++;
    }
    console.log(`fleet kill -9: ${out.length} lines, 0 lost, 0 doubled; ${repeats} upstream calls repeated, ${inFlight} lines in flight on the killed replica`);
    expect(repeats).toBeLessThanOrEqual(inFlight);
    expect(inFlight).toBeLessThanOrEqual(8); // at most the replica's lines in flight (batch.concurrency)
  });

  it('past its window on a fleet: the job ends expired, every line not answered is a batch_expired error, none twice', async (t) => {
    if (!redis) return t.skip(REDIS_SKIP);
    const { pool, ca } = await twoReplicas('fleet4:');
    const b0 = await submit(ca, batchLines(3000, 'uniroute', 70_000), 'expire.jsonl');
    await untilCompleted(ca, b0.id, 50);
    // the window's end, brought forward in the shared store (24 hours is long for a test)
    const { RedisBatchStore } = await import('../src/batch/redis-store.js');
    const store = new RedisBatchStore(pool);
    try {
      expect(await store.transition(b0.id, ['in_progress'], { expiresAt: Math.floor(Date.now() / 1000) - 1 })).toBeDefined();
    } finally {
      await store.close();
    }
    const done = await waitFor(ca, b0.id, 60_000);
    expect(done.status).toBe('expired');
    expect(done.request_counts!.completed).toBeLessThan(3000);
    expect(done.request_counts!.completed + done.request_counts!.failed).toBe(3000);
    const out = await jsonl(ca, done.output_file_id);
    const errs = await jsonl(ca, done.error_file_id);
    expect(out).toHaveLength(done.request_counts!.completed);
    expect(errs).toHaveLength(done.request_counts!.failed);
    expect(errs.every((e) => e.error.code === 'batch_expired' && e.response === null)).toBe(true);
    const ids = [...out, ...errs].map((r) => r.custom_id);
    expect(new Set(ids).size).toBe(3000);
  });

  it('cancel on one replica: the queued chunks are dropped, the job ends cancelled, nothing written twice', async (t) => {
    if (!redis) return t.skip(REDIS_SKIP);
    const { ca, cb } = await twoReplicas('fleet3:');
    const lines = batchLines(3000, 'uniroute', 50_000);
    const b0 = await submit(ca, lines, 'cancel.jsonl');
    await untilCompleted(cb, b0.id, 50);
    expect(['cancelling', 'cancelled']).toContain((await cb.batches.cancel(b0.id)).status);
    const done = await waitFor(ca, b0.id, 30_000);
    expect(done.status).toBe('cancelled');
    const n = done.request_counts!.completed + done.request_counts!.failed;
    expect(n).toBeLessThan(3000);
    const out = await jsonl(ca, done.output_file_id);
    expect(out).toHaveLength(done.request_counts!.completed);
    expect(new Set(out.map((l) => l.custom_id)).size).toBe(out.length);
    const sent = lines.filter((l) => up.calls.has(JSON.parse(l).custom_id)).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(lines.filter((l) => up.calls.has(JSON.parse(l).custom_id)).length).toBe(sent); // nothing sent after
    expect(sent - n).toBeLessThanOrEqual(0); // every line sent was written (answered before the end)
  });
});
