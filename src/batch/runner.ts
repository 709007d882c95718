/**
 * Who runs the jobs.
 *
 *   LocalRunner (SQLite, one machine): each serve or worker process looks for jobs that no live process holds (a
 *     lease in the store, renewed while it runs), takes one, and reads its input file line by line, in chunks, each
 *     chunk handed to processChunk while the next ones are read (as many lines in flight as the batch's share
 *     allows). After a kill -9 the lease expires and the job resumes: lines with their record are skipped.
 *   FleetRunner (Redis): the process that takes a job's plan lease reads its file and puts its chunks of lines into
 *     a BullMQ queue (job id = batch and chunk number, so a plan redone after a crash adds nothing twice); every
 *     replica's and every `uniroute worker`'s BullMQ Worker takes chunks; a dead worker's chunk is taken over once
 *     its lock expires (batch.lock_ms), and the lines it had recorded are skipped.
 *
 * Both plan a file the same way (planFile): the lines that fail the file-level checks, and those whose custom_id
 * an earlier line owns, get their error line at once; the others go out in chunks.
 */
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import { UnirouteError } from '../errors.js';
import type { BatchConfig } from './config.js';
import type { FileDir } from './files.js';
import { fileLines, type SplitLine } from './lines.js';
import { errorLine, Limiter, processChunk, Recorder, type ChunkDeps, type LineEngine } from './process.js';
import type { BatchStore } from './store.js';
import { FINAL, lineKey, type BatchRecord, type BatchStatus, type LineItem } from './types.js';
import { checkLine } from './validate.js';
import { RedisBatchStore } from './redis-store.js';

/** This process's name in leases and upstream request ids (no "-": it separates the parts of a request id). */
export const processName = (role: string) => `${role}.${hostname().replace(/-/g, '_').replace(/[^A-Za-z0-9._]/g, '').slice(0, 40)}.${process.pid}`;

/** Each batch's status, read from the store at most every `ttlMs`. */
export class StatusCache {
  private m = new Map<string, { at: number; s: BatchStatus | undefined }>();
  constructor(
    private readonly store: BatchStore,
    private readonly ttlMs = 500,
  ) {}
  async get(id: string): Promise<BatchStatus | undefined> {
    const e = this.m.get(id);
    const now = Date.now();
    if (e && now - e.at < this.ttlMs) return e.s;
    const b = await this.store.getBatch(id).catch(() => undefined);
    // past its window a job is over for the workers at once (the sweeper then marks it expired)
    const s = b && !FINAL.has(b.status) && now / 1000 >= b.expiresAt ? 'expired' : (b?.status ?? e?.s); // a store that does not answer: keep the last known
    if (this.m.size > 10_000) this.m.clear();
    this.m.set(id, { at: now, s });
    return s;
  }
  set(id: string, s: BatchStatus): void {
    this.m.set(id, { at: Date.now(), s });
  }
  /** Whether the batch still runs, from the cache alone (unknown: yes until told otherwise). */
  peek(id: string): boolean {
    const s = this.m.get(id)?.s;
    return s === undefined || s === 'in_progress' || s === 'validating';
  }
}

/**
 * Reads a job's input file in chunks of `chunkLines` lines: error lines for the lines that fail the checks or
 * whose custom_id an earlier line owns (recorded before the chunk goes on), then `onChunk` with the valid ones
 * and the chunk's number. Stops early when `go()` turns false.
 */
export async function planFile(b: BatchRecord, files: FileDir, store: BatchStore, recorder: Recorder, cfg: BatchConfig, onChunk: (items: LineItem[], index: number) => Promise<void>, go: () => boolean): Promise<number> {
  let group: SplitLine[] = [];
  let index = 0;
  const flush = async () => {
    const valid: LineItem[] = [];
    const errs: Array<Promise<unknown>> = [];
    const bad = (line: number, customId: string | null, code: string, message: string) =>
      errs.push(recorder.add(b.id, { key: lineKey(line), line, ok: false, json: errorLine(b.id, lineKey(line), customId, line, code, message), llm: null, cost: 0, referenceCost: 0, inputTokens: 0, outputTokens: 0 }));
    for (const l of group) {
      const c = checkLine(l, b.endpoint, cfg.maxLineBytes);
      if (c.ok) valid.push(c.item);
      else bad(l.line, c.customId, c.code, c.message);
    }
    if (valid.length) {
      const own = await store.claimIds(b.id, valid.map((v) => ({ customId: v.customId, line: v.line })));
      const owned: LineItem[] = [];
      valid.forEach((v, i) => {
        if (own[i]) owned.push(v);
        else bad(v.line, v.customId, 'duplicate_custom_id', `line ${v.line}: custom_id ${JSON.stringify(v.customId)} is used by an earlier line; each line needs its own`);
      });
      await Promise.all(errs);
      if (owned.length) await onChunk(owned, index);
    } else await Promise.all(errs);
    index++;
    group = [];
  };
  for await (const l of fileLines(files.pathOf(b.inputFileId), cfg.maxLineBytes)) {
    if (!go()) return index;
    group.push(l);
    if (group.length >= cfg.chunkLines) await flush();
  }
  if (group.length && go()) await flush();
  return index;
}

interface RunnerDeps {
  store: BatchStore;
  files: FileDir;
  engine: LineEngine;
  log?: (msg: string) => void;
}

abstract class Runner {
  readonly limiter: Limiter;
  readonly recorder: Recorder;
  readonly status: StatusCache;
  protected timer: NodeJS.Timeout | undefined;
  protected closed = false;
  protected sweeping: Promise<void> | undefined;
  constructor(protected readonly d: RunnerDeps) {
    this.limiter = new Limiter(d.engine.cfg.share, d.engine.cfg.concurrency, d.engine.cfg.upstreamRpm);
    this.status = new StatusCache(d.store);
    this.recorder = new Recorder(d.store, (id, s) => {
      this.status.set(id, s);
      d.log?.(`batch ${id} ${s}`);
    });
  }
  protected deps(): ChunkDeps {
    return { engine: this.d.engine, store: this.d.store, recorder: this.recorder, limiter: this.limiter, status: (id) => this.status.get(id) };
  }
  /** Looks for work now (after a job was created or cancelled). */
  kick(): void {
    if (this.closed || this.sweeping) return;
    this.sweeping = this.sweep()
      .catch((e) => this.d.log?.(`batch sweep failed: ${(e as Error).message}`))
      .finally(() => (this.sweeping = undefined));
  }
  start(everyMs = 1000): void {
    this.timer = setInterval(() => this.kick(), everyMs);
    this.timer.unref();
    this.kick();
  }
  protected abstract sweep(): Promise<void>;
  /**
   * Ends a job past its completion window that nobody finished, as OpenAI does: every line without a record gets a
   * `batch_expired` error line, so that completed + failed = total and the error file names each request that was
   * not executed. The job is `finalizing` meanwhile (its workers stop: the status cache calls it expired); the
   * write that records its last line ends it as `expired`. One sweeper does it at a time (a lease); one stopped
   * mid-way leaves it `finalizing`, and the next sweep goes on (the records are keyed, so none is written twice).
   */
  protected async expire(b: BatchRecord): Promise<boolean> {
    if (FINAL.has(b.status) || Date.now() / 1000 < b.expiresAt) return false;
    const now = () => Math.floor(Date.now() / 1000);
    const me = processName('expire');
    if (!(await this.d.store.lease(b.id, 'expire', me, this.d.engine.cfg.lockMs))) return true;
    try {
      // a job being cancelled ends expired at once (its remaining lines were not asked for any more)
      const f = b.status === 'cancelling' ? undefined : await this.d.store.transition(b.id, ['validating', 'in_progress', 'finalizing'], { status: 'finalizing', finalizingAt: b.finalizingAt ?? now() });
      if (f) {
        const message = 'This request could not be executed before the completion window expired.';
        await planFile(
          f,
          this.d.files,
          this.d.store,
          this.recorder,
          this.d.engine.cfg,
          async (items) => {
            const done = await this.d.store.done(f.id, items.map((it) => it.customId));
            await Promise.all(
              items
                .filter((_, i) => !done[i])
                .map((it) => this.recorder.add(f.id, { key: it.customId, line: it.line, ok: false, json: errorLine(f.id, it.customId, it.customId, it.line, 'batch_expired', message), llm: null, cost: 0, referenceCost: 0, inputTokens: 0, outputTokens: 0 })),
            );
          },
          () => !this.closed,
        );
        await this.recorder.drain();
        if (this.closed) return true; // the next sweep goes on
      }
      const e = await this.d.store.finish(b.id, 'expired', now()); // when the lines did not end it (a job being cancelled)
      const end = e ?? (await this.d.store.getBatch(b.id));
      if (end) this.d.log?.(`batch ${b.id} ${end.status}: ${end.completed} of ${end.total} lines answered before its window ended`);
    } finally {
      await this.d.store.release(b.id, 'expire', me);
    }
    return true;
  }
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.sweeping;
    await this.recorder.drain();
  }
}

/** Runs jobs in this process, from the store's SQLite file. */
export class LocalRunner extends Runner {
  private running = new Map<string, Promise<void>>();
  private readonly me = processName('serve');

  protected async sweep(): Promise<void> {
    for (const id of await this.d.store.activeBatches()) {
      if (this.closed) return;
      if (this.running.has(id)) continue;
      const b = await this.d.store.getBatch(id);
      if (!b || (await this.expire(b))) continue;
      const lockMs = this.d.engine.cfg.lockMs;
      if (!(await this.d.store.lease(id, 'run', this.me, lockMs))) continue; // another live process runs it
      if (b.status === 'cancelling') {
        await this.d.store.finish(id, 'cancelled', Math.floor(Date.now() / 1000));
        await this.d.store.release(id, 'run', this.me);
        continue;
      }
      if (this.running.size >= 4) {
        await this.d.store.release(id, 'run', this.me);
        continue;
      }
      const p = this.run(b).catch((e) => this.d.log?.(`batch ${id}: ${(e as Error).message}; it resumes on the next look`));
      this.running.set(id, p);
      void p.finally(() => this.running.delete(id));
    }
  }

  private async run(b0: BatchRecord): Promise<void> {
    const { store, engine } = this.d;
    const id = b0.id;
    const cfg = engine.cfg;
    let lost = false;
    const renew = setInterval(() => {
      store.lease(id, 'run', this.me, cfg.lockMs).then(
        (ok) => void (ok || (lost = true)),
        () => undefined,
      );
    }, Math.max(250, cfg.lockMs / 3));
    try {
      const b = b0.status === 'validating' ? ((await store.transition(id, ['validating'], { status: 'in_progress', inProgressAt: Math.floor(Date.now() / 1000) })) ?? b0) : b0;
      if (!this.d.files.has(b.inputFileId)) {
        await store.finish(id, 'failed', Math.floor(Date.now() / 1000), [{ code: 'input_file_missing', message: `the input file ${b.inputFileId} is not in ${this.d.files.dir}`, line: null, param: 'input_file_id' }]);
        return;
      }
      const inflight = new Set<Promise<unknown>>();
      let lines = 0;
      const live = () => !lost && !this.closed && this.status.peek(id);
      let failure: unknown;
      await planFile(b, this.d.files, store, this.recorder, cfg, async (items) => {
        // keep about twice the batch's lines in flight: enough chunks decided ahead, memory bounded
        while (lines >= Math.max(cfg.chunkLines, 2 * cfg.concurrency) && inflight.size) await Promise.race(inflight);
        lines += items.length;
        const p: Promise<unknown> = processChunk({ batchId: id, endpoint: b.endpoint }, items, this.deps())
          .catch((e) => (failure = e))
          .finally(() => {
            lines -= items.length;
            inflight.delete(p);
          });
        inflight.add(p);
        await this.status.get(id);
      }, live);
      await Promise.all(inflight);
      await this.recorder.drain();
      if (failure) throw failure;
      const now = await store.getBatch(id);
      if (now?.status === 'cancelling') await store.finish(id, 'cancelled', Math.floor(Date.now() / 1000));
    } finally {
      clearInterval(renew);
      await store.release(id, 'run', this.me).catch(() => undefined);
    }
  }

  override async close(): Promise<void> {
    await super.close();
    await Promise.all(this.running.values());
  }
}

type Bull = typeof import('bullmq');

/** Runs jobs over the fleet: plans into a BullMQ queue, and takes chunks from it. */
export class FleetRunner extends Runner {
  private readonly bull: Bull;
  private readonly queue: import('bullmq').Queue;
  private worker: import('bullmq').Worker | undefined;
  private planning = new Map<string, Promise<void>>();
  private readonly me: string;
  private readonly connection: { url: string; maxRetriesPerRequest: null };
  private readonly prefix: string;
  static readonly QUEUE = 'uniroute-batch';

  constructor(d: RunnerDeps & { store: RedisBatchStore; url: string; role: string }) {
    super(d);
    this.me = processName(d.role);
    try {
      this.bull = createRequire(import.meta.url)('bullmq') as Bull;
    } catch (e) {
      throw new UnirouteError('STORE_UNAVAILABLE', `batches on Redis need the bullmq package: npm install bullmq@^6 (${(e as Error).message.split('\n')[0]})`);
    }
    this.connection = { url: RedisBatchStore.connectionUrl(d.url), maxRetriesPerRequest: null };
    this.prefix = `${d.store.prefix}bull`;
    this.queue = new this.bull.Queue(FleetRunner.QUEUE, { connection: this.connection, prefix: this.prefix });
    this.queue.on('error', () => undefined);
  }

  /** Takes chunks from the queue (every replica and `uniroute worker` does). */
  work(): void {
    const cfg = this.d.engine.cfg;
    this.worker = new this.bull.Worker(
      FleetRunner.QUEUE,
      async (job) => {
        const data = job.data as { b: string; e: BatchRecord['endpoint']; items: LineItem[] };
        const r = await processChunk({ batchId: data.b, endpoint: data.e }, data.items, this.deps());
        return { skipped: r.skipped, written: r.written, calls: r.calls, left: r.left };
      },
      {
        connection: this.connection,
        prefix: this.prefix,
        name: this.me,
        concurrency: Math.max(2, Math.ceil((2 * cfg.concurrency) / cfg.chunkLines)),
        lockDuration: cfg.lockMs,
        stalledInterval: Math.min(cfg.lockMs, 30_000),
        maxStalledCount: 1_000_000, // a chunk is never failed for its workers dying: its lines are written once anyway
        removeOnComplete: { count: 0 },
        removeOnFail: { count: 1000 },
      },
    );
    this.worker.on('error', (e) => this.d.log?.(`batch worker: ${e.message}`));
  }

  protected async sweep(): Promise<void> {
    const store = this.d.store;
    for (const id of await store.activeBatches()) {
      if (this.closed) return;
      const b = await store.getBatch(id);
      if (!b || (await this.expire(b))) continue;
      if (b.status === 'cancelling') {
        await this.cancelled(b);
        continue;
      }
      if (!b.enqueued && !this.planning.has(id) && this.d.files.has(b.inputFileId) && (await store.lease(id, 'plan', this.me, this.d.engine.cfg.lockMs))) {
        const p = this.plan(b).catch((e) => this.d.log?.(`batch ${id}: planning stopped: ${(e as Error).message}; another look resumes it`));
        this.planning.set(id, p);
        void p.finally(() => this.planning.delete(id));
      }
    }
  }

  /** Reads the job's file into the queue; the lease is renewed while it reads. */
  private async plan(b0: BatchRecord): Promise<void> {
    const { store, engine } = this.d;
    const id = b0.id;
    let lost = false;
    const renew = setInterval(() => {
      store.lease(id, 'plan', this.me, engine.cfg.lockMs).then(
        (ok) => void (ok || (lost = true)),
        () => undefined,
      );
    }, Math.max(250, engine.cfg.lockMs / 3));
    try {
      const b = b0.status === 'validating' ? ((await store.transition(id, ['validating'], { status: 'in_progress', inProgressAt: Math.floor(Date.now() / 1000) })) ?? b0) : b0;
      let bulk: Array<{ name: string; data: unknown; opts: import('bullmq').JobsOptions }> = [];
      const send = async () => {
        if (bulk.length) await this.queue.addBulk(bulk);
        bulk = [];
      };
      const chunks = await planFile(b, this.d.files, store, this.recorder, engine.cfg, async (items, index) => {
        bulk.push({ name: id, data: { b: id, e: b.endpoint, items }, opts: { jobId: `${id}-${index}`, attempts: 20, backoff: { type: 'exponential', delay: 1000 } } });
        if (bulk.length >= 16) {
          await send();
          await this.status.get(id);
        }
      }, () => !lost && !this.closed && this.status.peek(id));
      if (lost || this.closed || !this.status.peek(id)) return;
      await send();
      await this.recorder.drain();
      await store.transition(id, ['in_progress', 'validating'], { enqueued: true, chunks });
    } finally {
      clearInterval(renew);
      await store.release(id, 'plan', this.me).catch(() => undefined);
    }
  }

  /** Jobs whose waiting chunks this process removed already. */
  private purged = new Set<string>();

  /**
   * A cancelling job: its waiting chunks removed (by their ids, once: a chunk a worker takes meanwhile is skipped
   * line by line anyway); cancelled once no worker holds one of its chunks.
   */
  private async cancelled(b: BatchRecord): Promise<void> {
    if (!this.purged.has(b.id) && !this.planning.has(b.id)) {
      this.purged.add(b.id);
      const n = b.enqueued ? b.chunks : Math.ceil(b.total / this.d.engine.cfg.chunkLines);
      for (let i = 0; i < n && !this.closed; i++) await this.queue.remove(`${b.id}-${i}`).catch(() => 0);
    }
    const active = await this.queue.getJobs(['active'], 0, -1).catch(() => undefined);
    if (!active || active.some((j) => j?.name === b.id) || this.planning.has(b.id)) return;
    const done = await this.d.store.finish(b.id, 'cancelled', Math.floor(Date.now() / 1000));
    if (done) this.d.log?.(`batch ${b.id} cancelled (${done.completed + done.failed} of ${done.total} lines done)`);
  }

  override async close(): Promise<void> {
    await super.close();
    await this.worker?.close().catch(() => undefined);
    await Promise.all(this.planning.values());
    await this.recorder.drain();
    await this.queue.close().catch(() => undefined);
  }
}
