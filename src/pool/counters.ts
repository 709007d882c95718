/**
 * Per-key rate and spend counters for the gateway's tenants (rpm, tpm, max_usd_per_day), kept where the pool is:
 * in Redis when replicas share one (every replica then enforces one limit), in the SQLite file when processes of
 * one machine do, in this process otherwise.
 *
 * Requests and tokens per minute use a sliding window estimated from two fixed one-minute windows (the previous
 * window's count weighted by the part of it still inside the last 60 s, plus the current one's); spend per day is
 * a fixed UTC day. admit() checks every limit of a key and counts the request in one atomic step (one Lua script
 * in Redis, one immediate transaction in SQLite), so that two replicas never both admit the last request of a
 * minute; record() adds an answer's tokens and cost afterwards.
 */
import { UnirouteError } from '../errors.js';
import { withoutBlocking } from './busy.js';

export interface KeyLimits {
  rpm?: number;
  tpm?: number;
  maxUsdPerDay?: number;
}

export type Admission = { ok: true } | { ok: false; limit: 'rpm' | 'tpm' | 'max_usd_per_day'; used: number; max: number; retryAfterS: number };

export interface LimitCounters {
  readonly description: string;
  /** Checks the key's limits and, when under every one, counts the request. */
  admit(key: string, limits: KeyLimits, now?: number): Promise<Admission>;
  /** Adds an answer's tokens and spend. */
  record(key: string, tokens: number, usd: number, now?: number): Promise<void>;
  close?(): Promise<void>;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

/** The window index and the part of the current minute gone. */
export const windowOf = (now: number) => ({ minute: Math.floor(now / MINUTE), day: Math.floor(now / DAY), frac: (now % MINUTE) / MINUTE });

/** The sliding estimate: the previous window's count for the part of it still within the last minute, plus the current one's. */
export const slidingCount = (prev: number, cur: number, frac: number) => prev * (1 - frac) + cur;

/**
 * Seconds until the sliding count falls to `room` (the next request fits), given the two windows now. The
 * previous window's weight falls to 0 by the end of this minute; then the current window becomes the previous one.
 */
export function secondsUntil(prev: number, cur: number, frac: number, room: number): number {
  if (cur <= room && prev > 0) {
    // prev * (1 - f) + cur <= room  =>  f >= 1 - (room - cur) / prev
    const f = 1 - (room - cur) / prev;
    if (f <= 1) return Math.max(1, Math.ceil(Math.max(0, f - frac) * 60));
  }
  // next minute: cur * (1 - g) <= room  =>  g >= 1 - room / cur
  const g = cur > 0 ? Math.max(0, 1 - room / cur) : 0;
  return Math.max(1, Math.ceil((1 - frac + g) * 60));
}

const untilTomorrow = (now: number) => Math.max(1, Math.ceil((DAY - (now % DAY)) / 1000));

/** The decision from the counts: the first limit that is reached, in the order usd, tpm, rpm. */
export function decide(limits: KeyLimits, c: { rpmPrev: number; rpmCur: number; tpmPrev: number; tpmCur: number; usd: number }, now: number): Admission {
  const { frac } = windowOf(now);
  if (limits.maxUsdPerDay !== undefined && c.usd >= limits.maxUsdPerDay) return { ok: false, limit: 'max_usd_per_day', used: c.usd, max: limits.maxUsdPerDay, retryAfterS: untilTomorrow(now) };
  if (limits.tpm !== undefined) {
    const t = slidingCount(c.tpmPrev, c.tpmCur, frac);
    if (t >= limits.tpm) return { ok: false, limit: 'tpm', used: Math.round(t), max: limits.tpm, retryAfterS: secondsUntil(c.tpmPrev, c.tpmCur, frac, limits.tpm - 1) };
  }
  if (limits.rpm !== undefined) {
    const r = slidingCount(c.rpmPrev, c.rpmCur, frac);
    if (r + 1 > limits.rpm + 1e-9) return { ok: false, limit: 'rpm', used: Math.round(r), max: limits.rpm, retryAfterS: secondsUntil(c.rpmPrev, c.rpmCur, frac, limits.rpm - 1) };
  }
  return { ok: true };
}

/** In this process. */
export class MemoryCounters implements LimitCounters {
  readonly description = 'memory';
  private readonly m = new Map<string, number>();
  private sweeps = 0;
  private get(k: string): number {
    return this.m.get(k) ?? 0;
  }
  private sweep(now: number): void {
    if (++this.sweeps % 1024 !== 0) return;
    const { minute, day } = windowOf(now);
    for (const k of this.m.keys()) {
      const [, kind, at] = k.split('\u0000');
      const n = Number(at);
      if ((kind === 'usd' && n < day) || (kind !== 'usd' && n < minute - 1)) this.m.delete(k);
    }
  }
  async admit(key: string, limits: KeyLimits, now = Date.now()): Promise<Admission> {
    const { minute, day } = windowOf(now);
    const k = (kind: string, at: number) => `${key}\u0000${kind}\u0000${at}`;
    const a = decide(limits, { rpmPrev: this.get(k('rpm', minute - 1)), rpmCur: this.get(k('rpm', minute)), tpmPrev: this.get(k('tpm', minute - 1)), tpmCur: this.get(k('tpm', minute)), usd: this.get(k('usd', day)) }, now);
    if (a.ok) this.m.set(k('rpm', minute), this.get(k('rpm', minute)) + 1);
    this.sweep(now);
    return a;
  }
  async record(key: string, tokens: number, usd: number, now = Date.now()): Promise<void> {
    const { minute, day } = windowOf(now);
    const k = (kind: string, at: number) => `${key}\u0000${kind}\u0000${at}`;
    if (tokens > 0) this.m.set(k('tpm', minute), this.get(k('tpm', minute)) + tokens);
    if (usd > 0) this.m.set(k('usd', day), this.get(k('usd', day)) + usd);
  }
}

type Db = import('better-sqlite3').Database;

/** In the pool's SQLite file (a table of its own), shared by the processes of one machine. */
export class SqliteCounters implements LimitCounters {
  readonly description: string;
  private readonly getStmt;
  private readonly addStmt;
  private n = 0;
  constructor(
    private readonly db: Db,
    description: string,
    private readonly busyTimeoutMs = 10_000,
  ) {
    this.description = description;
    db.exec('CREATE TABLE IF NOT EXISTS limit_counters (name TEXT PRIMARY KEY, value REAL NOT NULL, expires INTEGER NOT NULL)');
    this.getStmt = db.prepare('SELECT value FROM limit_counters WHERE name = ?');
    this.addStmt = db.prepare('INSERT INTO limit_counters (name, value, expires) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value');
    // a lock held by another process is waited for by sleeping, never on this thread (withoutBlocking)
    db.pragma('busy_timeout = 0');
  }
  private async wrap<T>(fn: () => T): Promise<T> {
    try {
      return await withoutBlocking(fn, this.busyTimeoutMs, () => `${this.description}: limit counters`);
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: limit counters failed: ${(e as Error).message}`);
    }
  }
  private v(name: string): number {
    return (this.getStmt.get(name) as { value: number } | undefined)?.value ?? 0;
  }
  async admit(key: string, limits: KeyLimits, now = Date.now()): Promise<Admission> {
    const { minute, day } = windowOf(now);
    return this.wrap(() =>
      this.db
        .transaction(() => {
          const a = decide(limits, { rpmPrev: this.v(`${key}:rpm:${minute - 1}`), rpmCur: this.v(`${key}:rpm:${minute}`), tpmPrev: this.v(`${key}:tpm:${minute - 1}`), tpmCur: this.v(`${key}:tpm:${minute}`), usd: this.v(`${key}:usd:${day}`) }, now);
          if (a.ok) this.addStmt.run(`${key}:rpm:${minute}`, 1, now + 2 * MINUTE);
          if (++this.n % 1024 === 0) this.db.prepare('DELETE FROM limit_counters WHERE expires < ?').run(now);
          return a;
        })
        .immediate(),
    );
  }
  async record(key: string, tokens: number, usd: number, now = Date.now()): Promise<void> {
    const { minute, day } = windowOf(now);
    await this.wrap(() =>
      this.db
        .transaction(() => {
          if (tokens > 0) this.addStmt.run(`${key}:tpm:${minute}`, tokens, now + 2 * MINUTE);
          if (usd > 0) this.addStmt.run(`${key}:usd:${day}`, usd, now + 2 * DAY);
        })
        .immediate(),
    );
  }
}

type RedisClient = import('ioredis').Redis;

/**
 * In Redis, shared by replicas. The check and the count are one script: it reads the counts, decides with the
 * same rule as the other stores (evaluated in Lua), and counts the request only when admitted.
 * KEYS: rpm now, rpm before, tpm now, tpm before, usd today. ARGV: rpm, tpm, usd limits ('' = none), the
 * minute's ttl in ms, the part of the minute gone. Returns strings (Lua numbers would be truncated).
 */
const ADMIT_DECIDE = `
local function n(k) return tonumber(redis.call('GET', k) or '0') end
local rp, rc, tp, tc, u = n(KEYS[2]), n(KEYS[1]), n(KEYS[4]), n(KEYS[3]), n(KEYS[5])
local frac = tonumber(ARGV[5])
local ok = 1
if ARGV[3] ~= '' and u >= tonumber(ARGV[3]) then ok = 0 end
if ok == 1 and ARGV[2] ~= '' and tp * (1 - frac) + tc >= tonumber(ARGV[2]) then ok = 0 end
if ok == 1 and ARGV[1] ~= '' and rp * (1 - frac) + rc + 1 > tonumber(ARGV[1]) + 1e-9 then ok = 0 end
if ok == 1 then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {tostring(ok), tostring(rp), tostring(rc), tostring(tp), tostring(tc), tostring(u)}`;

export class RedisCounters implements LimitCounters {
  constructor(
    private readonly client: RedisClient,
    private readonly prefix: string,
    readonly description: string,
    private readonly ensure: () => Promise<void>,
    /** Told of every failure (a command timeout makes the store fail fast for a while). */
    private readonly failed?: (e: unknown) => void,
  ) {}
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      await this.ensure();
      return await fn();
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      this.failed?.(e);
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: limit counters failed: ${(e as Error).message}`);
    }
  }
  async admit(key: string, limits: KeyLimits, now = Date.now()): Promise<Admission> {
    const { minute, day, frac } = windowOf(now);
    const p = `${this.prefix}limits:${key}:`;
    const r = (await this.call(() =>
      this.client.eval(ADMIT_DECIDE, 5, `${p}rpm:${minute}`, `${p}rpm:${minute - 1}`, `${p}tpm:${minute}`, `${p}tpm:${minute - 1}`, `${p}usd:${day}`, limits.rpm ?? '', limits.tpm ?? '', limits.maxUsdPerDay ?? '', String(2 * MINUTE), String(frac)),
    )) as string[];
    if (r[0] === '1') return { ok: true };
    // refused: the same rule on the counts it saw says which limit and for how long
    const a = decide(limits, { rpmPrev: Number(r[1]), rpmCur: Number(r[2]), tpmPrev: Number(r[3]), tpmCur: Number(r[4]), usd: Number(r[5]) }, now);
    return a.ok ? { ok: false, limit: 'rpm', used: Number(r[2]), max: limits.rpm ?? 0, retryAfterS: 1 } : a;
  }
  async record(key: string, tokens: number, usd: number, now = Date.now()): Promise<void> {
    const { minute, day } = windowOf(now);
    const p = `${this.prefix}limits:${key}:`;
    await this.call(async () => {
      const m = this.client.multi();
      if (tokens > 0) m.incrby(`${p}tpm:${minute}`, Math.round(tokens)).pexpire(`${p}tpm:${minute}`, 2 * MINUTE);
      if (usd > 0) m.incrbyfloat(`${p}usd:${day}`, usd).pexpire(`${p}usd:${day}`, 2 * DAY);
      await m.exec();
    });
  }
}
