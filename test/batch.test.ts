/**
 * The Batch API on one machine (SQLite): the real `openai` client uploads a file, creates a batch, follows it and
 * reads its output and error files; every line routed (or sent to the LLM it names) through the gateway's
 * upstream path, against a local stand-in upstream. Bad input per line and for the file as a whole, cancellation,
 * client keys, and a `uniroute serve` killed with -9 mid-job that resumes on restart with no line lost or doubled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { DEFAULT_BATCH, parseBatchConfig } from '../src/batch/config.js';
import { LineSplitter } from '../src/batch/lines.js';
import { Limiter } from '../src/batch/process.js';
import { batchLines, startStandIn, type StandIn } from '../bench/batch-standin.js';
import { makeSyntheticDataset, startServe } from './helpers.js';

const LLMS = ['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'];
let routerPath: string;
let up: StandIn;

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-batch-')), 'r.uniroute');
  await fitted.save(routerPath);
  up = await startStandIn({ delayMs: 5, keepIds: true });
});
afterAll(async () => {
  await up?.close();
});

const gatewayDoc = (extra: Record<string, unknown> = {}) => ({
  upstreams: Object.fromEntries(LLMS.map((n, i) => [n, { base_url: up.url, price: { input_per_1m: (i + 1) * 1, output_per_1m: (i + 1) * 2 }, max_connections: 8 }])),
  presets: { cheap: { lambda: 5 } },
  retry: { attempts: 2, per_llm: 1, backoff_ms: 1, max_backoff_ms: 2 },
  ...extra,
});

async function server(batch: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-batchdir-'));
  const config = parseConfig(gatewayDoc({ ...extra, batch: { line_retries: 0, ...batch } }), 'test');
  const app = await buildApp({ router: await Router.load(routerPath), config, batch: { config: { ...config.batch, dir } } });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url, dir, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-none', maxRetries: 0 }) };
}

async function waitFor(client: OpenAI, id: string, final = ['completed', 'failed', 'expired', 'cancelled'], ms = 60_000) {
  const t0 = Date.now();
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (final.includes(b.status)) return b;
    if (Date.now() - t0 > ms) throw new Error(`batch ${id} still ${b.status} after ${ms} ms: ${JSON.stringify(b.request_counts)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const jsonl = async (client: OpenAI, id: string | null | undefined) => (id ? (await (await client.files.content(id)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);

describe('the line splitter', () => {
  it('numbers physical lines, skips blank ones, strips CR, and reports an over-long line without keeping it', () => {
    const sp = new LineSplitter(10);
    const got: unknown[] = [];
    const text = 'ab\r\n\n  \n0123456789ABC\nlast';
    // every cut of the input gives the same lines
    for (const cut of [1, 2, 3, 5, 7, 100]) {
      const s = new LineSplitter(10);
      const out: unknown[] = [];
      const b = Buffer.from(text);
      for (let i = 0; i < b.length; i += cut) s.push(b.subarray(i, i + cut), (l) => out.push(l));
      s.end((l) => out.push(l));
      if (got.length === 0) got.push(...out);
      else expect(out).toEqual(got);
      expect(s.count).toBe(3);
    }
    expect(got).toEqual([{ line: 1, text: 'ab' }, { line: 4, tooLong: true, bytes: 13 }, { line: 5, text: 'last' }]);
    void sp;
  });

  it('the batch section of the config: defaults, and errors that name the key', () => {
    expect(parseBatchConfig(undefined)).toEqual(DEFAULT_BATCH);
    expect(parseBatchConfig({ share: 0.25, chunk_lines: 16 })).toMatchObject({ share: 0.25, chunkLines: 16 });
    expect(() => parseBatchConfig({ share: 2 })).toThrow(/batch\.share: expected a number in \[0\.01, 1\]/);
    expect(() => parseBatchConfig({ chunk_line: 3 })).toThrow(/batch\.chunk_line: unknown key \(did you mean "chunk_lines"\?\)/);
    expect(() => parseConfig({ batch: { concurrency: 1.5 } }, 'f.yaml')).toThrow(/f\.yaml: batch\.concurrency: expected a whole number/);
  });
});

describe('the batch limiter', () => {
  const tick = () => new Promise((r) => setTimeout(r, 5));
  const upOf = (conns: number[]) => ({ deployments: conns.map((c) => ({ cfg: { maxConnections: c } })) }) as any;
  it('at most share x the LLM\'s connections in flight to it, and concurrency over all; waiters first come first served', async () => {
    const lim = new Limiter(0.5, 3);
    const a = upOf([2, 2]); // 4 connections: 2 for the batch
    expect(lim.limitOf(a)).toBe(2);
    expect(lim.limitOf(upOf([1]))).toBe(1); // never 0
    const r1 = await lim.acquire('a', a);
    await lim.acquire('a', a);
    let third = false;
    const p3 = lim.acquire('a', a).then((r) => ((third = true), r));
    await tick();
    expect(third).toBe(false);
    const b1 = await lim.acquire('b', a); // b has room of its own: 3 in flight now
    let fourth = false;
    const p4 = lim.acquire('c', a).then((r) => ((fourth = true), r));
    await tick();
    expect([third, fourth, lim.inFlight]).toEqual([false, false, 3]);
    r1();
    await tick();
    expect([third, fourth]).toEqual([true, false]); // the earlier waiter first
    b1();
    await tick();
    expect(fourth).toBe(true);
    (await p3)();
    (await p4)();
  });
  it('upstream_rpm spaces an LLM\'s lines evenly', async () => {
    const lim = new Limiter(1, 10, { slow: 1200 }); // 50 ms apart
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) (await lim.acquire('slow', upOf([8])))();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    const t1 = Date.now();
    for (let i = 0; i < 4; i++) (await lim.acquire('fast', upOf([8])))();
    expect(Date.now() - t1).toBeLessThan(100);
    expect(() => parseBatchConfig({ upstream_rpm: { x: 0 } })).toThrow(/batch\.upstream_rpm\.x: expected lines per minute/);
  });
});

describe('the Batch API through the openai client (SQLite)', () => {
  it('routes every line, answers each once, and says what the job cost against the most accurate LLM', async () => {
    const s = await server({ chunk_lines: 16 });
    try {
      const good = batchLines(120, 'uniroute', 1000);
      const direct = batchLines(10, 'cheap-code', 2000);
      const preset = batchLines(10, 'uniroute/cheap', 3000);
      const steered = [JSON.stringify({ custom_id: 's1', method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', uniroute: { models: ['mid-all'] }, messages: [{ role: 'user', content: 'integral of x #s1' }] } })];
      const bad = [
        '{"custom_id": "broken", "method": "POST"', // not JSON
        JSON.stringify({ custom_id: 'c1000', method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', messages: [{ role: 'user', content: 'dup #dup' }] } }), // duplicate custom_id
        JSON.stringify({ custom_id: 'unknown-llm', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-17', messages: [{ role: 'user', content: 'x #unknown-llm' }] } }),
        JSON.stringify({ custom_id: 'too-long', method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', messages: [{ role: 'user', content: 'x'.repeat(200_001) }] } }),
        JSON.stringify({ custom_id: 'wrong-url', method: 'POST', url: '/v1/embeddings', body: { model: 'uniroute', input: 'x' } }),
        JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', messages: [{ role: 'user', content: 'no id' }] } }),
        JSON.stringify({ custom_id: 'refused', method: 'POST', url: '/v1/chat/completions', body: { model: 'big-all', messages: [{ role: 'user', content: 'FAIL400 #refused' }] } }),
        JSON.stringify({ custom_id: 'bad-routing', method: 'POST', url: '/v1/chat/completions', body: { model: 'uniroute', uniroute: { lambda: -1 }, messages: [{ role: 'user', content: 'x #bad-routing' }] } }),
      ];
      const text = [...good.slice(0, 60), bad[0], ...direct, bad[1], '', ...preset, ...steered, ...bad.slice(2), ...good.slice(60)].join('\n') + '\n';
      const f = await s.client.files.create({ file: await toFile(Buffer.from(text), 'requests.jsonl'), purpose: 'batch' });
      expect(f).toMatchObject({ object: 'file', purpose: 'batch', bytes: Buffer.byteLength(text), filename: 'requests.jsonl' });
      expect((await s.client.files.retrieve(f.id)).id).toBe(f.id);
      expect(await (await s.client.files.content(f.id)).text()).toBe(text);
      const b0 = await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { team: 'search' } });
      expect(b0).toMatchObject({ object: 'batch', status: 'validating', input_file_id: f.id, metadata: { team: 'search' }, request_counts: { total: 149, completed: 0, failed: 0 } });
      const b = await waitFor(s.client, b0.id);
      const total = good.length + direct.length + preset.length + steered.length + bad.length;
      expect(b.status).toBe('completed');
      expect(b.request_counts).toEqual({ total, completed: good.length + direct.length + preset.length + steered.length, failed: bad.length });
      expect(b.completed_at).toBeGreaterThanOrEqual(b.created_at);
      const out = await jsonl(s.client, b.output_file_id);
      const errs = await jsonl(s.client, b.error_file_id);
      // every good line once in the output, every bad one once in the errors
      const ids = out.map((l) => l.custom_id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.sort()).toEqual([...good, ...direct, ...preset, ...steered].map((l) => JSON.parse(l).custom_id).sort());
      expect(errs).toHaveLength(bad.length);
      for (const l of out) {
        expect(l.response.status_code).toBe(200);
        expect(l.response.body.choices[0].message.content).toBe(`answer to ${l.custom_id}`);
        expect(LLMS).toContain(l.uniroute.model);
        expect(l.uniroute.usage).toEqual({ input_tokens: 100, output_tokens: 20 });
        expect(l.uniroute.cost).toBeGreaterThan(0);
        expect(l.id).toMatch(/^batch_req_[0-9a-f]{24}$/);
      }
      // the line naming an LLM went there; the steered line to its only allowed LLM; routed lines were spread
      for (const l of out.filter((x) => x.custom_id.startsWith('c2'))) expect(l.uniroute).toMatchObject({ model: 'cheap-code', routed: false });
      expect(out.find((x) => x.custom_id === 's1').uniroute.model).toBe('mid-all');
      const routedModels = new Set(out.filter((x) => x.uniroute.routed).map((x) => x.uniroute.model));
      expect(routedModels.size).toBeGreaterThan(1);
      // each line's upstream call counted once (no line sent twice on a healthy run)
      for (const l of good) expect(up.calls.get(JSON.parse(l).custom_id)).toBe(1);
      const why = Object.fromEntries(errs.map((e) => [e.custom_id ?? `line ${e.error.line}`, e.error.code]));
      expect(why).toMatchObject({ c1000: 'duplicate_custom_id', 'unknown-llm': 'model_not_found', 'too-long': 'prompt_too_long', 'wrong-url': 'invalid_url', refused: 'stand_in_400', 'bad-routing': 'invalid_routing' });
      expect(errs.find((e) => e.error.code === 'invalid_json_line').error.line).toBe(61);
      expect(errs.find((e) => e.error.code === 'invalid_custom_id').error.message).toMatch(/custom_id must be a string/);
      expect(errs.find((e) => e.custom_id === 'refused').response.status_code).toBe(400);
      // the duplicate was never sent: the first line with that id was, once
      expect(up.calls.get('dup')).toBeUndefined();
      // the summary: spend from usage, against sending every answered line to the most accurate LLM
      const u = (b as any).uniroute;
      const spend = out.reduce((a, l) => a + l.uniroute.cost, 0);
      expect(u.cost).toBeCloseTo(spend, 8);
      expect(LLMS).toContain(u.reference_llm);
      expect(u.reference_cost).toBeGreaterThan(0);
      expect(u.savings).toBeCloseTo(1 - u.cost / u.reference_cost, 3);
      expect(u.input_tokens).toBe(100 * out.length);
      expect(Object.values(u.models as Record<string, number>).reduce((a, x) => a + x, 0)).toBe(out.length); // answered lines per LLM
      // lists
      const list = await s.client.batches.list();
      expect(list.data.map((x) => x.id)).toContain(b.id);
      expect((await s.client.files.retrieve(b.output_file_id!)).purpose).toBe('batch_output');
      // the input file is kept while its batch runs, deletable after
      expect(await s.client.files.delete(f.id)).toMatchObject({ id: f.id, deleted: true });
      await expect(s.client.files.retrieve(f.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(s.client.batches.cancel(b.id)).rejects.toMatchObject({ status: 409 });
    } finally {
      await s.app.close();
    }
  });

  it('/v1/messages batches: Anthropic-shaped lines, translated to the OpenAI upstream and back', async () => {
    const s = await server();
    try {
      const lines = Array.from({ length: 6 }, (_, i) => JSON.stringify({ custom_id: `m${i}`, method: 'POST', url: '/v1/messages', body: { model: i % 2 ? 'uniroute' : 'big-all', max_tokens: 32, messages: [{ role: 'user', content: `integral of x ${i} #m${i}` }] } }));
      const f = await s.client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'm.jsonl'), purpose: 'batch' });
      const b = await waitFor(s.client, (await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/messages' as any, completion_window: '24h' })).id);
      expect(b.request_counts).toEqual({ total: 6, completed: 6, failed: 0 });
      for (const l of await jsonl(s.client, b.output_file_id)) {
        expect(l.response.body).toMatchObject({ type: 'message', role: 'assistant', content: [{ type: 'text', text: `answer to ${l.custom_id}` }] });
        expect(l.uniroute.usage).toEqual({ input_tokens: 100, output_tokens: 20 });
      }
    } finally {
      await s.app.close();
    }
  });

  it('an upstream that keeps failing: retried on the LLM\'s fallback and again after a backoff, then an error line with its status', async () => {
    const s = await server({ line_retries: 1 }, { upstreams: { ...gatewayDoc().upstreams, 'cheap-code': { base_url: up.url, fallbacks: ['mid-all'] } } });
    try {
      const lines = [JSON.stringify({ custom_id: 'f1', method: 'POST', url: '/v1/chat/completions', body: { model: 'cheap-code', messages: [{ role: 'user', content: 'FAIL500 #f1' }] } })];
      const f = await s.client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'f.jsonl'), purpose: 'batch' });
      const b = await waitFor(s.client, (await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
      expect(b.request_counts).toEqual({ total: 1, completed: 0, failed: 1 });
      const [e] = await jsonl(s.client, b.error_file_id);
      expect(e).toMatchObject({ custom_id: 'f1', response: { status_code: 500 }, error: { code: 'stand_in_500' }, uniroute: { attempts: 4 } });
      expect(up.calls.get('f1')).toBe(4); // cheap-code, its fallback mid-all; both again after the backoff
    } finally {
      await s.app.close();
    }
  });

  it('a batch folder that cannot be made: the server runs, the Batch API answers 503 saying why', async () => {
    const config = parseConfig(gatewayDoc(), 'test');
    const app = await buildApp({ router: await Router.load(routerPath), config, batch: { config: { ...config.batch, dir: '/dev/null/batch' } } });
    try {
      const r = await app.inject({ method: 'GET', url: '/v1/batches' });
      expect(r.statusCode).toBe(503);
      expect(r.json().error).toMatchObject({ code: 'batch_unavailable', message: expect.stringMatching(/Batch API is off on this server: .*\/dev\/null\/batch/) });
      expect((await app.inject({ method: 'POST', url: '/v1/route', payload: { prompt: 'integral' } })).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('refuses a bad file or batch as a whole with a clear 400 (or 404, 413)', async () => {
    const s = await server({ max_file_bytes: 4096, max_lines: 5 });
    try {
      const up1 = (t: string, purpose = 'batch') => s.client.files.create({ file: new File([t], 'x.jsonl'), purpose: purpose as 'batch' });
      await expect(up1('{}\n', 'fine-tune')).rejects.toMatchObject({ status: 400, error: { code: 'invalid_purpose' } });
      await expect(up1('x'.repeat(5000))).rejects.toMatchObject({ status: 413, message: expect.stringMatching(/larger than 4096 bytes \(batch\.max_file_bytes\)/) });
      await expect(up1('{}\n{}\n{}\n{}\n{}\n{}\n')).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/more than 5 lines/) });
      const empty = await up1('\n\n');
      await expect(s.client.batches.create({ input_file_id: empty.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/no request lines/) });
      const ok = await up1(batchLines(2).join('\n'));
      await expect(s.client.batches.create({ input_file_id: 'file-000000000000000000000000', endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/no file .* upload it first/) });
      await expect(s.client.batches.create({ input_file_id: ok.id, endpoint: '/v1/embeddings' as any, completion_window: '24h' })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/endpoint must be one of/) });
      await expect(s.client.batches.create({ input_file_id: ok.id, endpoint: '/v1/chat/completions', completion_window: 'soon' as any })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/completion_window/) });
      await expect(s.client.batches.retrieve('batch_nope')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      const multipartless = await fetch(`${s.url}/v1/files`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(multipartless.status).toBe(400);
      expect((await multipartless.json()).error.message).toMatch(/multipart\/form-data/);
    } finally {
      await s.app.close();
    }
  });

  it('cancel: no new line is sent, the answered ones stay, nothing is written twice', async () => {
    up.setDelay(60);
    const s = await server({ concurrency: 4, chunk_lines: 8 });
    try {
      const lines = batchLines(200, 'uniroute', 5000);
      const f = await s.client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'big.jsonl'), purpose: 'batch' });
      const b0 = await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      await waitFor(s.client, b0.id, ['in_progress']);
      await new Promise((r) => setTimeout(r, 400));
      const c = await s.client.batches.cancel(b0.id);
      expect(['cancelling', 'cancelled']).toContain(c.status);
      const b = await waitFor(s.client, b0.id, ['cancelled']);
      const done = b.request_counts!.completed + b.request_counts!.failed;
      expect(done).toBeGreaterThan(0);
      expect(done).toBeLessThan(200);
      const out = await jsonl(s.client, b.output_file_id);
      expect(out).toHaveLength(b.request_counts!.completed);
      expect(new Set(out.map((l) => l.custom_id)).size).toBe(out.length);
      const sent = lines.filter((l) => up.calls.has(JSON.parse(l).custom_id)).length;
      await new Promise((r) => setTimeout(r, 300));
      expect(lines.filter((l) => up.calls.has(JSON.parse(l).custom_id)).length).toBe(sent); // nothing sent after
    } finally {
      up.setDelay(5);
      await s.app.close();
    }
  });

  it('a batch never starves online traffic: it keeps to its share of each upstream\'s connections', async () => {
    up.setDelay(100);
    const s = await server({ share: 0.5 }, { upstreams: Object.fromEntries(LLMS.map((n) => [n, { base_url: up.url, max_connections: 4 }])) });
    try {
      const f = await s.client.files.create({ file: await toFile(Buffer.from(batchLines(300, 'cheap-math', 40_000).join('\n')), 's.jsonl'), purpose: 'batch' });
      const b0 = await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      await waitFor(s.client, b0.id, ['in_progress']);
      await new Promise((r) => setTimeout(r, 300));
      up.resetPeak();
      await new Promise((r) => setTimeout(r, 500));
      // every line names cheap-math: 2 of its 4 connections, no more
      expect(up.peak()).toBe(2);
      // online requests to the same LLM meanwhile find its free connections: answered in about one upstream delay,
      // not after the batch's queue (300 lines at 2 x 10 a second)
      const t0 = Date.now();
      const online = await Promise.all(
        [0, 1].map((i) => s.client.chat.completions.create({ model: 'cheap-math', messages: [{ role: 'user', content: `online ${i} #online${i}` }] })),
      );
      expect(online.map((c) => c.choices[0].message.content)).toEqual(['answer to online0', 'answer to online1']);
      expect(Date.now() - t0).toBeLessThan(1000);
      const b = await s.client.batches.retrieve(b0.id);
      expect(b.status).toBe('in_progress'); // the batch was still running
    } finally {
      up.setDelay(5);
      await s.app.close();
    }
  });

  it('a job past its completion window ends expired: no new line is sent, the answered ones stay, and every other line is a batch_expired error', async () => {
    up.setDelay(80);
    const s = await server({ concurrency: 4, chunk_lines: 8 });
    try {
      const f = await s.client.files.create({ file: await toFile(Buffer.from(batchLines(200, 'uniroute', 60_000).join('\n')), 'e.jsonl'), purpose: 'batch' });
      const b0 = await s.client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '1h' });
      expect(b0.expires_at! - b0.created_at).toBe(3600);
      await waitFor(s.client, b0.id, ['in_progress']);
      // the window's end, brought forward (an hour is long for a test)
      const store = (s.app as unknown as { batchService: { store: import('../src/batch/store.js').BatchStore } }).batchService.store;
      await store.transition(b0.id, ['in_progress'], { expiresAt: Math.floor(Date.now() / 1000) - 1 });
      const b = await waitFor(s.client, b0.id);
      expect(b.status).toBe('expired');
      expect(b.expired_at).toBeGreaterThan(0);
      // as OpenAI does: the lines not executed are in the error file, so that the counts add up to the total
      expect(b.request_counts!.completed).toBeLessThan(200);
      expect(b.request_counts!.completed + b.request_counts!.failed).toBe(200);
      const out = await jsonl(s.client, b.output_file_id);
      const errs = await jsonl(s.client, b.error_file_id);
      expect(out).toHaveLength(b.request_counts!.completed);
      expect(errs).toHaveLength(b.request_counts!.failed);
      expect(errs.length).toBeGreaterThan(0);
      for (const e of errs) {
        expect(e.error.code).toBe('batch_expired');
        expect(e.error.message).toBe('This request could not be executed before the completion window expired.');
        expect(e.response).toBeNull();
      }
      // each line once, in one file or the other
      const ids = [...out, ...errs].map((r) => r.custom_id).sort();
      expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => JSON.parse(batchLines(200, 'uniroute', 60_000)[i]).custom_id).sort());
    } finally {
      up.setDelay(5);
      await s.app.close();
    }
  });

  it('client keys: each key sees only its own files and batches', async () => {
    process.env.UNIROUTE_BT_A = 'sk-batch-a-0123456789';
    process.env.UNIROUTE_BT_B = 'sk-batch-b-0123456789';
    const s = await server({}, { keys: { a: { key_env: 'UNIROUTE_BT_A' }, b: { key_env: 'UNIROUTE_BT_B' } } });
    try {
      const a = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sk-batch-a-0123456789', maxRetries: 0 });
      const bcl = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sk-batch-b-0123456789', maxRetries: 0 });
      const none = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
      await expect(none.batches.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      const f = await a.files.create({ file: await toFile(Buffer.from(batchLines(3, 'uniroute', 9000).join('\n')), 'a.jsonl'), purpose: 'batch' });
      await expect(bcl.files.retrieve(f.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(bcl.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400 });
      const b = await a.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      await expect(bcl.batches.retrieve(b.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      expect((await bcl.batches.list()).data).toHaveLength(0);
      expect((await waitFor(a, b.id)).status).toBe('completed');
    } finally {
      await s.app.close();
    }
  });
});

describe('durable: a serve process killed with -9 mid-job', () => {
  it('resumes on restart: every line answered once, repeats only among the lines in flight', async () => {
    up.setDelay(40);
    const dir = mkdtempSync(join(tmpdir(), 'uniroute-batch-kill-'));
    const cfgPath = join(dir, 'gw.json');
    const concurrency = 6;
    writeFileSync(cfgPath, JSON.stringify(gatewayDoc({ batch: { dir: join(dir, 'b'), concurrency, chunk_lines: 8, lock_ms: 1500, line_retries: 0 } })));
    const pool = `sqlite:${join(dir, 'pool.db')}`;
    const lines = batchLines(300, 'uniroute', 20000);
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, lines.join('\n') + '\n');
    let s = await startServe(['--router', routerPath, '--config', cfgPath, '--pool', pool]);
    try {
      let client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const f = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'), purpose: 'batch' });
      const b0 = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      for (;;) {
        const b = await client.batches.retrieve(b0.id);
        if (b.request_counts!.completed >= 80) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const before = (await client.batches.retrieve(b0.id)).request_counts!.completed;
      s.proc.kill('SIGKILL');
      await new Promise((r) => s.proc.once('exit', r));
      const inFlightAtKill = up.open();
      const sentAtKill = up.total();
      expect(before).toBeLessThan(300);
      s = await startServe(['--router', routerPath, '--config', cfgPath, '--pool', pool]);
      client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const b = await waitFor(client, b0.id);
      expect(b.status).toBe('completed');
      expect(b.request_counts).toEqual({ total: 300, completed: 300, failed: 0 });
      const out = await jsonl(client, b.output_file_id);
      const ids = out.map((l) => l.custom_id);
      expect(new Set(ids).size).toBe(300); // none lost, none twice
      expect(ids).toEqual(lines.map((l) => JSON.parse(l).custom_id)); // SQLite keeps the input's order
      let repeats = 0;
      for (const l of lines) repeats += (up.calls.get(JSON.parse(l).custom_id) ?? 0) - 1;
      // a line repeated was in flight at the kill: sent, its record not yet written (at most the lines in flight)
      expect(repeats).toBeLessThanOrEqual(concurrency);
      expect(repeats).toBeLessThanOrEqual(Math.max(inFlightAtKill, 0) + concurrency);
      void sentAtKill;
    } finally {
      up.setDelay(5);
      s.proc.kill('SIGKILL');
    }
  });
});
