/**
 * The OpenAI-compatible proxy over real sockets, against local stand-in upstreams: streaming chunk by chunk,
 * timeouts by phase, failover, the circuit breaker, header passthrough, client aborts, secrets, the config file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { checkAgainstPool, loadConfig, parseConfig } from '../src/server/config.js';
import { Breaker, passHeaders } from '../src/server/gateway.js';
import { SessionStore } from '../src/server/chat.js';
import { BudgetPacer } from '../src/server/budget.js';
import { makeSyntheticDataset, randomTexts, startServe, NODE_CLI_FLAGS } from './helpers.js';

let routerPath: string;
const freshRouter = () => Router.load(routerPath);

/** What the stand-in upstreams saw, and hooks a test can hold. */
const seen: Array<{ llm: string; body: any; auth?: string; requestId?: string }> = [];
let release: (() => void) | undefined;
let upstreamClosed: Array<string> = [];
let floodSent = 0;
const failing = new Set<string>();
const SECRET = 'sk-live-0123456789abcdef';

let upstream: FastifyInstance;
let upUrl: string;

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const sse = (model: string, word: string) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`;

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-gw-')), 'r.uniroute');
  await fitted.save(routerPath);

  upstream = Fastify();
  upstream.post('/:llm/v1/chat/completions', async (req: any, reply) => {
    const { llm } = req.params;
    seen.push({ llm, body: req.body, auth: req.headers.authorization, requestId: req.headers['x-request-id'] });
    req.raw.socket.once('close', () => upstreamClosed.push(llm));
    reply.raw.on('close', () => upstreamClosed.push(`${llm}:res`));
    if (failing.has(llm)) return reply.status(503).send({ error: { message: 'overloaded', code: 'overloaded' } });
    if (llm === 'broken') return reply.status(500).send({ error: { message: 'upstream exploded' } });
    if (llm === 'limited')
      return reply.status(429).header('retry-after', '7').header('x-ratelimit-remaining-requests', '0').send({ error: { message: `Rate limit reached for key ${req.headers.authorization?.slice(7)}`, type: 'requests', code: 'rate_limit_exceeded' } });
    if (llm === 'badreq') return reply.status(400).send({ error: { message: 'messages[0].role is invalid', code: 'invalid_value' } });
    if (llm === 'huge') return reply.status(500).send('x'.repeat(5_000_000));
    if (llm === 'hinted') reply.raw.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    if (llm === 'slow') await new Promise((r) => setTimeout(r, 2000));
    if (llm === 'slowish') await new Promise((r) => setTimeout(r, 300));
    if (req.body.stream) {
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'x-upstream-id': `up-${llm}`, 'x-ratelimit-remaining-requests': '99' });
      if (llm === 'flood') {
        // as fast as the connection takes it, up to 256 MB: how much went out shows whether the proxy pauses it
        const chunk = sse(req.body.model, 'x'.repeat(64 * 1024));
        let closed = false;
        reply.raw.once('close', () => (closed = true));
        while (!closed && floodSent < 256 * 1024 * 1024) {
          floodSent += chunk.length;
          if (!reply.raw.write(chunk)) await new Promise((r) => { reply.raw.once('drain', r); reply.raw.once('close', r); });
        }
        reply.raw.end();
        return reply;
      }
      if (llm === 'held') {
        // the first chunk, then wait until the test says the client has it
        reply.raw.write(sse(req.body.model, 'first'));
        await new Promise<void>((r) => (release = r));
        reply.raw.write(sse(req.body.model, ' last'));
      } else if (llm === 'long') {
        // 8 chunks 150 ms apart: longer than the header timeout, never idle for longer than the idle timeout
        for (let i = 0; i < 8; i++) {
          reply.raw.write(sse(req.body.model, String(i)));
          await new Promise((r) => setTimeout(r, 150));
        }
      } else if (llm === 'stall') {
        reply.raw.write(sse(req.body.model, 'partial'));
        await new Promise((r) => setTimeout(r, 1500));
      } else {
        for (const word of ['Hel', 'lo']) {
          reply.raw.write(sse(req.body.model, word));
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      reply.raw.write('data: [DONE]\n\n');
      reply.raw.end();
      return reply;
    }
    reply.header('x-upstream-id', `up-${llm}`).header('x-ratelimit-remaining-requests', '99').header('connection', 'keep-alive');
    return {
      id: 'c1',
      object: 'chat.completion',
      created: 1,
      model: req.body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: `hi from ${llm}` }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    };
  });
  upUrl = await upstream.listen({ port: 0, host: '127.0.0.1' });
  process.env.UNIROUTE_GW_TEST_KEY = SECRET;
});
afterAll(async () => upstream?.close());

async function proxyWith(doc: Record<string, unknown>) {
  const app = await buildApp({ router: await freshRouter(), config: parseConfig(doc, 'test') });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}
const chat = (url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal });
const ask = (model: string, content = 'Question: integral derivative solve?') => ({ model, messages: [{ role: 'user', content }] });

describe('the proxy path', () => {
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    ({ app, url } = await proxyWith({
      upstreams: {
        'cheap-math': { base_url: `${upUrl}/cheap-math/v1`, api_key_env: 'UNIROUTE_GW_TEST_KEY', model: 'math-7b' },
        'big-all': { base_url: `${upUrl}/big-all/v1`, model: 'big-70b' },
        'mid-all': { base_url: `${upUrl}/broken/v1` },
        'cheap-code': { base_url: `${upUrl}/slow/v1`, timeouts: { headers_ms: 400 } },
        'cheap-history': { base_url: `${upUrl}/held/v1` },
      },
      presets: { cheap: { lambda: 0.5 }, floor: { max_error: 0.2 }, mathonly: { lambda: 0, models: ['cheap-math'] } },
    }));
  });
  afterAll(async () => {
    // nothing left hanging: closing takes no longer than the requests still in flight
    const t0 = Date.now();
    await app?.close();
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('routes with the real openai client and forwards the request unchanged but for the model name', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data, response } = await client.chat.completions
      .create({ model: 'uniroute:lambda=0.2', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'Question: integral derivative solve?' }], temperature: 0.3 })
      .withResponse();
    expect(response.headers.get('x-uniroute-model')).toBe('cheap-math');
    expect(response.headers.get('x-uniroute-attempts')).toBe('1');
    expect(Number(response.headers.get('x-uniroute-cluster'))).toBeGreaterThanOrEqual(0);
    expect(Number(response.headers.get('x-uniroute-predicted-error'))).toBeGreaterThanOrEqual(0);
    expect(data.choices[0].message.content).toBe('hi from cheap-math');
    const last = seen[seen.length - 1];
    expect(last.body.model).toBe('math-7b');
    expect(last.body.temperature).toBe(0.3);
    expect(last.body.messages).toHaveLength(2);
    expect(last.auth).toBe(`Bearer ${SECRET}`);
  });

  it('passes upstream headers through (not the hop-by-hop ones) and propagates x-request-id', async () => {
    const r = await chat(url, ask('big-all'), { 'x-request-id': 'req-abc-123' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-upstream-id')).toBe('up-big-all');
    expect(r.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(r.headers.get('x-request-id')).toBe('req-abc-123');
    expect(seen[seen.length - 1].requestId).toBe('req-abc-123');
    expect(((await r.json()) as any).choices[0].message.content).toBe('hi from big-all');
    // generated when absent, and the same id upstream
    const r2 = await chat(url, ask('big-all'));
    const id = r2.headers.get('x-request-id')!;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[seen.length - 1].requestId).toBe(id);
    await r2.text();
  });

  it('streams: the first chunk reaches the client before the upstream has sent its last', async () => {
    const r = await chat(url, { ...ask('cheap-history'), stream: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const reader = r.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('first');
    expect(release).toBeTypeOf('function'); // the upstream is still holding its last chunk
    release!();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toContain(' last');
    expect(rest).toContain('[DONE]');
  });

  it('the real openai client streams through', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'big-all', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe('Hello');
  });

  it('a header timeout is its own error code, and a named LLM is not failed over', async () => {
    const t0 = Date.now();
    const r = await chat(url, ask('cheap-code'));
    expect(r.status).toBe(504);
    expect(((await r.json()) as any).error.code).toBe('upstream_headers_timeout');
    expect(Date.now() - t0).toBeLessThan(1900);
    expect(r.headers.get('x-uniroute-attempts')).toBe('1');
  });

  it("LLMs on one origin share a connection pool, each request with its own deployment's timeouts", async () => {
    const { app: a2, url: u2 } = await proxyWith({
      upstreams: {
        // undici's header timers tick twice a second: 400 ms fires by about 1 s, well before the stand-in's 2 s
        hasty: { base_url: `${upUrl}/slow/v1`, timeouts: { headers_ms: 400 } },
        patient: { base_url: `${upUrl}/slow/v1` },
      },
    });
    try {
      const [r1, r2] = await Promise.all([chat(u2, ask('hasty')), chat(u2, ask('patient'))]);
      expect(r1.status).toBe(504);
      expect(((await r1.json()) as any).error.code).toBe('upstream_headers_timeout');
      expect(r2.status).toBe(200);
      expect(((await r2.json()) as any).choices[0].message.content).toBe('hi from slow');
    } finally {
      await a2.close();
    }
  });

  it('presets are model aliases: a λ, a quality floor, an allowed subset; unknown ones are listed', async () => {
    const r = await chat(url, ask('uniroute/mathonly', 'Question: empire king war?'));
    expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
    await r.text();
    const floor = await chat(url, ask('uniroute/floor'));
    expect(floor.status).toBe(200);
    const model = floor.headers.get('x-uniroute-model')!;
    const router = await freshRouter();
    const want = (await router.route(['Question: integral derivative solve?'], { maxError: 0.2, models: ['cheap-math', 'big-all', 'mid-all', 'cheap-code', 'cheap-history'] }))[0].model;
    expect(model).toBe(want);
    await floor.text();
    const best = await chat(url, ask('uniroute/best'));
    expect(best.status).toBe(200);
    await best.text();
    const none = await chat(url, ask('uniroute/nope'));
    expect(none.status).toBe(404);
    const j = (await none.json()) as any;
    expect(j.error.code).toBe('model_not_found');
    expect(j.error.message).toContain('uniroute/cheap');
  });

  it('request validation errors come in OpenAI\'s shape', async () => {
    const r = await chat(url, { model: 'uniroute' });
    expect(r.status).toBe(400);
    const j = (await r.json()) as any;
    expect(j.error.type).toBe('invalid_request_error');
    expect(j.error.param).toBe('messages');
    expect(typeof j.error.message).toBe('string');
    const empty = await chat(url, { model: 'uniroute', messages: [{ role: 'system', content: 'x' }] });
    expect(((await empty.json()) as any).error.code).toBe('empty_prompt');
  });

  it('a slow client slows the upstream down (the body is never piled up in the proxy), and leaving stops it', async () => {
    const { app: flood, url: furl } = await proxyWith({ upstreams: { 'big-all': { base_url: `${upUrl}/flood/v1` } } });
    try {
      floodSent = 0;
      upstreamClosed = [];
      const { request } = await import('node:http');
      const u = new URL(furl);
      const req = request({ host: u.hostname, port: u.port, path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' } });
      const res = await new Promise<import('node:http').IncomingMessage>((r) => {
        req.once('response', r);
        req.end(JSON.stringify({ ...ask('big-all'), stream: true }));
      });
      expect(res.statusCode).toBe(200);
      res.pause(); // a client that reads nothing
      await new Promise((r) => setTimeout(r, 800));
      const sent = floodSent;
      // socket buffers and one high-water mark per hop, not the 256 MB the upstream would send unpaused
      expect(sent).toBeLessThan(48 * 1024 * 1024);
      await new Promise((r) => setTimeout(r, 300));
      expect(floodSent - sent).toBeLessThan(2 * 1024 * 1024); // still held back
      res.destroy();
      req.destroy();
      for (let i = 0; i < 50 && !upstreamClosed.includes('flood:res'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(upstreamClosed).toContain('flood:res'); // the upstream request was aborted
    } finally {
      await flood.close();
    }
  });

  it('an informational answer (103 Early Hints) before the real one is not taken for it', async () => {
    const { app: hinted, url: hurl } = await proxyWith({ upstreams: { 'big-all': { base_url: `${upUrl}/hinted/v1` } }, retry: { attempts: 1 } });
    try {
      const r = await chat(hurl, ask('big-all'));
      expect(r.status).toBe(200);
      expect(((await r.json()) as any).choices[0].message.content).toBe('hi from hinted');
    } finally {
      await hinted.close();
    }
  });

  it('a client that disconnects aborts the upstream request', async () => {
    upstreamClosed = [];
    const ac = new AbortController();
    const p = chat(url, ask('cheap-code'), {}, ac.signal).catch((e) => e);
    await new Promise((r) => setTimeout(r, 150)); // the upstream is now sleeping before its headers
    ac.abort();
    await p;
    for (let i = 0; i < 50 && !upstreamClosed.includes('slow:res') && !upstreamClosed.includes('slow'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(upstreamClosed.some((x) => x.startsWith('slow'))).toBe(true);
  });
});

describe('failures, secrets, the breaker', () => {
  it('connection refused is reported with its cause; 429 keeps the upstream code and Retry-After, never the key', async () => {
    const port = await closedPort();
    const { app, url } = await proxyWith({
      upstreams: {
        'big-all': { base_url: `http://127.0.0.1:${port}/v1` },
        'cheap-math': { base_url: `${upUrl}/limited/v1`, api_key_env: 'UNIROUTE_GW_TEST_KEY' },
        'mid-all': { base_url: `http://user:hunter2pass@127.0.0.1:${port}/v1` },
        'cheap-code': { base_url: `${upUrl}/huge/v1` },
        'cheap-history': { base_url: `${upUrl}/badreq/v1` },
      },
    });
    try {
      const r = await chat(url, ask('big-all'));
      expect(r.status).toBe(502);
      const j = (await r.json()) as any;
      expect(j.error.code).toBe('upstream_unreachable');
      expect(j.error.message).toContain('connection refused');
      const lim = await chat(url, ask('cheap-math'));
      expect(lim.status).toBe(429);
      expect(lim.headers.get('retry-after')).toBe('7');
      expect(lim.headers.get('x-ratelimit-remaining-requests')).toBe('0');
      const lj = await lim.text();
      expect(JSON.parse(lj).error.code).toBe('rate_limit_exceeded');
      expect(lj).not.toContain(SECRET);
      expect(lj).toContain('[redacted]');
      const cred = await chat(url, ask('mid-all'));
      expect(await cred.text()).not.toContain('hunter2pass');
      // a 5 MB error body is cut, not buffered whole
      const huge = await chat(url, ask('cheap-code'));
      expect(huge.status).toBe(500);
      expect((await huge.text()).length).toBeLessThan(5000);
      // a 400 is about the request: relayed with the upstream's code, and not retried
      const bad = await chat(url, ask('cheap-history'));
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as any).error.code).toBe('invalid_value');
    } finally {
      await app.close();
    }
  });

  it('fails over to the next-best LLM by the router\'s score when the chosen one answers 500, and says so', async () => {
    const text = 'Question: empire king war battle?';
    const router = await freshRouter();
    // the LLM λ 0 picks gets an upstream that answers 500
    const first = (await router.route([text], { lambda: 0 }))[0].model;
    const second = (await router.route([text], { lambda: 0, models: router.snapshot().names.filter((n) => n !== first) }))[0].model;
    const { app, url } = await proxyWith({
      upstreams: Object.fromEntries(router.snapshot().names.map((m) => [m, { base_url: `${upUrl}/${m === first ? 'broken' : m}/v1` }])),
    });
    try {
      const n0 = seen.length;
      const r = await chat(url, ask('uniroute/best', text));
      expect(r.status).toBe(200);
      expect(r.headers.get('x-uniroute-attempts')).toBe('2');
      expect(r.headers.get('x-uniroute-model')).toBe(second);
      expect(seen.slice(n0).map((s) => s.llm)).toEqual(['broken', second]);
      expect(((await r.json()) as any).choices[0].message.content).toBe(`hi from ${second}`);
      expect(await (await fetch(`${url}/metrics`)).text()).toContain(`uniroute_failovers_total{from="${first}"} 1`);
    } finally {
      await app.close();
    }
  });

  it('failover when the chosen upstream does not connect; every upstream down is a clear 503 or the last error', async () => {
    const port = await closedPort();
    const { app, url } = await proxyWith({
      upstreams: { 'big-all': { base_url: `http://127.0.0.1:${port}/v1` }, 'cheap-math': { base_url: `${upUrl}/cheap-math/v1` } },
      retry: { attempts: 3 },
    });
    try {
      // λ 0 on a math prompt picks big-all (the most accurate), which does not connect
      const r = await chat(url, ask('uniroute/best'));
      expect(r.status).toBe(200);
      expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
      expect(r.headers.get('x-uniroute-attempts')).toBe('2');
    } finally {
      await app.close();
    }
  });

  it('no retry once bytes have gone to the client; the idle timeout cuts a stalled stream, not a long one', async () => {
    const { app, url } = await proxyWith({
      upstreams: { 'big-all': { base_url: `${upUrl}/stall/v1` }, 'cheap-math': { base_url: `${upUrl}/long/v1` }, 'mid-all': { base_url: `${upUrl}/cheap-math/v1` } },
      timeouts: { headers_ms: 500, idle_ms: 500 },
    });
    try {
      // long: 8 chunks 150 ms apart (1.2 s > the 500 ms header timeout): arrives whole
      const long = await chat(url, { ...ask('cheap-math'), stream: true });
      const text = await long.text();
      expect(text).toContain('data: [DONE]');
      for (let i = 0; i < 8; i++) expect(text).toContain(`"content":"${i}"`);
      // stall: one chunk, then silence longer than the idle timeout: cut, and nothing sent to another LLM
      const n0 = seen.length;
      const r = await chat(url, { ...ask('uniroute/best'), stream: true }, {});
      let got = '';
      const reader = r.body!.getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          got += new TextDecoder().decode(value);
        }
      } catch (e) {
        got += `\nerror: ${e}`;
      }
      expect(r.headers.get('x-uniroute-model')).toBe('big-all');
      expect(got).toContain('partial');
      expect(got).not.toContain('[DONE]');
      expect(seen.slice(n0).map((s) => s.llm)).toEqual(['stall']);
      await new Promise((res) => setTimeout(res, 50));
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/uniroute_upstream_requests_total\{model="big-all",status="idle_timeout"\} 1/);
    } finally {
      await app.close();
    }
  });

  it('the breaker opens after repeated failures (the LLM is not routed to), then a probe closes it', async () => {
    const { app, url } = await proxyWith({
      upstreams: { 'big-all': { base_url: `${upUrl}/flaky/v1` }, 'cheap-math': { base_url: `${upUrl}/cheap-math/v1` } },
      breaker: { failures: 2, cooldown_ms: 400 },
      retry: { attempts: 2 },
    });
    failing.add('flaky');
    try {
      for (let i = 0; i < 2; i++) expect((await chat(url, ask('big-all'))).status).toBe(503);
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/uniroute_upstream_breaker_open\{model="big-all",deployment="0"\} 1/);
      // open: λ 0 would pick big-all, but it is skipped without an attempt
      const n0 = seen.length;
      const r = await chat(url, ask('uniroute/best'));
      expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
      expect(r.headers.get('x-uniroute-attempts')).toBe('1');
      expect(seen.slice(n0).map((s) => s.llm)).toEqual(['cheap-math']);
      await r.text();
      // after the cool-down the upstream is healthy again: one probe, and the breaker closes
      failing.delete('flaky');
      await new Promise((res) => setTimeout(res, 450));
      const probe = await chat(url, ask('uniroute/best'));
      expect(probe.headers.get('x-uniroute-model')).toBe('big-all');
      await probe.text();
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/uniroute_upstream_breaker_open\{model="big-all",deployment="0"\} 0/);
    } finally {
      failing.delete('flaky');
      await app.close();
    }
  });

  it('graceful shutdown: an in-flight request finishes, new connections are refused, an idle client does not hold it', async () => {
    const { app, url } = await proxyWith({ upstreams: { 'big-all': { base_url: `${upUrl}/slowish/v1` } } });
    // a client that connects and sends nothing
    const { connect } = await import('node:net');
    const idle = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    const inflight = chat(url, ask('big-all'));
    await new Promise((r) => setTimeout(r, 100)); // the request is now waiting on the 300 ms upstream
    const t0 = Date.now();
    const closing = app.close();
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.headers.get('connection')).toBe('close'); // the client learns the keep-alive connection ends
    expect(((await r.json()) as any).choices[0].message.content).toBe('hi from slowish');
    await closing;
    expect(Date.now() - t0).toBeLessThan(3000);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    idle.destroy();
  });

  it('Breaker: closed -> open -> half-open (one probe) -> closed or open again', () => {
    const b = new Breaker(3, 1000);
    b.failure(0);
    b.failure(0);
    expect(b.state(0)).toBe('closed');
    b.failure(10);
    expect(b.state(500)).toBe('open');
    expect(b.allows(500)).toBe(false);
    expect(b.state(1010)).toBe('half-open');
    expect(b.allows(1010)).toBe(true);
    b.begin(1010);
    expect(b.allows(1011)).toBe(false); // the probe is out
    b.failure(1020);
    expect(b.state(1500)).toBe('open');
    b.begin(2100);
    b.success();
    expect(b.state(2100)).toBe('closed');
    // breakers sharing a counter: how many are not closed (the proxy's fast path needs it to be exact)
    const tripped = { count: 0 };
    const x = new Breaker(2, 1000, tripped);
    const y = new Breaker(1, 1000, tripped);
    x.failure(0);
    expect(tripped.count).toBe(0);
    x.failure(0);
    y.failure(0);
    x.failure(0); // already open: counted once
    expect(tripped.count).toBe(2);
    x.success();
    expect(tripped.count).toBe(1);
    x.success(); // already closed
    y.success();
    expect(tripped.count).toBe(0);
  });

  it('passHeaders drops hop-by-hop headers and those Connection names', () => {
    const h = passHeaders({ connection: 'keep-alive, x-private', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'x-private': '1', 'x-request-id': 'a', 'content-type': 'application/json' });
    expect(h).toEqual({ 'x-request-id': 'a', 'content-type': 'application/json' });
  });
});

describe('client keys, spend and budgets', () => {
  it('BudgetPacer: over budget lambda rises (cheaper LLMs), under budget it falls, within bounds', () => {
    const day = 24_000; // a 24 s "day": an hour is 1 s
    const over = new BudgetPacer(1, day, 0);
    for (let t = 0; t <= 3000; t += 10) over.record(0.01, t); // 24 USD a "day" against 1
    expect(over.ratePerDay(3000)).toBeGreaterThan(10);
    const high = over.multiplier(3000);
    expect(high).toBeGreaterThan(5);
    expect(high).toBeLessThanOrEqual(1e4);
    // then it stops spending: the rate decays and the multiplier comes down
    let later = high;
    for (let t = 3000; t <= 12_000; t += 100) later = over.multiplier(t);
    expect(later).toBeLessThan(high);
    const under = new BudgetPacer(100, day, 0);
    for (let t = 0; t <= 3000; t += 10) under.record(0.0001, t);
    const low = under.multiplier(3000);
    expect(low).toBeLessThan(1);
    expect(low).toBeGreaterThanOrEqual(0.1);
  });

  it('with client keys a key is required; spend is counted per key; a budget paces lambda toward cheaper LLMs', async () => {
    process.env.UNIROUTE_GW_KEY_A = 'sk-client-a-0123456789';
    process.env.UNIROUTE_GW_KEY_B = 'sk-client-b-0123456789';
    const router = await freshRouter();
    const app = await buildApp({
      router,
      budgetDayMs: 24_000,
      config: parseConfig(
        {
          upstreams: Object.fromEntries(router.snapshot().names.map((m) => [m, { base_url: `${upUrl}/${m}/v1` }])),
          keys: { a: { key_env: 'UNIROUTE_GW_KEY_A', budget_usd_per_day: 0.01 }, b: { key_env: 'UNIROUTE_GW_KEY_B' } },
        },
        'test',
      ),
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const none = await chat(url, ask('uniroute:lambda=0.05'));
      expect(none.status).toBe(401);
      expect(((await none.json()) as any).error.code).toBe('invalid_api_key');
      expect((await chat(url, ask('uniroute:lambda=0.05'), { authorization: 'Bearer sk-client-a-nope' })).status).toBe(401);
      const cost = (name: string) => router.snapshot().cost[router.snapshot().index.get(name)!];
      // a prompt whose choice at this lambda is not the cheapest LLM, so that pacing has somewhere to go
      const cheapest = Math.min(...router.snapshot().cost);
      let prompt = '';
      for (const t of ['Question: empire king war battle?', 'Question: integral python king?', 'Question: loop empire sum class?', ...randomTexts(40, 77)])
        if (!prompt) {
          const d = (await router.route([t], { lambda: 0.005 }))[0];
          if (!d.ood && cost(d.model) > cheapest) prompt = t; // (an out-of-distribution prompt goes to its fallback whatever lambda)
        }
      expect(prompt, 'a prompt routed to a pricier LLM').not.toBe('');
      const first = await chat(url, ask('uniroute:lambda=0.005', prompt), { authorization: 'Bearer sk-client-a-0123456789' });
      expect(first.status).toBe(200);
      const firstModel = first.headers.get('x-uniroute-model')!;
      await first.text();
      expect(cost(firstModel)).toBeGreaterThan(Math.min(...router.snapshot().cost)); // there is a cheaper LLM to move to
      // key a spends far beyond 0.01 USD a "day": its lambda is paced up, its answers move to cheaper LLMs
      let last = firstModel;
      for (let i = 0; i < 60; i++) {
        const r = await chat(url, ask('uniroute:lambda=0.005', prompt), { authorization: 'Bearer sk-client-a-0123456789' });
        last = r.headers.get('x-uniroute-model')!;
        await r.text();
        await new Promise((res) => setTimeout(res, 5));
      }
      expect(cost(last)).toBeLessThan(cost(firstModel));
      // key b has no budget: the same prompt goes where it went at first
      const b = await chat(url, ask('uniroute:lambda=0.005', prompt), { authorization: 'Bearer sk-client-b-0123456789' });
      expect(b.headers.get('x-uniroute-model')).toBe(firstModel);
      await b.text();
      // with client keys, /metrics (which shows spend per key) wants a key too
      expect((await fetch(`${url}/metrics`)).status).toBe(401);
      const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer sk-client-b-0123456789' } })).text();
      expect(metrics).toMatch(/uniroute_spend_usd_total\{model="[^"]+",key="a"\} [0-9.e-]+/);
      expect(metrics).toMatch(/uniroute_spend_usd_total\{model="[^"]+",key="b"\} [0-9.e-]+/);
      const m = /uniroute_budget_lambda_multiplier\{key="a"\} ([0-9.e+-]+)/.exec(metrics);
      expect(Number(m![1])).toBeGreaterThan(1);
    } finally {
      await app.close();
    }
  });
});

describe('sticky conversations', () => {
  const upstreams = () => Object.fromEntries(['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'].map((m) => [m, { base_url: `${upUrl}/${m}/v1` }]));
  const math = 'Question: integral derivative solve equation?';
  const hist = 'Question: empire king war battle dynasty?';

  it('a conversation keeps its LLM unless another is better by more than the margin', async () => {
    const router = await freshRouter();
    const a = (await router.route([math], { lambda: 0.2 }))[0].model;
    const b = (await router.route([hist], { lambda: 0.2 }))[0].model;
    expect(a).not.toBe(b);
    for (const [margin, second] of [[10, a], [0, b]] as const) {
      const { app, url } = await proxyWith({ upstreams: upstreams(), sticky: { margin } });
      try {
        const t1 = await chat(url, ask('uniroute:lambda=0.2', math), { 'x-session-id': 'conv-1' });
        expect(t1.headers.get('x-uniroute-model')).toBe(a);
        expect(t1.headers.get('x-uniroute-sticky')).toBe('new');
        await t1.text();
        const t2 = await chat(url, ask('uniroute:lambda=0.2', hist), { 'x-session-id': 'conv-1' });
        expect(t2.headers.get('x-uniroute-model')).toBe(second);
        expect(t2.headers.get('x-uniroute-sticky')).toBe(margin > 0 ? 'kept' : 'switched');
        await t2.text();
        // another conversation, and no session at all, are routed on their own
        const other = await chat(url, ask('uniroute:lambda=0.2', hist), { 'x-session-id': 'conv-2' });
        expect(other.headers.get('x-uniroute-model')).toBe(b);
        await other.text();
        const none = await chat(url, ask('uniroute:lambda=0.2', hist));
        expect(none.headers.get('x-uniroute-sticky')).toBeNull();
        await none.text();
        // the request's "user" field is a session key too
        const u1 = await chat(url, { ...ask('uniroute:lambda=0.2', math), user: 'alice' });
        await u1.text();
        const u2 = await chat(url, { ...ask('uniroute:lambda=0.2', hist), user: 'alice' });
        expect(u2.headers.get('x-uniroute-model')).toBe(second);
        await u2.text();
        expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/uniroute_sticky_total\{outcome="new"\} 3/);
      } finally {
        await app.close();
      }
    }
  });

  it('sessions are bounded (least recently used out) and expire', () => {
    const s = new SessionStore(2, 1000);
    s.set('a', 'x', 0);
    s.set('b', 'y', 0);
    expect(s.get('a', 10)).toBe('x');
    s.set('a', 'x', 10); // a is now the most recent
    s.set('c', 'z', 20);
    expect(s.size).toBe(2);
    expect(s.get('b', 30)).toBeUndefined();
    expect(s.get('a', 30)).toBe('x');
    expect(s.get('c', 2000)).toBeUndefined(); // expired
  });
});

describe('the config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-cfg-'));
  const write = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('reads YAML and JSON with the stable keys, and the older upstreams-only file', () => {
    const y = loadConfig(
      write(
        'a.yaml',
        `upstreams:\n  gpt:\n    base_url: https://api.example.com/v1/\n    api_key_env: K\n    model: gpt-4o\n    max_connections: 8\n    timeouts: { connect_ms: 100, headers_ms: 200, idle_ms: 300 }\npresets:\n  cheap: { lambda: 0.5 }\n  careful: { max_error: 0.1, models: [gpt] }\nretry: { attempts: 2 }\nbreaker: { failures: 4, cooldown_ms: 1000 }\n`,
      ),
    );
    expect(y.upstreams.get('gpt')).toMatchObject({ provider: 'openai', baseUrl: 'https://api.example.com/v1', apiKeyEnv: 'K', model: 'gpt-4o', maxConnections: 8, timeouts: { connectMs: 100, headersMs: 200, idleMs: 300 }, fallbacks: [] });
    expect(y.upstreams.get('gpt')!.deployments).toEqual([{ baseUrl: 'https://api.example.com/v1', apiKeyEnv: 'K', model: 'gpt-4o', weight: 1, maxConnections: 8, timeouts: { connectMs: 100, headersMs: 200, idleMs: 300 } }]);
    expect(y.presets.get('careful')).toEqual({ maxError: 0.1, models: ['gpt'] });
    expect(y.retry.attempts).toBe(2);
    expect(y.breaker).toEqual({ failures: 4, cooldownMs: 1000 });
    const old = loadConfig(write('old.json', JSON.stringify({ upstreams: { a: { base_url: 'http://127.0.0.1:1/v1' } } })));
    expect(old.upstreams.get('a')!.timeouts).toEqual({ connectMs: 5000, headersMs: 30000, idleMs: 30000 });
  });

  it('errors name the key', () => {
    const err = (doc: unknown) => {
      try {
        parseConfig(doc, 'u.yaml');
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(err({ upstreams: { gpt: { base_url: 'ftp://x' } } })).toContain('upstreams.gpt.base_url');
    expect(err({ upstreams: { gpt: { base_url: 'http://x', timeouts: { idle_ms: -1 } } } })).toContain('upstreams.gpt.timeouts.idle_ms');
    expect(err({ upstreams: { gpt: { base_url: 'http://x', timout: {} } } })).toMatch(/upstreams\.gpt\.timout: unknown key \(did you mean "timeouts"\?\)/);
    expect(err({ presets: { a: { lambda: 1, max_cost: 2 } } })).toContain('presets.a: give one of');
    expect(err({ presets: { a: { max_error: 2 } } })).toContain('presets.a.max_error');
    expect(err({ retry: { attempts: 0 } })).toContain('retry.attempts');
    expect(err({ retyr: {} })).toContain('did you mean "retry"');
    expect(() => loadConfig(write('bad.yaml', 'upstreams: [unclosed'))).toThrow(/bad\.yaml: cannot parse/);
  });

  it('checked against the pool: a missing key variable and an unknown preset LLM are errors, the rest warnings', () => {
    const cfg = parseConfig({ upstreams: { ghost: { base_url: 'http://x/v1', api_key_env: 'UNIROUTE_SURELY_UNSET' }, a: { base_url: 'http://x/v1' } }, presets: { p: { models: ['a', 'zz'] } } });
    const { errors, warnings } = checkAgainstPool(cfg, ['a', 'b']);
    expect(errors.join('\n')).toContain('UNIROUTE_SURELY_UNSET');
    expect(errors.join('\n')).toContain('presets.p.models: "zz"');
    expect(warnings.join('\n')).toContain('upstreams.ghost');
    expect(warnings.join('\n')).toContain('no upstream for 1 LLM(s) of the pool (b)');
  });

  it('uniroute serve --config: a bad config stops it at start; SIGHUP reloads under load with no failed request', async () => {
    const { spawn } = await import('node:child_process');
    const bin = resolve(__dirname, '..', 'bin', 'uniroute.js');
    const bad = write('bad.yaml', `upstreams:\n  cheap-math: { base_url: "${upUrl}/cheap-math/v1", api_key_env: UNIROUTE_SURELY_UNSET }\n`);
    const fail = spawn(process.execPath, [...NODE_CLI_FLAGS, bin, 'serve', '--router', routerPath, '--port', '0', '--config', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
    let ferr = '';
    fail.stderr.on('data', (d) => (ferr += d));
    const code = await new Promise((r) => fail.on('exit', r));
    expect(code).not.toBe(0);
    expect(ferr).toContain('upstreams.cheap-math.api_key_env');

    const file = write('live.yaml', `upstreams:\n  cheap-math: { base_url: "${upUrl}/cheap-math/v1" }\n  big-all: { base_url: "${upUrl}/big-all/v1" }\npresets:\n  pin: { models: [cheap-math] }\n`);
    const { proc, url, out, err } = await startServe(['--router', routerPath, '--config', file, '--log']);
    try {
      const r0 = await chat(url, ask('uniroute/pin'), { 'x-request-id': 'log-me-1' });
      expect(r0.headers.get('x-uniroute-model')).toBe('cheap-math');
      await r0.text();
      // --log: one JSON line per answer with its decision
      for (let i = 0; i < 50 && !out().includes('log-me-1'); i++) await new Promise((r) => setTimeout(r, 20));
      const line = JSON.parse(out().split('\n').find((l) => l.includes('"log-me-1"') && l.includes('"decision"'))!);
      expect(line.decision).toMatchObject({ model: 'cheap-math', routed: true, attempts: 1, ood: false });
      expect(line.decision.cluster).toBeGreaterThanOrEqual(0);
      expect(line.decision.latency_ms).toBeGreaterThanOrEqual(0);
      // load while the file changes and SIGHUP arrives
      let stop = false;
      const statuses: number[] = [];
      const load = Promise.all(
        Array.from({ length: 8 }, async () => {
          while (!stop) {
            const r = await chat(url, ask('uniroute/pin'));
            statuses.push(r.status);
            await r.text();
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 150));
      writeFileSync(file, `upstreams:\n  cheap-math: { base_url: "${upUrl}/cheap-math/v1" }\n  big-all: { base_url: "${upUrl}/big-all/v1" }\npresets:\n  pin: { models: [big-all] }\n`);
      proc.kill('SIGHUP');
      for (let i = 0; i < 100 && !err().includes('reloaded'); i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 150));
      stop = true;
      await load;
      expect(err()).toContain('reloaded');
      expect(statuses.length).toBeGreaterThan(10);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      const r1 = await chat(url, ask('uniroute/pin'));
      expect(r1.headers.get('x-uniroute-model')).toBe('big-all');
      await r1.text();
      // a broken file on SIGHUP: refused, the running config stays
      writeFileSync(file, 'presets: { pin: { lambda: -1 } }\n');
      proc.kill('SIGHUP');
      for (let i = 0; i < 100 && !err().includes('not reloaded'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(err()).toContain('presets.pin.lambda');
      const r2 = await chat(url, ask('uniroute/pin'));
      expect(r2.headers.get('x-uniroute-model')).toBe('big-all');
      await r2.text();
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    }
  });
});
