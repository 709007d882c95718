/**
 * The Batch API's state in Redis, shared by every replica and worker of a fleet (`--pool redis://…`; the pool's
 * prefix). Keys (P = the prefix):
 *
 *   P batch:file:<id>       the file's record (JSON)          P batch:files   ids by creation time (sorted set)
 *   P batch:b:<id>          the job (a hash: fields, counters, m:<llm> lines per LLM)
 *   P batch:all             jobs by creation time             P batch:active  jobs not in a final state (set)
 *   P batch:b:<id>:ids      custom_id -> the line that owns it
 *   P batch:b:<id>:out|err  key -> the output or error line;  :outz|:errz the keys by line number (the file's order)
 *   P batch:b:<id>:lease:<what>  a lease (the planner's), with an expiry
 *
 * Every change that must be atomic is one Lua script: a record is written only when its key has none (output or
 * error), counted in the job in the same script, and the write that completes the job finishes it.
 */
import { UnirouteError } from '../errors.js';
import { redisDescription, requireIoredis } from '../pool/redis.js';
import { FINAL, errorFileId, outputFileId, type BatchRecord, type BatchStatus, type FileRecord, type OutputRecord } from './types.js';
import type { BatchStore, ListOptions } from './store.js';

type RedisClient = import('ioredis').Redis;

/** BatchRecord fields kept as hash fields, with their kind. */
const FIELDS: Array<[keyof BatchRecord, string, 'str' | 'num' | 'nstr' | 'nnum' | 'json' | 'bool']> = [
  ['id', 'id', 'str'],
  ['endpoint', 'endpoint', 'str'],
  ['inputFileId', 'input_file_id', 'str'],
  ['completionWindow', 'completion_window', 'str'],
  ['status', 'status', 'str'],
  ['createdAt', 'created_at', 'num'],
  ['expiresAt', 'expires_at', 'num'],
  ['inProgressAt', 'in_progress_at', 'nnum'],
  ['finalizingAt', 'finalizing_at', 'nnum'],
  ['completedAt', 'completed_at', 'nnum'],
  ['failedAt', 'failed_at', 'nnum'],
  ['expiredAt', 'expired_at', 'nnum'],
  ['cancellingAt', 'cancelling_at', 'nnum'],
  ['cancelledAt', 'cancelled_at', 'nnum'],
  ['outputFileId', 'output_file_id', 'nstr'],
  ['errorFileId', 'error_file_id', 'nstr'],
  ['metadata', 'metadata', 'json'],
  ['errors', 'errors', 'json'],
  ['owner', 'owner', 'nstr'],
  ['total', 'total', 'num'],
  ['completed', 'completed', 'num'],
  ['failed', 'failed', 'num'],
  ['cost', 'cost', 'num'],
  ['referenceCost', 'reference_cost', 'num'],
  ['referenceLlm', 'reference_llm', 'nstr'],
  ['inputTokens', 'input_tokens', 'num'],
  ['outputTokens', 'output_tokens', 'num'],
  ['outputBytes', 'output_bytes', 'num'],
  ['errorBytes', 'error_bytes', 'num'],
  ['enqueued', 'enqueued', 'bool'],
  ['chunks', 'chunks', 'num'],
];
const BY_KEY = new Map(FIELDS.map((f) => [f[0], f]));

function encode(patch: Partial<BatchRecord>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(patch)) {
    if (k === 'models') {
      for (const [m, n] of Object.entries(v as Record<string, number>)) out.push(`m:${m}`, String(n));
      continue;
    }
    const f = BY_KEY.get(k as keyof BatchRecord);
    if (!f) continue;
    const [, field, kind] = f;
    out.push(field, v === null || v === undefined ? '' : kind === 'json' ? JSON.stringify(v) : kind === 'bool' ? (v ? '1' : '0') : String(v));
  }
  return out;
}

function decode(h: Record<string, string>): BatchRecord {
  const b: Record<string, unknown> = { models: {} };
  for (const [k, field, kind] of FIELDS) {
    const v = h[field];
    if (kind === 'str') b[k] = v ?? '';
    else if (kind === 'num') b[k] = v === undefined || v === '' ? 0 : Number(v);
    else if (kind === 'nnum') b[k] = v === undefined || v === '' ? null : Number(v);
    else if (kind === 'nstr') b[k] = v === undefined || v === '' ? null : v;
    else if (kind === 'bool') b[k] = v === '1';
    else b[k] = v === undefined || v === '' ? null : JSON.parse(v);
  }
  for (const [f, v] of Object.entries(h)) if (f.startsWith('m:')) (b.models as Record<string, number>)[f.slice(2)] = Number(v);
  return b as unknown as BatchRecord;
}

const FINAL_LUA = `local final = {completed=true, failed=true, expired=true, cancelled=true}`;
// finishes the job in KEYS[1] as `st` (removes it from the active set KEYS[2], member `id`)
const FINISH_FN = `
local function finish(st, now, id, outId, errId)
  local c = tonumber(redis.call('HGET', KEYS[1], 'completed') or '0') or 0
  local f = tonumber(redis.call('HGET', KEYS[1], 'failed') or '0') or 0
  local o = ''
  local e = ''
  if c > 0 then o = outId end
  if f > 0 then e = errId end
  redis.call('HSET', KEYS[1], 'status', st, 'output_file_id', o, 'error_file_id', e)
  if (redis.call('HGET', KEYS[1], 'finalizing_at') or '') == '' then redis.call('HSET', KEYS[1], 'finalizing_at', now) end
  local at = {completed='completed_at', cancelled='cancelled_at', expired='expired_at', failed='failed_at'}
  redis.call('HSET', KEYS[1], at[st], now)
  redis.call('SREM', KEYS[2], id)
end`;

// KEYS batch, active; ARGV from (comma list), then field/value pairs
const TRANSITION = `${FINAL_LUA}
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == st then ok = true end end
if not ok then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
local nst = redis.call('HGET', KEYS[1], 'status')
if final[nst] then redis.call('SREM', KEYS[2], redis.call('HGET', KEYS[1], 'id')) end
return 1`;

// KEYS batch, active; ARGV status, now, id, outId, errId, errors json ('' = keep)
const FINISH = `${FINAL_LUA}${FINISH_FN}
local st = redis.call('HGET', KEYS[1], 'status')
if not st or final[st] then return 0 end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'errors', ARGV[6]) end
finish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1`;

// KEYS batch, active, out, err, outz, errz; ARGV now, id, outId, errId, n, then per record:
// key, line, ok, json, llm, cost, refcost, intok, outtok
const RECORD = `${FINAL_LUA}${FINISH_FN}
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {0, ''} end
if final[st] then return {0, st} end
local written = 0
local n = tonumber(ARGV[5])
local i = 6
local cost = 0
local ref = 0
local tin = 0
local tout = 0
for r = 1, n do
  local key, line, ok, json, llm = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('HEXISTS', KEYS[3], key) == 0 and redis.call('HEXISTS', KEYS[4], key) == 0 then
    if ok == '1' then
      redis.call('HSET', KEYS[3], key, json)
      redis.call('ZADD', KEYS[5], line, key)
      redis.call('HINCRBY', KEYS[1], 'completed', 1)
      redis.call('HINCRBY', KEYS[1], 'output_bytes', #json + 1)
    else
      redis.call('HSET', KEYS[4], key, json)
      redis.call('ZADD', KEYS[6], line, key)
      redis.call('HINCRBY', KEYS[1], 'failed', 1)
      redis.call('HINCRBY', KEYS[1], 'error_bytes', #json + 1)
    end
    if llm ~= '' then redis.call('HINCRBY', KEYS[1], 'm:' .. llm, 1) end
    cost = cost + tonumber(ARGV[i + 5])
    ref = ref + tonumber(ARGV[i + 6])
    tin = tin + tonumber(ARGV[i + 7])
    tout = tout + tonumber(ARGV[i + 8])
    written = written + 1
  end
  i = i + 9
end
if written > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'cost', string.format('%.17g', cost))
  redis.call('HINCRBYFLOAT', KEYS[1], 'reference_cost', string.format('%.17g', ref))
  redis.call('HINCRBY', KEYS[1], 'input_tokens', tin)
  redis.call('HINCRBY', KEYS[1], 'output_tokens', tout)
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0') or 0
local done = (tonumber(redis.call('HGET', KEYS[1], 'completed') or '0') or 0) + (tonumber(redis.call('HGET', KEYS[1], 'failed') or '0') or 0)
if done >= total then
  local fin = 'completed'
  if st == 'cancelling' then fin = 'cancelled' end
  if st == 'finalizing' then fin = 'expired' end
  finish(fin, ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  return {written, fin}
end
return {written, st}`;

// KEYS ids; ARGV pairs custom_id, line
const CLAIM = `local out = {}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then out[#out + 1] = 1
  elseif redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then out[#out + 1] = 1
  else out[#out + 1] = 0 end
end
return out`;

// KEYS out, err; ARGV keys
const DONE = `local out = {}
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 or redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then out[i] = 1 else out[i] = 0 end
end
return out`;

// KEYS lease; ARGV owner, ms
const LEASE = `local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

export class RedisBatchStore implements BatchStore {
  readonly description: string;
  readonly fleet = true;
  readonly client: RedisClient;
  /** The key prefix (the pool's), for the BullMQ queue too. */
  readonly prefix: string;

  constructor(url: string) {
    const u = new URL(url);
    this.prefix = u.searchParams.get('prefix') ?? 'uniroute:';
    u.search = '';
    this.description = redisDescription(u, this.prefix);
    const Redis = requireIoredis('batches on Redis');
    this.client = new Redis(u.toString(), { maxRetriesPerRequest: 2, connectTimeout: 2000, retryStrategy: (n) => Math.min(1000, 50 * n), lazyConnect: true });
    this.client.on('error', () => undefined); // reported through the failing calls
  }

  /** The connection URL without the prefix parameter (for BullMQ). */
  static connectionUrl(url: string): string {
    const u = new URL(url);
    u.search = '';
    return u.toString();
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

  private k(...parts: string[]): string {
    return `${this.prefix}batch:${parts.join(':')}`;
  }
  private bk(id: string, sub?: string): string {
    return sub ? this.k('b', id, sub) : this.k('b', id);
  }

  async putFile(f: FileRecord): Promise<void> {
    await this.call('file', () => this.client.multi().set(this.k('file', f.id), JSON.stringify(f)).zadd(this.k('files'), Date.now(), f.id).exec());
  }
  async getFile(id: string): Promise<FileRecord | undefined> {
    const s = await this.call('file', () => this.client.get(this.k('file', id)));
    return s ? (JSON.parse(s) as FileRecord) : undefined;
  }
  async deleteFile(id: string): Promise<boolean> {
    const r = await this.call('file', () => this.client.multi().del(this.k('file', id)).zrem(this.k('files'), id).exec());
    return Number(r?.[0]?.[1] ?? 0) > 0;
  }
  /** Newest first after `after`, filtered by owner, a page at a time. */
  private async page<T extends { owner: string | null }>(zset: string, o: ListOptions, get: (ids: string[]) => Promise<Array<T | undefined>>, what: string): Promise<T[]> {
    let start = 0;
    if (o.after) {
      const r = await this.call(what, () => this.client.zrevrank(zset, o.after!));
      if (r === null) throw new UnirouteError('INVALID_ARGUMENT', `after: no ${what} "${o.after}"`);
      start = r + 1;
    }
    const out: T[] = [];
    const step = Math.max(o.limit, 100);
    for (;;) {
      const ids = await this.call(what, () => this.client.zrevrange(zset, start, start + step - 1));
      if (ids.length === 0) return out;
      for (const x of await get(ids)) {
        if (!x || (o.scoped && x.owner !== (o.owner ?? null))) continue;
        out.push(x);
        if (out.length >= o.limit) return out;
      }
      start += ids.length;
    }
  }
  async listFiles(o: ListOptions): Promise<FileRecord[]> {
    return this.page(this.k('files'), o, async (ids) => (await this.call('files', () => this.client.mget(ids.map((i) => this.k('file', i))))).map((s) => (s ? (JSON.parse(s) as FileRecord) : undefined)), 'file');
  }

  async createBatch(b: BatchRecord): Promise<void> {
    await this.call('batch', () =>
      this.client
        .multi()
        .hset(this.bk(b.id), ...encode(b))
        .zadd(this.k('all'), Date.now(), b.id)
        .sadd(this.k('active'), b.id)
        .exec(),
    );
  }
  async getBatch(id: string): Promise<BatchRecord | undefined> {
    const h = await this.call('batch', () => this.client.hgetall(this.bk(id)));
    return h && h.id ? decode(h) : undefined;
  }
  async listBatches(o: ListOptions): Promise<BatchRecord[]> {
    return this.page(this.k('all'), o, (ids) => Promise.all(ids.map((i) => this.getBatch(i))), 'batch');
  }
  async activeBatches(): Promise<string[]> {
    return this.call('batches', () => this.client.smembers(this.k('active')));
  }
  async transition(id: string, from: readonly BatchStatus[], patch: Partial<BatchRecord>): Promise<BatchRecord | undefined> {
    const r = await this.call('batch', () => this.client.eval(TRANSITION, 2, this.bk(id), this.k('active'), from.join(','), ...encode(patch)));
    return Number(r) === 1 ? this.getBatch(id) : undefined;
  }
  async finish(id: string, status: 'completed' | 'cancelled' | 'expired' | 'failed', now: number, errors?: BatchRecord['errors']): Promise<BatchRecord | undefined> {
    const r = await this.call('batch', () => this.client.eval(FINISH, 2, this.bk(id), this.k('active'), status, String(now), id, outputFileId(id), errorFileId(id), errors ? JSON.stringify(errors) : ''));
    return Number(r) === 1 ? this.getBatch(id) : undefined;
  }
  async lease(id: string, what: string, owner: string, ms: number): Promise<boolean> {
    return Number(await this.call('lease', () => this.client.eval(LEASE, 1, this.bk(id, `lease:${what}`), owner, String(Math.ceil(ms))))) === 1;
  }
  async release(id: string, what: string, owner: string): Promise<void> {
    await this.call('lease', () => this.client.eval(RELEASE, 1, this.bk(id, `lease:${what}`), owner));
  }
  async claimIds(id: string, items: Array<{ customId: string; line: number }>): Promise<boolean[]> {
    if (items.length === 0) return [];
    const args: string[] = [];
    for (const it of items) args.push(it.customId, String(it.line));
    const r = (await this.call('claim', () => this.client.eval(CLAIM, 1, this.bk(id, 'ids'), ...args))) as number[];
    return r.map((x) => Number(x) === 1);
  }
  async done(id: string, keys: string[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const r = (await this.call('done', () => this.client.eval(DONE, 2, this.bk(id, 'out'), this.bk(id, 'err'), ...keys))) as number[];
    return r.map((x) => Number(x) === 1);
  }
  async record(id: string, recs: OutputRecord[], now: number): Promise<{ written: number; status: BatchStatus | undefined }> {
    const args: string[] = [String(now), id, outputFileId(id), errorFileId(id), String(recs.length)];
    for (const r of recs) args.push(r.key, String(r.line), r.ok ? '1' : '0', r.json, r.llm ?? '', String(r.cost), String(r.referenceCost), String(Math.round(r.inputTokens)), String(Math.round(r.outputTokens)));
    const res = (await this.call('record', () =>
      this.client.eval(RECORD, 6, this.bk(id), this.k('active'), this.bk(id, 'out'), this.bk(id, 'err'), this.bk(id, 'outz'), this.bk(id, 'errz'), ...args),
    )) as [number, string];
    return { written: Number(res[0]), status: res[1] ? (res[1] as BatchStatus) : undefined };
  }
  async setReference(id: string, llm: string): Promise<void> {
    await this.call('batch', async () => {
      if (!(await this.client.hget(this.bk(id), 'reference_llm'))) await this.client.hset(this.bk(id), 'reference_llm', llm);
    });
  }
  async *results(id: string, kind: 'output' | 'error'): AsyncIterable<string> {
    const z = this.bk(id, kind === 'output' ? 'outz' : 'errz');
    const h = this.bk(id, kind === 'output' ? 'out' : 'err');
    for (let start = 0; ; start += 512) {
      const keys = await this.call('results', () => this.client.zrange(z, String(start), String(start + 511)));
      if (keys.length === 0) return;
      const vals = await this.call('results', () => this.client.hmget(h, ...keys));
      for (const v of vals) if (v !== null) yield v;
      if (keys.length < 512) return;
    }
  }
  async dropResults(id: string, kind: 'output' | 'error'): Promise<void> {
    await this.call('results', () => this.client.del(this.bk(id, kind === 'output' ? 'out' : 'err'), this.bk(id, kind === 'output' ? 'outz' : 'errz')));
  }
  async close(): Promise<void> {
    this.client.disconnect();
  }
}

export { FINAL };
