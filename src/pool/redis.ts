/**
 * The pool in Redis, shared by replicas on several machines: `redis://[user:password@]host:port/db[?prefix=uniroute:]`.
 *
 * Keys, per fitted model (H = its hash): PREFIX H:version (the pool version), PREFIX H:models (a hash: LLM name ->
 * JSON with its position, cost and statistics), PREFIX H:pos (a counter for positions), PREFIX H:feedback (a
 * sorted set of counted feedback ids, by decision time). Every change is one Lua script: it checks If-Match and
 * the preconditions, writes, bumps the version and publishes it on PREFIX H:changes, all atomically. Replicas
 * subscribe to that channel and also poll the version, so a missed message (a reconnect) never leaves one stale.
 * When Redis is away, calls fail fast with STORE_UNAVAILABLE: replicas keep routing on the pool they have.
 */
import { createRequire } from 'node:module';
import { UnirouteError } from '../errors.js';
import type { PoolEntry } from '../router/router.js';
import { noPool, type ChangeOptions, type OpenOptions, type PoolSnapshot, type PoolStore, type StoredModel } from './store.js';
import { RedisCounters, type LimitCounters } from './counters.js';

type RedisClient = import('ioredis').Redis;

const enc = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const dec = (s: unknown, what: string): Float32Array => {
  if (typeof s !== 'string') throw new UnirouteError('BAD_ARTIFACT', `the Redis pool holds a malformed ${what}`);
  const b = Buffer.from(s, 'base64');
  if (b.length % 4 !== 0) throw new UnirouteError('BAD_ARTIFACT', `the Redis pool holds a malformed ${what}`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};
const record = (e: PoolEntry, pos: number, at: string, by: string) =>
  JSON.stringify({ pos, cost: e.costPerQuery, sums: enc(e.errorSums), counts: enc(e.counts), ...(e.cellCounts ? { cells: enc(e.cellCounts) } : {}), at, by });
const parse = (name: string, raw: string): StoredModel & { pos: number } => {
  let r: any;
  try {
    r = JSON.parse(raw);
  } catch {
    throw new UnirouteError('BAD_ARTIFACT', `the Redis pool holds a malformed record for "${name}"`);
  }
  return {
    name,
    pos: Number(r.pos),
    costPerQuery: Number(r.cost),
    errorSums: dec(r.sums, 'error_sums'),
    counts: dec(r.counts, 'counts'),
    ...(r.cells !== undefined ? { cellCounts: dec(r.cells, 'cell_counts') } : {}),
    changedAt: String(r.at),
    changedBy: String(r.by),
  };
};

// KEYS: version, models, pos, feedback, channel (as a key name for PUBLISH)
// Every change script starts by reading the version (v) and, where it takes If-Match, refusing a stale one; it
// ends by bumping the version and publishing it.
const ifVersion = (arg: number | null) =>
  `local v = tonumber(redis.call('GET', KEYS[1]) or '0')` + (arg === null ? '' : `\nif ARGV[${arg}] ~= '' and tonumber(ARGV[${arg}]) ~= v then return {'CONFLICT', v} end`);
const BUMP = `local nv = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[5], nv)
return {'OK', nv}`;
// put: ARGV name, record-without-pos (JSON with a "pos" placeholder of -1), ifVersion ('' = any), replace ('1'/'0')
const PUT = `${ifVersion(3)}
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and ARGV[4] ~= '1' then return {'DUPLICATE', v} end
local pos
if old then pos = cjson.decode(old)['pos'] else pos = redis.call('INCR', KEYS[3]) end
local rec = cjson.decode(ARGV[2])
rec['pos'] = pos
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(rec))
${BUMP}`;
// remove: ARGV name, ifVersion
const REMOVE = `${ifVersion(2)}
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return {'UNKNOWN', v} end
${BUMP}`;
// feedback: ARGV name, expected record (as read), new record, feedback id, decided at, forget before
const OUTCOME = `${ifVersion(null)}
if redis.call('ZSCORE', KEYS[4], ARGV[4]) then return {'COUNTED', v} end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {'UNKNOWN', v} end
if cur ~= ARGV[2] then return {'RETRY', v} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[6])
${BUMP}`;
// replace all: ARGV ifVersion, n, then n pairs (name, record)
const REPLACE = `${ifVersion(1)}
redis.call('DEL', KEYS[2])
local n = tonumber(ARGV[2])
for i = 1, n do
  local pos = redis.call('INCR', KEYS[3])
  local rec = cjson.decode(ARGV[2 + 2 * i])
  rec['pos'] = pos
  redis.call('HSET', KEYS[2], ARGV[1 + 2 * i], cjson.encode(rec))
end
${BUMP}`;
// open: ARGV n, then n pairs (name, record); creates the pool once
const OPEN = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[1])
for i = 1, n do
  local pos = redis.call('INCR', KEYS[3])
  local rec = cjson.decode(ARGV[1 + 2 * i])
  rec['pos'] = pos
  redis.call('HSET', KEYS[2], ARGV[2 * i], cjson.encode(rec))
end
redis.call('SET', KEYS[1], 1)
return 1`;

export class RedisPoolStore implements PoolStore {
  readonly description: string;
  private readonly client: RedisClient;
  private sub: RedisClient | undefined;
  private readonly prefix: string;
  private keys: string[] = [];

  constructor(url: string) {
    const u = new URL(url);
    this.prefix = u.searchParams.get('prefix') ?? 'uniroute:';
    u.search = '';
    this.description = `redis://${u.hostname}:${u.port || 6379}${u.pathname || '/0'} (prefix ${this.prefix})`;
    let Redis: typeof import('ioredis').default;
    try {
      Redis = createRequire(import.meta.url)('ioredis');
    } catch (e) {
      throw new UnirouteError('STORE_UNAVAILABLE', `Redis pools need the ioredis package (${(e as Error).message.split('\n')[0]})`);
    }
    // fail fast when Redis is away (the caller keeps its last pool); reconnect in the background
    this.client = new Redis(u.toString(), { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, retryStrategy: (n) => Math.min(1000, 50 * n), lazyConnect: true });
    this.client.on('error', () => undefined); // reported through the failing calls
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      if (this.client.status === 'wait') await this.client.connect();
      return await fn();
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${what} failed: ${(e as Error).message}`);
    }
  }

  private k(name: string): string {
    return this.keys[['version', 'models', 'pos', 'feedback', 'changes'].indexOf(name)];
  }

  async open(modelHash: string, seed: PoolEntry[], by = 'seed', o: OpenOptions = {}): Promise<PoolSnapshot> {
    const base = `${this.prefix}${modelHash}:`;
    this.keys = ['version', 'models', 'pos', 'feedback', 'changes'].map((x) => base + x);
    if (o.create === false) {
      // a read-only command: the pool must be there already, and nothing is written
      if ((await this.call('open', () => this.client.get(this.k('version')))) === null) throw noPool(this.description, modelHash);
      return this.read();
    }
    const at = new Date().toISOString();
    const args: string[] = [String(seed.length)];
    for (const e of seed) args.push(e.name, record(e, -1, at, by));
    await this.call('open', () => this.client.eval(OPEN, 5, ...this.keys, ...args));
    return this.read();
  }

  private need(): void {
    if (this.keys.length === 0) throw new UnirouteError('INTERNAL', 'the pool store is not open: call open() first');
  }

  async read(): Promise<PoolSnapshot> {
    this.need();
    const res = await this.call('read', () => this.client.multi().get(this.k('version')).hgetall(this.k('models')).exec());
    const [[e1, v], [e2, all]] = res as [[Error | null, string | null], [Error | null, Record<string, string>]];
    if (e1 || e2) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: read failed: ${(e1 ?? e2)!.message}`);
    if (v === null) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: the pool of this model is gone`);
    const models = Object.entries(all)
      .map(([name, raw]) => parse(name, raw))
      .sort((a, b) => a.pos - b.pos)
      .map(({ pos: _pos, ...m }) => m);
    return { version: Number(v), models };
  }

  async version(): Promise<number> {
    this.need();
    const v = await this.call('version', () => this.client.get(this.k('version')));
    if (v === null) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: the pool of this model is gone`);
    return Number(v);
  }

  private result(r: unknown, name: string, want?: number): number {
    const [status, v] = r as [string, number];
    if (status === 'OK') return Number(v);
    if (status === 'CONFLICT') throw new UnirouteError('VERSION_CONFLICT', `the pool is at version ${v}, not ${want}: another change came first; read it again and retry`);
    if (status === 'DUPLICATE') throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool`);
    if (status === 'UNKNOWN') throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
    if (status === 'COUNTED') throw new UnirouteError('ALREADY_COUNTED', 'this decision\'s outcome for this LLM was already counted');
    throw new UnirouteError('INTERNAL', `unexpected answer from the Redis script: ${String(status)}`);
  }

  async put(entry: PoolEntry, o: ChangeOptions & { replace?: boolean } = {}): Promise<number> {
    this.need();
    const r = await this.call('put', () =>
      this.client.eval(PUT, 5, ...this.keys, entry.name, record(entry, -1, new Date().toISOString(), o.by ?? 'unknown'), o.ifVersion === undefined ? '' : String(o.ifVersion), o.replace ? '1' : '0'),
    );
    return this.result(r, entry.name, o.ifVersion);
  }

  async remove(name: string, o: ChangeOptions = {}): Promise<number> {
    this.need();
    const r = await this.call('remove', () => this.client.eval(REMOVE, 5, ...this.keys, name, o.ifVersion === undefined ? '' : String(o.ifVersion)));
    return this.result(r, name, o.ifVersion);
  }

  async replaceAll(entries: PoolEntry[], o: ChangeOptions = {}): Promise<number> {
    this.need();
    const at = new Date().toISOString();
    const args: string[] = [o.ifVersion === undefined ? '' : String(o.ifVersion), String(entries.length)];
    for (const e of entries) args.push(e.name, record(e, -1, at, o.by ?? 'import'));
    const r = await this.call('import', () => this.client.eval(REPLACE, 5, ...this.keys, ...args));
    return this.result(r, '', o.ifVersion);
  }

  async addOutcome(name: string, feedbackId: string, decidedAt: number, update: (current: StoredModel) => PoolEntry, keepMs = 7 * 86_400_000): Promise<number> {
    this.need();
    // optimistic: read the record, compute, write only if it did not change meanwhile (the script checks)
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.call('feedback', () => this.client.hget(this.k('models'), name));
      if (raw === null) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
      const cur = parse(name, raw);
      const next = update(cur);
      const r = await this.call('feedback', () =>
        this.client.eval(OUTCOME, 5, ...this.keys, name, raw, record(next, cur.pos, new Date().toISOString(), 'feedback'), feedbackId, String(Math.floor(decidedAt)), String(Date.now() - keepMs)),
      );
      if ((r as [string])[0] === 'RETRY') continue;
      return this.result(r, name);
    }
    throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: feedback for "${name}" kept colliding with other changes; retry`);
  }

  /** A conversation's LLM, shared by the replicas (sticky sessions); expires after `ttlMs` without a turn. */
  async sessionGet(key: string): Promise<string | undefined> {
    this.need();
    const v = await this.call('session', () => this.client.get(`${this.keys[0].replace(/version$/, 'session:')}${key}`));
    return v ?? undefined;
  }

  async sessionSet(key: string, model: string, ttlMs: number): Promise<void> {
    this.need();
    await this.call('session', () => this.client.set(`${this.keys[0].replace(/version$/, 'session:')}${key}`, model, 'PX', Math.max(1, Math.floor(ttlMs))));
  }

  /** Per-key rate and spend counters, shared by every replica on this Redis (keys PREFIX limits:*). */
  counters(): LimitCounters {
    return (this.limitCounters ??= new RedisCounters(this.client, this.prefix, this.description, async () => {
      if (this.client.status === 'wait') await this.client.connect();
    }));
  }
  private limitCounters: LimitCounters | undefined;

  /** Calls `onVersion` with each new version published by any process (a second connection, subscribed). */
  watch(onVersion: (v: number) => void): () => void {
    this.need();
    const sub = (this.sub ??= this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null }));
    sub.on('error', () => undefined);
    const ch = this.k('changes');
    const on = (channel: string, msg: string) => channel === ch && onVersion(Number(msg));
    sub.on('message', on);
    sub.subscribe(ch).catch(() => undefined);
    return () => {
      sub.off('message', on);
    };
  }

  async close(): Promise<void> {
    this.sub?.disconnect();
    this.client.disconnect();
  }
}
