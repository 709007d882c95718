/**
 * The LLM pool as live state, apart from the fitted model: a store keyed by the model's hash that holds each LLM
 * (name, cost per query, per-cluster error sums and counts, per-cell counts, when and by whom it changed) and a
 * version that grows by one with every change. Every change is one transaction, checked against an expected
 * version when the caller gives one (`ifVersion`, HTTP If-Match), and acknowledged only once durable.
 *
 *   memory:          in this process (the library, tests)
 *   sqlite:PATH      one file shared by the processes of one machine (WAL, one transaction per change)
 *   redis://HOST:PORT/DB[?prefix=P]   shared by replicas on several machines (src/pool/redis.ts)
 *
 * A store never checks the statistics against the model (it does not know K): the router does, before a change
 * is written (its own) and after it is read (another process's), so nothing unchecked enters the routing.
 *
 * Beside the version, every pool has an epoch: a random id made when the pool is created. A store that comes back
 * empty and is seeded again, or another store behind the same address, has another epoch, so a reader that
 * holds version N of the old one is never fooled by a version N of the new one. A change can be made conditional
 * on the epoch (`ifEpoch`), as on the version.
 *
 * Routing never waits on a store: a SQLite change that finds the file locked by another process does not wait
 * on this thread (busy_timeout = 0) but retries after a short sleep, up to `busyTimeoutMs`; Redis calls have a
 * command timeout, and after one times out the next calls fail at once for a while (src/pool/redis.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { UnirouteError } from '../errors.js';
import type { PoolEntry } from '../router/router.js';
import { RedisPoolStore } from './redis.js';
import { MemoryCounters, SqliteCounters, type LimitCounters } from './counters.js';
import { withoutBlocking } from './busy.js';

export { withoutBlocking };

export interface StoredModel extends PoolEntry {
  changedAt: string;
  changedBy: string;
}

export interface PoolSnapshot {
  version: number;
  /** The pool's identity: made when the pool was created (a store that came back empty and was seeded again has another). */
  epoch: string;
  models: StoredModel[];
}

/** Where a pool stands: its version and its epoch. */
export interface PoolHead {
  version: number;
  epoch: string;
}

export interface ChangeOptions {
  /** Refuse the change (VERSION_CONFLICT) unless the pool is at this version. */
  ifVersion?: number;
  /** Refuse the change (VERSION_CONFLICT) unless the pool is this epoch (the same pool, not one seeded again). */
  ifEpoch?: string;
  /** Who made it (recorded with the LLM). */
  by?: string;
}

export interface OpenOptions {
  /** Seed a pool that is not there yet (default true); false for read-only commands. */
  create?: boolean;
}

/** The error of a read-only open that finds no pool for the model. */
export const noPool = (description: string, modelHash: string) =>
  new UnirouteError(
    'NOT_FOUND',
    `${description} holds no pool for this router's model (${modelHash.slice(0, 12)}); a read-only command does not create one: ` +
      '`uniroute serve`, `add-model` or `import` with this --pool and router does',
  );

export interface PoolStore {
  /** Where it is, for messages (no secrets). */
  readonly description: string;
  /**
   * Opens the pool of a fitted model; a store with none yet takes `seed` as its version 1, unless `create` is
   * false (a read-only command): then it is a NOT_FOUND error and nothing is written.
   */
  open(modelHash: string, seed: PoolEntry[], by?: string, o?: OpenOptions): Promise<PoolSnapshot>;
  read(): Promise<PoolSnapshot>;
  version(): Promise<number>;
  /** The version and the epoch, in one call. */
  head(): Promise<PoolHead>;
  /** Adds an LLM (or replaces it with `replace`); returns the new version. */
  put(entry: PoolEntry, o?: ChangeOptions & { replace?: boolean }): Promise<number>;
  /** Removes an LLM; returns the new version. */
  remove(name: string, o?: ChangeOptions): Promise<number>;
  /** Replaces the whole pool in one change (`uniroute import`); returns the new version. */
  replaceAll(entries: PoolEntry[], o?: ChangeOptions): Promise<number>;
  /**
   * Feedback: replaces an LLM's entry by `update(current)` in one transaction, once per `feedbackId` (a repeat is
   * ALREADY_COUNTED). `decidedAt` (ms) lets ids older than `keepMs` be forgotten. Returns the new version.
   */
  addOutcome(name: string, feedbackId: string, decidedAt: number, update: (current: StoredModel) => PoolEntry, keepMs?: number, o?: ChangeOptions): Promise<number>;
  /** The gateway's per-key rate and spend counters, kept in this store (shared as the pool is). */
  counters?(): LimitCounters;
  /** Where the store can tell: calls `onVersion` when any process changed the pool (Redis pub/sub). */
  watch?(onVersion: (version: number) => void): () => void;
  close(): Promise<void>;
}

const counted = () => new UnirouteError('ALREADY_COUNTED', 'this decision\'s outcome for this LLM was already counted');
const conflict = (want: number, have: number) =>
  new UnirouteError('VERSION_CONFLICT', `the pool is at version ${have}, not ${want}: another change came first; read it again and retry`);
export const epochConflict = (want: string, have: string) =>
  new UnirouteError('VERSION_CONFLICT', `the pool store holds another pool than the one read (epoch ${have}, not ${want}): it came back empty and was seeded again, or it is another store; read it again and retry`);
/** A new pool's epoch. */
export const newEpoch = () => randomBytes(8).toString('hex');
const unopened = () => new UnirouteError('INTERNAL', 'the pool store is not open: call open() first');
/** The message of a store that has no pool for this model any more (a Redis restarted empty, a file replaced). */
export const GONE = 'it holds no pool for this model any more (it restarted empty, or was flushed or replaced): `uniroute import --router FILE --pool URL` puts one back';

const copy = (e: PoolEntry, changedAt: string, changedBy: string): StoredModel => ({
  name: e.name,
  costPerQuery: e.costPerQuery,
  errorSums: Float32Array.from(e.errorSums),
  counts: Float32Array.from(e.counts),
  ...(e.cellCounts ? { cellCounts: Float32Array.from(e.cellCounts) } : {}),
  changedAt,
  changedBy,
});

/** In this process only. */
export class MemoryPoolStore implements PoolStore {
  readonly description = 'memory:';
  private pools = new Map<string, PoolSnapshot>();
  private hash: string | undefined;

  /** A memory: store is this process's: a read-only open seeds it too (nothing outlives the process). */
  async open(modelHash: string, seed: PoolEntry[], by = 'seed', _o: OpenOptions = {}): Promise<PoolSnapshot> {
    this.hash = modelHash;
    if (!this.pools.has(modelHash)) {
      const at = new Date().toISOString();
      this.pools.set(modelHash, { version: 1, epoch: newEpoch(), models: seed.map((e) => copy(e, at, by)) });
    }
    return this.read();
  }

  /** Forgets every pool (a store that restarted empty: for tests). */
  clear(): void {
    this.pools.clear();
  }

  private check(o: ChangeOptions): PoolSnapshot {
    const p = this.pool();
    if (o.ifEpoch !== undefined && o.ifEpoch !== p.epoch) throw epochConflict(o.ifEpoch, p.epoch);
    if (o.ifVersion !== undefined && o.ifVersion !== p.version) throw conflict(o.ifVersion, p.version);
    return p;
  }

  private pool(): PoolSnapshot {
    if (!this.hash) throw unopened();
    const p = this.pools.get(this.hash);
    if (!p) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${GONE}`);
    return p;
  }

  async read(): Promise<PoolSnapshot> {
    const p = this.pool();
    return { version: p.version, epoch: p.epoch, models: p.models.map((m) => copy(m, m.changedAt, m.changedBy)) };
  }

  async version(): Promise<number> {
    return this.pool().version;
  }

  async head(): Promise<PoolHead> {
    const p = this.pool();
    return { version: p.version, epoch: p.epoch };
  }

  async put(entry: PoolEntry, o: ChangeOptions & { replace?: boolean } = {}): Promise<number> {
    const p = this.check(o);
    const i = p.models.findIndex((m) => m.name === entry.name);
    if (i >= 0 && !o.replace) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${entry.name}" is already in the pool`);
    const m = copy(entry, new Date().toISOString(), o.by ?? 'unknown');
    const models = p.models.slice();
    if (i >= 0) models[i] = m;
    else models.push(m);
    this.pools.set(this.hash!, { version: p.version + 1, epoch: p.epoch, models });
    return p.version + 1;
  }

  async remove(name: string, o: ChangeOptions = {}): Promise<number> {
    const p = this.check(o);
    if (!p.models.some((m) => m.name === name)) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
    this.pools.set(this.hash!, { version: p.version + 1, epoch: p.epoch, models: p.models.filter((m) => m.name !== name) });
    return p.version + 1;
  }

  private seen = new Map<string, number>();

  async replaceAll(entries: PoolEntry[], o: ChangeOptions = {}): Promise<number> {
    const p = this.check(o);
    const at = new Date().toISOString();
    this.pools.set(this.hash!, { version: p.version + 1, epoch: p.epoch, models: entries.map((e) => copy(e, at, o.by ?? 'import')) });
    return p.version + 1;
  }

  async addOutcome(name: string, feedbackId: string, decidedAt: number, update: (current: StoredModel) => PoolEntry, keepMs = 7 * 86_400_000, o: ChangeOptions = {}): Promise<number> {
    const p = this.check(o);
    const key = `${this.hash}\u0000${feedbackId}`;
    if (this.seen.has(key)) throw counted();
    const i = p.models.findIndex((m) => m.name === name);
    if (i < 0) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
    const models = p.models.slice();
    models[i] = copy(update(p.models[i]), new Date().toISOString(), 'feedback');
    this.pools.set(this.hash!, { version: p.version + 1, epoch: p.epoch, models });
    this.seen.set(key, decidedAt);
    const cut = Date.now() - keepMs;
    if (this.seen.size > 1024) for (const [k, t] of this.seen) if (t < cut) this.seen.delete(k);
    return p.version + 1;
  }

  counters(): LimitCounters {
    return (this.limitCounters ??= new MemoryCounters());
  }
  private limitCounters: LimitCounters | undefined;

  async close(): Promise<void> {}
}

type Db = import('better-sqlite3').Database;

const blob = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const floats = (b: unknown, what: string): Float32Array => {
  if (!Buffer.isBuffer(b) || b.length % 4 !== 0) throw new UnirouteError('BAD_ARTIFACT', `the pool store holds a malformed ${what}`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};

/** A stored LLM from its row. */
const fromRow = (r: any): StoredModel => ({
  name: String(r.name),
  costPerQuery: Number(r.cost),
  errorSums: floats(r.error_sums, 'error_sums'),
  counts: floats(r.counts, 'counts'),
  ...(r.cell_counts != null ? { cellCounts: floats(r.cell_counts, 'cell_counts') } : {}),
  changedAt: String(r.changed_at),
  changedBy: String(r.changed_by),
});

/**
 * One SQLite file (better-sqlite3) shared by the processes of one machine: WAL, synchronous=FULL, and BEGIN
 * IMMEDIATE per change, so two writers never lose each other's changes. A writer that finds the file locked does
 * not wait on this thread (busy_timeout is 0 once open): it sleeps and tries again (withoutBlocking), up to
 * `busyTimeoutMs` (default 10 s). A change is acknowledged after its commit, so it survives a kill -9.
 */
export class SqlitePoolStore implements PoolStore {
  readonly description: string;
  private db: Db;
  private hash: string | undefined;
  private readonly busyTimeoutMs: number;
  private readonly readOnly: boolean;
  /** Files of earlier versions, opened read-only, have no epoch column (it is added by the first writer). */
  private hasEpoch = true;

  /**
   * `readOnly` (read-only commands): the file must exist, and nothing is created or written. `busyTimeoutMs`: how
   * long a change waits (by sleeping) for a lock another process holds.
   */
  constructor(path: string, opts: boolean | { readOnly?: boolean; busyTimeoutMs?: number } = {}) {
    const o = typeof opts === 'boolean' ? { readOnly: opts } : opts;
    this.readOnly = !!o.readOnly;
    const readOnly = this.readOnly;
    this.description = `sqlite:${path}`;
    this.busyTimeoutMs = o.busyTimeoutMs ?? 10_000;
    let Database: typeof import('better-sqlite3');
    try {
      Database = createRequire(import.meta.url)('better-sqlite3');
    } catch (e) {
      throw new UnirouteError(
        'STORE_UNAVAILABLE',
        `sqlite pools need the better-sqlite3 package, an optional dependency of uniroute: npm install better-sqlite3@^12 (${(e as Error).message.split('\n')[0]})`,
      );
    }
    if (readOnly) {
      if (!existsSync(path))
        throw new UnirouteError('NOT_FOUND', `no pool store at ${path}: a read-only command does not create one (\`uniroute serve\`, \`add-model\` or \`import\` with --pool sqlite:${path} does)`);
      try {
        this.db = new Database(path, { readonly: true, fileMustExist: true, timeout: this.busyTimeoutMs });
        this.db.prepare('SELECT 1 FROM pools LIMIT 1').get();
        this.hasEpoch = (this.db.prepare('PRAGMA table_info(pools)').all() as Array<{ name: string }>).some((c) => c.name === 'epoch');
      } catch (e) {
        throw new UnirouteError('STORE_UNAVAILABLE', `cannot read the pool store ${path}: ${(e as Error).message} (is it a uniroute pool store?)`);
      }
      return;
    }
    try {
      mkdirSync(dirname(resolve(path)), { recursive: true });
      // setting the file up (once per process, before serving) may wait for another writer; later changes do not
      this.db = new Database(path, { timeout: this.busyTimeoutMs });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS pools (model_hash TEXT PRIMARY KEY, version INTEGER NOT NULL, created_at TEXT NOT NULL, epoch TEXT);
        CREATE TABLE IF NOT EXISTS models (
          model_hash TEXT NOT NULL, name TEXT NOT NULL, pos INTEGER NOT NULL, cost REAL NOT NULL,
          error_sums BLOB NOT NULL, counts BLOB NOT NULL, cell_counts BLOB,
          changed_at TEXT NOT NULL, changed_by TEXT NOT NULL,
          PRIMARY KEY (model_hash, name));
        CREATE TABLE IF NOT EXISTS feedback (model_hash TEXT NOT NULL, id TEXT NOT NULL, decided_at INTEGER NOT NULL, PRIMARY KEY (model_hash, id));`);
      // files of earlier versions have no epoch column: add it, and give their pools one
      const cols = this.db.prepare('PRAGMA table_info(pools)').all() as Array<{ name: string }>;
      if (!cols.some((c) => c.name === 'epoch')) this.db.exec('ALTER TABLE pools ADD COLUMN epoch TEXT');
      this.db.prepare("UPDATE pools SET epoch = lower(hex(randomblob(8))) WHERE epoch IS NULL OR epoch = ''").run();
      this.db.pragma('busy_timeout = 0');
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('STORE_UNAVAILABLE', `cannot open the pool store ${path}: ${(e as Error).message}`);
    }
  }

  /** One transaction, retried without blocking while another process holds the file's lock; errors coded. */
  private async run<T>(what: string, fn: () => T): Promise<T> {
    try {
      return await withoutBlocking(fn, this.busyTimeoutMs, () => `${this.description}: ${what}`);
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${what} failed: ${(e as Error).message}`);
    }
  }

  private current(o: ChangeOptions = {}): PoolHead {
    if (!this.hash) throw unopened();
    const r = this.db.prepare(this.hasEpoch ? 'SELECT version, epoch FROM pools WHERE model_hash = ?' : "SELECT version, '' AS epoch FROM pools WHERE model_hash = ?").get(this.hash) as
      | { version: number; epoch: string }
      | undefined;
    if (!r) throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${GONE}`);
    if (o.ifEpoch !== undefined && o.ifEpoch !== r.epoch) throw epochConflict(o.ifEpoch, r.epoch);
    if (o.ifVersion !== undefined && o.ifVersion !== r.version) throw conflict(o.ifVersion, r.version);
    return { version: r.version, epoch: r.epoch };
  }

  async open(modelHash: string, seed: PoolEntry[], by = 'seed', o: OpenOptions = {}): Promise<PoolSnapshot> {
    this.hash = modelHash;
    if (this.readOnly || o.create === false) {
      if (!(await this.run('open', () => this.db.prepare('SELECT 1 FROM pools WHERE model_hash = ?').get(modelHash)))) throw noPool(this.description, modelHash);
      return this.read();
    }
    await this.run('open', () =>
      this.db
        .transaction(() => {
          if (this.db.prepare('SELECT 1 FROM pools WHERE model_hash = ?').get(modelHash)) return;
          const at = new Date().toISOString();
          this.db.prepare('INSERT INTO pools (model_hash, version, created_at, epoch) VALUES (?, 1, ?, ?)').run(modelHash, at, newEpoch());
          const ins = this.db.prepare(
            'INSERT INTO models (model_hash, name, pos, cost, error_sums, counts, cell_counts, changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
          );
          seed.forEach((e, i) => ins.run(modelHash, e.name, i, e.costPerQuery, blob(e.errorSums), blob(e.counts), e.cellCounts ? blob(e.cellCounts) : null, at, by));
        })
        .immediate(),
    );
    return this.read();
  }

  async read(): Promise<PoolSnapshot> {
    return this.run('read', () =>
      this.db.transaction(() => {
        const h = this.current();
        const rows = this.db.prepare('SELECT * FROM models WHERE model_hash = ? ORDER BY pos').all(this.hash) as any[];
        return { ...h, models: rows.map(fromRow) };
      })(),
    );
  }

  async version(): Promise<number> {
    return (await this.head()).version;
  }

  async head(): Promise<PoolHead> {
    return this.run('version', () => this.current());
  }

  async put(entry: PoolEntry, o: ChangeOptions & { replace?: boolean } = {}): Promise<number> {
    return this.run('put', () =>
      this.db
        .transaction(() => {
          const v = this.current(o).version;
          const old = this.db.prepare('SELECT pos FROM models WHERE model_hash = ? AND name = ?').get(this.hash, entry.name) as { pos: number } | undefined;
          if (old && !o.replace) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${entry.name}" is already in the pool`);
          const pos = old ? old.pos : ((this.db.prepare('SELECT COALESCE(MAX(pos), -1) + 1 AS p FROM models WHERE model_hash = ?').get(this.hash) as { p: number }).p);
          this.db
            .prepare(
              'INSERT OR REPLACE INTO models (model_hash, name, pos, cost, error_sums, counts, cell_counts, changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
            )
            .run(this.hash, entry.name, pos, entry.costPerQuery, blob(entry.errorSums), blob(entry.counts), entry.cellCounts ? blob(entry.cellCounts) : null, new Date().toISOString(), o.by ?? 'unknown');
          this.db.prepare('UPDATE pools SET version = version + 1 WHERE model_hash = ?').run(this.hash);
          return v + 1;
        })
        .immediate(),
    );
  }

  async remove(name: string, o: ChangeOptions = {}): Promise<number> {
    return this.run('remove', () =>
      this.db
        .transaction(() => {
          const v = this.current(o).version;
          const r = this.db.prepare('DELETE FROM models WHERE model_hash = ? AND name = ?').run(this.hash, name);
          if (r.changes === 0) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
          this.db.prepare('UPDATE pools SET version = version + 1 WHERE model_hash = ?').run(this.hash);
          return v + 1;
        })
        .immediate(),
    );
  }

  async replaceAll(entries: PoolEntry[], o: ChangeOptions = {}): Promise<number> {
    return this.run('import', () =>
      this.db
        .transaction(() => {
          const v = this.current(o).version;
          this.db.prepare('DELETE FROM models WHERE model_hash = ?').run(this.hash);
          const at = new Date().toISOString();
          const ins = this.db.prepare(
            'INSERT INTO models (model_hash, name, pos, cost, error_sums, counts, cell_counts, changed_at, changed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
          );
          entries.forEach((e, i) => ins.run(this.hash, e.name, i, e.costPerQuery, blob(e.errorSums), blob(e.counts), e.cellCounts ? blob(e.cellCounts) : null, at, o.by ?? 'import'));
          this.db.prepare('UPDATE pools SET version = version + 1 WHERE model_hash = ?').run(this.hash);
          return v + 1;
        })
        .immediate(),
    );
  }

  async addOutcome(name: string, feedbackId: string, decidedAt: number, update: (current: StoredModel) => PoolEntry, keepMs = 7 * 86_400_000, o: ChangeOptions = {}): Promise<number> {
    return this.run('feedback', () =>
      this.db
        .transaction(() => {
          const v = this.current(o).version;
          if (this.db.prepare('SELECT 1 FROM feedback WHERE model_hash = ? AND id = ?').get(this.hash, feedbackId)) throw counted();
          const r = this.db.prepare('SELECT * FROM models WHERE model_hash = ? AND name = ?').get(this.hash, name) as any;
          if (!r) throw new UnirouteError('UNKNOWN_MODEL', `LLM "${name}" is not in the pool`);
          const e = update(fromRow(r));
          this.db
            .prepare('UPDATE models SET error_sums = ?, counts = ?, cell_counts = ?, changed_at = ?, changed_by = ? WHERE model_hash = ? AND name = ?')
            .run(blob(e.errorSums), blob(e.counts), e.cellCounts ? blob(e.cellCounts) : null, new Date().toISOString(), 'feedback', this.hash, name);
          this.db.prepare('INSERT INTO feedback (model_hash, id, decided_at) VALUES (?, ?, ?)').run(this.hash, feedbackId, Math.floor(decidedAt));
          if (v % 256 === 0) this.db.prepare('DELETE FROM feedback WHERE model_hash = ? AND decided_at < ?').run(this.hash, Date.now() - keepMs);
          this.db.prepare('UPDATE pools SET version = version + 1 WHERE model_hash = ?').run(this.hash);
          return v + 1;
        })
        .immediate(),
    );
  }

  /**
   * Rate and spend counters in the same file, on a connection of their own with synchronous = NORMAL: under WAL a
   * commit then waits for no fsync (a counter lost to a power cut costs a few requests of a minute's limit; a pool
   * change keeps its FULL durability). Like the pool's, its writes never wait on this thread for a lock.
   */
  counters(): LimitCounters {
    if (!this.limitCounters) {
      const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3');
      const db = new Database(this.db.name, { timeout: this.busyTimeoutMs });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      this.counterDb = db;
      this.limitCounters = new SqliteCounters(db, this.description, this.busyTimeoutMs);
    }
    return this.limitCounters;
  }
  private counterDb: Db | undefined;
  private limitCounters: LimitCounters | undefined;

  async close(): Promise<void> {
    if (this.counterDb?.open) this.counterDb.close();
    if (this.db.open) this.db.close();
  }
}

/** A store from its URL: `memory:`, `sqlite:PATH`, `redis://…`; `readOnly` opens a sqlite file without creating it. */
export function openPoolStore(url: string, o: { readOnly?: boolean } = {}): PoolStore {
  if (url === 'memory:' || url === 'memory') return new MemoryPoolStore();
  const m = /^sqlite:(.+)$/.exec(url);
  if (m) return new SqlitePoolStore(m[1].replace(/^\/\/(?=\/)/, ''), !!o.readOnly);
  if (/^rediss?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new UnirouteError('INVALID_ARGUMENT', `--pool ${url.replace(/\/\/[^@/]*@/, '//[redacted]@')}: not a valid redis:// URL`);
    }
    return new RedisPoolStore(url);
  }
  throw new UnirouteError('INVALID_ARGUMENT', `--pool "${url.replace(/\/\/[^@/]*@/, '//[redacted]@')}": expected memory:, sqlite:PATH or redis://HOST:PORT/DB`);
}
