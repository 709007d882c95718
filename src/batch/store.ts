/**
 * Where the Batch API keeps its state: the uploaded files' records, the jobs, which line owns each custom_id, and
 * one output or error record per line. Two backends, the pool store's: SQLite (one machine; the pool's file when
 * the pool is sqlite:PATH, else batches.sqlite in the batch folder) and Redis (a fleet: src/batch/redis-store.ts).
 *
 * Exactly once: record() writes a line's record only when its key (the custom_id) has none yet, and counts it in
 * the job in the same transaction; the write that brings done up to total also finishes the job. So a line sent
 * twice (its worker died with the call in flight) is still written once, and counted once.
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { UnirouteError } from '../errors.js';
import { FINAL, errorFileId, outputFileId, type BatchRecord, type BatchStatus, type FileRecord, type OutputRecord } from './types.js';

export interface ListOptions {
  after?: string;
  limit: number;
  owner?: string | null;
  /** Owner filtering applies (client keys configured). */
  scoped?: boolean;
}

export interface BatchStore {
  readonly description: string;
  /** Shared by several machines (Redis): the lines go through the BullMQ queue. */
  readonly fleet: boolean;
  putFile(f: FileRecord): Promise<void>;
  getFile(id: string): Promise<FileRecord | undefined>;
  listFiles(o: ListOptions): Promise<FileRecord[]>;
  deleteFile(id: string): Promise<boolean>;
  createBatch(b: BatchRecord): Promise<void>;
  getBatch(id: string): Promise<BatchRecord | undefined>;
  listBatches(o: ListOptions): Promise<BatchRecord[]>;
  /** Ids of the batches not in a final state. */
  activeBatches(): Promise<string[]>;
  /** Applies `patch` when the batch's status is one of `from`: the batch after, or undefined (absent, or another status). */
  transition(id: string, from: readonly BatchStatus[], patch: Partial<BatchRecord>): Promise<BatchRecord | undefined>;
  /** Ends a batch that is not final yet as `status` (its output and error file ids set from its counts). */
  finish(id: string, status: 'completed' | 'cancelled' | 'expired' | 'failed', now: number, errors?: BatchRecord['errors']): Promise<BatchRecord | undefined>;
  /** Takes or renews a lease named `what` on a batch for `ms`; false when another owner holds it. */
  lease(id: string, what: string, owner: string, ms: number): Promise<boolean>;
  release(id: string, what: string, owner: string): Promise<void>;
  /** Per item: true when its line owns its custom_id (the first line that claimed it; claiming again is idempotent). */
  claimIds(id: string, items: Array<{ customId: string; line: number }>): Promise<boolean[]>;
  /** Per key: whether the line already has its record. */
  done(id: string, keys: string[]): Promise<boolean[]>;
  /** Writes the records whose keys have none yet, counts them, and finishes the batch when every line has one. */
  record(id: string, recs: OutputRecord[], now: number): Promise<{ written: number; status: BatchStatus | undefined }>;
  /** Sets the batch's reference LLM unless it has one. */
  setReference(id: string, llm: string): Promise<void>;
  /** The output or error file's lines (in input order on SQLite), read in pages. */
  results(id: string, kind: 'output' | 'error'): AsyncIterable<string>;
  /** Drops a batch's output or error lines (DELETE of its file). */
  dropResults(id: string, kind: 'output' | 'error'): Promise<void>;
  close(): Promise<void>;
}

/** The patch that finishes a batch: its end state and time, and the files it has lines for. */
export function finishPatch(b: BatchRecord, status: 'completed' | 'cancelled' | 'expired' | 'failed', now: number): Partial<BatchRecord> {
  const p: Partial<BatchRecord> = { status, finalizingAt: b.finalizingAt ?? now, outputFileId: b.completed > 0 ? outputFileId(b.id) : null, errorFileId: b.failed > 0 ? errorFileId(b.id) : null };
  if (status === 'completed') p.completedAt = now;
  else if (status === 'cancelled') p.cancelledAt = now;
  else if (status === 'expired') p.expiredAt = now;
  else p.failedAt = now;
  return p;
}

type Db = import('better-sqlite3').Database;

const PAGE = 512;

/** SQLite (better-sqlite3): WAL, synchronous NORMAL (a commit survives a kill -9; records are written in groups). */
export class SqliteBatchStore implements BatchStore {
  readonly description: string;
  readonly fleet = false;
  private readonly db: Db;
  private readonly st: Record<string, import('better-sqlite3').Statement>;

  constructor(path: string) {
    this.description = `sqlite:${path}`;
    let Database: typeof import('better-sqlite3');
    try {
      Database = createRequire(import.meta.url)('better-sqlite3');
    } catch (e) {
      throw new UnirouteError('STORE_UNAVAILABLE', `batches on SQLite need the optional better-sqlite3 package (npm install better-sqlite3@^12), or a Redis pool (--pool redis://…)`);
    }
    try {
      mkdirSync(dirname(resolve(path)), { recursive: true });
      this.db = new Database(path, { timeout: 5_000 });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS batch_files (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, owner TEXT, data TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, owner TEXT, status TEXT NOT NULL, data TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS batch_leases (batch_id TEXT NOT NULL, what TEXT NOT NULL, owner TEXT NOT NULL, until_ms INTEGER NOT NULL, PRIMARY KEY (batch_id, what));
        CREATE TABLE IF NOT EXISTS batch_ids (batch_id TEXT NOT NULL, custom_id TEXT NOT NULL, line INTEGER NOT NULL, PRIMARY KEY (batch_id, custom_id)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS batch_out (batch_id TEXT NOT NULL, key TEXT NOT NULL, line INTEGER NOT NULL, ok INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY (batch_id, key)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS batch_out_by_line ON batch_out (batch_id, ok, line);`);
    } catch (e) {
      throw new UnirouteError('STORE_UNAVAILABLE', `cannot open the batch store ${path}: ${(e as Error).message}`);
    }
    const p = (sql: string) => this.db.prepare(sql);
    this.st = {
      putFile: p('INSERT INTO batch_files (id, created_ms, owner, data) VALUES (?, ?, ?, ?)'),
      getFile: p('SELECT data FROM batch_files WHERE id = ?'),
      delFile: p('DELETE FROM batch_files WHERE id = ?'),
      putBatch: p('INSERT INTO batches (id, created_ms, owner, status, data) VALUES (?, ?, ?, ?, ?)'),
      getBatch: p('SELECT data FROM batches WHERE id = ?'),
      setBatch: p('UPDATE batches SET status = ?, data = ? WHERE id = ?'),
      active: p("SELECT id FROM batches WHERE status NOT IN ('completed', 'failed', 'expired', 'cancelled') ORDER BY created_ms"),
      getLease: p('SELECT owner, until_ms FROM batch_leases WHERE batch_id = ? AND what = ?'),
      setLease: p('INSERT OR REPLACE INTO batch_leases (batch_id, what, owner, until_ms) VALUES (?, ?, ?, ?)'),
      delLease: p('DELETE FROM batch_leases WHERE batch_id = ? AND what = ? AND owner = ?'),
      claim: p('INSERT OR IGNORE INTO batch_ids (batch_id, custom_id, line) VALUES (?, ?, ?)'),
      owner: p('SELECT line FROM batch_ids WHERE batch_id = ? AND custom_id = ?'),
      done: p('SELECT 1 FROM batch_out WHERE batch_id = ? AND key = ?'),
      put: p('INSERT OR IGNORE INTO batch_out (batch_id, key, line, ok, json) VALUES (?, ?, ?, ?, ?)'),
      page: p('SELECT line, key, json FROM batch_out WHERE batch_id = ? AND ok = ? AND (line > ? OR (line = ? AND key > ?)) ORDER BY line, key LIMIT ?'),
      drop: p('DELETE FROM batch_out WHERE batch_id = ? AND ok = ?'),
    };
  }

  private wrap<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('STORE_UNAVAILABLE', `${this.description}: ${what} failed: ${(e as Error).message}`);
    }
  }

  private read(id: string): BatchRecord | undefined {
    const r = this.st.getBatch.get(id) as { data: string } | undefined;
    return r ? (JSON.parse(r.data) as BatchRecord) : undefined;
  }
  private write(b: BatchRecord): void {
    this.st.setBatch.run(b.status, JSON.stringify(b), b.id);
  }

  async putFile(f: FileRecord): Promise<void> {
    this.wrap('file', () => this.st.putFile.run(f.id, f.createdAt * 1000 + (Date.now() % 1000), f.owner, JSON.stringify(f)));
  }
  async getFile(id: string): Promise<FileRecord | undefined> {
    return this.wrap('file', () => {
      const r = this.st.getFile.get(id) as { data: string } | undefined;
      return r ? (JSON.parse(r.data) as FileRecord) : undefined;
    });
  }
  async listFiles(o: ListOptions): Promise<FileRecord[]> {
    return this.wrap('files', () => this.list('batch_files', o).map((d) => JSON.parse(d) as FileRecord));
  }
  async deleteFile(id: string): Promise<boolean> {
    return this.wrap('file', () => this.st.delFile.run(id).changes > 0);
  }

  /** Newest first, after the cursor `after` (an id of the same table). */
  private list(table: 'batch_files' | 'batches', o: ListOptions): string[] {
    let sql = `SELECT data FROM ${table}`;
    const args: unknown[] = [];
    const where: string[] = [];
    if (o.after) {
      const a = this.db.prepare(`SELECT created_ms, id FROM ${table} WHERE id = ?`).get(o.after) as { created_ms: number; id: string } | undefined;
      if (!a) throw new UnirouteError('INVALID_ARGUMENT', `after: no ${table === 'batches' ? 'batch' : 'file'} "${o.after}"`);
      where.push('(created_ms < ? OR (created_ms = ? AND id < ?))');
      args.push(a.created_ms, a.created_ms, a.id);
    }
    if (o.scoped) {
      where.push('owner IS ?');
      args.push(o.owner ?? null);
    }
    if (where.length) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY created_ms DESC, id DESC LIMIT ?';
    args.push(o.limit);
    return (this.db.prepare(sql).all(...args) as Array<{ data: string }>).map((r) => r.data);
  }

  async createBatch(b: BatchRecord): Promise<void> {
    this.wrap('batch', () => this.st.putBatch.run(b.id, b.createdAt * 1000 + (Date.now() % 1000), b.owner, b.status, JSON.stringify(b)));
  }
  async getBatch(id: string): Promise<BatchRecord | undefined> {
    return this.wrap('batch', () => this.read(id));
  }
  async listBatches(o: ListOptions): Promise<BatchRecord[]> {
    return this.wrap('batches', () => this.list('batches', o).map((d) => JSON.parse(d) as BatchRecord));
  }
  async activeBatches(): Promise<string[]> {
    return this.wrap('batches', () => (this.st.active.all() as Array<{ id: string }>).map((r) => r.id));
  }
  async transition(id: string, from: readonly BatchStatus[], patch: Partial<BatchRecord>): Promise<BatchRecord | undefined> {
    return this.wrap('batch', () =>
      this.db
        .transaction(() => {
          const b = this.read(id);
          if (!b || !from.includes(b.status)) return undefined;
          const next = { ...b, ...patch };
          this.write(next);
          return next;
        })
        .immediate(),
    );
  }
  async finish(id: string, status: 'completed' | 'cancelled' | 'expired' | 'failed', now: number, errors?: BatchRecord['errors']): Promise<BatchRecord | undefined> {
    return this.wrap('batch', () =>
      this.db
        .transaction(() => {
          const b = this.read(id);
          if (!b || FINAL.has(b.status)) return undefined;
          const next = { ...b, ...finishPatch(b, status, now), ...(errors ? { errors } : {}) };
          this.write(next);
          return next;
        })
        .immediate(),
    );
  }
  async lease(id: string, what: string, owner: string, ms: number): Promise<boolean> {
    return this.wrap('lease', () =>
      this.db
        .transaction(() => {
          const now = Date.now();
          const l = this.st.getLease.get(id, what) as { owner: string; until_ms: number } | undefined;
          if (l && l.owner !== owner && l.until_ms > now) return false;
          this.st.setLease.run(id, what, owner, now + ms);
          return true;
        })
        .immediate(),
    );
  }
  async release(id: string, what: string, owner: string): Promise<void> {
    this.wrap('lease', () => this.st.delLease.run(id, what, owner));
  }
  async claimIds(id: string, items: Array<{ customId: string; line: number }>): Promise<boolean[]> {
    return this.wrap('claim', () =>
      this.db
        .transaction(() =>
          items.map((it) => {
            if (this.st.claim.run(id, it.customId, it.line).changes > 0) return true;
            return (this.st.owner.get(id, it.customId) as { line: number }).line === it.line;
          }),
        )
        .immediate(),
    );
  }
  async done(id: string, keys: string[]): Promise<boolean[]> {
    return this.wrap('done', () => keys.map((k) => this.st.done.get(id, k) !== undefined));
  }
  async record(id: string, recs: OutputRecord[], now: number): Promise<{ written: number; status: BatchStatus | undefined }> {
    return this.wrap('record', () =>
      this.db
        .transaction(() => {
          const b = this.read(id);
          if (!b) return { written: 0, status: undefined };
          if (FINAL.has(b.status)) return { written: 0, status: b.status };
          let written = 0;
          for (const r of recs) {
            if (this.st.put.run(id, r.key, r.line, r.ok ? 1 : 0, r.json).changes === 0) continue;
            written++;
            if (r.ok) {
              b.completed++;
              b.outputBytes += Buffer.byteLength(r.json) + 1;
            } else {
              b.failed++;
              b.errorBytes += Buffer.byteLength(r.json) + 1;
            }
            if (r.llm) b.models[r.llm] = (b.models[r.llm] ?? 0) + 1;
            b.cost += r.cost;
            b.referenceCost += r.referenceCost;
            b.inputTokens += r.inputTokens;
            b.outputTokens += r.outputTokens;
          }
          let next = b;
          // the last line's record ends the job: cancelled when it was being cancelled, expired when its window ended
          if (b.completed + b.failed >= b.total) next = { ...b, ...finishPatch(b, b.status === 'cancelling' ? 'cancelled' : b.status === 'finalizing' ? 'expired' : 'completed', now) };
          if (written > 0 || next !== b) this.write(next);
          return { written, status: next.status };
        })
        .immediate(),
    );
  }
  async setReference(id: string, llm: string): Promise<void> {
    this.wrap('batch', () =>
      this.db
        .transaction(() => {
          const b = this.read(id);
          if (b && !b.referenceLlm) this.write({ ...b, referenceLlm: llm });
        })
        .immediate(),
    );
  }
  async *results(id: string, kind: 'output' | 'error'): AsyncIterable<string> {
    let line = -1;
    let key = '';
    for (;;) {
      const rows = this.wrap('results', () => this.st.page.all(id, kind === 'output' ? 1 : 0, line, line, key, PAGE) as Array<{ line: number; key: string; json: string }>);
      for (const r of rows) yield r.json;
      if (rows.length < PAGE) return;
      line = rows[rows.length - 1].line;
      key = rows[rows.length - 1].key;
    }
  }
  async dropResults(id: string, kind: 'output' | 'error'): Promise<void> {
    this.wrap('results', () => this.st.drop.run(id, kind === 'output' ? 1 : 0));
  }
  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
