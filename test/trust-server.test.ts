/**
 * The server's trust boundaries (issue 26): label suggestions behind the admin token, bounded and off the event
 * loop (a flood of them while routing); every credential form redacted in bodies, headers and logs (echoing
 * stand-in upstreams, ?token= in the log); every error body in the documented shape (bad %-encoding, 431, 400).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router } from '../src/router/router.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { makeSyntheticDataset, randomTexts, startServe } from './helpers.js';

const TOKEN = 'admin-token-0123456789';
const KEY = 'sk-upstream-key-0123456789';
const USER = 'proxyuser';
const PASS = 'pr0xy-pa55word-xyz';
let routerPath: string;
let file: Buffer;

/** An upstream that echoes what it was sent: the Authorization in a 401's body, and in a header of a 200. */
let echo: Server;
let echoUrl: string;

beforeAll(async () => {
  const ds = await loadDataset(makeSyntheticDataset(450, 31));
  const { router } = await fitRouter(ds, { seed: 1, clusters: 3, embedder: { bucketsLog2: 12, dim: 32 } });
  file = router.toArtifact();
  routerPath = join(mkdtempSync(join(tmpdir(), 'uniroute-tsrv-')), 'r.uniroute');
  await router.save(routerPath);
  echo = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const auth = String(req.headers.authorization ?? '');
      if (req.url!.startsWith('/deny/')) {
        res.writeHead(401, { 'content-type': 'application/json', 'x-request-id': `req-${auth}` });
        res.end(JSON.stringify({ error: { message: `invalid credentials: ${auth} (${auth.replace(/^\w+ /, '')})`, code: 'invalid_api_key' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': auth, 'x-debug': `seen=${auth.replace(/^\w+ /, '')}; decoded ${auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : auth}` });
      res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
    });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
  process.env.UNIROUTE_TSRV_KEY = KEY;
});
afterAll(() => new Promise<void>((r) => echo.close(() => r())));

const json = { 'content-type': 'application/json' };

describe('label suggestions: behind the admin token, bounded, off the event loop', () => {
  it('refuses without the token, caps the candidates, runs one at a time, and a flood of them leaves /v1/route fast', async () => {
    // the server in a process of its own: the clients' work here does not count against it
    const s = await startServe(['--router', routerPath, '--max-prompts', '256'], { UNIROUTE_ADMIN_TOKEN: TOKEN });
    const url = s.url;
    try {
      const body = (n: number, len = 800) => JSON.stringify({ prompts: randomTexts(n, 3).map((t) => `${t} ${'integral python empire '.repeat(len / 23)}`), budget: 20 });
      const post = (b: string, auth = true) => fetch(`${url}/v1/models/new-llm/suggest`, { method: 'POST', headers: { ...json, ...(auth ? { authorization: `Bearer ${TOKEN}` } : {}) }, body: b });
      const noToken = await post(body(4), false);
      expect(noToken.status).toBe(401);
      expect(((await noToken.json()) as any).error.code).toBe('UNAUTHORIZED');
      const tooMany = await post(body(256 * 16 + 1, 10));
      expect(tooMany.status).toBe(400);
      const ok = await post(body(50));
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as any).suggestions).toHaveLength(20);
      const route = async () => {
        const t0 = performance.now();
        const r = await fetch(`${url}/v1/route`, { method: 'POST', headers: json, body: JSON.stringify({ prompt: 'Question: integral derivative solve?' }) });
        expect(r.status).toBe(200);
        await r.arrayBuffer();
        return performance.now() - t0;
      };
      const p99 = (t: number[]) => t.sort((a, b) => a - b)[Math.floor(t.length * 0.99)];
      const during = async (ms: number) => {
        const times: number[] = [];
        const t0 = Date.now();
        while (Date.now() - t0 < ms) times.push(await route());
        return times;
      };
      const quiet = await during(1500);
      // four clients send 4,096-prompt suggestions (about 3.5 MB each) for 3 s while a fifth routes
      const big = body(256 * 16);
      expect(big.length).toBeGreaterThan(3_000_000);
      let stop = false;
      const statuses: number[] = [];
      const flood = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const r = await post(big).catch(() => undefined);
          if (!r) continue;
          statuses.push(r.status);
          if (r.status === 503) expect(r.headers.get('retry-after')).toBe('1');
          await r.arrayBuffer().catch(() => undefined);
        }
      });
      const busy = await during(3000);
      stop = true;
      await Promise.all(flood);
      const median = (t: number[]) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
      console.log(
        `suggest flood: /v1/route p50 ${median(busy).toFixed(1)} ms, p99 ${p99(busy).toFixed(1)} ms over ${busy.length} requests (without it: p50 ${median(quiet).toFixed(1)}, p99 ${p99(quiet).toFixed(1)} over ${quiet.length}); ` +
          `suggestions: ${statuses.filter((x) => x === 200).length} answered, ${statuses.filter((x) => x === 503).length} told to retry`,
      );
      expect(statuses).toContain(200);
      expect(statuses).toContain(503); // one at a time: the others are told to come back, before their body is read
      // routing goes on between the slices of the one suggestion at work (before: 0.9 s of the event loop per request)
      expect(busy.length).toBeGreaterThanOrEqual(8);
      expect(median(busy)).toBeLessThan(250);
    } finally {
      const done = new Promise((r) => s.proc.once('exit', r));
      s.proc.kill('SIGTERM');
      await done;
    }
  });
});

describe('credentials are redacted in bodies, headers and logs', () => {
  it('an upstream echoing Basic credentials from base_url or a Bearer key: redacted in the error body and in a 200\'s headers', async () => {
    const config = parseConfig(
      {
        upstreams: {
          'cheap-math': { base_url: `http://${USER}:${PASS}@127.0.0.1:${new URL(echoUrl).port}/deny/v1`, model: 'm' },
          'big-all': { base_url: `${echoUrl}/deny/v1`, api_key_env: 'UNIROUTE_TSRV_KEY', model: 'm' },
          'mid-all': { base_url: `http://${USER}:${PASS}@127.0.0.1:${new URL(echoUrl).port}/ok/v1`, model: 'm' },
          'cheap-code': { base_url: `${echoUrl}/ok/v1`, api_key_env: 'UNIROUTE_TSRV_KEY', model: 'm' },
        },
        retry: { attempts: 1 },
      },
      'test',
    );
    const app = await buildApp({ router: Router.fromArtifact(file), config });
    const basic = Buffer.from(`${USER}:${PASS}`).toString('base64');
    const leaks = (s: string) => [KEY, PASS, basic, basic.replace(/=+$/, ''), `${USER}:${PASS}`].filter((x) => s.includes(x));
    try {
      for (const model of ['cheap-math', 'big-all']) {
        const r = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: json, payload: { model, messages: [{ role: 'user', content: 'hi' }] } });
        expect(r.statusCode, model).toBe(401);
        expect(r.json().error.message, model).toMatch(/invalid credentials: ((Basic|Bearer) )?\[redacted\] \(\[redacted\]\)/);
        expect(leaks(r.body), model).toEqual([]);
        expect(leaks(JSON.stringify(r.headers)), model).toEqual([]);
      }
      for (const model of ['mid-all', 'cheap-code']) {
        const r = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: json, payload: { model, messages: [{ role: 'user', content: 'hi' }] } });
        expect(r.statusCode, model).toBe(200);
        expect(r.headers["x-echo-auth"], model).toMatch(/^((Basic|Bearer) )?\[redacted\]$/);
        expect(leaks(JSON.stringify(r.headers)), model).toEqual([]);
      }
    } finally {
      await app.close();
    }
  });

  it('a token sent as ?token= (or ?api_key=) never reaches an error body', async () => {
    const app = await buildApp({ router: Router.fromArtifact(file), adminToken: TOKEN });
    try {
      const r = await app.inject({ method: 'GET', url: `/nowhere?api_key=${KEY}&token=${TOKEN}` });
      expect(r.statusCode).toBe(404);
      expect(r.json().error.message).toBe('no route GET /nowhere?api_key=[redacted]&token=[redacted]');
    } finally {
      await app.close();
    }
  });

  it('a real `serve --log`: the query token is redacted in its output', async () => {
    const s = await startServe(['--router', routerPath, '--log'], { UNIROUTE_ADMIN_TOKEN: TOKEN });
    try {
      await (await fetch(`${s.url}/v1/models?token=${TOKEN}`)).arrayBuffer();
      await new Promise((r) => setTimeout(r, 200));
      expect(s.out()).toMatch(/token=\[redacted\]/);
      expect(s.out() + s.err()).not.toContain(TOKEN);
    } finally {
      const done = new Promise((r) => s.proc.once('exit', r));
      s.proc.kill('SIGTERM');
      await done;
    }
  });
});

describe('every error body in the documented shape', () => {
  let url: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const app = await buildApp({ router: Router.fromArtifact(file), adminToken: TOKEN, routerPath: join(mkdtempSync(join(tmpdir(), 'uniroute-shape-')), 'r.uniroute') });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
    close = () => app.close();
  });
  afterAll(async () => close());

  /** A raw request on a socket: status line, and the JSON body. */
  const raw = (text: string) =>
    new Promise<{ status: number; body: any }>((ok, fail) => {
      const u = new URL(url);
      const s = connect(Number(u.port), u.hostname, () => s.write(text));
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('error', () => undefined);
      s.on('close', () => {
        const [head, ...rest] = got.split('\r\n\r\n');
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]);
        try {
          ok({ status, body: JSON.parse(rest.join('\r\n\r\n')) });
        } catch (e) {
          fail(new Error(`not JSON: ${got.slice(0, 300)} (${e})`));
        }
      });
    });
  const shaped = (body: any) => {
    expect(Object.keys(body)).toEqual(['error']);
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message']);
    expect(typeof body.error.code).toBe('string');
    expect(typeof body.error.message).toBe('string');
  };

  it('bad percent-encoding in a path, headers too large, a request that is not HTTP', async () => {
    for (const path of ['/v1/models/%E0%A4%A', '/v1/models/a%2', '/v1/models/%']) {
      const r = await fetch(`${url}${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
      expect(r.status, path).toBe(400);
      const b = await r.json();
      shaped(b);
      expect((b as any).error.message).toMatch(/not valid percent-encoding/);
    }
    const big = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(big.status).toBe(431);
    shaped(big.body);
    expect(big.body.error.code).toBe('HEADERS_TOO_LARGE');
    const garbage = await raw('THIS IS NOT HTTP\r\n\r\n');
    expect(garbage.status).toBe(400);
    shaped(garbage.body);
  });
});
