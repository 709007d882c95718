/** The remote (OpenAI-compatible) embedder against a stand-in embedding server written here. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { RemoteEmbedder, parseEmbedderArg } from '../src/embed/remote.js';
import { UnirouteError } from '../src/errors.js';
import { makeSyntheticDataset, randomTexts, NODE_CLI_FLAGS } from './helpers.js';

const DIM = 24;
const KEY = 'sk-test-secret-123';
const state = { fail429: 0, fail500: 0, slowMs: 0, dim: DIM, requests: 0, badRequest: false, lastAuth: '' };

/** A deterministic embedding: hashed words, L2-normalised. */
function vec(text: string, dim: number): number[] {
  const v = new Array(dim).fill(0);
  for (const w of text.toLowerCase().split(/\W+/).filter(Boolean)) {
    let h = 2166136261;
    for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 16777619) >>> 0;
    v[h % dim] += 1;
  }
  const n = Math.hypot(...v) || 1;
  return v.map((x) => x / n);
}

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      state.requests++;
      state.lastAuth = String(req.headers.authorization ?? '');
      const send = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(obj));
      };
      if (req.url !== '/v1/embeddings' || req.method !== 'POST') return send(404, { error: { message: 'not found' } });
      if (state.fail429 > 0) {
        state.fail429--;
        return send(429, { error: { message: 'rate limited' } }, { 'retry-after': '0' });
      }
      if (state.fail500 > 0) {
        state.fail500--;
        return send(500, { error: { message: 'boom' } });
      }
      // an upstream that echoes what it was sent, key included
      if (state.badRequest) return send(400, { error: { message: `bad request with ${state.lastAuth}` } });
      const { input, model } = JSON.parse(body);
      const reply = () =>
        send(200, { object: 'list', model, data: (input as string[]).map((t, index) => ({ object: 'embedding', index, embedding: vec(t, state.dim) })) });
      if (state.slowMs) setTimeout(reply, state.slowMs);
      else reply();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  process.env.UNIROUTE_TEST_EMBED_KEY = KEY;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const reset = () => Object.assign(state, { fail429: 0, fail500: 0, slowMs: 0, dim: DIM, badRequest: false });

describe('remote embedder', () => {
  it('fit -> save -> load -> route through a stand-in OpenAI-compatible endpoint', async () => {
    reset();
    const ds = await loadDataset(makeSyntheticDataset(450, 13));
    const remote = new RemoteEmbedder(parseEmbedderArg(`openai:stand-in-embed@${base}`), { batchSize: 50, concurrency: 3, keyEnv: 'UNIROUTE_TEST_EMBED_KEY' });
    const { router } = await fitRouter(ds, { seed: 1, remoteEmbedder: remote, clusters: 3 });
    expect(router.embedderSpec).toMatchObject({ kind: 'openai', model: 'stand-in-embed', dim: DIM });
    expect(state.lastAuth).toBe(`Bearer ${KEY}`);
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-remote-')), 'r.uniroute');
    await router.save(file);
    // the file names its endpoint; the operator allows it (and names no key: none is sent)
    const loaded = await Router.load(file, undefined, { embedder: { trustFileUrl: true } });
    const texts = randomTexts(60, 4);
    const a = await loaded.routeBatch(texts, { lambda: 0.1 });
    // the same as routing the endpoint's vectors directly
    const e = Float32Array.from(texts.flatMap((t) => vec(t, DIM)));
    const b = await loaded.routeEmbeddings(e, { lambda: 0.1 });
    expect(Array.from(a.choice)).toEqual(Array.from(b.choice));
    // math prompts go to the math specialist at a moderate lambda
    const d = await loaded.route(['Question: integral derivative solve equation algebra?'], { lambda: 0.3 });
    expect(d[0].model).toBe('cheap-math');
    // onboarding an LLM through the endpoint
    const info = await loaded.addModel('new-llm', { costPerQuery: 0.05, outcomes: texts.map((text, i) => ({ text, correct: i % 2 })) });
    expect(info.outcomes).toBe(60);
    // and the CLI routes with it
    const input = join(mkdtempSync(join(tmpdir(), 'uniroute-remote-')), 'in.jsonl');
    writeFileSync(input, texts.slice(0, 5).map((text, i) => JSON.stringify({ id: i, text })).join('\n') + '\n');
    // (asynchronously: the stand-in server runs in this process)
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
      const c = spawn(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), 'route', '--router', file, '--input', input, '--quiet', '--trust-embedder-url']);
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d) => (stdout += d));
      c.stderr.on('data', (d) => (stderr += d));
      c.on('close', (status) => done({ status, stdout, stderr }));
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(5);
  });

  it('retries 429 (honouring Retry-After) and 5xx, then succeeds', async () => {
    reset();
    state.fail429 = 2;
    state.fail500 = 1;
    const before = state.requests;
    const remote = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: base, dim: DIM }, { backoffMs: 5 });
    const out = await remote.embed(['one two', 'three']);
    expect(out.length).toBe(2 * DIM);
    expect(state.requests - before).toBe(4);
  });

  it('times out a slow endpoint, refuses a wrong dimension, and does not retry a client error nor echo the key', async () => {
    reset();
    state.slowMs = 500;
    const slow = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: base, dim: DIM }, { timeoutMs: 100, attempts: 2, backoffMs: 1 });
    await expect(slow.embed(['x'])).rejects.toThrow(/timed out after 100 ms/);
    reset();
    state.dim = DIM - 1;
    const wrong = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: base, dim: DIM });
    await expect(wrong.embed(['x'])).rejects.toMatchObject({ code: 'DIMENSION_MISMATCH' });
    reset();
    state.badRequest = true;
    const before = state.requests;
    const bad = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: base, dim: DIM }, { backoffMs: 1, keyEnv: 'UNIROUTE_TEST_EMBED_KEY' });
    const err = await bad.embed(['x']).catch((e) => e);
    expect(err).toBeInstanceOf(UnirouteError);
    expect(err.code).toBe('EMBEDDER_FAILED');
    expect(err.message).toMatch(/HTTP 400/);
    expect(err.message).not.toContain(KEY);
    expect(state.requests - before).toBe(1);
    // nothing listening
    const gone = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: 'http://127.0.0.1:9/v1', dim: DIM }, { attempts: 2, backoffMs: 1 });
    await expect(gone.embed(['x'])).rejects.toThrow(/ECONNREFUSED|fetch failed/);
    reset();
  });

  it('parses --embedder and refuses credentials in the URL', () => {
    expect(parseEmbedderArg('openai:text-embedding-3-small@https://api.example.com/v1/')).toEqual({
      kind: 'openai',
      model: 'text-embedding-3-small',
      baseUrl: 'https://api.example.com/v1',
    });
    expect(() => parseEmbedderArg('openai:m')).toThrow(/openai:MODEL@BASE_URL/);
    expect(() => parseEmbedderArg('openai:m@https://user:pw@example.com/v1')).toThrow(/environment variable/);
  });
});

describe('every embedder through fit, eval, route and the server', () => {
  it('eval runs on the remote endpoint\'s vectors and on precomputed ones, and they agree', async () => {
    reset();
    const { evaluate } = await import('../src/eval/protocol.js');
    const ds = await loadDataset(makeSyntheticDataset(450, 17));
    const common = { seeds: 1, methods: ['uniroute-kmeans', 'zero-router'], valPrompts: [60], kGrid: [3] };
    const viaRemote = await evaluate(ds, { ...common, remoteEmbedder: new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: base, dim: 0 }) });
    const data = Float32Array.from(ds.prompts.flatMap((p) => vec(p.text, DIM)));
    const viaVectors = await evaluate(ds, { ...common, promptEmbeddings: { spec: { kind: 'precomputed', dim: DIM }, data } });
    expect(viaRemote.methods['uniroute-kmeans'].audc.mean).toBeGreaterThan(viaRemote.methods['zero-router'].audc.mean);
    expect(viaRemote.methods['uniroute-kmeans'].audc.mean).toBeCloseTo(viaVectors.methods['uniroute-kmeans'].audc.mean, 6);
  });

  it('the server routes and onboards on your own embeddings, and says which input a router takes', async () => {
    const { buildApp } = await import('../src/server/app.js');
    const ds = await loadDataset(makeSyntheticDataset(450, 19));
    const data = Float32Array.from(ds.prompts.flatMap((p) => vec(p.text, DIM)));
    const { router } = await fitRouter(ds, { seed: 1, clusters: 3, embeddings: { dim: DIM, data, name: 'my-embed' } });
    const app = await buildApp({ router, adminToken: 't', routerPath: join(mkdtempSync(join(tmpdir(), 'uniroute-pre-')), 'r.uniroute') });
    try {
      const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
        app.inject({ method: 'POST', url, payload: payload as any, headers: { 'content-type': 'application/json', ...headers } });
      const one = await post('/v1/route', { embedding: vec('Question: integral derivative solve?', DIM), lambda: 0.3 });
      expect(one.statusCode, one.body).toBe(200);
      expect(one.json().decisions[0].model).toBe('cheap-math');
      const many = await post('/v1/route', { embeddings: randomTexts(4, 3).map((t) => vec(t, DIM)) });
      expect(many.json().decisions).toHaveLength(4);
      const text = await post('/v1/route', { prompt: 'hello there' });
      expect(text.statusCode).toBe(400);
      expect(text.json().error.message).toMatch(/embedding/);
      const wrong = await post('/v1/route', { embedding: [1, 2, 3] });
      expect(wrong.statusCode).toBe(400);
      expect(wrong.json().error.code).toBe('DIMENSION_MISMATCH');
      const add = await post(
        '/v1/models',
        { name: 'new-llm', cost_per_query: 0.01, outcomes: randomTexts(30, 8).map((t, i) => ({ embedding: vec(t, DIM), correct: i % 2 })) },
        { authorization: 'Bearer t' },
      );
      expect(add.statusCode, add.body).toBe(201);
    } finally {
      await app.close();
    }
  });
});
