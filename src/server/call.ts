/**
 * One call to an LLM, the gateway's upstream path as a function of its own (the chat and messages routes use it;
 * so can anything else that sends a request to an LLM): choose a deployment (weighted least-busy), attempt,
 * retry on the LLM's twin deployments with exponential backoff and full jitter, fail over to the next LLM the
 * caller names (its fallbacks, then the router's next-best), translate between the client's API and the
 * upstream's, and account the answer's usage (tokens x price, else the estimated cost per query).
 *
 * Nothing here knows fastify: the caller hands a function that returns the client's response once the first 2xx
 * answer's headers are in (and adds its own headers to them), and gets back either the answer on its way (with a
 * promise of its usage) or the last failure, before any byte went to the client.
 */
import type { ServerResponse } from 'node:http';
import { SpanStatusCode, context, trace, type Span } from '@opentelemetry/api';
import { UnirouteError } from '../errors.js';
import type { Deployment, LlmUpstream, AttemptFailure, RequestSignal, Sink } from './gateway.js';
import { AnthropicToChatStream, ChatToAnthropicStream, anthropicError, chatCompletionToMessage, chatToMessagesRequest, messageToChatCompletion, messagesToChatRequest, openaiError } from './anthropic.js';
import { JsonSink, PassSink, SseSink, type ClientApi, type StreamTranslator } from './relay.js';
import type { Usage } from './sse.js';

export const tracer = trace.getTracer('uniroute');

/** What the client sent, in its API. */
export interface LlmRequest {
  /** chat: OpenAI chat completions; messages: Anthropic messages; passthrough: an OpenAI path sent as it is. */
  api: 'chat' | 'messages' | 'passthrough';
  /** For passthrough: the path under the base URL, e.g. "/embeddings". */
  path?: string;
  /** The body (its `model` is replaced by each deployment's). */
  body: Record<string, any>;
  stream: boolean;
  requestId: string;
  signal: RequestSignal;
  /** Headers passed on to Anthropic upstreams (anthropic-beta, anthropic-version). */
  anthropicHeaders?: Record<string, string>;
}

export interface RetryPolicy {
  /** Most LLMs tried. */
  attempts: number;
  /** Most calls on one LLM's deployments (undefined: each deployment once, at most 3). */
  perLlm?: number;
  backoffMs: number;
  maxBackoffMs: number;
}

/** One upstream call, for metrics and logs. */
export interface AttemptReport {
  llm: string;
  deployment: number;
  attempt: number;
  /** 'ok', or what went wrong (the failure's code, 'client_closed'). */
  outcome: string;
  status: number;
  /** Milliseconds to the answer's headers (or the failure). */
  ms: number;
}

export interface CallOptions {
  upstreams: ReadonlyMap<string, LlmUpstream>;
  retry: RetryPolicy;
  errorBytes: number;
  /** The first LLM to try. */
  first: string;
  /**
   * The LLM to try after `failed` did not answer (undefined: stop): its fallbacks, then the router's next-best.
   * `tried` holds every LLM tried so far.
   */
  next?: (tried: ReadonlySet<string>, failed: string, f: AttemptFailure) => string | undefined | Promise<string | undefined>;
  /**
   * The client's response for a 2xx answer from `llm` after `attempts` upstream calls: add your headers to
   * `headers` (they are written by the relay) and take the response over from your framework.
   */
  client: (llm: string, attempts: number, headers: Record<string, string | string[]>) => ServerResponse;
  /** Each upstream call as it ends (metrics). */
  onAttempt?: (a: AttemptReport) => void;
  /** Parent span of the attempts' spans. */
  span?: Span;
}

export interface Answer {
  usage: Partial<Usage>;
  /** performance.now() of the answer's first body byte (0 when it had none). */
  firstByteAt: number;
}

export type CallOutcome =
  | {
      ok: true;
      llm: string;
      attempts: number;
      status: number;
      /** The body relayed: its usage. Rejects with the error that cut it (the client got an error event or a cut). */
      done: Promise<Answer>;
    }
  | { ok: false; failure: AttemptFailure; attempts: number; tried: string[] };

/** The cost of an answer: its tokens at the LLM's price, else the estimated cost per query. */
export function answerCost(price: { inputPer1m: number; outputPer1m: number } | undefined, usage: Partial<Usage> | undefined, estimate: number | undefined): { cost: number | undefined; fromUsage: boolean } {
  if (price && usage && (usage.input !== undefined || usage.output !== undefined))
    return { cost: ((usage.input ?? 0) * price.inputPer1m + (usage.output ?? 0) * price.outputPer1m) / 1e6, fromUsage: true };
  return { cost: estimate !== undefined && Number.isFinite(estimate) ? estimate : undefined, fromUsage: false };
}

/** Where an LLM's request goes and what is sent: built once per upstream model name. */
interface Outgoing {
  path: string;
  body: string;
  /** The gateway asked an OpenAI upstream for the stream's usage; the client did not. */
  stripUsage: boolean;
  translate: 'none' | 'to-anthropic' | 'to-openai';
}

function outgoing(req: LlmRequest, up: LlmUpstream, model: string): Outgoing {
  const b = req.body;
  if (req.api === 'passthrough') {
    if (up.provider !== 'openai') throw new UnirouteError('INVALID_ARGUMENT', `${req.path} is an OpenAI API; "${up.name}" is served by an Anthropic upstream`);
    const wantUsage = req.stream && req.path === '/completions' && up.cfg.streamUsage && !b.stream_options?.include_usage;
    return { path: req.path!, body: JSON.stringify(wantUsage ? { ...b, model, stream_options: { ...b.stream_options, include_usage: true } } : { ...b, model }), stripUsage: wantUsage, translate: 'none' };
  }
  if (req.api === 'chat') {
    if (up.provider === 'anthropic') return { path: '/messages', body: JSON.stringify(chatToMessagesRequest(b, model, up.cfg.maxTokens)), stripUsage: false, translate: 'to-anthropic' };
    // ask for the stream's usage (its last chunk), to count spend from it
    if (req.stream && up.cfg.streamUsage && !b.stream_options?.include_usage) return { path: '/chat/completions', body: JSON.stringify({ ...b, model, stream_options: { ...b.stream_options, include_usage: true } }), stripUsage: true, translate: 'none' };
    return { path: '/chat/completions', body: JSON.stringify({ ...b, model }), stripUsage: false, translate: 'none' };
  }
  if (up.provider === 'anthropic') return { path: '/messages', body: JSON.stringify({ ...b, model }), stripUsage: false, translate: 'none' };
  const chat = messagesToChatRequest(b, model);
  if (!up.cfg.streamUsage) delete chat.stream_options;
  return { path: '/chat/completions', body: JSON.stringify(chat), stripUsage: false, translate: 'to-openai' };
}

const clientApi = (req: LlmRequest): ClientApi => (req.api === 'messages' ? 'anthropic' : 'openai');

/** An error body in the client's API. */
export function errorIn(api: ClientApi, status: number, message: string, code: string | null, param: string | null = null): string {
  return JSON.stringify(api === 'anthropic' ? anthropicError(status, message, code) : openaiError(status, message, code, param));
}

function sinkFor(req: LlmRequest, out: Outgoing, res: ServerResponse, status: number, headers: Record<string, string | string[]>): Sink & { usage: Partial<Usage>; firstByteAt: number } {
  const api = clientApi(req);
  const ct = String(headers['content-type'] ?? '');
  const sse = req.stream && ct.includes('text/event-stream');
  if (out.translate === 'none') {
    res.writeHead(status, headers);
    return new PassSink(res, { sse, stripUsageChunk: out.stripUsage, api });
  }
  delete headers['content-length'];
  delete headers['content-encoding'];
  if (!sse) {
    const translate = out.translate === 'to-anthropic' ? messageToChatCompletion : chatCompletionToMessage;
    return new JsonSink(res, status, headers, translate, (s, m, c) => errorIn(api, s, m, c));
  }
  headers['content-type'] = 'text/event-stream; charset=utf-8';
  headers['cache-control'] = 'no-cache';
  let t: StreamTranslator;
  if (out.translate === 'to-anthropic') {
    const a = new AnthropicToChatStream(!!req.body.stream_options?.include_usage);
    t = { push: (_e, d) => (d ? a.push(String(d.type ?? _e ?? ''), d) : ''), end: () => a.end(), usage: a.usage };
  } else {
    const c = new ChatToAnthropicStream(String(req.body.model ?? ''));
    t = { push: (_e, d) => c.push(d), end: () => c.end(), usage: c.usage };
  }
  res.writeHead(status, headers);
  return new SseSink(res, t, api);
}

const sleep = (ms: number, signal: RequestSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.off('abort', done);
      resolve();
    }
    signal.once('abort', done);
  });

/** Exponential backoff with full jitter before the n-th retry (n >= 1) on an LLM's deployments. */
export const backoffDelay = (n: number, p: RetryPolicy, rand = Math.random) => rand() * Math.min(p.maxBackoffMs, p.backoffMs * 2 ** (n - 1));

/**
 * Sends a request to an LLM, retrying and failing over as the options say. Resolves once an answer's headers are
 * in (ok: its body is on its way to the client) or every allowed attempt failed (nothing went out).
 */
export async function callLLM(req: LlmRequest, o: CallOptions): Promise<CallOutcome> {
  const tried = new Set<string>();
  let attempts = 0;
  let last: AttemptFailure | undefined;
  let llm: string | undefined = o.first;
  const tracing = o.span?.isRecording() ?? false;
  while (llm !== undefined && tried.size < o.retry.attempts) {
    const name: string = llm;
    tried.add(name);
    const up = o.upstreams.get(name);
    let f: AttemptFailure | undefined;
    if (!up) f = { status: 500, code: 'no_upstream', message: `"${name}" has no upstream in the gateway config`, retryable: true };
    else {
      const r = await attemptLlm(req, o, up, attempts, tracing);
      attempts = r.attempts;
      if (r.ok) return { ok: true, llm: name, attempts, status: r.status, done: r.done };
      f = r.failure;
      if (r.aborted) return { ok: false, failure: f, attempts, tried: [...tried] };
    }
    last = f;
    if (!f.retryable && !f.contextLength) break;
    llm = o.next ? await o.next(tried, name, f) : undefined;
    if (llm !== undefined && tried.has(llm)) break; // never the same LLM twice: its own retries were its deployments
  }
  return { ok: false, failure: last ?? { status: 503, code: 'upstreams_unavailable', message: 'no LLM could be tried', retryable: false }, attempts, tried: [...tried] };
}

type LlmResult = { ok: true; attempts: number; status: number; done: Promise<Answer> } | { ok: false; attempts: number; failure: AttemptFailure; aborted?: boolean };

/** Up to `perLlm` calls on one LLM's deployments (twins first), with backoff between them. */
async function attemptLlm(req: LlmRequest, o: CallOptions, up: LlmUpstream, attempts: number, tracing: boolean): Promise<LlmResult> {
  const per = o.retry.perLlm ?? Math.min(3, up.deployments.length);
  const triedDeps = new Set<Deployment>();
  const bodies = new Map<string, Outgoing>();
  let last: AttemptFailure | undefined;
  for (let i = 0; i < per; i++) {
    const d = up.pick(triedDeps);
    if (!d) {
      if (!last) {
        const wait = Math.ceil(up.cooldownLeft() / 1000);
        last = { status: 503, code: 'upstream_breaker_open', message: `every deployment of "${up.name}" is cooling down after repeated failures (circuit breaker open${wait > 0 ? `; next probe in ${wait} s` : ''})`, retryable: true, headers: { 'retry-after': String(Math.max(1, wait)) } };
      }
      break;
    }
    if (i > 0) {
      await sleep(backoffDelay(i, o.retry), req.signal);
      if (req.signal.aborted) return { ok: false, attempts, failure: last!, aborted: true };
    }
    let out = bodies.get(d.cfg.model);
    if (!out) {
      try {
        out = outgoing(req, up, d.cfg.model);
      } catch (e) {
        // the request cannot go to this LLM's API (n > 1 to Anthropic, ...): another LLM may take it
        const message = e instanceof UnirouteError ? e.message : String(e);
        return { ok: false, attempts, failure: { status: 400, code: 'unsupported_for_upstream', message, retryable: true } };
      }
      bodies.set(d.cfg.model, out);
    }
    const o2 = out;
    triedDeps.add(d);
    attempts++;
    const attempt = attempts;
    const span = tracing
      ? tracer.startSpan('uniroute.upstream', { attributes: { 'uniroute.llm': up.name, 'uniroute.deployment': d.index, 'uniroute.attempt': attempt, 'uniroute.provider': up.provider } }, trace.setSpan(context.active(), o.span!))
      : undefined;
    d.breaker.begin();
    d.inflight++;
    const t0 = performance.now();
    let sink: (Sink & { usage: Partial<Usage>; firstByteAt: number }) | undefined;
    const res = await d.send(
      o2.path,
      o2.body,
      req.requestId,
      req.signal,
      o.errorBytes,
      (status, headers) => {
        const r = o.client(up.name, attempt, headers);
        return (sink = sinkFor(req, o2, r, status, headers));
      },
      up.provider === 'anthropic' ? req.anthropicHeaders : undefined,
    );
    const ms = performance.now() - t0;
    if (res.ok) {
      d.breaker.success();
      o.onAttempt?.({ llm: up.name, deployment: d.index, attempt, outcome: 'ok', status: res.status, ms });
      span?.setAttribute('uniroute.outcome', 'ok');
      span?.setAttribute('http.response.status_code', res.status);
      const done = res.done.then(
        () => {
          d.inflight--;
          span?.end();
          return { usage: sink!.usage, firstByteAt: sink!.firstByteAt };
        },
        (e) => {
          d.inflight--;
          span?.setStatus({ code: SpanStatusCode.ERROR, message: 'stream cut' });
          span?.end();
          throw e;
        },
      );
      return { ok: true, attempts, status: res.status, done };
    }
    d.inflight--;
    const f = res.failure;
    if (req.signal.aborted) {
      d.breaker.cancel(); // says nothing about the upstream; a half-open breaker's probe slot is free again
      o.onAttempt?.({ llm: up.name, deployment: d.index, attempt, outcome: 'client_closed', status: 0, ms });
      span?.setAttribute('uniroute.outcome', 'client_closed');
      span?.end();
      return { ok: false, attempts, failure: f, aborted: true };
    }
    if (f.retryable) d.breaker.failure();
    else d.breaker.success(); // it answered: a 4xx is about the request, not the upstream's health
    o.onAttempt?.({ llm: up.name, deployment: d.index, attempt, outcome: f.code, status: f.status, ms });
    if (span) {
      span.setAttribute('uniroute.outcome', f.code);
      span.setAttribute('http.response.status_code', f.status);
      span.setStatus({ code: SpanStatusCode.ERROR, message: f.message });
      span.end();
    }
    last = f;
    if (!f.retryable) break; // a 4xx (a context-length error included): the twins would say the same
  }
  return { ok: false, attempts, failure: last! };
}

/**
 * A response that keeps the answer in memory instead of sending it (for callers with no HTTP client on the other
 * end, such as a batch job): pass `client: () => r.response` to callLLM, then await `r.answer()`.
 */
export class BufferedResponse {
  statusCode = 0;
  headers: Record<string, string | string[]> = {};
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  private chunks: Buffer[] = [];
  private settle!: (v: { status: number; headers: Record<string, string | string[]>; body: Buffer }) => void;
  private fail!: (e: Error) => void;
  private readonly done = new Promise<{ status: number; headers: Record<string, string | string[]>; body: Buffer }>((resolve, reject) => {
    this.settle = resolve;
    this.fail = reject;
  });
  constructor() {
    this.done.catch(() => undefined); // read through answer()
  }
  writeHead(status: number, headers: Record<string, string | string[]>): this {
    this.statusCode = status;
    this.headers = { ...headers };
    this.headersSent = true;
    return this;
  }
  write(chunk: Buffer | string): boolean {
    this.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    return true;
  }
  end(chunk?: Buffer | string): this {
    if (chunk !== undefined) this.write(chunk);
    this.writableFinished = true;
    this.settle({ status: this.statusCode, headers: this.headers, body: Buffer.concat(this.chunks) });
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    this.fail(new Error('the upstream answer was cut'));
    return this;
  }
  on(): this {
    return this; // never slow: nothing to drain
  }
  /** The response as a ServerResponse for callLLM. */
  get response(): ServerResponse {
    return this as unknown as ServerResponse;
  }
  /** The whole answer (status, headers, body) once it has ended. */
  answer(): Promise<{ status: number; headers: Record<string, string | string[]>; body: Buffer }> {
    return this.done;
  }
}
