/**
 * The pool in Redis, shared by replicas on several machines: `redis://[user:password@]host:port/db[?prefix=uniroute:]`.
 *
 * Keys, per fitted model (H = its hash): PREFIX H:version (the pool version), PREFIX H:models (a hash: LLM name ->
 * JSON with its position, cost and statistics), PREFIX H:pos (a counter for positions), PREFIX H:feedback (a
 * sorted set of counted feedback ids, by decision time). Every change is one Lua script: it checks If-Match and
 * the preconditions, writes, bumps the version and publishes it on PREFIX H:changes, all atomically. Replicas
 * subscribe to that channel and also poll the version, so a missed message (a reconnect) never leaves one stale.
 * PREFIX H:epoch is the pool's identity, made with it: a Redis that restarted empty and was seeded again has
 * another, so replicas take its pool whatever its version number.
 *
 * Routing never waits on Redis. When it is away, calls fail at once (no offline queue). When it is there but does
 * not answer (paused, or a partition without a reset), every command times out after `timeout_ms` (default 1000,
 * `?timeout_ms=` in the URL), and for `retry_ms` after a timeout (default 1000) calls fail at once without trying,
 * so that requests do not queue behind a dead connection; the first call after it is the probe. Replicas keep
 * routing on the pool they have, and /readyz says `degraded`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { UnirouteError } from '../errors.js';
import type { PoolEntry } from '../router/router.js';
import { GONE, epochConflict, noPool, type ChangeOptions, type OpenOptions, type PoolHead, type PoolSnapshot, type PoolStore, type StoredModel } from './store.js';
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

// KEYS: version, models, pos, feedback, channel (as a key name for PUBLISH), epoch
// Every change script takes ARGV[1] = If-Match version ('' = any) and ARGV[2] = the expected epoch ('' = any),
// and starts by refusing a pool that is gone (Redis restarted empty: never a partial pool made by one change), of
// another epoch, or at another version; it ends by bumping the version and publishing it.
const PRE = `if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE', 0, ''} end
local v = tonumber(redis.call('GET', KEYS[1]))
local e = redis.call('GET', KEYS[6]) or ''
if ARGV[2] ~= '' and ARGV[2] ~= e then return {'EPOCH', v, e} end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then return {'CONFLICT', v, e} end`;
const BUMP = `local nv = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[5], nv)
return {'OK', nv, e}`;
// put: ARGV ifVersion, ifEpoch, name, record (JSON with a "pos" placeholder of -1), replace ('1'/'0')
const PUT = `${PRE}
local old = redis.call('HGET', KEYS[2], ARGV[3])
if old and ARGV[5] ~= '1' then return {'DUPLICATE', v, e} end
local pos
if old then pos = cjson.decode(old)['pos'] else pos = redis.call('INCR', KEYS[3]) end
local rec = cjson.decode(ARGV[4])
rec['pos'] = pos
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode(rec))
${BUMP}`;
// remove: ARGV ifVersion, ifEpoch, name
const REMOVE = `${PRE}
if redis.call('HDEL', KEYS[2], ARGV[3]) == 0 then return {'UNKNOWN', v, e} end
${BUMP}`;
// feedback: ARGV ifVersion (''), ifEpoch, name, expected record (as read), new record, feedback id, decided at, forget before
const OUTCOME = `${PRE}
if redis.call('ZSCORE', KEYS[4], ARGV[6]) then return {'COUNTED', v, e} end
local cur = redis.call('HGET', KEYS[2], ARGV[3])
if not cur then return {'UNKNOWN', v, e} end
if cur ~= ARGV[4] then return {'RETRY', v, e} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[8])
${BUMP}`;
// replace all: ARGV ifVersion, ifEpoch, n, then n pairs (name, record)
const REPLACE = `${PRE}
redis.call('DEL', KEYS[2])
local n = tonumber(ARGV[3])
for i = 1, n do
  local pos = redis.call('INCR', KEYS[3])
  local rec = cjson.decode(ARGV[3 + 2 * i])
  rec['pos'] = pos
  redis.call('HSET', KEYS[2], ARGV[2 + 2 * i], cjson.encode(rec))
end
${BUMP}`;
// open: ARGV epoch, n, then n pairs (name, record); creates the pool once, with its epoch (a pool of an earlier
// version gets one)
const OPEN = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SETNX', KEYS[6], ARGV[1])
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
local n = tonumber(ARGV[2])
for i = 1, n do
  local pos = redis.call('INCR', KEYS[3])
  local rec = cjson.decode(ARGV[2 + 2 * i])
  rec['pos'] = pos
  redis.call('HSET', KEYS[2], ARGV[1 + 2 * i], cjson.encode(rec))
end
redis.call('SET', KEYS[6], ARGV[1])
redis.call('SET', KEYS[1], 1)
return 1`;
// a sticky session: KEYS session key, index (a sorted set by expiry); ARGV model, ttl ms, now ms, most sessions.
// The index holds at most `most` live sessions: the ones closest to expiring go first when a new one comes.
const SESSION = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]), KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local n = redis.call('ZCARD', KEYS[2])
local most = tonumber(ARGV[4])
if n > most then
  local old = redis.call('ZPOPMIN', KEYS[2], n - most)
  for i = 1, #old, 2 do redis.call('DEL', old[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return n`;

const KEY_NAMES = ['version', 'models', 'pos', 'feedback', 'changes', 'epoch'];

/** Whether an ioredis error is its command timeout. */
const timedOut = (e: unknown) => /Command timed out/i.test(String((e as Error)?.message ?? ''));

/** How a Redis URL (its search part removed) and key prefix are named in messages and `info`. */
export function redisDescription(u: URL, prefix: string): string {
  return `redis://${u.hostname}:${u.port || 6379}${u.pathname || '/0'} (prefix ${prefix})`;
}

/** The ioredis client class, loaded when a Redis store opens; `what` names what needs it in the error. */
export function requireIoredis(what: string): typeof import('ioredis').default {
  try {
    return createRequire(import.meta.url)('ioredis');
  } catch (e) {
    throw new UnirouteError('STORE_UNAVAILABLE', `${what} need the ioredis package (${(e as Error).message.split('\n')[0]})`);
  }
}

export class RedisPoolStore implements PoolStore {
  readonly description: string;
  private readonly client: RedisClient;
  private sub: RedisClient | undefined;
  private readonly prefix: string;
  private keys: string[] = [];
  /** Command timeout (ms), and how long calls fail at once after one timed out. */
  readonly timeoutMs: number;
  readonly retryMs: number;
  private quietUntil = 0;
  private lastTimeout = 0;

  constructor(url: string) {
    const u = new URL(url);
    this.prefix = u.searchParams.get('prefix') ?? 'uniroute:';
    const ms = (name: string, d: number) => {
      const v = u.searchParams.get(name);
      if (v === null) return d;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 600_000) throw new UnirouteError('INVALID_ARGUMENT', `--pool: ${name} must be a whole number of milliseconds in [1, 600000] (got ${JSON.stringify(v)})`);
      return n;
    };
    this.timeoutMs = ms('timeout_ms', 1000);
    this.retryMs = ms('retry_ms', 1000);
    u.search = '';
    this.description = redisDescription(u, this.prefix);
    const Redis = requireIoredis('Redis pools');
    // fail fast when Redis is away (the caller keeps its last pool), time out when it does not answer; reconnect in
    // the background
    this.client = new Redis(u.toString(), {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      connectTimeout: 2000,
      commandTimeout: this.timeoutMs,
      retryStrategy: (n) => Math.min(1000, 50 * n),
      lazyConnect: true,
    });
    this.client.on('error', () => undefined); // reported through the failing calls
  }

  /** After a command timeout: calls fail at once for retry_ms. True when `e` was one. */
  private noteTimeout(e: unknown): boolean {
    if (!timedOut(e)) return false;
    this.lastTimeout = Date.now();
    this.quietUntil = this.lastTimeout + this.retryMs;
    return true;
  }

  /** Throws at once while Redis is taken to be stalled (a command timed out less than retry_ms ago). */
  private guard(what: string): void {
    const now = Date.now();
    if (now < this.quietUntil)
      throw new UnirouteError(
        'STORE_UNAVAILABLE',
        `${this.description}: ${what} not tried: Redis did not answer within ${this.timeoutMs} ms ${now - this.lastTimeout} ms ago (paused, or a network partition?); the next try is in ${this.quietUntil - now} ms`,
      );
  }

  private async call<T>(what: string, fn: () => Promise<T>, change = false): Promise<T> {
    this.guard(what);
    try {
      if (this.client.status === 'wait') await this.client.connect();
      return await fn();
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      if (this.noteTimeout(e)) {
        throw new UnirouteError(
          'STORE_UNAVAILABLE',
          `${this.description}: ${what}: Redis did not answer within ${this.timeoutMs} ms (paused, or a network partition?)` +
            (change ? '; the change may still be applied when it answers again: read the pool (GET /v1/models, its ETag) before retrying' : ''),
        );
      }
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${what} failed: ${(e as Error).message}`);
    }
  }

  private k(name: string): string {
    return this.keys[KEY_NAMES.indexOf(name)];
  }

  async open(modelHash: string, seed: PoolEntry[], by = 'seed', o: OpenOptions = {}): Promise<PoolSnapshot> {
    const base = `${this.prefix}${modelHash}:`;
    this.keys = KEY_NAMES.map((x) => base + x);
    if (o.create === false) {
      // a read-only command: the pool must be there already, and nothing is written
      if ((await this.call('open', () => this.client.get(this.k('version')))) === null) throw noPool(this.description, modelHash);
      return this.read();
    }
    const at = new Date().toISOString();
    const args: string[] = [randomBytes(8).toString('hex'), String(seed.length)];
    for (const e of seed) args.push(e.name, record(e, -1, at, by));
    await this.call('open', () => this.client.eval(OPEN, 6, ...this.keys, ...args), true);
    return this.read();
  }

  private need(): void {
    if (this.keys.length === 0) throw new UnirouteError('INTERNAL', 'the pool store is not open: call open() first');
  }

  async read(): Promise<PoolSnapshot> {
    this.need();
    const res = await this.call('read', () => this.client.multi().get(this.k('version')).get(this.k('epoch')).hgetall(this.k('models')).exec());
    const [[e1, v], [e2, epoch], [e3, all]] = res as [[Error | null, string | null], [Error | null, string | null], [Error | null, Record<string, string>]];
    if (e1 || e2 || e3) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: read failed: ${(e1 ?? e2 ?? e3)!.message}`);
    if (v === null) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${GONE}`);
    const models = Object.entries(all)
      .map(([name, raw]) => parse(name, raw))
      .sort((a, b) => a.pos - b.pos)
      .map(({ pos: _pos, ...m }) => m);
    return { version: Number(v), epoch: epoch ?? '', models };
  }

  async version(): Promise<number> {
    return (await this.head()).version;
  }

  async head(): Promise<PoolHead> {
    this.need();
    const [v, epoch] = await this.call('version', () => this.client.mget(this.k('version'), this.k('epoch')));
    if (v === null) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${GONE}`);
    return { version: Number(v), epoch: epoch ?? '' };
  }

  private result(r: unknown, name: string, want?: ChangeOptions): number {
    const [status, v, e] = r as [string, number, string];
    if (status === 'OK') return Number(v);
    if (status === 'GONE') throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${GONE}`);
    if (status === 'EPOCH') throw epochConflict(want?.ifEpoch ?? '', e);
    if (status === 'CONFLICT') throw new UnirouteError('VERSION_CONFLICT', `the pool is at version ${v}, not ${want?.ifVersion}: another change came first; read it again and retry`);
    if (status === 'DUPLICATE') throw new UnirouteError('DUPLICATE_MODEL', `LLM "${name}" is already in the pool`);
    if (status === 'UNKNOWN') throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
    if (status === 'COUNTED') throw new UnirouteError('ALREADY_COUNTED', 'this decision\'s outcome for this LLM was already counted');
    throw new UnirouteError('INTERNAL', `unexpected answer from the Redis script: ${String(status)}`);
  }

  private pre(o: ChangeOptions): [string, string] {
    return [o.ifVersion === undefined ? '' : String(o.ifVersion), o.ifEpoch ?? ''];
  }

  async put(entry: PoolEntry, o: ChangeOptions & { replace?: boolean } = {}): Promise<number> {
    this.need();
    const r = await this.call(
      'put',
      () => this.client.eval(PUT, 6, ...this.keys, ...this.pre(o), entry.name, record(entry, -1, new Date().toISOString(), o.by ?? 'unknown'), o.replace ? '1' : '0'),
      true,
    );
    return this.result(r, entry.name, o);
  }

  async remove(name: string, o: ChangeOptions = {}): Promise<number> {
    this.need();
    const r = await this.call('remove', () => this.client.eval(REMOVE, 6, ...this.keys, ...this.pre(o), name), true);
    return this.result(r, name, o);
  }

  async replaceAll(entries: PoolEntry[], o: ChangeOptions = {}): Promise<number> {
    this.need();
    const at = new Date().toISOString();
    const args: string[] = [...this.pre(o), String(entries.length)];
    for (const e of entries) args.push(e.name, record(e, -1, at, o.by ?? 'import'));
    const r = await this.call('import', () => this.client.eval(REPLACE, 6, ...this.keys, ...args), true);
    return this.result(r, '', o);
  }

  async addOutcome(name: string, feedbackId: string, decidedAt: number, update: (current: StoredModel) => PoolEntry, keepMs = 7 * 86_400_000, o: ChangeOptions = {}): Promise<number> {
    this.need();
    // optimistic: read the record, compute, write only if it did not change meanwhile (the script checks)
    for (let attempt = 0; attempt < 20; attempt++) {
      const raw = await this.call('feedback', () => this.client.hget(this.k('models'), name));
      if (raw === null) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
      const cur = parse(name, raw);
      const next = update(cur);
      const r = await this.call(
        'feedback',
        () =>
          this.client.eval(OUTCOME, 6, ...this.keys, '', o.ifEpoch ?? '', name, raw, record(next, cur.pos, new Date().toISOString(), 'feedback'), feedbackId, String(Math.floor(decidedAt)), String(Date.now() - keepMs)),
        true,
      );
      if ((r as [string])[0] === 'RETRY') continue;
      return this.result(r, name, o);
    }
    throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: feedback for "${name}" kept colliding with other changes; retry`);
  }

  /**
   * A conversation's LLM, shared by the replicas (sticky sessions); expires after `ttlMs` without a turn. Keys are
   * a digest of the session (bounded, whatever the client sends), and at most `maxSessions` live at once.
   */
  private sessionKey(key: string): string {
    return `${this.keys[0].replace(/version$/, 'session:')}${createHash('sha256').update(key).digest('base64url')}`;
  }

  async sessionGet(key: string): Promise<string | undefined> {
    this.need();
    const v = await this.call('session', () => this.client.get(this.sessionKey(key)));
    return v ?? undefined;
  }

  async sessionSet(key: string, model: string, ttlMs: number, maxSessions = 100_000): Promise<void> {
    this.need();
    const index = this.keys[0].replace(/version$/, 'sessions');
    await this.call('session', () => this.client.eval(SESSION, 2, this.sessionKey(key), index, model, String(Math.max(1, Math.floor(ttlMs))), String(Date.now()), String(Math.max(1, Math.floor(maxSessions)))));
  }

  /** Per-key rate and spend counters, shared by every replica on this Redis (keys PREFIX limits:*). */
  counters(): LimitCounters {
    return (this.limitCounters ??= new RedisCounters(
      this.client,
      this.prefix,
      this.description,
      async () => {
        this.guard('limit counters');
        if (this.client.status === 'wait') await this.client.connect();
      },
      (e) => this.noteTimeout(e),
    ));
  }
  private limitCounters: LimitCounters | undefined;

  /** Calls `onVersion` with each new version published by any process (a second connection, subscribed). */
  watch(onVersion: (v: number) => void): () => void {
    this.need();
    const sub = (this.sub ??= this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined }));
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
