/**
 * The Batch API's operations, shared by the HTTP routes (src/server/batch-routes.ts), `uniroute batch --pool`
 * and `uniroute worker`: files, jobs, cancellation, results; and the runner that does the work in this process.
 *
 * Where things are: the store is the pool's backend (sqlite:PATH: the same file; redis://: the same Redis and
 * prefix; none or memory:: batches.sqlite in the batch folder), uploads in the batch folder's files/ (batch.dir,
 * default ~/.uniroute/batch, or PATH.batch beside a SQLite pool).
 */
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { UnirouteError } from '../errors.js';
import type { BatchConfig } from './config.js';
import { FileDir, newId } from './files.js';
import type { LineEngine } from './process.js';
import { RedisBatchStore } from './redis-store.js';
import { FleetRunner, LocalRunner } from './runner.js';
import { SqliteBatchStore, type BatchStore } from './store.js';
import { ENDPOINTS, FINAL, resultFileOf, type BatchEndpoint, type BatchRecord, type FileRecord } from './types.js';

/** An error with the HTTP status and OpenAI error code the Batch API answers it with. */
export class ApiError extends UnirouteError {
  constructor(
    readonly status: number,
    readonly apiCode: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(status === 404 ? 'NOT_FOUND' : status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT', message);
  }
  override get httpStatus(): number {
    return this.status;
  }
}

export interface BatchServiceOptions {
  /** The pool store's URL (--pool), if any. */
  pool?: string;
  cfg: BatchConfig;
  /** Runs jobs in this process when given (serve, worker); without it the service only reads and writes the store. */
  engine?: LineEngine;
  /** On Redis: take chunks from the queue (default true with an engine). */
  work?: boolean;
  role?: string;
  log?: (msg: string) => void;
}

export const defaultBatchDir = () => process.env.UNIROUTE_BATCH_DIR || join(homedir(), '.uniroute', 'batch');

export class BatchService {
  readonly files: FileDir;
  readonly runner: LocalRunner | FleetRunner | undefined;
  private constructor(
    readonly store: BatchStore,
    readonly dir: string,
    readonly cfg: BatchConfig,
    o: BatchServiceOptions,
  ) {
    this.files = new FileDir(dir);
    if (o.engine) {
      const deps = { store, files: this.files, engine: o.engine, log: o.log };
      if (store instanceof RedisBatchStore) {
        const r = new FleetRunner({ ...deps, store, url: o.pool!, role: o.role ?? 'serve' });
        if (o.work !== false) r.work();
        this.runner = r;
      } else this.runner = new LocalRunner(deps);
    }
  }

  static open(o: BatchServiceOptions): BatchService {
    const pool = o.pool;
    const sqlite = pool ? /^sqlite:(.+)$/.exec(pool) : null;
    const dir = o.cfg.dir ?? (sqlite ? `${sqlite[1].replace(/^\/\/(?=\/)/, '')}.batch` : defaultBatchDir());
    let store: BatchStore;
    if (pool && /^rediss?:\/\//.test(pool)) store = new RedisBatchStore(pool);
    else if (sqlite) store = new SqliteBatchStore(sqlite[1].replace(/^\/\/(?=\/)/, ''));
    else store = new SqliteBatchStore(join(dir, 'batches.sqlite'));
    return new BatchService(store, dir, o.cfg, o);
  }

  get description(): string {
    return `${this.store.description}, files in ${this.files.dir}`;
  }

  start(): void {
    this.runner?.start(this.store.fleet ? 1000 : 500);
  }

  async close(): Promise<void> {
    await this.runner?.close();
    await this.store.close();
  }

  // ---- files ----------------------------------------------------------------------------------------------------

  /** Streams an upload to disk (its purpose may come after it in the form): committed by commitUpload. */
  async saveUpload(input: Readable, filename: string | undefined, owner: string | null): Promise<FileRecord> {
    const id = newId('file-');
    const { bytes, lines } = await this.files.save(id, input, { maxBytes: this.cfg.maxFileBytes, maxLines: this.cfg.maxLines, maxLineBytes: this.cfg.maxLineBytes });
    return { id, bytes, createdAt: Math.floor(Date.now() / 1000), filename: basename(filename || 'upload.jsonl').slice(0, 255), purpose: 'batch', lines, owner };
  }

  /** Keeps a saved upload when its purpose is "batch"; otherwise removes it and says why. */
  async commitUpload(f: FileRecord, purpose: string | undefined): Promise<FileRecord> {
    if (purpose !== 'batch') {
      await this.files.remove(f.id);
      throw new ApiError(400, 'invalid_purpose', purpose === undefined ? 'the field "purpose" is required: "batch"' : `purpose must be "batch" (this gateway keeps files for the Batch API), got ${JSON.stringify(purpose).slice(0, 60)}`, 'purpose');
    }
    try {
      await this.store.putFile(f);
    } catch (e) {
      await this.files.remove(f.id);
      throw e;
    }
    return f;
  }

  /** Saves and commits an upload (the CLI's --pool mode). */
  async upload(input: Readable, filename: string, purpose: string, owner: string | null): Promise<FileRecord> {
    return this.commitUpload(await this.saveUpload(input, filename, owner), purpose);
  }

  /** A file's record: an upload, or a batch's output or error file. */
  async file(id: string, owner: string | null, scoped: boolean): Promise<{ json: Record<string, unknown>; upload?: FileRecord; result?: { batch: BatchRecord; kind: 'output' | 'error' } }> {
    const r = resultFileOf(id);
    if (r) {
      const b = await this.store.getBatch(r.batchId);
      const fid = r.kind === 'output' ? b?.outputFileId : b?.errorFileId;
      if (!b || fid !== id || (scoped && b.owner !== owner)) throw new ApiError(404, 'file_not_found', `no file "${id}"`, 'file_id');
      return { json: resultFileJson(b, r.kind), result: { batch: b, kind: r.kind } };
    }
    const f = /^file-[0-9a-f]{24}$/.test(id) ? await this.store.getFile(id) : undefined;
    if (!f || (scoped && f.owner !== owner)) throw new ApiError(404, 'file_not_found', `no file "${id.slice(0, 80)}"`, 'file_id');
    return { json: fileJson(f), upload: f };
  }

  async listFiles(o: { after?: string; limit: number; purpose?: string }, owner: string | null, scoped: boolean): Promise<Record<string, unknown>[]> {
    const all = await this.store.listFiles({ after: o.after, limit: o.limit, owner, scoped });
    return all.filter((f) => !o.purpose || f.purpose === o.purpose).map(fileJson);
  }

  /** The file's bytes as a stream (an upload from disk; a result file from the store, line by line). */
  async content(id: string, owner: string | null, scoped: boolean): Promise<{ stream: Readable; bytes: number; filename: string }> {
    const f = await this.file(id, owner, scoped);
    if (f.upload) {
      if (!this.files.has(id)) throw new ApiError(404, 'file_not_found', `the bytes of "${id}" are not in ${this.files.dir} (in a fleet, give every replica the same batch.dir)`, 'file_id');
      return { stream: this.files.read(id), bytes: f.upload.bytes, filename: f.upload.filename };
    }
    const { batch, kind } = f.result!;
    const store = this.store;
    async function* lines() {
      for await (const l of store.results(batch.id, kind)) yield `${l}\n`;
    }
    return { stream: Readable.from(lines()), bytes: kind === 'output' ? batch.outputBytes : batch.errorBytes, filename: `${batch.id}_${kind}.jsonl` };
  }

  async deleteFile(id: string, owner: string | null, scoped: boolean): Promise<Record<string, unknown>> {
    const f = await this.file(id, owner, scoped);
    if (f.result) {
      await this.store.dropResults(f.result.batch.id, f.result.kind);
      await this.store.transition(f.result.batch.id, [...FINAL], f.result.kind === 'output' ? { outputFileId: null } : { errorFileId: null });
      return { id, object: 'file', deleted: true };
    }
    for (const bid of await this.store.activeBatches()) {
      const b = await this.store.getBatch(bid);
      if (b && b.inputFileId === id) throw new ApiError(409, 'file_in_use', `file "${id}" is the input of ${b.id}, which is ${b.status}: cancel it first, or wait for it to end`, 'file_id');
    }
    await this.store.deleteFile(id);
    await this.files.remove(id);
    return { id, object: 'file', deleted: true };
  }

  // ---- batches --------------------------------------------------------------------------------------------------

  async create(body: Record<string, unknown>, owner: string | null, scoped: boolean): Promise<BatchRecord> {
    const bad = (param: string, message: string): never => {
      throw new ApiError(400, 'invalid_request', message, param);
    };
    const known = ['input_file_id', 'endpoint', 'completion_window', 'metadata'];
    for (const k of Object.keys(body)) if (!known.includes(k)) bad(k, `unknown field "${k}"; the fields are ${known.join(', ')}`);
    if (typeof body.input_file_id !== 'string') bad('input_file_id', 'input_file_id is required: the id of a file uploaded with purpose "batch"');
    if (!ENDPOINTS.includes(body.endpoint as BatchEndpoint)) bad('endpoint', `endpoint must be one of ${ENDPOINTS.join(', ')}, got ${JSON.stringify(body.endpoint)?.slice(0, 60)}`);
    const window = body.completion_window ?? '24h';
    const wm = typeof window === 'string' ? /^([1-9][0-9]{0,3})h$/.exec(window) : null;
    if (!wm || Number(wm[1]) > 720) bad('completion_window', `completion_window must be hours such as "24h" (1h to 720h), got ${JSON.stringify(window)?.slice(0, 40)}`);
    let metadata: Record<string, string> | null = null;
    if (body.metadata !== undefined && body.metadata !== null) {
      const m = body.metadata;
      if (typeof m !== 'object' || Array.isArray(m)) bad('metadata', 'metadata must be an object of up to 16 string values');
      const e = Object.entries(m as object);
      if (e.length > 16) bad('metadata', `metadata has ${e.length} keys; at most 16`);
      for (const [k, v] of e) if (k.length > 64 || typeof v !== 'string' || v.length > 512) bad('metadata', `metadata.${k.slice(0, 64)}: keys up to 64 characters, values strings up to 512`);
      metadata = m as Record<string, string>;
    }
    const fid = body.input_file_id as string;
    const f = await this.file(fid, owner, scoped).catch((e) => (e instanceof ApiError && e.status === 404 ? bad('input_file_id', `no file "${fid.slice(0, 80)}": upload it first (POST /v1/files, purpose "batch")`) : Promise.reject(e)));
    if (!f.upload) bad('input_file_id', `"${fid}" is a batch's result file, not an upload`);
    if (f.upload!.lines === 0) bad('input_file_id', `"${fid}" has no request lines`);
    if (!this.files.has(fid)) bad('input_file_id', `the bytes of "${fid}" are not in this server's batch folder ${this.files.dir} (in a fleet, give every replica the same batch.dir)`);
    const now = Math.floor(Date.now() / 1000);
    const b: BatchRecord = {
      id: newId('batch_'),
      endpoint: body.endpoint as BatchEndpoint,
      inputFileId: fid,
      completionWindow: window as string,
      status: 'validating',
      createdAt: now,
      expiresAt: now + Number(wm![1]) * 3600,
      inProgressAt: null,
      finalizingAt: null,
      completedAt: null,
      failedAt: null,
      expiredAt: null,
      cancellingAt: null,
      cancelledAt: null,
      outputFileId: null,
      errorFileId: null,
      metadata,
      errors: null,
      owner,
      total: f.upload!.lines,
      completed: 0,
      failed: 0,
      cost: 0,
      referenceCost: 0,
      referenceLlm: null,
      inputTokens: 0,
      outputTokens: 0,
      models: {},
      outputBytes: 0,
      errorBytes: 0,
      enqueued: false,
      chunks: 0,
    };
    await this.store.createBatch(b);
    this.runner?.kick();
    return b;
  }

  async get(id: string, owner: string | null, scoped: boolean): Promise<BatchRecord> {
    const b = /^batch_[0-9a-f]{24}$/.test(id) ? await this.store.getBatch(id) : undefined;
    if (!b || (scoped && b.owner !== owner)) throw new ApiError(404, 'batch_not_found', `no batch "${id.slice(0, 80)}"`, 'batch_id');
    return b;
  }

  list(o: { after?: string; limit: number }, owner: string | null, scoped: boolean): Promise<BatchRecord[]> {
    return this.store.listBatches({ ...o, owner, scoped });
  }

  async cancel(id: string, owner: string | null, scoped: boolean): Promise<BatchRecord> {
    const b = await this.get(id, owner, scoped);
    if (b.status === 'cancelling' || b.status === 'cancelled') return b;
    const now = Math.floor(Date.now() / 1000);
    const c = await this.store.transition(id, ['validating', 'in_progress', 'finalizing'], { status: 'cancelling', cancellingAt: now });
    if (!c) {
      const cur = await this.get(id, owner, scoped);
      if (cur.status === 'cancelling' || cur.status === 'cancelled') return cur;
      throw new ApiError(409, 'invalid_state', `batch ${id} is ${cur.status}: only a validating or in-progress batch can be cancelled`, 'batch_id');
    }
    this.runner?.status.set(id, 'cancelling');
    this.runner?.kick();
    return c;
  }
}

export function fileJson(f: FileRecord): Record<string, unknown> {
  return { id: f.id, object: 'file', bytes: f.bytes, created_at: f.createdAt, filename: f.filename, purpose: f.purpose, status: 'processed', status_details: null, expires_at: null };
}

function resultFileJson(b: BatchRecord, kind: 'output' | 'error'): Record<string, unknown> {
  return {
    id: kind === 'output' ? b.outputFileId : b.errorFileId,
    object: 'file',
    bytes: kind === 'output' ? b.outputBytes : b.errorBytes,
    created_at: b.completedAt ?? b.cancelledAt ?? b.expiredAt ?? b.failedAt ?? b.createdAt,
    filename: `${b.id}_${kind}.jsonl`,
    purpose: 'batch_output',
    status: 'processed',
    status_details: null,
    expires_at: null,
  };
}

/** OpenAI's Batch object, with uniroute's accounting under `uniroute`. */
export function batchJson(b: BatchRecord): Record<string, unknown> {
  const savings = b.referenceCost > 0 ? 1 - b.cost / b.referenceCost : null;
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    errors: b.errors ? { object: 'list', data: b.errors.map((e) => ({ code: e.code, message: e.message, param: e.param ?? null, line: e.line ?? null })) } : null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: b.status,
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    created_at: b.createdAt,
    in_progress_at: b.inProgressAt,
    expires_at: b.expiresAt,
    finalizing_at: b.finalizingAt,
    completed_at: b.completedAt,
    failed_at: b.failedAt,
    expired_at: b.expiredAt,
    cancelling_at: b.cancellingAt,
    cancelled_at: b.cancelledAt,
    request_counts: { total: b.total, completed: b.completed, failed: b.failed },
    metadata: b.metadata,
    uniroute: {
      cost: round(b.cost),
      reference_llm: b.referenceLlm,
      reference_cost: round(b.referenceCost),
      savings: savings === null ? null : Number(savings.toFixed(4)),
      input_tokens: b.inputTokens,
      output_tokens: b.outputTokens,
      models: b.models,
    },
  };
}

const round = (x: number) => Number(x.toPrecision(8));
