/**
 * Router files are untrusted input (issue 26): a file never decides which secret is sent where, every value in it
 * is checked as the admin API checks it (with or without valid checksums), files without the current integrity
 * fields are refused unless migrated, and bad arguments are coded errors in words.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Router } from '../src/router/router.js';
import { RemoteEmbedder } from '../src/embed/remote.js';
import { decodeArtifact, encodeArtifact, type TensorMap } from '../src/router/artifact.js';
import { UnirouteError } from '../src/errors.js';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { makeSyntheticDataset, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
const DIM = 8;
const VICTIM = 'victim-secret-value-0123456789';
const OPERATOR = 'operator-key-abcdef';

/** A stand-in embedding endpoint that records what reaches it (the attacker's host, or the operator's). */
interface Stand {
  server: Server;
  url: string;
  hits: Array<{ auth: string | undefined; body: string }>;
}
async function standIn(): Promise<Stand> {
  const hits: Stand['hits'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hits.push({ auth: req.headers.authorization, body });
      const { input } = JSON.parse(body || '{"input":[]}');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: (input as string[]).map((_, index) => ({ index, embedding: Array.from({ length: DIM }, (_, j) => (j === index % DIM ? 1 : 0)) })) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, hits, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` };
}

let attacker: Stand;
let operator: Stand;
let dir: string;

/** A small router on a remote embedder whose file names `baseUrl` and the key variable `apiKeyEnv`: an ordinary, valid file. */
function remoteRouterFile(baseUrl: string, apiKeyEnv?: string): Buffer {
  const spec = { kind: 'openai' as const, model: 'embed-m', baseUrl, dim: DIM, ...(apiKeyEnv ? { apiKeyEnv } : {}) };
  const centroids = new Float32Array(2 * DIM);
  centroids[0] = 1;
  centroids[DIM + 1] = 1;
  const r = new Router({
    embedder: spec,
    remote: new RemoteEmbedder(spec),
    centroids,
    k: 2,
    priorStrength: 0,
    pool: [
      { name: 'a', costPerQuery: 0.1, errorSums: new Float32Array([1, 5]), counts: new Float32Array([10, 10]) },
      { name: 'b', costPerQuery: 1, errorSums: new Float32Array([2, 1]), counts: new Float32Array([10, 10]) },
    ],
  });
  return r.toArtifact();
}

/** Runs the CLI without blocking this process (the stand-ins answer from it). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const c = spawn(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (status) => done({ status, stdout, stderr }));
  });
}

beforeAll(async () => {
  attacker = await standIn();
  operator = await standIn();
  dir = mkdtempSync(join(tmpdir(), 'uniroute-trust-'));
  process.env.VICTIM_SECRET = VICTIM;
  delete process.env.UNIROUTE_EMBEDDER_URL;
  delete process.env.UNIROUTE_TRUST_EMBEDDER_URL;
  delete process.env.UNIROUTE_EMBEDDER_KEY;
});
afterAll(async () => {
  await new Promise((r) => attacker.server.close(r));
  await new Promise((r) => operator.server.close(r));
});

const code = async (p: Promise<unknown> | (() => unknown)): Promise<UnirouteError> => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(UnirouteError);
    return e as UnirouteError;
  }
  throw new Error('expected an error');
};

describe('a router file never decides which secret is sent where', () => {
  it('a file naming an endpoint and an environment variable sends nothing until the operator allows it, and never that variable', async () => {
    const file = remoteRouterFile(attacker.url, 'VICTIM_SECRET');
    // by default (no flag, no environment setting): refused, and nothing reaches the file's host
    const r0 = Router.fromArtifact(file, 'crafted.uniroute');
    const e = await code(r0.routeBatch(['What is 17*23?']));
    expect(e.code).toBe('EMBEDDER_NOT_ALLOWED');
    expect(e.message).toContain(attacker.url);
    expect(e.message).toMatch(/--trust-embedder-url/);
    expect(attacker.hits).toHaveLength(0);
    // the operator allows the file's endpoint: prompts go there, but never the file's variable (no key at all)
    const r1 = Router.fromArtifact(file, 'crafted.uniroute', undefined, { embedder: { trustFileUrl: true } });
    await r1.routeBatch(['What is 17*23?']);
    expect(attacker.hits).toHaveLength(1);
    expect(attacker.hits[0].auth).toBeUndefined();
    expect(attacker.hits.map((h) => h.body).join('')).not.toContain(VICTIM);
    // the operator names the key: that key, and only it
    process.env.OPERATOR_KEY = OPERATOR;
    const r2 = Router.fromArtifact(file, 'crafted.uniroute', undefined, { embedder: { url: operator.url, keyEnv: 'OPERATOR_KEY' } });
    await r2.routeBatch(['What is 17*23?']);
    expect(attacker.hits).toHaveLength(1); // the file's host no more
    expect(operator.hits.at(-1)!.auth).toBe(`Bearer ${OPERATOR}`);
    expect(r2.remote!.notes.key).toMatch(/OPERATOR_KEY.*the file's key variable VICTIM_SECRET is ignored/);
  });

  it('the CLI: route refuses, info shows the endpoint and the key, serve does not start, and the flags allow it', async () => {
    const p = join(dir, 'crafted.uniroute');
    writeFileSync(p, remoteRouterFile(attacker.url, 'VICTIM_SECRET'));
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, '{"id":"1","text":"What is 17*23?"}\n');
    const before = attacker.hits.length;
    const env = { VICTIM_SECRET: VICTIM, OPERATOR_KEY: OPERATOR };
    const route = await cli(['route', '--router', p, '--input', input, '--quiet'], env);
    expect(route.status).toBe(1);
    expect(route.stderr).toMatch(/EMBEDDER_NOT_ALLOWED/);
    expect(attacker.hits.length).toBe(before);
    const info = await cli(['info', '--router', p], env);
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(new RegExp(`endpoint +none: the file names ${attacker.url.replace(/[.]/g, '\\.')}`));
    expect(info.stdout).toMatch(/key +none sent .*the file's key variable VICTIM_SECRET is ignored/);
    const infoOk = await cli(['info', '--router', p, '--embedder-url', operator.url, '--embedder-key-env', 'OPERATOR_KEY', '--json'], env);
    const j = JSON.parse(infoOk.stdout);
    expect(j.router.embedderAllowed).toBe(true);
    expect(j.router.embedderEndpoint).toMatch(new RegExp(`^${operator.url.replace(/[.]/g, '\\.')} \\(named by --embedder-url`));
    expect(j.router.embedderKey).toMatch(/^from \$OPERATOR_KEY \(named by --embedder-key-env; set\)/);
    expect(infoOk.stdout).not.toContain(OPERATOR);
    const serve = await cli(['serve', '--router', p, '--port', '0'], env);
    expect(serve.status).toBe(1);
    expect(serve.stderr).toMatch(/EMBEDDER_NOT_ALLOWED/);
    // allowed by the operator, with the operator's key
    const ok = await cli(['route', '--router', p, '--input', input, '--quiet', '--trust-embedder-url', '--embedder-key-env', 'OPERATOR_KEY'], env);
    expect(ok.status, ok.stderr).toBe(0);
    expect(attacker.hits.at(-1)!.auth).toBe(`Bearer ${OPERATOR}`);
    expect(attacker.hits.some((h) => h.auth?.includes(VICTIM))).toBe(false);
  });

  it('an endpoint that echoes the key gets it redacted from the error, in every form', async () => {
    const echo = createServer((req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `bad key ${req.headers.authorization} (${Buffer.from(OPERATOR).toString('base64')})` } }));
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/v1`;
      const r = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: url, dim: DIM }, { keyEnv: 'OPERATOR_KEY', attempts: 1 });
      const e = await code(r.embed(['x']));
      expect(e.code).toBe('EMBEDDER_FAILED');
      expect(e.message).toMatch(/HTTP 401/);
      expect(e.message).not.toContain(OPERATOR);
      expect(e.message).not.toContain(Buffer.from(OPERATOR).toString('base64'));
      const noKey = new RemoteEmbedder({ kind: 'openai', model: 'm', baseUrl: url, dim: DIM }, { attempts: 1 });
      expect((await code(noKey.embed(['x']))).message).toMatch(/no API key was sent/);
    } finally {
      await new Promise((r) => echo.close(r));
    }
  });
});

/** The manifest and tensors of a file, for re-encoding with valid checksums (what anyone can do). */
function parts(buf: Buffer): { manifest: any; tensors: TensorMap } {
  const { manifest, tensors } = decodeArtifact(buf);
  const map: TensorMap = {};
  for (const [name, t] of Object.entries(tensors)) map[name] = { data: t, shape: [t.length] };
  return { manifest, tensors: map };
}

/** The same file without `sha256_all` (as older versions wrote them). */
function stripAll(buf: Buffer): Buffer {
  const raw = buf[0] === 0x1f ? gunzipSync(buf) : buf;
  const hlen = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + hlen).toString('utf8'));
  delete header.__metadata__.sha256_all;
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, raw.subarray(8 + hlen)]);
}

describe('files are untrusted input', () => {
  let good: Buffer;
  beforeAll(() => {
    const centroids = new Float32Array(3 * 4).map((_, i) => (i % 5) / 4);
    const r = new Router({
      embedder: { kind: 'precomputed', dim: 4 },
      centroids,
      k: 3,
      priorStrength: 1,
      pool: ['x', 'y', 'z'].map((name, j) => ({ name, costPerQuery: 0.1 * (j + 1), errorSums: new Float32Array([1, 2, 3]), counts: new Float32Array([5, 5, 5]) })),
    });
    good = r.toArtifact();
  });

  it('a file without sha256_all is refused unless migrated, and migrate checks every value first', async () => {
    const p = join(dir, 'old.uniroute');
    writeFileSync(p, stripAll(good));
    const e = await code(Router.load(p));
    expect(e.code).toBe('BAD_ARTIFACT');
    expect(e.message).toMatch(/sha256_all/);
    expect(e.message).toContain(`uniroute migrate --router ${p}`);
    const hash = Router.fromArtifact(good).modelHash();
    const m = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'migrate', '--router', p], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/every value checked/);
    const back = await Router.load(p);
    expect(back.modelHash()).toBe(hash);
    expect(back.models().map((x) => x.costPerQuery)).toEqual(Router.fromArtifact(good).models().map((x) => x.costPerQuery));
    // an old-format file edited to a negative cost: migrate refuses it too
    const { manifest, tensors } = parts(good);
    manifest.pool[0].costPerQuery = -1;
    const bad = join(dir, 'old-bad.uniroute');
    writeFileSync(bad, stripAll(encodeArtifact(manifest, tensors)));
    expect((await code(Router.load(bad))).message).toMatch(/sha256_all/);
    const m2 = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'migrate', '--router', bad], { encoding: 'utf8' });
    expect(m2.status).toBe(1);
    expect(m2.stderr).toMatch(/BAD_ARTIFACT: .*"x" needs a cost per query in \[0, 1e\+30\] \(got -1\)/);
  });

  it('every value is checked whether or not the checksums hold', () => {
    type Edit = (m: any, t: TensorMap) => void;
    const cases: Array<[string, Edit, RegExp]> = [
      ['cost -1', (m) => (m.pool[0].costPerQuery = -1), /"x" needs a cost per query in \[0, 1e\+30\] \(got -1\)/],
      ['cost 1e39', (m) => (m.pool[1].costPerQuery = 1e39), /"y" needs a cost per query .*1e\+39/],
      ['cost as a string', (m) => (m.pool[1].costPerQuery = '0.1'), /"y" needs a cost per query/],
      ['empty name', (m) => (m.pool[0].name = ' '), /pool\[0\]\.name/],
      ['a null pool entry', (m) => (m.pool[1] = null), /pool\[1\] is not an object/],
      ['twice the same name', (m) => (m.pool[1].name = 'x'), /"x" appears twice/],
      ['dim 0', (m) => (m.embedder.dim = 0), /embedding dimension 0/],
      ['clusters -1', (m) => (m.clusters = -1), /clusters -1/],
      ['negative prior strength', (m) => (m.priorStrength = -2), /priorStrength -2/],
      ['a string default lambda', (m) => (m.defaultLambda = 'x'), /defaultLambda "x"/],
      ['unknown embedder', (m) => (m.embedder.kind = 'magic'), /unknown embedder kind "magic"/],
      ['no manifest object', (m) => Object.keys(m).forEach((k) => delete m[k]), /no embedder object/],
      ['a NaN centroid', (_m, t) => ((t.centroids.data as Float32Array)[3] = NaN), /tensor centroids has a non-finite value at 3/],
      ['an error sum above its count', (_m, t) => ((t['pool.error_sums'].data as Float32Array)[0] = 9), /"x" has invalid statistics in cluster 0/],
      ['a negative count', (_m, t) => ((t['pool.counts'].data as Float32Array)[4] = -5), /"y" has invalid statistics/],
      ['an infinite sum', (_m, t) => ((t['pool.error_sums'].data as Float32Array)[2] = Infinity), /non-finite/],
      ['centroids of the wrong type', (_m, t) => (t.centroids = { data: new Int32Array(12), shape: [12] }), /tensor centroids is I32, not F32/],
      ['a tensor a router does not have', (_m, t) => (t['evil.blob'] = { data: new Float32Array(1), shape: [1] }), /tensor "evil.blob" is not one a router has/],
      ['a remote endpoint with credentials', (m) => (m.embedder = { kind: 'openai', model: 'm', baseUrl: 'http://u:p@example.com/v1', dim: 4 }), /carries credentials/],
    ];
    for (const [what, edit, msg] of cases) {
      const { manifest, tensors } = parts(good);
      edit(manifest, tensors);
      // with valid checksums (re-encoded) and without sha256_all: the same refusal
      for (const buf of [encodeArtifact(manifest, tensors)]) {
        let err: unknown;
        try {
          Router.fromArtifact(buf, 'edited.uniroute');
        } catch (e) {
          err = e;
        }
        expect(err, what).toBeInstanceOf(UnirouteError);
        expect((err as UnirouteError).code, what).toBe('BAD_ARTIFACT');
        expect((err as Error).message, what).toMatch(msg);
      }
      let legacyErr: unknown;
      try {
        Router.fromArtifact(stripAll(encodeArtifact(manifest, tensors)), 'edited.uniroute', undefined, { allowLegacy: true });
      } catch (e) {
        legacyErr = e;
      }
      expect((legacyErr as UnirouteError)?.code, `${what} (old format, migrating)`).toBe('BAD_ARTIFACT');
    }
  });

  it('the built-in embedder\'s settings are checked (the built-in router, edited)', () => {
    const def = readFileSync(resolve(__dirname, '..', 'models', 'default.uniroute.gz'));
    const { manifest, tensors } = parts(def);
    manifest.embedder.bucketsLog2 = 30;
    expect(() => Router.fromArtifact(encodeArtifact(manifest, tensors), 'd')).toThrow(/bucketsLog2 30 is not a whole number in \[4, 24\]/);
    manifest.embedder.bucketsLog2 = 16;
    (tensors['embedder.scale'].data as Float32Array)[7] = NaN;
    expect(() => Router.fromArtifact(encodeArtifact(manifest, tensors), 'd')).toThrow(/tensor embedder.scale has a non-finite value at 7/);
  });
});

describe('bad arguments are coded errors in words', () => {
  it('new Router() with a bad state', () => {
    for (const [state, msg] of [
      [{ k: -1 }, /k must be a positive integer, got -1/],
      [{ k: 2 }, /`embedder`.*is required/],
      [{ k: 2, embedder: { kind: 'precomputed', dim: 0 }, centroids: new Float32Array(0) }, /embedder\.dim\) must be a positive integer, got 0/],
      [{ k: 1, embedder: { kind: 'precomputed', dim: 2 }, centroids: [0, 0] }, /`centroids` must be a Float32Array/],
      [null, /expected a state object/],
    ] as const) {
      let err: unknown;
      try {
        new Router(state as any);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UnirouteError);
      expect((err as UnirouteError).code).toBe('INVALID_ARGUMENT');
      expect((err as Error).message).toMatch(msg);
    }
    expect(() => new Router({ k: 1, embedder: { kind: 'precomputed', dim: 2 }, centroids: new Float32Array([0, NaN]), priorStrength: 0 })).toThrow(/non-finite/);
  });

  it('fit: --dim beyond what the prompts give is refused at once, a folder as --out is said in words, and the difficulty model reports each solve', async () => {
    const data = makeSyntheticDataset(90, 5);
    const t0 = Date.now();
    const big = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'fit', '--data', data, '--dim', '4096', '--out', join(dir, 'x.uniroute')], { encoding: 'utf8' });
    expect(big.status).toBe(1);
    expect(big.stderr).toMatch(/--dim 4096 is more than the \d+ train prompts can give.*--dim 256 or fewer/);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    const out = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'fit', '--data', data, '--out', folder], { encoding: 'utf8' });
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/--out .*a-folder is a folder; give a file name/);
    expect(out.stderr).not.toMatch(/EISDIR/);
    const missing = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'fit', '--data', data, '--out', join(dir, 'nope', 'r.uniroute')], { encoding: 'utf8' });
    expect(missing.stderr).toMatch(/the folder .*nope does not exist/);
    // the ridge solves of the difficulty model, one by one
    const steps: Array<[number, number]> = [];
    const ds = await loadDataset(makeSyntheticDataset(420, 6));
    await fitRouter(ds, { seed: 1, clusters: 3, embedder: { dim: 300 }, onProgress: (s, d, t) => s.startsWith('difficulty') && steps.push([d, t]) });
    expect(steps.filter(([, t]) => t === 36).length).toBeGreaterThan(30);
    expect(steps).toContainEqual([36, 36]);
  });
});

describe('one writer for a router file', () => {
  it('a CLI write to a file that a running server saves to is refused, pointing to the server and to --pool; a second server too; after it stops, the CLI writes', async () => {
    const { startServe } = await import('./helpers.js');
    const p = join(dir, 'served.uniroute');
    const ds = await loadDataset(makeSyntheticDataset(300, 9));
    const { router } = await fitRouter(ds, { seed: 1, clusters: 3, embedder: { bucketsLog2: 12, dim: 32 } });
    await router.save(p);
    const outcomesFile = join(dir, 'outcomes.jsonl');
    writeFileSync(outcomesFile, Array.from({ length: 20 }, (_, i) => JSON.stringify({ text: `Question: integral ${i} solve?`, correct: i % 2 })).join('\n') + '\n');
    const s = await startServe(['--router', p], { UNIROUTE_ADMIN_TOKEN: 'tok' });
    try {
      const before = readFileSync(p);
      const add = await cli(['add-model', '--router', p, '--name', 'from-cli', '--outcomes', outcomesFile, '--cost', '0.01']);
      expect(add.status).toBe(1);
      expect(add.stderr).toMatch(/FILE_IN_USE: .*served by a running uniroute server \(http:\/\/127\.0\.0\.1:\d+/);
      expect(add.stderr).toContain(`--pool sqlite:${p}.pool.db`);
      expect(add.stderr).toMatch(/POST http:\/\/127\.0\.0\.1:\d+\/v1\/models/);
      expect(readFileSync(p).equals(before)).toBe(true);
      const rm = await cli(['remove-model', '--router', p, '--name', 'cheap-math']);
      expect(rm.status).toBe(1);
      expect(rm.stderr).toMatch(/FILE_IN_USE/);
      const second = await cli(['serve', '--router', p, '--port', '0'], { UNIROUTE_ADMIN_TOKEN: 'tok' });
      expect(second.status).toBe(1);
      expect(second.stderr).toMatch(/FILE_IN_USE: .*a second server saving to it/);
      // through the server, the change is made and saved
      const r = await fetch(`${s.url}/v1/models`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer tok' },
        body: JSON.stringify({ name: 'via-server', cost_per_query: 0.01, outcomes: Array.from({ length: 20 }, (_, i) => ({ text: `Question: integral ${i}?`, correct: 1 })) }),
      });
      expect(r.status).toBe(201);
      expect((await Router.load(p)).has('via-server')).toBe(true);
    } finally {
      const exited = new Promise((r) => s.proc.once('exit', r));
      s.proc.kill('SIGTERM');
      await exited;
    }
    const after = await cli(['add-model', '--router', p, '--name', 'from-cli', '--outcomes', outcomesFile, '--cost', '0.01']);
    expect(after.status, after.stderr).toBe(0);
    const final = await Router.load(p);
    expect(final.has('from-cli') && final.has('via-server')).toBe(true);
  });

  it('a server does not save over a file that another process changed since it read it', async () => {
    const { buildApp } = await import('../src/server/app.js');
    const p = join(dir, 'changed.uniroute');
    const ds = await loadDataset(makeSyntheticDataset(300, 10));
    const { router } = await fitRouter(ds, { seed: 1, clusters: 3, embedder: { bucketsLog2: 12, dim: 32 } });
    await router.save(p);
    const app = await buildApp({ router: await Router.load(p), routerPath: p, adminToken: 'tok' });
    try {
      // another process's change (an older CLI, a copy from elsewhere)
      const other = await Router.load(p);
      other.removeModel('mid-all');
      await new Promise((r) => setTimeout(r, 20));
      await other.save(p);
      const res = await app.inject({
        method: 'POST',
        url: '/v1/models',
        headers: { authorization: 'Bearer tok' },
        payload: { name: 'late', cost_per_query: 0.01, outcomes: [{ text: 'Question: integral?', correct: 1 }] },
      });
      expect(res.statusCode).toBe(412);
      expect(res.json().error.code).toBe('VERSION_CONFLICT');
      expect(res.json().error.message).toMatch(/changed on disk by another process/);
      const kept = await Router.load(p);
      expect(kept.has('mid-all')).toBe(false);
      expect(kept.has('late')).toBe(false);
    } finally {
      await app.close();
    }
  });
});
