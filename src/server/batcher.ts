/**
 * Micro-batching: route requests that arrive within a short window go to the native engine as one batch.
 * Requests with the same λ share a batch; per-request allowed-LLM sets become per-row masks. One batch is in
 * flight at a time on the engine's worker thread while the event loop keeps taking requests.
 */
import type { RouteBatch, Router } from '../router/router.js';

export interface BatchSlice {
  batch: RouteBatch;
  /** Index of this request's first prompt in the batch. */
  offset: number;
  count: number;
}

interface Pending {
  texts: string[];
  lambda: number;
  models?: string[];
  resolve: (s: BatchSlice) => void;
  reject: (e: unknown) => void;
}

export interface BatcherOptions {
  /** Window in milliseconds (0 = the current event-loop turn). */
  windowMs: number;
  /** Flush at once when this many prompts are waiting. */
  maxBatch: number;
  /** Called with the size of each native batch. */
  onBatch?: (prompts: number) => void;
}

export class MicroBatcher {
  private queue: Pending[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private inflight = 0;

  constructor(
    private readonly getRouter: () => Router,
    private readonly opts: BatcherOptions,
  ) {}

  route(texts: string[], lambda: number, models?: string[]): Promise<BatchSlice> {
    return new Promise((resolve, reject) => {
      this.queue.push({ texts, lambda, models, resolve, reject });
      this.queued += texts.length;
      if (this.queued >= this.opts.maxBatch) this.flush();
      else if (!this.timer)
        this.timer = this.opts.windowMs > 0 ? setTimeout(() => this.flush(), this.opts.windowMs) : setImmediate(() => this.flush());
    });
  }

  get pending(): number {
    return this.queued + this.inflight;
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    const items = this.queue;
    this.queue = [];
    this.queued = 0;
    const groups = new Map<number, Pending[]>();
    for (const p of items) {
      const g = groups.get(p.lambda);
      if (g) g.push(p);
      else groups.set(p.lambda, [p]);
    }
    for (const [lambda, group] of groups) void this.run(lambda, group);
  }

  private async run(lambda: number, group: Pending[]): Promise<void> {
    const router = this.getRouter();
    const texts: string[] = [];
    const anyModels = group.some((p) => p.models);
    const all = anyModels ? router.snapshot().names : [];
    const perRow: string[][] = [];
    for (const p of group) {
      for (const t of p.texts) {
        texts.push(t);
        if (anyModels) perRow.push(p.models ?? all);
      }
    }
    this.inflight += texts.length;
    this.opts.onBatch?.(texts.length);
    try {
      const batch = await router.routeBatch(texts, { lambda, models: anyModels ? perRow : undefined });
      let offset = 0;
      for (const p of group) {
        p.resolve({ batch, offset, count: p.texts.length });
        offset += p.texts.length;
      }
    } catch (err) {
      if (group.length === 1) group[0].reject(err);
      else {
        // one request's bad input must not fail its neighbours: retry each on its own
        for (const p of group)
          router.routeBatch(p.texts, { lambda, models: p.models }).then(
            (batch) => p.resolve({ batch, offset: 0, count: p.texts.length }),
            (e) => p.reject(e),
          );
      }
    } finally {
      this.inflight -= texts.length;
    }
  }
}
