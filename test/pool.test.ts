/**
 * The pool as live state: one contract for every store (memory, sqlite), the router bound to a store, several
 * writers on one sqlite file, a server and the CLI on one pool, kill -9 of a server, and tampered files.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { gzipSync, gunzipSync } from 'node:zlib';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router, type PoolEntry } from '../src/router/router.js';
import { MemoryPoolStore, SqlitePoolStore, openPoolStore, type PoolStore } from '../src/pool/store.js';
import { LivePool } from '../src/pool/live.js';
import { UnirouteError } from '../src/errors.js';
import { makeSyntheticDataset, randomTexts, startRedis, startServe, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
let dir: string;
let routerPath: string;
let redis: Awaited<ReturnType<typeof startRedis>> = null;
const REDIS_SKIP = 'redis-server is not installed: Redis pool tests skipped (.ci/run installs it; in CI they run)';
let prefixes = 0;
const redisUrl = () => `${redis!.url}?prefix=t${process.pid}-${prefixes++}:`;

afterAll(async () => redis?.stop());

beforeAll(async () => {
  redis = await startRedis();
  if (!redis) console.warn(REDIS_SKIP);
  dir = mkdtempSync(join(tmpdir(), 'uniroute-pool-'));
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  const { router } = await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } });
  routerPath = join(dir, 'r.uniroute');
  await router.save(routerPath);
});

const entry = (name: string, k: number, err = 0.3, n = 10): PoolEntry => ({
  name,
  costPerQuery: 0.5,
  errorSums: new Float32Array(k).fill(err * n),
  counts: new Float32Array(k).fill(n),
});

const code = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return (e as UnirouteError).code;
  }
  return 'no error';
};

const stores: Array<[string, () => PoolStore | null]> = [
  ['memory', () => new MemoryPoolStore()],
  ['sqlite', () => new SqlitePoolStore(join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db'))],
  ['redis', () => (redis ? openPoolStore(redisUrl()) : null)],
];

describe.each(stores)('PoolStore contract: %s', (kind, make) => {
  it('seeds version 1, versions every change, checks If-Match, refuses duplicates and unknown names; feedback once per id', async (ctx) => {
    const s = make();
    if (!s) return ctx.skip(REDIS_SKIP);
    const seed = [entry('a', 4), entry('b', 4)];
    const snap = await s.open('hash-1', seed, 'test');
    expect(snap.version).toBe(1);
    expect(snap.models.map((m) => m.name)).toEqual(['a', 'b']);
    expect(Array.from(snap.models[0].errorSums)).toEqual(Array.from(seed[0].errorSums));
    expect(await s.put(entry('c', 4), { by: 'alice' })).toBe(2);
    expect(await code(s.put(entry('c', 4)))).toBe('DUPLICATE_MODEL');
    expect(await code(s.put(entry('d', 4), { ifVersion: 1 }))).toBe('VERSION_CONFLICT');
    expect(await s.put(entry('a', 4, 0.9), { replace: true, ifVersion: 2 })).toBe(3);
    const after = await s.read();
    expect(after.models.map((m) => m.name)).toEqual(['a', 'b', 'c']); // a replaced in place
    expect(after.models[0].errorSums[0]).toBeCloseTo(9);
    expect(after.models[2].changedBy).toBe('alice');
    expect(await s.remove('b')).toBe(4);
    expect(await code(s.remove('b'))).toBe('UNKNOWN_MODEL');
    expect(await code(s.remove('a', { ifVersion: 3 }))).toBe('VERSION_CONFLICT');
    expect((await s.read()).models.map((m) => m.name)).toEqual(['a', 'c']);
    expect(await s.version()).toBe(4);
    // the seed counts only once: opening again finds the pool
    const again = await s.open('hash-1', [entry('zzz', 4)]);
    expect(again.version).toBe(4);
    // another model's pool is apart
    // feedback: read-modify-write in one transaction, once per id
    const bump = (cur: PoolEntry): PoolEntry => ({ ...cur, errorSums: Float32Array.from(cur.errorSums, (v, i) => (i === 0 ? v + 1 : v)), counts: Float32Array.from(cur.counts, (v, i) => (i === 0 ? v + 1 : v)) });
    expect(await s.addOutcome('c', 'fb-1', Date.now(), bump)).toBe(5);
    expect(await code(s.addOutcome('c', 'fb-1', Date.now(), bump))).toBe('ALREADY_COUNTED');
    expect(await code(s.addOutcome('nope', 'fb-2', Date.now(), bump))).toBe('UNKNOWN_MODEL');
    const c = (await s.read()).models.find((m) => m.name === 'c')!;
    expect(c.counts[0]).toBe(11);
    expect(c.errorSums[0]).toBeCloseTo(4);
    // concurrent feedback on one LLM: every outcome counted
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.addOutcome('c', `fb-c${i}`, Date.now(), bump)));
    expect((await s.read()).models.find((m) => m.name === 'c')!.counts[0]).toBe(31);
    const other = await s.open('hash-2', [entry('x', 4)]);
    expect(other.models.map((m) => m.name)).toEqual(['x']);
    await s.close();
    expect(kind).toBeTruthy();
  });
});

describe('a router bound to a store (LivePool)', () => {
  it('takes the store\'s pool, adds and removes through it, and refuses statistics that do not fit the model', async () => {
    const router = await Router.load(routerPath);
    const names = router.snapshot().names;
    const live = await LivePool.open(router, new MemoryPoolStore());
    expect(live.version).toBe(1);
    const texts = randomTexts(30, 3);
    const info = await live.addModel('new-llm', { costPerQuery: 0.05, outcomes: texts.map((t, i) => ({ text: t, correct: i % 2 })) });
    expect(info.version).toBe(2);
    expect(router.snapshot().names).toEqual([...names, 'new-llm']);
    expect(await code(live.addModel('new-llm', { costPerQuery: 0.05, outcomes: [{ text: texts[0], correct: 1 }] }))).toBe('DUPLICATE_MODEL');
    expect(router.has('new-llm')).toBe(true); // a refused change leaves the pool as it was
    await live.removeModel('new-llm');
    expect(router.snapshot().names).toEqual(names);
    // nothing unchecked enters: NaN sums, counts below sums, the wrong number of clusters
    const k = router.k;
    const bad: PoolEntry[] = [
      { ...entry('n1', k), errorSums: new Float32Array(k).fill(NaN) },
      { ...entry('n2', k), errorSums: new Float32Array(k).fill(20) },
      entry('n3', k + 1),
      { ...entry('n4', k), costPerQuery: 1e39 },
    ];
    for (const e of bad) expect(await code(live.putEntry(e))).toMatch(/INVALID_ARGUMENT|NON_FINITE|DIMENSION_MISMATCH|NO_COST/);
    expect(live.version).toBe(3);
  });

  it('sqlite: a tampered row is refused on refresh, and routing keeps the last good pool', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db');
    const router = await Router.load(routerPath);
    const live = await LivePool.open(router, `sqlite:${file}`);
    const before = router.snapshot().names;
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(file);
    db.prepare('UPDATE models SET error_sums = ? WHERE name = ?').run(Buffer.from(new Float32Array(router.k).fill(NaN).buffer), before[0]);
    db.prepare('UPDATE pools SET version = version + 1').run();
    db.close();
    await expect(live.refresh()).rejects.toThrow(/non-finite|not finite|NaN|NON_FINITE|finite/i);
    expect(router.snapshot().names).toEqual(before);
    expect((await router.route(['Question: integral solve?']))[0].model).toBeTypeOf('string');
    await live.close();
  });

  it('sqlite: writers in two connections on one file lose nothing', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db');
    const a = new SqlitePoolStore(file);
    const b = new SqlitePoolStore(file);
    await a.open('h', [entry('seed', 4)]);
    await b.open('h', []);
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).put(entry(`m${i}`, 4))));
    const snap = await a.read();
    expect(snap.version).toBe(41);
    expect(snap.models.length).toBe(41);
    await a.close();
    await b.close();
  });

  it('store URLs: memory:, sqlite:PATH; anything else is a clear error', () => {
    expect(openPoolStore('memory:')).toBeInstanceOf(MemoryPoolStore);
    const r = openPoolStore('redis://u:secret@127.0.0.1:1/0?prefix=x:');
    expect(r.description).not.toContain('secret');
    expect(r.description).toContain('prefix x:');
    void r.close();
    expect(() => openPoolStore('postgres://u:secret@x')).toThrow(/expected memory:, sqlite:PATH or redis/);
    expect(() => openPoolStore('postgres://u:secret@x')).not.toThrow(/secret/);
  });
});

describe('export and import', () => {
  it('uniroute import makes a file\'s pool the store\'s in one change; export writes the store\'s pool to a file', async () => {
    const pool = `sqlite:${join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db')}`;
    const run = (...args: string[]) => spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args], { encoding: 'utf8' });
    // a read-only command creates no store (issue 25); import creates it from the file's pool (version 1) and
    // then makes a second file's pool (same model, one LLM more) the store's
    const none = run('models', '--router', routerPath, '--pool', pool, '--json');
    expect(none.status).toBe(1);
    expect(none.stderr).toContain('NOT_FOUND: no pool store at');
    const more = await Router.load(routerPath);
    await more.addModel('extra', { costPerQuery: 0.3, outcomes: randomTexts(10, 2).map((text, i) => ({ text, correct: i % 2 })) });
    const moreFile = join(dir, 'more.uniroute');
    await more.save(moreFile);
    const imp = run('import', '--router', moreFile, '--pool', pool);
    expect(imp.status, imp.stderr).toBe(0);
    expect(imp.stderr).toMatch(/imported 6 LLMs .* \(pool version 2\)/);
    const out = join(dir, 'exported.uniroute');
    const exp = run('export', '--router', routerPath, '--pool', pool, '--out', out);
    expect(exp.status, exp.stderr).toBe(0);
    const back = await Router.load(out);
    expect(back.snapshot().names).toEqual(more.snapshot().names);
    expect(Array.from(back.exportModel('extra').counts)).toEqual(Array.from(more.exportModel('extra').counts));
    // a stale If-Match is refused, and nothing changes
    const stale = run('import', '--router', routerPath, '--pool', pool, '--if-version', '1');
    expect(stale.status).not.toBe(0);
    expect(stale.stderr).toContain('VERSION_CONFLICT');
  });

  it('a save killed midway leaves a temporary file; the next save removes it', async () => {
    const r = await Router.load(routerPath);
    const f = join(dir, 'stale.uniroute');
    const stale = join(dir, '.stale.uniroute.999999999.1.tmp');
    writeFileSync(stale, 'partial');
    await r.save(f);
    const { existsSync } = await import('node:fs');
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(f)).toBe(true);
  });
});

describe('router files: every byte checked', () => {
  it('a file whose manifest was edited is refused; so is a gzip bomb; the model hash ignores the pool', async () => {
    const raw = readFileSync(routerPath);
    const hlen = Number(raw.readBigUInt64LE(0));
    const header = raw.subarray(8, 8 + hlen).toString('utf8');
    // raise an LLM's cost in the manifest (same length, so only the checksum can tell)
    const m = /\\"costPerQuery\\":(\d)/.exec(header);
    expect(m).not.toBeNull();
    const edited = header.replace(m![0], m![0].slice(0, -1) + String((Number(m![1]) + 1) % 10));
    const tampered = Buffer.concat([raw.subarray(0, 8), Buffer.from(edited, 'utf8'), raw.subarray(8 + hlen)]);
    const f = join(dir, 'tampered.uniroute');
    writeFileSync(f, tampered);
    await expect(Router.load(f)).rejects.toMatchObject({ code: 'BAD_ARTIFACT', message: expect.stringMatching(/edited/) });
    // a gzip bomb: 200 MB of zeros in a small file
    const bomb = join(dir, 'bomb.uniroute.gz');
    writeFileSync(bomb, gzipSync(Buffer.alloc(200 * 2 ** 20)));
    await expect(Router.load(bomb)).rejects.toMatchObject({ code: 'BAD_ARTIFACT', message: expect.stringMatching(/gzip bomb/) });
    // a gzipped router still loads
    const r = await Router.load(routerPath);
    const gz = join(dir, 'ok.uniroute.gz');
    await r.save(gz);
    expect(gunzipSync(readFileSync(gz)).length).toBeGreaterThan(1000);
    const back = await Router.load(gz);
    expect(back.modelHash()).toBe(r.modelHash());
    // a file with a valid checksum whose learned map declares a network its parameters do not fit
    const lmRouter = (await fitRouter(await loadDataset(makeSyntheticDataset(300, 8)), { seed: 5, method: 'learned-map', embedder: { bucketsLog2: 12, dim: 16 } })).router;
    const { artifactParts } = await import('../src/router/persist.js');
    const parts = artifactParts(lmRouter) as any;
    parts.manifest.clusterMap.config = { ...parts.manifest.clusterMap.config, hidden: [65536, 8] };
    const { encodeArtifact } = await import('../src/router/artifact.js');
    const lmFile = join(dir, 'bad-map.uniroute');
    writeFileSync(lmFile, encodeArtifact(parts.manifest, parts.tensors));
    await expect(Router.load(lmFile)).rejects.toMatchObject({ code: 'BAD_ARTIFACT', message: expect.stringMatching(/learned map/) });
    // the pool is not the model: adding an LLM keeps the hash
    await back.addModel('x', { costPerQuery: 1, outcomes: [{ text: 'Question: integral?', correct: 1 }] });
    expect(back.modelHash()).toBe(r.modelHash());
  });
});

// ---- real processes on one sqlite pool -----------------------------------------------------------------------------
const serve = (args: string[], env: Record<string, string> = {}) => startServe(['--router', routerPath, ...args], env);
const TOKEN = 'pool-token';
const bearer = { authorization: `Bearer ${TOKEN}` };
const auth = { ...bearer, 'content-type': 'application/json' };
const names = async (url: string) => ((await (await fetch(`${url}/v1/models`)).json()) as any).data.map((m: any) => m.id) as string[];
const waitFor = async (f: () => Promise<boolean>, ms = 1000) => {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  return -1;
};

describe('a server and the CLI on one sqlite pool', () => {
  let procs: ChildProcess[] = [];
  afterAll(() => procs.forEach((p) => p.kill('SIGKILL')));

  it('a CLI add-model reaches a running server within 1 s, a server change reaches the CLI; both kept; If-Match', async () => {
    const pool = `sqlite:${join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db')}`;
    const s = await serve(['--pool', pool], { UNIROUTE_ADMIN_TOKEN: TOKEN });
    procs.push(s.proc);
    const outcomes = join(dir, 'outcomes.jsonl');
    writeFileSync(outcomes, randomTexts(20, 9).map((t, i) => JSON.stringify({ text: t, correct: i % 3 ? 1 : 0 })).join('\n'));
    // at the same time: the server takes one LLM, the CLI another
    const viaServer = fetch(`${s.url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'from-server', cost_per_query: 0.01, outcomes: randomTexts(15, 4).map((text, i) => ({ text, correct: i % 2 })) }) });
    const cli = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'add-model', '--router', routerPath, '--pool', pool, '--name', 'from-cli', '--outcomes', outcomes, '--cost', '0.02'], { encoding: 'utf8' });
    expect(cli.status, cli.stderr).toBe(0);
    const r = await viaServer;
    expect(r.status).toBe(201);
    const took = await waitFor(async () => (await names(s.url)).includes('from-cli'));
    expect(took, 'the server saw the CLI change').toBeGreaterThanOrEqual(0);
    expect(took).toBeLessThan(1000);
    const list = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'models', '--router', routerPath, '--pool', pool, '--json'], { encoding: 'utf8' });
    const cliNames = list.stdout.trim().split('\n').map((l) => JSON.parse(l).name);
    expect(cliNames).toContain('from-server');
    expect(cliNames).toContain('from-cli');
    // route answers carry the pool version; If-Match on a stale version is 412
    const route = (await (await fetch(`${s.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Question: integral solve?' }) })).json()) as any;
    expect(route.pool_version).toBe(3);
    const stale = await fetch(`${s.url}/v1/models/from-cli`, { method: 'DELETE', headers: { ...bearer, 'if-match': '"2"' } });
    expect(stale.status).toBe(412);
    expect(((await stale.json()) as any).error.code).toBe('VERSION_CONFLICT');
    const ok = await fetch(`${s.url}/v1/models/from-cli`, { method: 'DELETE', headers: { ...bearer, 'if-match': '"3"' } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).toBe('"4"');
    const ready = (await (await fetch(`${s.url}/readyz`)).json()) as any;
    expect(ready).toMatchObject({ status: 'ready', pool_version: 4 });
    s.proc.kill('SIGTERM');
  });

  it('two replicas on one Redis: an LLM added on one is routed to by the other within 1 s; removed on the other, gone from the first; Redis away: degraded, then caught up', async (ctx) => {
    if (!redis) return ctx.skip(REDIS_SKIP);
    const rdir = mkdtempSync(join(tmpdir(), 'uniroute-redis-'));
    const own = (await startRedis({ dir: rdir }))!; // its own instance, so that the test can stop and restart it
    const pool = `${own.url}?prefix=replicas:`;
    const env = { UNIROUTE_ADMIN_TOKEN: TOKEN };
    const a = await serve(['--pool', pool], env);
    const b = await serve(['--pool', pool], env);
    procs.push(a.proc, b.proc);
    try {
      // a specialist that wins math prompts at this lambda, added on A
      const outcomes = randomTexts(60, 5).map((text) => ({ text, correct: /integral|derivative|equation|solve|algebra|sum|prime|number|fraction|compute/.test(text) ? 1 : 0 }));
      const add = await fetch(`${a.url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'math-ace', cost_per_query: 0.0001, outcomes }) });
      expect(add.status, await add.clone().text()).toBe(201);
      const seen = await waitFor(async () => (await names(b.url)).includes('math-ace'));
      expect(seen).toBeGreaterThanOrEqual(0);
      expect(seen).toBeLessThan(1000);
      const routed = (await (await fetch(`${b.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Question: integral derivative solve equation?', lambda: 1 }) })).json()) as any;
      expect(routed.decisions[0].model).toBe('math-ace');
      const del = await fetch(`${b.url}/v1/models/math-ace`, { method: 'DELETE', headers: bearer });
      expect(del.status).toBe(200);
      const gone = await waitFor(async () => !(await names(a.url)).includes('math-ace'));
      expect(gone).toBeGreaterThanOrEqual(0);
      expect(gone).toBeLessThan(1000);
      // Redis goes away: both keep routing on the last pool, /readyz is degraded, admin writes fail with 503
      await own.stop();
      const degraded = await waitFor(async () => ((await (await fetch(`${a.url}/readyz`)).json()) as any).status === 'degraded', 3000);
      expect(degraded).toBeGreaterThanOrEqual(0);
      const r = await fetch(`${a.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Question: python loop?' }) });
      expect(r.status).toBe(200);
      const w = await fetch(`${a.url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'late', cost_per_query: 0.01, outcomes: [{ text: 'Question: x?', correct: 1 }] }) });
      expect(w.status).toBe(503);
      expect(((await w.json()) as any).error.code).toBe('STORE_UNAVAILABLE');
      // it returns (its data kept on disk): both catch up, and changes flow again
      const back = (await startRedis({ dir: rdir, port: own.port }))!;
      try {
        for (const s of [a, b]) {
          const ready = await waitFor(async () => ((await (await fetch(`${s.url}/readyz`)).json()) as any).status === 'ready', 5000);
          expect(ready).toBeGreaterThanOrEqual(0);
        }
        const again = await fetch(`${b.url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'after', cost_per_query: 0.01, outcomes: [{ text: 'Question: integral?', correct: 1 }] }) });
        expect(again.status).toBe(201);
        expect(await waitFor(async () => (await names(a.url)).includes('after'), 2000)).toBeGreaterThanOrEqual(0);
      } finally {
        await back.stop();
      }
    } finally {
      a.proc.kill('SIGKILL');
      b.proc.kill('SIGKILL');
      await own.stop();
    }
  }, 60_000);

  it.for(['sqlite', 'redis'])('kill -9 of a server while a client adds LLMs and sends feedback (%s): every acknowledged change and outcome is there after a restart', async (kind, ctx) => {
    if (kind === 'redis' && !redis) return ctx.skip(REDIS_SKIP);
    const pool = kind === 'redis' ? redisUrl() : `sqlite:${join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db')}`;
    const acked: string[] = [];
    const ackedFeedback: string[] = [];
    const env = { UNIROUTE_ADMIN_TOKEN: TOKEN, UNIROUTE_FEEDBACK_TOKEN: 'fb', UNIROUTE_FEEDBACK_SECRET: 'the-same-secret-on-every-start' };
    const fbAuth = { authorization: 'Bearer fb', 'content-type': 'application/json' };
    for (let round = 0; round < 3; round++) {
      const s = await serve(['--pool', pool], env);
      procs.push(s.proc);
      let stop = false;
      const client = (async () => {
        for (let i = 0; !stop; i++) {
          const name = `r${round}-m${i}`;
          try {
            // an admin change, then feedback on a fresh decision
            const r = await fetch(`${s.url}/v1/models`, { method: 'POST', headers: auth, body: JSON.stringify({ name, cost_per_query: 0.01, outcomes: [{ text: `Question: integral ${i}?`, correct: 1 }] }) });
            if (r.status === 201) acked.push(name);
            const d = ((await (await fetch(`${s.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: `Question: loop ${i}?` }) })).json()) as any).decisions[0];
            const f = await fetch(`${s.url}/v1/feedback`, { method: 'POST', headers: fbAuth, body: JSON.stringify({ decision_id: d.decision_id, correct: i % 2 }) });
            if (f.status === 200) ackedFeedback.push(d.decision_id);
          } catch {
            return; // the server is gone
          }
        }
      })();
      await new Promise((r) => setTimeout(r, 300 + 200 * round));
      s.proc.kill('SIGKILL');
      stop = true;
      await client;
      if (s.proc.exitCode === null && s.proc.signalCode === null) await new Promise((r) => s.proc.once('exit', r));
    }
    expect(acked.length).toBeGreaterThan(5);
    expect(ackedFeedback.length).toBeGreaterThan(5);
    const s = await serve(['--pool', pool], env);
    procs.push(s.proc);
    const have = new Set(await names(s.url));
    const lost = acked.filter((n) => !have.has(n));
    expect(lost).toEqual([]);
    // every acknowledged outcome was kept: sent again, each is refused as already counted
    for (const id of ackedFeedback) {
      const f = await fetch(`${s.url}/v1/feedback`, { method: 'POST', headers: fbAuth, body: JSON.stringify({ decision_id: id, correct: 1 }) });
      expect(f.status).toBe(409);
    }
    s.proc.kill('SIGTERM');
  }, 60_000);
});

describe('production feedback', () => {
  const FB = 'feedback-token';
  const SECRET = 'a-feedback-secret-of-32-bytes!!!';
  const setup = async (pool = 'memory:', extra: Record<string, unknown> = {}) => {
    const { buildApp } = await import('../src/server/app.js');
    const { DecisionSigner } = await import('../src/pool/feedback.js');
    const router = await Router.load(routerPath);
    const live = await LivePool.open(router, pool);
    const app = await buildApp({ router, pool: live, feedbackToken: FB, feedbackSigner: new DecisionSigner(SECRET), ...extra });
    return { app, router, live };
  };
  const json = { 'content-type': 'application/json' };
  const fbHeaders = { ...json, authorization: `Bearer ${FB}` };

  it('enough "wrong" outcomes for an LLM on a cluster make the router prefer another there; replays and forgeries are refused', async () => {
    const { app, router } = await setup();
    const prompt = 'Question: integral derivative solve equation?';
    const route = async () => (await app.inject({ method: 'POST', url: '/v1/route', headers: json, payload: { prompt, lambda: 0.2 } })).json().decisions[0];
    const first = await route();
    expect(typeof first.decision_id).toBe('string');
    const chosen = first.model;
    const k = first.cluster;
    const before = router.exportModel(chosen);
    // one outcome per decision: replay refused (409), forged or edited ids refused (400), the token required
    const post = (payload: unknown, headers = fbHeaders) => app.inject({ method: 'POST', url: '/v1/feedback', headers, payload: payload as any });
    const ok = await post({ decision_id: first.decision_id, correct: 0 });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ counted: true, model: chosen, cluster: k });
    expect(router.exportModel(chosen).counts[k]).toBeCloseTo(before.counts[k] + 1);
    expect((await post({ decision_id: first.decision_id, correct: 0 })).json().error.code).toBe('ALREADY_COUNTED');
    const [body, mac] = first.decision_id.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), k: (k + 1) % router.k })).toString('base64url');
    expect((await post({ decision_id: `${forged}.${mac}`, correct: 1 })).statusCode).toBe(400);
    expect((await post({ decision_id: first.decision_id, correct: 1 }, { ...json, authorization: 'Bearer nope' })).statusCode).toBe(401);
    expect((await post({ decision_id: first.decision_id, correct: 1, score: 0.5 })).statusCode).toBe(400);
    expect((await post({ decision_id: first.decision_id, correct: 1, model: 'ghost' })).json().error.code).toBe('UNKNOWN_MODEL');
    // another LLM that also answered: its own outcome on the same decision counts once too
    const other = router.snapshot().names.find((n) => n !== chosen)!;
    expect((await post({ decision_id: first.decision_id, score: 1, model: other })).statusCode).toBe(200);
    // production says the chosen LLM gets this cluster wrong: routing moves
    let moved = -1;
    for (let i = 0; i < 400 && moved < 0; i++) {
      const d = await route();
      if (d.model !== chosen) moved = i;
      else expect((await post({ decision_id: d.decision_id, correct: 0 })).statusCode).toBe(200);
    }
    expect(moved, 'routing moved away from the LLM that keeps failing').toBeGreaterThan(0);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(new RegExp(`uniroute_feedback_total\\{model="${chosen.replace(/[-.]/g, '\\$&')}",result="counted"\\} \\d+`));
    expect(metrics).toMatch(/result="ALREADY_COUNTED"/);
    await app.close();
  });

  it('a half-life decays older evidence; without --pool or a token, feedback is off', async () => {
    const { app, router } = await setup('memory:', { feedbackHalfLifeMs: 1 });
    const d = (await app.inject({ method: 'POST', url: '/v1/route', headers: json, payload: { prompt: 'Question: python loop class?' } })).json().decisions[0];
    const n0 = router.exportModel(d.model).counts.reduce((a: number, v: number) => a + v, 0);
    expect(n0).toBeGreaterThan(5);
    await new Promise((r) => setTimeout(r, 30));
    expect((await app.inject({ method: 'POST', url: '/v1/feedback', headers: fbHeaders, payload: { decision_id: d.decision_id, correct: 1 } })).statusCode).toBe(200);
    const n1 = router.exportModel(d.model).counts.reduce((a: number, v: number) => a + v, 0);
    expect(n1).toBeLessThan(1.01); // 30 half-lives later: the old evidence is gone, the new outcome is there
    expect(n1).toBeGreaterThan(0.99);
    await app.close();
    const { buildApp } = await import('../src/server/app.js');
    const plain = await buildApp({ router: await Router.load(routerPath) });
    expect((await plain.inject({ method: 'POST', url: '/v1/feedback', headers: fbHeaders, payload: { decision_id: 'x.y', correct: 1 } })).statusCode).toBe(403);
    await plain.close();
  });

  it('uniroute feedback FILE: the same in bulk on a sqlite pool, replays counted once', async () => {
    const pool = `sqlite:${join(mkdtempSync(join(tmpdir(), 'uniroute-sq-')), 'pool.db')}`;
    const { app, live } = await setup(pool);
    const texts = randomTexts(12, 21);
    const ds = (await app.inject({ method: 'POST', url: '/v1/route', headers: json, payload: { prompts: texts } })).json().decisions;
    await app.close();
    await live.close();
    const file = join(dir, 'feedback.jsonl');
    writeFileSync(file, ds.map((d: any, i: number) => JSON.stringify({ decision_id: d.decision_id, correct: i % 2 })).join('\n') + '\nnot json\n');
    const run = () => spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'feedback', file, '--router', routerPath, '--pool', pool], { encoding: 'utf8', env: { ...process.env, UNIROUTE_FEEDBACK_SECRET: SECRET } });
    const r1 = run();
    const out1 = JSON.parse(r1.stdout.trim());
    expect(out1.counted).toBe(12);
    expect(out1.refused).toEqual({ INVALID_ARGUMENT: 1 });
    expect(r1.status).toBe(1); // a malformed line
    expect(r1.stderr).toContain(':13: INVALID_ARGUMENT');
    const out2 = JSON.parse(run().stdout.trim());
    expect(out2.counted).toBe(0);
    expect(out2.refused.ALREADY_COUNTED).toBe(12);
    expect(out2.pool_version).toBe(out1.pool_version);
    const noSecret = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'feedback', file, '--router', routerPath, '--pool', pool], { encoding: 'utf8', env: { ...process.env, UNIROUTE_FEEDBACK_SECRET: '' } });
    expect(noSecret.status).not.toBe(0);
    expect(noSecret.stderr).toContain('UNIROUTE_FEEDBACK_SECRET');
  });
});

describe('sticky conversations across replicas', () => {
  it('on a Redis pool a conversation keeps its LLM when its next turn reaches another replica', async (ctx) => {
    if (!redis) return ctx.skip(REDIS_SKIP);
    const Fastify = (await import('fastify')).default;
    const { buildApp } = await import('../src/server/app.js');
    const { parseConfig } = await import('../src/server/config.js');
    const up = Fastify();
    up.post('/:llm/v1/chat/completions', async (req: any) => ({ id: 'x', object: 'chat.completion', created: 1, model: req.params.llm, choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }));
    const upUrl = await up.listen({ port: 0, host: '127.0.0.1' });
    const pool = redisUrl();
    const replica = async () => {
      const router = await Router.load(routerPath);
      const live = await LivePool.open(router, pool);
      const config = parseConfig({ upstreams: Object.fromEntries(router.snapshot().names.map((m) => [m, { base_url: `${upUrl}/${m}/v1` }])), sticky: { margin: 10 } }, 'test');
      const app = await buildApp({ router, pool: live, config });
      return { app, url: await app.listen({ port: 0, host: '127.0.0.1' }), router };
    };
    const a = await replica();
    const b = await replica();
    try {
      const turn = (url: string, content: string, session: string) =>
        fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': session }, body: JSON.stringify({ model: 'uniroute:lambda=0.2', messages: [{ role: 'user', content }] }) });
      const math = 'Question: integral derivative solve equation?';
      const hist = 'Question: empire king war battle dynasty?';
      const first = (await a.router.route([math], { lambda: 0.2 }))[0].model;
      const alone = (await a.router.route([hist], { lambda: 0.2 }))[0].model;
      expect(first).not.toBe(alone);
      const t1 = await turn(a.url, math, 'conv-x');
      expect(t1.headers.get('x-uniroute-model')).toBe(first);
      await t1.text();
      await new Promise((r) => setTimeout(r, 50)); // the session write is not on the answer's path
      const t2 = await turn(b.url, hist, 'conv-x');
      expect(t2.headers.get('x-uniroute-sticky')).toBe('kept');
      expect(t2.headers.get('x-uniroute-model')).toBe(first);
      await t2.text();
      const other = await turn(b.url, hist, 'conv-y');
      expect(other.headers.get('x-uniroute-model')).toBe(alone);
      await other.text();
    } finally {
      await a.app.close();
      await b.app.close();
      await up.close();
    }
  });
});
