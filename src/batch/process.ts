/**
 * A chunk of a job's lines, end to end: skip the lines that already have their record, plan each line (its
 * model, preset, `uniroute` object), decide the routed ones in engine batches (one Router.routeBatch call per
 * policy: the decision path of everything else), send each line through the gateway's upstream path (callLLM:
 * deployments, breakers, retries on twins, the LLM's fallbacks, then the router's next-best) within the batch's
 * share of each upstream, and record one output or error line per input line.
 *
 * The same function serves the in-process runner (SQLite) and the BullMQ workers (Redis).
 */
import { createHash } from 'node:crypto';
import type { Router } from '../router/router.js';
import { answerCost, BufferedResponse, callLLM } from '../server/call.js';
import { RequestSignal, type AttemptFailure, type LlmUpstream } from '../server/gateway.js';
import type { Gateway } from '../server/chat.js';
import type { Policy } from '../server/batcher.js';
import { openaiError } from '../server/anthropic.js';
import type { BatchConfig } from './config.js';
import { candidatesOf, nobody, planLine, policyKey, referenceLlm, type LinePlan, type PlanContext } from './plan.js';
import type { BatchStore } from './store.js';
import type { BatchEndpoint, BatchStatus, LineItem, OutputRecord } from './types.js';

/** What a process needs to run lines: the router, the live gateway state, the batch settings. */
export interface LineEngine {
  router: Router;
  gateway: () => Gateway;
  ood?: Policy['ood'];
  maxPromptChars: number;
  cfg: BatchConfig;
  /** This process's name (in the upstream request ids: which worker sent a line). */
  worker: string;
  /** Called with each upstream call's outcome (metrics). */
  onLine?: (llm: string | null, ok: boolean) => void;
}

/**
 * The batch's share of each upstream: at most share x (the LLM's connections over its deployments) lines in
 * flight to it, and at most `concurrency` over all, in this process; the rest of the connections stay free for
 * online traffic. Waiters are served first come, first served among those whose LLM has room. An LLM with a rate
 * (batch.upstream_rpm) gets its lines spaced evenly at that rate.
 */
export class Limiter {
  private used = new Map<string, number>();
  private total = 0;
  private waiting: Array<{ llm: string; max: number; go: () => void }> = [];
  /** When each rate-limited LLM may take its next line (ms). */
  private nextAt = new Map<string, number>();
  constructor(
    private share: number,
    private concurrency: number,
    private rpm: Record<string, number> = {},
  ) {}

  configure(share: number, concurrency: number, rpm: Record<string, number> = {}): void {
    this.share = share;
    this.concurrency = concurrency;
    this.rpm = rpm;
    this.wake();
  }

  /** Waits for the LLM's turn under its rate limit (lines spaced evenly, 60 s / rpm apart). */
  private async pace(llm: string): Promise<void> {
    const rpm = this.rpm[llm];
    if (!rpm) return;
    const now = Date.now();
    const at = Math.max(now, this.nextAt.get(llm) ?? 0);
    this.nextAt.set(llm, at + 60_000 / rpm);
    if (at > now) await new Promise((r) => setTimeout(r, at - now));
  }

  /** The most lines in flight to an upstream. */
  limitOf(up: LlmUpstream | undefined): number {
    if (!up) return 1;
    let conns = 0;
    for (const d of up.deployments) conns += d.cfg.maxConnections;
    return Math.max(1, Math.floor(this.share * conns));
  }

  get inFlight(): number {
    return this.total;
  }

  async acquire(llm: string, up: LlmUpstream | undefined): Promise<() => void> {
    const max = this.limitOf(up);
    if (this.room(llm, max) && !this.waiting.some((w) => w.llm === llm)) this.take(llm); // nobody before it can take this room
    else
      await new Promise<void>((go) => {
        this.waiting.push({ llm, max, go });
        this.wake();
      });
    await this.pace(llm);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      this.used.set(llm, (this.used.get(llm) ?? 1) - 1);
      this.wake();
    };
  }

  private room(llm: string, max: number): boolean {
    return this.total < this.concurrency && (this.used.get(llm) ?? 0) < max;
  }
  private take(llm: string): void {
    this.total++;
    this.used.set(llm, (this.used.get(llm) ?? 0) + 1);
  }
  private wake(): void {
    for (let i = 0; i < this.waiting.length && this.total < this.concurrency; ) {
      const w = this.waiting[i];
      if (this.room(w.llm, w.max)) {
        this.waiting.splice(i, 1);
        this.take(w.llm);
        w.go();
      } else i++;
    }
  }
}

/**
 * Group commit of output records: a record waits at most a few milliseconds (or for 128 others of its batch)
 * and is written with them in one transaction (SQLite) or one script (Redis). A line counts as done once its
 * write resolved; one killed in between is a line in flight (sent again, written once).
 */
export class Recorder {
  private pending = new Map<string, Array<{ rec: OutputRecord; done: (s: BatchStatus | undefined) => void; fail: (e: unknown) => void }>>();
  private timer: NodeJS.Timeout | undefined;
  private chain = Promise.resolve();
  constructor(
    private readonly store: BatchStore,
    private readonly onFinished?: (batchId: string, status: BatchStatus) => void,
    private readonly windowMs = 3,
  ) {}

  add(batchId: string, rec: OutputRecord): Promise<BatchStatus | undefined> {
    return new Promise((done, fail) => {
      let q = this.pending.get(batchId);
      if (!q) this.pending.set(batchId, (q = []));
      q.push({ rec, done, fail });
      if (q.length >= 128) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const all = this.pending;
    this.pending = new Map();
    // one flush at a time: the store sees the records in order
    this.chain = this.chain.then(async () => {
      for (const [id, q] of all) {
        try {
          const r = await this.store.record(id, q.map((x) => x.rec), Math.floor(Date.now() / 1000));
          for (const x of q) x.done(r.status);
          if (r.written > 0 && r.status && r.status !== 'in_progress' && r.status !== 'cancelling' && r.status !== 'validating') this.onFinished?.(id, r.status);
        } catch (e) {
          for (const x of q) x.fail(e);
        }
      }
    });
  }

  /** Resolves once every record added so far is written. */
  async drain(): Promise<void> {
    if (this.pending.size) this.flush();
    await this.chain;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const reqIdOf = (id: string) => `batch_req_${createHash('sha256').update(id).digest('hex').slice(0, 24)}`;

/** One JSON line with no raw line break (an upstream may pretty-print). */
function oneLine(text: string): string | undefined {
  try {
    const v = JSON.parse(text);
    return /[\r\n]/.test(text) ? JSON.stringify(v) : text;
  } catch {
    return undefined;
  }
}

export function errorLine(batchId: string, key: string, customId: string | null, line: number, code: string, message: string, extra?: { status?: number; requestId?: string; uniroute?: Record<string, unknown> }): string {
  const response = extra?.status ? { status_code: extra.status, request_id: extra.requestId ?? null, body: openaiError(extra.status, message, code) } : null;
  return JSON.stringify({ id: reqIdOf(`${batchId}:${key}`), custom_id: customId, response, error: { code, message, line }, ...(extra?.uniroute ? { uniroute: extra.uniroute } : {}) });
}

export interface ChunkJob {
  batchId: string;
  endpoint: BatchEndpoint;
}

export interface ChunkDeps {
  engine: LineEngine;
  store: BatchStore;
  recorder: Recorder;
  limiter: Limiter;
  /** The batch's status now (cached by the caller); lines are sent only while it is in_progress. */
  status: (batchId: string) => Promise<BatchStatus | undefined>;
}

export interface ChunkResult {
  /** Lines skipped because they had their record already. */
  skipped: number;
  written: number;
  /** Upstream calls made (a line's attempts over its rounds). */
  calls: number;
  /** Lines not handled because the batch was no longer running. */
  left: number;
}

const LIVE: ReadonlySet<BatchStatus> = new Set(['in_progress', 'validating']);

/** Runs a chunk of valid lines (each owning its custom_id). */
export async function processChunk(job: ChunkJob, items: LineItem[], d: ChunkDeps): Promise<ChunkResult> {
  const res: ChunkResult = { skipped: 0, written: 0, calls: 0, left: 0 };
  const { engine, store } = d;
  const done = await store.done(job.batchId, items.map((i) => i.customId));
  const todo = items.filter((_, i) => !done[i]);
  res.skipped = items.length - todo.length;
  if (todo.length === 0) return res;
  if (!LIVE.has((await d.status(job.batchId)) ?? 'failed')) {
    res.left = todo.length;
    return res;
  }
  const g = engine.gateway();
  g.active++; // a config reload waits for the lines in flight on the old upstream pools
  try {
    const pc: PlanContext = { router: engine.router, gateway: g, ood: engine.ood, maxPromptChars: engine.maxPromptChars };
    const api = job.endpoint === '/v1/messages' ? 'messages' : 'chat';
    const ref = referenceLlm(pc);
    if (ref) void store.setReference(job.batchId, ref).catch(() => undefined);
    const writes: Array<Promise<unknown>> = [];
    const write = (rec: OutputRecord) => {
      const p = d.recorder.add(job.batchId, rec).then(() => void res.written++);
      writes.push(p);
      return p;
    };
    const fail = (it: LineItem, status: number, code: string, message: string, extra?: { requestId?: string; uniroute?: Record<string, unknown> }) => {
      engine.onLine?.(null, false);
      return write({ key: it.customId, line: it.line, ok: false, json: errorLine(job.batchId, it.customId, it.customId, it.line, code, message, { status, ...extra }), llm: null, cost: 0, referenceCost: 0, inputTokens: 0, outputTokens: 0 });
    };

    // ---- plan every line, decide the routed ones in engine batches (one per policy) ----
    type Planned = { it: LineItem; plan: Extract<LinePlan, { ok: true }>; first?: string; decision?: { cluster: number; predicted: number; ood: boolean } };
    const ready: Planned[] = [];
    const groups = new Map<string, Planned[]>();
    for (const it of todo) {
      const plan = planLine(it.body, api, pc);
      if (!plan.ok) {
        void fail(it, plan.status, plan.code, plan.message);
        continue;
      }
      const p: Planned = { it, plan };
      if (!plan.routed) {
        p.first = plan.direct;
        ready.push(p);
        continue;
      }
      const k = policyKey(plan.policy);
      const grp = groups.get(k);
      if (grp) grp.push(p);
      else groups.set(k, [p]);
    }
    const later: Planned[] = [];
    for (const grp of groups.values()) {
      const rows: Planned[] = [];
      const models: string[][] = [];
      for (const p of grp) {
        const c = candidatesOf(p.plan, pc);
        if (c.length === 0) {
          const why = nobody(p.plan, pc);
          if (why.retryable) later.push(p);
          else void fail(p.it, why.status, why.code, why.message);
          continue;
        }
        rows.push(p);
        models.push(c);
      }
      if (rows.length === 0) continue;
      const b = await engine.router.routeBatch(
        rows.map((p) => p.plan.text),
        { ...grp[0].plan.policy, explain: false, models },
      );
      rows.forEach((p, i) => {
        p.first = b.models[b.choice[i]];
        p.decision = { cluster: b.cluster[i], predicted: b.chosenError[i], ood: b.ood.length > 0 && b.ood[i] === 1 };
        ready.push(p);
      });
    }
    // lines whose every LLM is cooling down: decided when they are sent (after a wait)
    ready.push(...later);

    // ---- send: each line within its upstream's share ----
    const sendLine = async (p: Planned): Promise<void> => {
      const { it, plan } = p;
      let last: { failure: AttemptFailure; attempts: number; tried: string[] } | undefined;
      let attempts = 0;
      for (let round = 0; round <= engine.cfg.lineRetries; round++) {
        if (round > 0) await sleep(Math.min(30_000, 1000 * 2 ** (round - 1)) * (0.5 + Math.random() / 2));
        if (!LIVE.has((await d.status(job.batchId)) ?? 'failed')) {
          res.left++;
          return;
        }
        let first = p.first;
        if (!first || (round > 0 && plan.routed && !g.upstreams.get(first)?.allows())) {
          const c = candidatesOf(plan, pc);
          if (c.length === 0) {
            const why = nobody(plan, pc);
            last = { failure: { status: why.status, code: why.code, message: why.message, retryable: why.retryable }, attempts, tried: [] };
            if (!why.retryable) break;
            continue;
          }
          const b = await engine.router.routeBatch([plan.text], { ...plan.policy, explain: false, models: [c] });
          first = b.models[b.choice[0]];
        }
        const release = await d.limiter.acquire(first, g.upstreams.get(first));
        if (!LIVE.has((await d.status(job.batchId)) ?? 'failed')) {
          // cancelled (or ended) while it waited for its turn
          release();
          res.left++;
          return;
        }
        const requestId = `${engine.worker}-${job.batchId.slice(6)}-${it.line}-${round}`;
        const buffered: { r?: BufferedResponse } = {};
        const pending: string[] = [];
        let out;
        try {
          out = await callLLM(
            { api, body: plan.forward, stream: false, requestId, signal: new RequestSignal() },
            {
              upstreams: g.upstreams,
              retry: g.retry,
              errorBytes: g.errorBytes,
              first,
              next: async (tried, failed, f) => {
                pending.unshift(...(g.upstreams.get(failed)?.cfg.fallbacks ?? []).filter((n) => !tried.has(n) && !pending.includes(n)));
                while (pending.length) {
                  const n = pending.shift()!;
                  const u = g.upstreams.get(n);
                  if (u && u.allows() && (!plan.allowed || plan.allowed.has(n))) return n;
                }
                if (!plan.routed) return undefined;
                const c = candidatesOf(plan, pc, tried);
                if (c.length === 0) return undefined;
                void f;
                const b = await engine.router.routeBatch([plan.text], { ...plan.policy, explain: false, models: [c] });
                return b.models[b.choice[0]];
              },
              client: () => (buffered.r = new BufferedResponse()).response,
            },
          );
          attempts += out.attempts;
          res.calls += out.attempts;
          if (out.ok) {
            let answer;
            try {
              const [a, resp] = await Promise.all([out.done, buffered.r!.answer()]);
              answer = { usage: a.usage, body: resp.body };
            } catch {
              last = { failure: { status: 502, code: 'upstream_body_error', message: `the answer of "${out.llm}" was cut`, retryable: true }, attempts, tried: [out.llm] };
              continue;
            }
            const bodyText = oneLine(answer.body.toString('utf8'));
            if (bodyText === undefined) {
              last = { failure: { status: 502, code: 'upstream_bad_response', message: `"${out.llm}" answered ${out.status} with a body that is not JSON`, retryable: true }, attempts, tried: [out.llm] };
              continue;
            }
            const llm = out.llm;
            const snap = engine.router.snapshot();
            const up = g.upstreams.get(llm);
            const usage = answer.usage;
            const { cost, fromUsage } = answerCost(up?.cfg.price, usage, snap.cost[snap.index.get(llm) ?? -1]);
            let referenceCost = cost ?? 0;
            if (ref && ref !== llm) {
              const rp = g.upstreams.get(ref)?.cfg.price;
              referenceCost = rp && usage && (usage.input !== undefined || usage.output !== undefined) ? ((usage.input ?? 0) * rp.inputPer1m + (usage.output ?? 0) * rp.outputPer1m) / 1e6 : snap.cost[snap.index.get(ref) ?? -1] ?? 0;
            }
            const meta = {
              model: llm,
              routed: plan.routed,
              attempts,
              usage: { input_tokens: usage.input ?? null, output_tokens: usage.output ?? null },
              cost: cost ?? null,
              cost_from: fromUsage ? 'usage' : 'estimate',
              ...(p.decision && llm === p.first ? { cluster: p.decision.cluster, predicted_error: Number.isFinite(p.decision.predicted) ? Number(p.decision.predicted.toFixed(5)) : null, ...(p.decision.ood ? { ood: true } : {}) } : {}),
            };
            const json = `{"id":${JSON.stringify(reqIdOf(`${job.batchId}:${it.customId}`))},"custom_id":${JSON.stringify(it.customId)},"response":{"status_code":${out.status},"request_id":${JSON.stringify(requestId)},"body":${bodyText}},"error":null,"uniroute":${JSON.stringify(meta)}}`;
            engine.onLine?.(llm, true);
            await write({ key: it.customId, line: it.line, ok: true, json, llm, cost: cost ?? 0, referenceCost: Number.isFinite(referenceCost) ? referenceCost : 0, inputTokens: usage.input ?? 0, outputTokens: usage.output ?? 0 });
            return;
          }
          last = { failure: out.failure, attempts, tried: out.tried };
          if (!out.failure.retryable) break;
        } finally {
          release();
        }
      }
      const f = last!.failure;
      await fail(it, f.status, f.code, f.message, { requestId: `${engine.worker}-${job.batchId.slice(6)}-${it.line}`, uniroute: { model: last!.tried[last!.tried.length - 1] ?? null, attempts } });
    };
    await Promise.all(ready.map((p) => sendLine(p).catch((e) => fail(p.it, 500, 'internal_error', `the line could not be processed: ${(e as Error)?.message ?? e}`))));
    await Promise.all(writes);
  } finally {
    if (--g.active === 0) g.retired?.();
  }
  return res;
}
