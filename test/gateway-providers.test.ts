/**
 * The production gateway against local stand-in upstreams of both providers (127.0.0.1 only), through the real
 * `openai` and `@anthropic-ai/sdk` clients: translation both ways (system prompts, tools, images, usage, errors,
 * streams), deployments (a failing one retried on its twin, weights), failover order (fallbacks, then the
 * router's next-best), context windows, spend from usage, a cut stream, the breaker on direct requests, the
 * `uniroute` routing object, pass-through routes, traces, and client keys on every route.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { BufferedResponse, answerCost, callLLM } from '../src/server/call.js';
import { LlmUpstream, RequestSignal } from '../src/server/gateway.js';
import { makeSyntheticDataset } from './helpers.js';

let routerPath: string;
const freshRouter = () => Router.load(routerPath);

/** What the stand-ins saw: provider, tag (the path segment), body, headers. */
const seen: Array<{ provider: 'openai' | 'anthropic'; tag: string; path: string; body: any; headers: Record<string, any> }> = [];
let upstream: FastifyInstance;
let up: string;

const PRICE = { input_per_1m: 2, output_per_1m: 10 };

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const fitted = (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router;
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-gwp-')), 'r.uniroute');
  await fitted.save(routerPath);

  upstream = Fastify({ bodyLimit: 16 * 1024 * 1024 });
  // ---- an OpenAI-compatible stand-in: tags starting "fail" answer 503, "ctx" a context-length error, "cut" cut the stream
  const oa = async (req: any, reply: any) => {
    const { tag } = req.params;
    const path = req.url.slice(`/oa/${tag}/v1`.length);
    seen.push({ provider: 'openai', tag, path, body: req.body, headers: req.headers });
    if (tag.startsWith('fail')) return reply.status(503).send({ error: { message: 'overloaded', code: 'overloaded' } });
    if (tag.startsWith('ctx'))
      return reply.status(400).send({ error: { message: "This model's maximum context length is 8192 tokens.", type: 'invalid_request_error', code: 'context_length_exceeded' } });
    const b = req.body;
    if (path === '/embeddings') return { object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }], model: b.model, usage: { prompt_tokens: 8, total_tokens: 8 } };
    if (path === '/responses') return { id: 'resp_1', object: 'response', model: b.model, output: [{ type: 'message', content: [{ type: 'output_text', text: `resp:${tag}` }] }], usage: { input_tokens: 10, output_tokens: 20, total_tokens: 30 } };
    if (path === '/completions') return { id: 'cmpl_1', object: 'text_completion', model: b.model, choices: [{ index: 0, text: `cmpl:${tag}`, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } };
    const wantTool = Array.isArray(b.tools) && b.tools.length > 0 && !b.messages.some((m: any) => m.role === 'tool');
    if (b.stream) {
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: any, finish: string | null = null) => `data: ${JSON.stringify({ id: 'chatcmpl-oa', object: 'chat.completion.chunk', created: 1, model: b.model, choices: [{ index: 0, delta, finish_reason: finish }], ...(b.stream_options?.include_usage ? { usage: null } : {}) })}\n\n`;
      reply.raw.write(chunk({ role: 'assistant', content: '' }));
      if (wantTool) {
        reply.raw.write(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }));
        reply.raw.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
        reply.raw.write(chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
        reply.raw.write(chunk({}, 'tool_calls'));
      } else {
        for (const w of ['oa:', tag, ':', b.model]) {
          reply.raw.write(chunk({ content: w }));
          await new Promise((r) => setTimeout(r, 5));
        }
        if (tag.startsWith('cut')) {
          reply.raw.destroy(); // mid-answer: no [DONE], no terminating chunk
          return reply;
        }
        reply.raw.write(chunk({}, 'stop'));
      }
      if (b.stream_options?.include_usage) reply.raw.write(`data: ${JSON.stringify({ id: 'chatcmpl-oa', object: 'chat.completion.chunk', created: 1, model: b.model, choices: [], usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 } })}\n\n`);
      reply.raw.end('data: [DONE]\n\n');
      return reply;
    }
    const message = wantTool
      ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }
      : { role: 'assistant', content: `oa:${tag}:${b.model}` };
    return { id: 'chatcmpl-oa', object: 'chat.completion', created: 1, model: b.model, choices: [{ index: 0, message, finish_reason: wantTool ? 'tool_calls' : 'stop' }], usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 } };
  };
  for (const p of ['chat/completions', 'embeddings', 'responses', 'completions']) upstream.post(`/oa/:tag/v1/${p}`, oa);
  // ---- an Anthropic Messages stand-in
  upstream.post('/an/:tag/v1/messages', async (req: any, reply) => {
    const { tag } = req.params;
    seen.push({ provider: 'anthropic', tag, path: '/messages', body: req.body, headers: req.headers });
    if (!req.headers['x-api-key'] || !req.headers['anthropic-version']) return reply.status(401).send({ type: 'error', error: { type: 'authentication_error', message: 'x-api-key and anthropic-version are required' } });
    if (tag.startsWith('fail')) return reply.status(529).send({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    if (tag.startsWith('ctx')) return reply.status(400).send({ type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 300000 tokens > 200000 maximum' } });
    const b = req.body;
    const wantTool = Array.isArray(b.tools) && b.tools.length > 0 && !b.messages.some((m: any) => Array.isArray(m.content) && m.content.some((c: any) => c.type === 'tool_result'));
    const content = wantTool ? [{ type: 'tool_use', id: 'toolu_1', name: b.tools[0].name, input: { city: 'Paris' } }] : [{ type: 'text', text: `an:${tag}:${b.model}` }];
    const stop = wantTool ? 'tool_use' : 'end_turn';
    if (b.stream) {
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      const ev = (type: string, data: any) => reply.raw.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      ev('message_start', { message: { id: 'msg_an', type: 'message', role: 'assistant', model: b.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 100, output_tokens: 1 } } });
      if (wantTool) {
        ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: b.tools[0].name, input: {} } });
        ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '{"city":' } });
        ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } });
      } else {
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
        for (const w of ['an:', tag, ':', b.model]) {
          ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } });
          await new Promise((r) => setTimeout(r, 5));
        }
        if (tag.startsWith('cut')) {
          reply.raw.destroy();
          return reply;
        }
      }
      ev('content_block_stop', { index: 0 });
      ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: 50 } });
      ev('message_stop', {});
      reply.raw.end();
      return reply;
    }
    return { id: 'msg_an', type: 'message', role: 'assistant', model: b.model, content, stop_reason: stop, stop_sequence: null, usage: { input_tokens: 100, output_tokens: 50 } };
  });
  up = await upstream.listen({ port: 0, host: '127.0.0.1' });
  process.env.UNIROUTE_GWP_KEY = 'sk-upstream-0123456789';
});
afterAll(async () => upstream?.close());

const oaUrl = (tag: string) => `${up}/oa/${tag}/v1`;
const anUrl = (tag: string) => `${up}/an/${tag}/v1`;
const MATH = 'Question: integral derivative solve equation sum?';

async function gateway(doc: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const app = await buildApp({ router: await freshRouter(), config: parseConfig(doc, 'test'), ...extra });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}
const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const since = (n: number) => seen.slice(n);
const metric = (text: string, re: RegExp) => {
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
};

describe('providers: OpenAI and Anthropic, in and out', () => {
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    ({ app, url } = await gateway({
      upstreams: {
        'big-all': { provider: 'anthropic', base_url: anUrl('ok-big'), api_key_env: 'UNIROUTE_GWP_KEY', model: 'claude-x', price: PRICE },
        'cheap-math': { base_url: oaUrl('ok-math'), api_key_env: 'UNIROUTE_GWP_KEY', model: 'gpt-math', price: PRICE },
        'mid-all': { base_url: oaUrl('ok-mid') },
        'cheap-code': { provider: 'anthropic', base_url: anUrl('cut-code'), api_key_env: 'UNIROUTE_GWP_KEY' },
        'cheap-history': { base_url: oaUrl('cut-history') },
      },
    }));
  });
  afterAll(async () => app?.close());

  it('the openai client to an Anthropic upstream: system prompt, image, tools and tool results translated; answer, usage and tool calls back', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const n0 = seen.length;
    const r = await client.chat.completions.create({
      model: 'big-all',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: [{ type: 'text', text: 'What is in this picture?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] },
      ],
      temperature: 0.3,
      stop: 'END',
    });
    expect(r.choices[0].message.content).toBe('an:ok-big:claude-x');
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(r.usage).toMatchObject({ prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 });
    const got = since(n0)[0];
    expect(got.provider).toBe('anthropic');
    expect(got.headers['x-api-key']).toBe('sk-upstream-0123456789');
    expect(got.headers['anthropic-version']).toBe('2023-06-01');
    expect(got.headers.authorization).toBeUndefined();
    expect(got.body).toMatchObject({ model: 'claude-x', system: 'You are terse.', max_tokens: 4096, temperature: 0.3, stop_sequences: ['END'] });
    expect(got.body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'What is in this picture?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] }]);

    // tools: a tool call comes back as OpenAI tool_calls; the tool's result goes up as a tool_result block
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const t = await client.chat.completions.create({ model: 'big-all', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'required' });
    expect(t.choices[0].finish_reason).toBe('tool_calls');
    const call = t.choices[0].message.tool_calls![0] as any;
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
    expect(seen[seen.length - 1].body.tools).toEqual([{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }]);
    expect(seen[seen.length - 1].body.tool_choice).toEqual({ type: 'any' });
    const n1 = seen.length;
    const after = await client.chat.completions.create({
      model: 'big-all',
      messages: [{ role: 'user', content: 'Weather in Paris?' }, t.choices[0].message as any, { role: 'tool', tool_call_id: call.id, content: '18 C, sunny' }],
      tools,
    });
    expect(after.choices[0].message.content).toBe('an:ok-big:claude-x');
    expect(since(n1)[0].body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '18 C, sunny' }] },
    ]);
    // what an Anthropic upstream cannot take is refused in words
    const n2 = await post(url, '/v1/chat/completions', { model: 'big-all', n: 2, messages: [{ role: 'user', content: 'x' }] });
    expect(n2.status).toBe(400);
    expect(((await n2.json()) as any).error.message).toMatch(/`n` > 1/);
  });

  it('the openai client streams from an Anthropic upstream: text, tool-call deltas and the usage chunk it asked for', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const s = await client.chat.completions.create({ model: 'big-all', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: any;
    let finish: string | null = null;
    for await (const c of s) {
      text += c.choices[0]?.delta?.content ?? '';
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe('an:ok-big:claude-x');
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ prompt_tokens: 100, completion_tokens: 50 });
    const ts = await client.chat.completions.create({ model: 'big-all', messages: [{ role: 'user', content: 'weather?' }], tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }], stream: true });
    let args = '';
    let name = '';
    for await (const c of ts) {
      const tc = c.choices[0]?.delta?.tool_calls?.[0];
      if (tc?.function?.name) name = tc.function.name;
      args += tc?.function?.arguments ?? '';
    }
    expect(name).toBe('get_weather');
    expect(JSON.parse(args)).toEqual({ city: 'Paris' });
  });

  it('the Anthropic SDK to an OpenAI upstream (translated) and to an Anthropic one (as it is), JSON and streaming', async () => {
    const client = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
    const n0 = seen.length;
    const m = await client.messages.create({ model: 'cheap-math', max_tokens: 64, system: 'Be brief.', messages: [{ role: 'user', content: [{ type: 'text', text: 'Sum 2 and 2' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] }] });
    expect(m.type).toBe('message');
    expect(m.content[0]).toMatchObject({ type: 'text', text: 'oa:ok-math:gpt-math' });
    expect(m.stop_reason).toBe('end_turn');
    expect(m.usage).toMatchObject({ input_tokens: 1000, output_tokens: 500 });
    const sent = since(n0)[0];
    expect(sent.provider).toBe('openai');
    expect(sent.headers.authorization).toBe('Bearer sk-upstream-0123456789');
    expect(sent.body).toMatchObject({ model: 'gpt-math', max_tokens: 64 });
    expect(sent.body.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Sum 2 and 2' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] },
    ]);
    // tools both ways
    const tools = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } } }];
    const t = await client.messages.create({ model: 'cheap-math', max_tokens: 64, messages: [{ role: 'user', content: 'Weather?' }], tools, tool_choice: { type: 'any' } });
    expect(t.stop_reason).toBe('tool_use');
    expect(t.content[0]).toMatchObject({ type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } });
    expect(seen[seen.length - 1].body.tool_choice).toBe('required');
    const n1 = seen.length;
    await client.messages.create({ model: 'cheap-math', max_tokens: 64, tools, messages: [{ role: 'user', content: 'Weather?' }, { role: 'assistant', content: t.content as any }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: '18 C' }] }] });
    expect(since(n1)[0].body.messages).toEqual([
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18 C' },
    ]);
    // streaming, translated: the SDK assembles the message and its usage
    const stream = client.messages.stream({ model: 'cheap-math', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    const fin = await stream.finalMessage();
    expect(fin.content[0]).toMatchObject({ type: 'text', text: 'oa:ok-math:gpt-math' });
    expect(fin.usage.output_tokens).toBe(500);
    expect(seen[seen.length - 1].body.stream_options).toEqual({ include_usage: true });
    // Anthropic in, Anthropic out: the body goes up as it came but for the model; routed by "uniroute/..." too
    const n2 = seen.length;
    const a = await client.messages.create({ model: 'big-all', max_tokens: 32, messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'anthropic-beta': 'tools-2024-04-04' } });
    expect(a.content[0]).toMatchObject({ text: 'an:ok-big:claude-x' });
    expect(since(n2)[0].body).toEqual({ model: 'claude-x', max_tokens: 32, messages: [{ role: 'user', content: 'hello' }] });
    expect(since(n2)[0].headers['anthropic-beta']).toBe('tools-2024-04-04');
    const as = client.messages.stream({ model: 'big-all', max_tokens: 32, messages: [{ role: 'user', content: 'hello' }] });
    expect((await as.finalMessage()).content[0]).toMatchObject({ text: 'an:ok-big:claude-x' });
    const routed = await client.messages.create({ model: 'uniroute/best', max_tokens: 32, messages: [{ role: 'user', content: MATH }], metadata: { user_id: 'u1' } } as any);
    expect(routed.type).toBe('message');
    // count_tokens (Claude Code asks): the gateway's estimate, the one context windows are checked with
    const count = await client.messages.countTokens({ model: 'uniroute', messages: [{ role: 'user', content: 'x'.repeat(400) }] });
    expect(count.input_tokens).toBe(104); // 400 characters / 4 + 4 for the message
    // errors come in Anthropic's shape
    const err = await client.messages.create({ model: 'nope', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    expect(err.error.error.message).toMatch(/nope/);
  });

  it('a stream cut by the upstream ends with an error event, in the client\'s API, and a whole HTTP body', async () => {
    // OpenAI client, OpenAI upstream
    const raw = await post(url, '/v1/chat/completions', { model: 'cheap-history', messages: [{ role: 'user', content: 'x' }], stream: true });
    expect(raw.status).toBe(200);
    const text = await raw.text(); // resolves: the body was terminated, not cut (curl would exit 0)
    expect(text).toContain('oa:');
    expect(text.trim().split('\n\n').pop()).toMatch(/^data: \{"error":\{"message":"the upstream closed the stream mid-answer".*"code":"upstream_stream_cut"/);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const s = await client.chat.completions.create({ model: 'cheap-history', messages: [{ role: 'user', content: 'x' }], stream: true });
    const e = await (async () => {
      for await (const _ of s) void _;
    })().catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.APIError);
    expect(String(e.message)).toMatch(/closed the stream mid-answer/);
    // Anthropic client, Anthropic upstream: event: error
    const an = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
    const ae = await an.messages
      .stream({ model: 'cheap-code', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage()
      .catch((x) => x);
    expect(ae).toBeInstanceOf(Error);
    expect(String(ae.message)).toMatch(/closed the stream mid-answer/);
    const rawAn = await (await post(url, '/v1/messages', { model: 'cheap-code', max_tokens: 8, messages: [{ role: 'user', content: 'x' }], stream: true })).text();
    expect(rawAn).toMatch(/event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"the upstream closed the stream mid-answer"/);
    // OpenAI client, Anthropic upstream (translated): the cut still ends in an OpenAI error event
    const tr = await (await post(url, '/v1/chat/completions', { model: 'cheap-code', messages: [{ role: 'user', content: 'x' }], stream: true })).text();
    expect(tr).toMatch(/data: \{"error":\{"message":"the upstream closed the stream mid-answer"/);
  });

  it('spend is the usage the upstream reports times the price (streams too: usage asked for, the extra chunk kept from the client)', async () => {
    const m0 = await (await fetch(`${url}/metrics`)).text();
    const spent = (t: string, llm: string) => metric(t, new RegExp(`uniroute_spend_usd_total\\{model="${llm}",key="-"\\} ([0-9.e-]+)`)) || 0;
    const r = await post(url, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: MATH }] });
    expect(((await r.json()) as any).usage.prompt_tokens).toBe(1000);
    const s = await post(url, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: MATH }], stream: true });
    const sse = await s.text();
    expect(seen[seen.length - 1].body.stream_options).toEqual({ include_usage: true });
    expect(sse).not.toContain('"choices":[]'); // the client did not ask for the usage chunk
    expect(sse).toContain('data: [DONE]');
    await new Promise((res) => setTimeout(res, 50));
    const m1 = await (await fetch(`${url}/metrics`)).text();
    // 1000 input and 500 output tokens at 2 and 10 USD per million, twice
    expect(spent(m1, 'cheap-math') - spent(m0, 'cheap-math')).toBeCloseTo(2 * (1000 * 2 + 500 * 10) / 1e6, 12);
    // an Anthropic answer: 100 in, 50 out
    const b0 = spent(m1, 'big-all');
    await (await post(url, '/v1/chat/completions', { model: 'big-all', messages: [{ role: 'user', content: 'x' }] })).text();
    await new Promise((res) => setTimeout(res, 50));
    const m2 = await (await fetch(`${url}/metrics`)).text();
    expect(spent(m2, 'big-all') - b0).toBeCloseTo((100 * 2 + 50 * 10) / 1e6, 12);
    // an Anthropic stream passed through as it is: input from message_start, output from message_delta
    await (await post(url, '/v1/messages', { model: 'big-all', max_tokens: 16, messages: [{ role: 'user', content: 'x' }], stream: true })).text();
    await new Promise((res) => setTimeout(res, 50));
    const m3 = await (await fetch(`${url}/metrics`)).text();
    expect(spent(m3, 'big-all') - spent(m2, 'big-all')).toBeCloseTo((100 * 2 + 50 * 10) / 1e6, 12);
    // an upstream that refuses stream_options is not asked (stream_usage: false): the estimate per query is counted
    const { app: noUsage, url: nu } = await gateway({ upstreams: { 'cheap-math': { base_url: oaUrl('ok-nousage'), stream_usage: false, price: PRICE } } });
    try {
      const x = await post(nu, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: MATH }], stream: true });
      await x.text();
      expect(seen[seen.length - 1].body.stream_options).toBeUndefined();
      await new Promise((res) => setTimeout(res, 50));
      const est = (await freshRouter()).snapshot();
      expect(spent(await (await fetch(`${nu}/metrics`)).text(), 'cheap-math')).toBeCloseTo(est.cost[est.index.get('cheap-math')!], 6);
    } finally {
      await noUsage.close();
    }
    expect(m2).toMatch(/uniroute_answer_tokens_bucket\{le="1024",model="cheap-math",kind="input"\} \d+/);
    expect(metric(m2, /uniroute_time_to_first_token_seconds_count\{model="cheap-math"\} (\d+)/)).toBeGreaterThanOrEqual(1);
  });
});

describe('deployments, retries and failover', () => {
  it('a failing deployment is retried on its twin (backoff, one request), then its breaker keeps it out', async () => {
    const { app, url } = await gateway({
      upstreams: { 'cheap-math': { deployments: [{ base_url: oaUrl('fail-d0') }, { base_url: oaUrl('ok-d1'), model: 'twin-model' }] } },
      breaker: { failures: 2, cooldown_ms: 60_000 },
      retry: { backoff_ms: 20, max_backoff_ms: 40 },
    });
    try {
      const n0 = seen.length;
      const attempts: string[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await post(url, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: MATH }] });
        expect(r.status).toBe(200);
        expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
        attempts.push(r.headers.get('x-uniroute-attempts')!);
        expect(((await r.json()) as any).choices[0].message.content).toBe('oa:ok-d1:twin-model');
      }
      const hits = since(n0).map((s) => s.tag);
      // the failing twin was tried twice (its breaker opens at 2), each time followed by the healthy one
      expect(hits.filter((t) => t === 'fail-d0')).toHaveLength(2);
      expect(hits.filter((t) => t === 'ok-d1')).toHaveLength(6);
      expect(attempts.filter((a) => a === '2')).toHaveLength(2);
      expect(attempts.filter((a) => a === '1')).toHaveLength(4);
      const m = await (await fetch(`${url}/metrics`)).text();
      expect(m).toMatch(/uniroute_upstream_breaker_open\{model="cheap-math",deployment="0"\} 1/);
      expect(m).toMatch(/uniroute_upstream_breaker_open\{model="cheap-math",deployment="1"\} 0/);
    } finally {
      await app.close();
    }
  });

  it('weights share the load: 3:1 over 40 requests', async () => {
    const { app, url } = await gateway({ upstreams: { 'cheap-math': { deployments: [{ base_url: oaUrl('ok-w3'), weight: 3 }, { base_url: oaUrl('ok-w1'), weight: 1 }] } } });
    try {
      const n0 = seen.length;
      for (let i = 0; i < 40; i++) await (await post(url, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: 'x' }] })).text();
      const hits = since(n0).map((s) => s.tag);
      expect(hits.filter((t) => t === 'ok-w3')).toHaveLength(30);
      expect(hits.filter((t) => t === 'ok-w1')).toHaveLength(10);
    } finally {
      await app.close();
    }
  });

  it('failover order: the LLM\'s fallbacks in order, then the router\'s next-best; attempts counted as calls', async () => {
    const { app, url } = await gateway({
      upstreams: {
        'big-all': { base_url: oaUrl('fail-big'), fallbacks: ['mid-all', 'cheap-code'] },
        'mid-all': { base_url: oaUrl('fail-mid') },
        'cheap-code': { base_url: oaUrl('fail-code') },
        'cheap-math': { base_url: oaUrl('ok-math') },
        'cheap-history': { base_url: oaUrl('ok-history') },
      },
      retry: { attempts: 5 },
    });
    try {
      const n0 = seen.length;
      // λ 0 picks big-all for a math prompt; it fails, then its fallbacks in order, then the router's next-best
      const r = await post(url, '/v1/chat/completions', { model: 'uniroute/best', messages: [{ role: 'user', content: MATH }] });
      expect(r.status).toBe(200);
      const order = since(n0).map((s) => s.tag);
      expect(order.slice(0, 3)).toEqual(['fail-big', 'fail-mid', 'fail-code']);
      expect(order[3]).toBe('ok-math'); // the best of the rest for a math prompt
      expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
      expect(r.headers.get('x-uniroute-attempts')).toBe('4');
      await r.text();
      // a named LLM fails over to its fallbacks only, and the count says how many calls were made
      const n1 = seen.length;
      const d = await post(url, '/v1/chat/completions', { model: 'big-all', messages: [{ role: 'user', content: MATH }] });
      expect(d.status).toBe(503);
      expect(d.headers.get('x-uniroute-attempts')).toBe('3');
      expect(since(n1).map((s) => s.tag)).toEqual(['fail-big', 'fail-mid', 'fail-code']);
    } finally {
      await app.close();
    }
  });

  it('the breaker holds on direct requests: 503 with the reason and Retry-After, no call made', async () => {
    const { app, url } = await gateway({ upstreams: { 'cheap-code': { base_url: oaUrl('fail-direct') } }, breaker: { failures: 2, cooldown_ms: 30_000 } });
    try {
      for (let i = 0; i < 2; i++) expect((await post(url, '/v1/chat/completions', { model: 'cheap-code', messages: [{ role: 'user', content: 'x' }] })).status).toBe(503);
      const n0 = seen.length;
      const r = await post(url, '/v1/chat/completions', { model: 'cheap-code', messages: [{ role: 'user', content: 'x' }] });
      expect(r.status).toBe(503);
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(29);
      expect(r.headers.get('x-uniroute-attempts')).toBe('0');
      const j = (await r.json()) as any;
      expect(j.error.code).toBe('upstream_breaker_open');
      expect(j.error.message).toMatch(/"cheap-code" is cooling down.*circuit breaker open/);
      expect(since(n0)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });
});

describe('the upstream call on its own (as a batch job would use it)', () => {
  it('callLLM: a deployment picked, a failing twin retried, fallbacks, the answer buffered, its usage and cost', async () => {
    const cfg = parseConfig({ upstreams: { a: { deployments: [{ base_url: oaUrl('fail-solo') }, { base_url: oaUrl('fail-solo2') }], fallbacks: ['b'] }, b: { provider: 'anthropic', base_url: anUrl('ok-solo'), api_key_env: 'UNIROUTE_GWP_KEY', price: PRICE } }, retry: { backoff_ms: 1 } }, 't');
    const upstreams = new Map([...cfg.upstreams].map(([n, u]) => [n, new LlmUpstream(n, u, cfg.breaker)]));
    try {
      const buffered = new BufferedResponse();
      const attempts: string[] = [];
      const out = await callLLM(
        { api: 'chat', body: { model: 'a', messages: [{ role: 'user', content: 'hi' }] }, stream: false, requestId: 'r1', signal: new RequestSignal() },
        {
          upstreams,
          retry: cfg.retry,
          errorBytes: 65536,
          first: 'a',
          next: (tried, failed) => upstreams.get(failed)!.cfg.fallbacks.find((f) => !tried.has(f)),
          client: () => buffered.response,
          onAttempt: (x) => attempts.push(`${x.llm}#${x.deployment}:${x.outcome}`),
        },
      );
      expect(out.ok).toBe(true);
      if (!out.ok) return;
      expect(out).toMatchObject({ llm: 'b', attempts: 3 });
      expect(attempts).toEqual(expect.arrayContaining(['a#0:overloaded', 'a#1:overloaded', 'b#0:ok']));
      const { usage } = await out.done;
      const answer = await buffered.answer();
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body.toString()).choices[0].message.content).toBe('an:ok-solo:b'); // translated to OpenAI's shape
      expect(usage).toEqual({ input: 100, output: 50 });
      expect(answerCost(upstreams.get('b')!.cfg.price, usage, 0.5)).toEqual({ cost: (100 * 2 + 50 * 10) / 1e6, fromUsage: true });
    } finally {
      await Promise.all([...upstreams.values()].map((u) => u.close()));
    }
  });
});

describe('context windows', () => {
  it('an LLM whose window is too small is not a candidate; an upstream\'s context-length error fails over to a larger window', async () => {
    const long = `${MATH} ${'integral equation solve sum prime '.repeat(60)}`; // ~2,000 characters: ~500 tokens
    const { app, url } = await gateway({
      upstreams: {
        'cheap-math': { base_url: oaUrl('ok-small'), context_window: 100 },
        'big-all': { base_url: oaUrl('ok-large'), context_window: 200_000 },
        'mid-all': { base_url: oaUrl('ctx-mid'), context_window: 8192 },
        'cheap-history': { provider: 'anthropic', base_url: anUrl('ctx-hist'), api_key_env: 'UNIROUTE_GWP_KEY', context_window: 9000 },
      },
    });
    try {
      // a short math prompt at a high λ goes to cheap-math; a long one never does
      const short = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { models: ['cheap-math', 'big-all'], lambda: 10 }, messages: [{ role: 'user', content: MATH }] });
      expect(short.headers.get('x-uniroute-model')).toBe('cheap-math');
      await short.text();
      const r = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { models: ['cheap-math', 'big-all'], lambda: 10 }, messages: [{ role: 'user', content: long }] });
      expect(r.headers.get('x-uniroute-model')).toBe('big-all');
      await r.text();
      // named directly, too long: a clear 400
      const d = await post(url, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: long }] });
      expect(d.status).toBe(400);
      const dj = (await d.json()) as any;
      expect(dj.error.code).toBe('context_length_exceeded');
      expect(dj.error.message).toMatch(/about \d+ tokens; "cheap-math"'s context window is 100/);
      // the upstream says too long (OpenAI's code, Anthropic's words): on to an LLM with a larger window
      for (const first of ['mid-all', 'cheap-history']) {
        const n0 = seen.length;
        const f = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { models: [first, 'big-all'], lambda: 10 }, messages: [{ role: 'user', content: MATH }] });
        expect(f.status).toBe(200);
        expect(since(n0).map((s) => s.tag)).toEqual([first === 'mid-all' ? 'ctx-mid' : 'ctx-hist', 'ok-large']);
        expect(f.headers.get('x-uniroute-model')).toBe('big-all');
        await f.text();
      }
      // nothing large enough
      const huge = await post(url, '/v1/chat/completions', { model: 'uniroute', messages: [{ role: 'system', content: 'sum '.repeat(250_000) }, { role: 'user', content: MATH }] });
      expect(huge.status).toBe(400);
      expect(((await huge.json()) as any).error.message).toMatch(/no LLM's context window takes it \(the largest is 200000\)/);
    } finally {
      await app.close();
    }
  });
});

describe('routing per request, the config missing, the model list', () => {
  let app: FastifyInstance;
  let url: string;
  beforeAll(async () => {
    const names = ['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'];
    ({ app, url } = await gateway({ upstreams: Object.fromEntries(names.map((n) => [n, { base_url: oaUrl(`ok-${n}`) }])), presets: { thrifty: { lambda: 1 } } }));
  });
  afterAll(async () => app?.close());

  it('the uniroute object: only these LLMs, at most this cost, a quality floor; echoed; stripped before the upstream', async () => {
    const n0 = seen.length;
    const only = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { models: ['cheap-history'] }, messages: [{ role: 'user', content: MATH }] });
    expect(only.headers.get('x-uniroute-model')).toBe('cheap-history');
    expect(JSON.parse(only.headers.get('x-uniroute-routing')!)).toEqual({ models: ['cheap-history'] });
    await only.text();
    expect(since(n0)[0].body.uniroute).toBeUndefined();
    // at most 0.5 per query: big-all (2.0) never, though λ 0 would take it
    const capped = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { max_cost: 0.5 }, messages: [{ role: 'user', content: MATH }] });
    expect(['cheap-math', 'mid-all']).toContain(capped.headers.get('x-uniroute-model'));
    expect(capped.headers.get('x-uniroute-lambda')).toBe('0');
    await capped.text();
    const best = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { lambda: 0 }, messages: [{ role: 'user', content: MATH }] });
    expect(best.headers.get('x-uniroute-model')).toBe('big-all');
    await best.text();
    // tradeoff 1: the cheapest LLM; max_error: the cheapest good enough
    const cheap = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: { tradeoff: 1, models: ['cheap-math', 'big-all'] }, messages: [{ role: 'user', content: MATH }] });
    expect(cheap.headers.get('x-uniroute-model')).toBe('cheap-math');
    await cheap.text();
    const floor = await post(url, '/v1/chat/completions', { model: 'uniroute/thrifty', uniroute: { min_accuracy: 0.99, models: ['cheap-code', 'big-all'] }, messages: [{ role: 'user', content: MATH }] });
    expect(floor.headers.get('x-uniroute-model')).toBe('big-all');
    await floor.text();
    // errors name the field, in words
    const cases: Array<[unknown, number, RegExp]> = [
      [{ lamda: 1 }, 400, /uniroute\.lamda: unknown field \(did you mean "lambda"\?\)/],
      [{ models: ['ghost'] }, 404, /uniroute\.models\[0\]: "ghost" is not in the pool/],
      [{ tradeoff: 2 }, 400, /uniroute\.tradeoff: expected a number in \[0, 1\], got 2/],
      [{ lambda: 1, max_error: 0.2 }, 400, /give one of lambda, tradeoff, max_error, min_accuracy, not lambda and max_error/],
      [{ max_cost: 0.01 }, 400, /uniroute\.max_cost: no LLM with an upstream costs at most 0\.01 per query \(the cheapest costs 0\.1/],
      ['fast', 400, /uniroute: expected an object/],
    ];
    for (const [u, status, msg] of cases) {
      const r = await post(url, '/v1/chat/completions', { model: 'uniroute', uniroute: u, messages: [{ role: 'user', content: MATH }] });
      expect(r.status, JSON.stringify(u)).toBe(status);
      expect(((await r.json()) as any).error.message).toMatch(msg);
    }
    const direct = await post(url, '/v1/chat/completions', { model: 'cheap-math', uniroute: { lambda: 1 }, messages: [{ role: 'user', content: MATH }] });
    expect(direct.status).toBe(400);
    expect(((await direct.json()) as any).error.message).toMatch(/steers routed requests/);
  });

  it('/v1/models lists the pool, the aliases and the presets; the openai client reads it', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(['cheap-math', 'big-all', 'uniroute', 'uniroute/best', 'uniroute/default', 'uniroute/thrifty']));
  });

  it('no upstream for the chosen LLMs: 500 naming --config, and the OpenAI SDK does not retry it', async () => {
    const bare = await buildApp({ router: await freshRouter() });
    const burl = await bare.listen({ port: 0, host: '127.0.0.1' });
    try {
      const r = await post(burl, '/v1/chat/completions', { model: 'uniroute', messages: [{ role: 'user', content: MATH }] });
      expect(r.status).toBe(500);
      expect(r.headers.get('retry-after')).toBeNull();
      expect(r.headers.get('x-should-retry')).toBe('false');
      const j = (await r.json()) as any;
      expect(j.error.code).toBe('no_upstream');
      expect(j.error.message).toMatch(/--config/);
      let calls = 0;
      const client = new OpenAI({ baseURL: `${burl}/v1`, apiKey: 'unused', maxRetries: 2, fetch: (u: any, i: any) => (calls++, fetch(u, i)) });
      const e = await client.chat.completions.create({ model: 'uniroute', messages: [{ role: 'user', content: MATH }] }).catch((x) => x);
      expect(e.status).toBe(500);
      expect(calls).toBe(1);
      // a pool LLM named directly without an upstream says the same
      const d = await post(burl, '/v1/chat/completions', { model: 'cheap-math', messages: [{ role: 'user', content: 'x' }] });
      expect(d.status).toBe(500);
      expect(((await d.json()) as any).error.message).toMatch(/"cheap-math" has no upstream.*--config/);
    } finally {
      await bare.close();
    }
  });

  it('pass-through: /v1/embeddings, /v1/responses, /v1/completions go to the named LLM\'s upstream', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const n0 = seen.length;
    const e = await client.embeddings.create({ model: 'cheap-math', input: 'hello', encoding_format: 'float' });
    expect(e.data[0].embedding).toEqual([0.1, 0.2]);
    expect(since(n0)[0]).toMatchObject({ tag: 'ok-cheap-math', path: '/embeddings', body: { model: 'cheap-math', input: 'hello', encoding_format: 'float' } });
    const resp = (await (await post(url, '/v1/responses', { model: 'big-all', input: 'hi' })).json()) as any;
    expect(resp.output[0].content[0].text).toBe('resp:ok-big-all');
    const c = await client.completions.create({ model: 'mid-all', prompt: 'Say' });
    expect(c.choices[0].text).toBe('cmpl:ok-mid-all');
    const bad = await post(url, '/v1/embeddings', { model: 'uniroute', input: 'x' });
    expect(bad.status).toBe(404);
    expect(((await bad.json()) as any).error.message).toMatch(/not an LLM with an upstream/);
  });
});

describe('traces', () => {
  it('a span for the request, the decision and each upstream attempt (LLM, cluster, attempt, outcome); none without an SDK', async () => {
    const { app, url } = await gateway({ upstreams: { 'big-all': { base_url: oaUrl('fail-tr') }, 'cheap-math': { base_url: oaUrl('ok-tr') } }, retry: { attempts: 2 } });
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    try {
      await (await post(url, '/v1/chat/completions', { model: 'uniroute/best', messages: [{ role: 'user', content: MATH }] })).text();
      expect(exporter.getFinishedSpans()).toHaveLength(0); // no SDK registered: nothing recorded
      trace.setGlobalTracerProvider(provider);
      const r = await post(url, '/v1/chat/completions', { model: 'uniroute/best', messages: [{ role: 'user', content: MATH }] });
      expect(r.headers.get('x-uniroute-model')).toBe('cheap-math');
      await r.text();
      await new Promise((res) => setTimeout(res, 20));
      const spans = exporter.getFinishedSpans();
      const root = spans.find((s) => s.name === 'uniroute /v1/chat/completions')!;
      expect(root.attributes).toMatchObject({ 'uniroute.llm': 'cheap-math', 'uniroute.attempts': 2, 'uniroute.outcome': 'ok' });
      const decides = spans.filter((s) => s.name === 'uniroute.decide');
      expect(decides.map((s) => s.attributes['uniroute.llm'])).toEqual(['big-all', 'cheap-math']);
      expect(typeof decides[0].attributes['uniroute.cluster']).toBe('number');
      const ups = spans.filter((s) => s.name === 'uniroute.upstream');
      expect(ups.map((s) => [s.attributes['uniroute.llm'], s.attributes['uniroute.attempt'], s.attributes['uniroute.outcome']])).toEqual([
        ['big-all', 1, 'overloaded'],
        ['cheap-math', 2, 'ok'],
      ]);
      for (const s of [...decides, ...ups]) expect(s.parentSpanContext?.spanId ?? (s as any).parentSpanId).toBe(root.spanContext().spanId);
    } finally {
      trace.disable();
      await provider.shutdown();
      await app.close();
    }
  });
});
