/**
 * The upstream side of the gateway: an LLM (LlmUpstream) is served by one or more deployments, each one undici
 * Pool (keep-alive, a connection limit, timeouts by phase) with its own circuit breaker; the LLM picks a
 * deployment by weighted least-busy. One attempt = one request to one deployment, whose answer is handed to a Sink
 * (src/server/relay.ts) as it arrives, so that the caller can stream it through or translate it. Secrets (API
 * keys, credentials in a base URL) never leave in an error message.
 */
import { EventEmitter } from 'node:events';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { redactSecrets, secretForms } from '../redact.js';

/**
 * An abort signal for one proxied request (undici takes an EventEmitter that emits 'abort'): far cheaper per
 * request than an AbortController, whose EventTarget showed in the proxy's profile.
 */
export class RequestSignal extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}
import type { DeploymentConfig, Provider, Timeouts, UpstreamConfig } from './config.js';

/** Consecutive failures open the breaker for a cool-down; then one probe is let through (half-open). */
export class Breaker {
  private failures = 0;
  private openUntil = 0;
  private probing = false;
  /**
   * @param tripped shared by the breakers of one gateway: how many of them are not closed, so that a request finds
   *   "every upstream allows requests" without asking each one.
   */
  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly tripped: { count: number } = { count: 0 },
  ) {}

  state(now = Date.now()): 'closed' | 'open' | 'half-open' {
    if (this.failures < this.threshold) return 'closed';
    return now < this.openUntil ? 'open' : 'half-open';
  }

  /** Whether a request may go now; in half-open, only one (the probe) until it ends. */
  allows(now = Date.now()): boolean {
    const s = this.state(now);
    return s === 'closed' || (s === 'half-open' && !this.probing);
  }

  /** Milliseconds until an open breaker lets a probe through (0 when not open). */
  openFor(now = Date.now()): number {
    return this.state(now) === 'open' ? this.openUntil - now : 0;
  }

  /** Takes the slot for a request (marks the probe in half-open). */
  begin(now = Date.now()): void {
    if (this.state(now) === 'half-open') this.probing = true;
  }

  /** The request ended without saying anything about the upstream (the client left): a probe's slot is free again. */
  cancel(): void {
    this.probing = false;
  }

  success(): void {
    if (this.failures >= this.threshold) this.tripped.count--;
    this.failures = 0;
    this.probing = false;
  }

  failure(now = Date.now()): void {
    this.probing = false;
    this.failures++;
    if (this.failures === this.threshold) this.tripped.count++;
    if (this.failures >= this.threshold) this.openUntil = now + this.cooldownMs;
  }
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Upstream response headers a client may see: all but the hop-by-hop ones (and those a Connection header names). */
export function passHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let named: Set<string> | undefined;
  const conn = h.connection ?? h.Connection;
  if (conn !== undefined)
    named = new Set(
      String(conn)
        .toLowerCase()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    const key = k.toLowerCase();
    if (HOP_BY_HOP.has(key) || named?.has(key)) continue;
    out[key] = v;
  }
  return out;
}

/** How an attempt failed, before any byte went to the client. */
export interface AttemptFailure {
  /** HTTP status for the client. */
  status: number;
  /** OpenAI-style error code: upstream_connect_timeout, upstream_headers_timeout, upstream_unreachable, or the upstream's own. */
  code: string;
  message: string;
  /** Worth trying again elsewhere (connect error, timeout, 408, 429, 5xx). */
  retryable: boolean;
  /** The upstream said the request is longer than the LLM's context window: worth trying an LLM with a larger one. */
  contextLength?: boolean;
  /** Upstream headers to pass on (Retry-After of a 429, request ids), when the upstream answered. */
  headers?: Record<string, string | string[]>;
}

/**
 * Where a 2xx answer goes: the relay writes each body chunk into it as it arrives; write() returning false pauses
 * the upstream until the sink calls the drain callback. end() when the answer is complete, fail() when it broke
 * after the headers (bytes may have gone to the client).
 */
export interface Sink {
  write(chunk: Buffer): boolean;
  end(): void;
  fail(err: Error): void;
  /** Called by the relay once: resume the upstream when the client can take more. */
  onDrain(resume: () => void): void;
}

/** Called once when a 2xx answer's headers arrive, with its status and the headers a client may see. */
export type OpenSink = (status: number, headers: Record<string, string | string[]>) => Sink;

export type AttemptResult =
  | {
      ok: true;
      status: number;
      /** Settles when the body has been relayed: rejects with the error that broke it (bytes may have gone out). */
      done: Promise<void>;
    }
  | { ok: false; failure: AttemptFailure };

/**
 * Header names as they come (their bytes), lower-cased once: an upstream sends the same few names on every answer,
 * and turning each into a string, lower-casing it and hashing it as a key showed in the proxy's profile. Found by
 * a hash of the bytes, then compared byte for byte; at most 256 names are kept (others take the slow path).
 */
const names = new Map<number, { bytes: Buffer; name: string; hop: boolean }>();
function headerName(b: Buffer): { name: string; hop: boolean } {
  const n = b.length;
  let h = n;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ b[i], 0x01000193);
  const hit = names.get(h);
  if (hit && hit.bytes.length === n) {
    let same = true;
    for (let i = 0; i < n && same; i++) same = hit.bytes[i] === b[i];
    if (same) return hit;
  }
  const name = b.toString('latin1').toLowerCase();
  const e = { bytes: Buffer.from(b), name, hop: HOP_BY_HOP.has(name) };
  if (!hit && names.size < 256) names.set(h, e);
  return e;
}

/**
 * The headers a client may see, straight from undici's raw header list (name, value, name, value, ...): as
 * passHeaders, without the intermediate object undici would parse first.
 */
export function passRawHeaders(raw: Buffer[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let connection: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const { name: key, hop } = headerName(raw[i]);
    const value = raw[i + 1].toString('latin1');
    if (hop) {
      if (key === 'connection') connection = connection === undefined ? value : `${connection},${value}`;
      continue;
    }
    if (key === '__proto__') continue;
    const had = out[key];
    out[key] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  // the headers Connection names go too (a delete only where one is there: it turns the object into a slow one);
  // the usual `keep-alive` or `close` names none that is kept, and skipping its split saves 0.3 us an answer
  if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close')
    for (const n of connection.toLowerCase().split(',')) {
      const k = n.trim();
      if (k && out[k] !== undefined) delete out[k];
    }
  return out;
}

/**
 * One proxied request as an undici dispatch handler (undici's own handler interface, which its client calls
 * directly: the newer one goes through an adapter that parses every header and trailer list into an object): the
 * answer's body goes straight from undici's parser into the sink, pausing the upstream when the client is slow,
 * with no intermediate Readable or pipe. A non-2xx answer's body is collected up to `errorBytes`, then the request
 * is aborted (a huge error body is never buffered).
 */
class ProxyHandler {
  private abortFn: ((err: Error) => void) | undefined;
  private sink: Sink | undefined;
  private failStatus = 0;
  private failHeaders: Record<string, string | string[]> = {};
  private chunks: Buffer[] = [];
  private collected = 0;
  private settled = false;
  private doneResolve: (() => void) | undefined;
  private doneReject: ((e: unknown) => void) | undefined;
  private readonly onAbort = () => this.abortFn?.(this.signal.reason instanceof Error ? this.signal.reason : new Error('client closed'));

  constructor(
    private readonly up: Deployment,
    private readonly signal: RequestSignal,
    private readonly errorBytes: number,
    private readonly open: OpenSink,
    private readonly settle: (r: AttemptResult) => void,
  ) {
    signal.once('abort', this.onAbort);
  }

  private finish(r: AttemptResult): void {
    if (this.settled) return;
    this.settled = true;
    this.settle(r);
  }

  private cleanup(): void {
    this.signal.off('abort', this.onAbort);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortFn = abort;
    if (this.signal.aborted) this.onAbort();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // informational (103 Early Hints): the final answer follows
    const h = passRawHeaders(rawHeaders);
    // an upstream that echoes our credentials in a header: never relayed as they are
    scrubHeaders(h, this.up.secretForms());
    if (statusCode >= 200 && statusCode < 300) {
      let sink: Sink;
      try {
        sink = this.open(statusCode, h);
      } catch (e) {
        // headers node refuses to write (nothing went out): an answer that cannot be relayed
        this.finish({ ok: false, failure: { status: 502, code: 'upstream_bad_response', message: `upstream for "${this.up.llm}" answered with headers that cannot be relayed: ${redact(String((e as Error)?.message ?? e), this.up.secrets())}`, retryable: true } });
        this.abortFn?.(new Error('unrelayable headers'));
        return false;
      }
      this.sink = sink;
      sink.onDrain(resume);
      const done = new Promise<void>((res, rej) => {
        this.doneResolve = res;
        this.doneReject = rej;
      });
      this.finish({ ok: true, status: statusCode, done });
      return true;
    }
    this.failStatus = statusCode;
    this.failHeaders = h;
    return true;
  }

  onData(chunk: Buffer): boolean {
    const sink = this.sink;
    if (sink) return sink.write(chunk); // false: undici pauses until the sink's drain calls resume
    if (this.failStatus === 0) return true;
    const room = this.errorBytes - this.collected;
    if (chunk.length >= room) {
      this.chunks.push(chunk.subarray(0, Math.max(0, room)));
      this.collected = this.errorBytes;
      this.failed(); // enough of it: the rest is never read
      this.abortFn?.(new Error('error body cap reached'));
      return false;
    }
    this.chunks.push(chunk);
    this.collected += chunk.length;
    return true;
  }

  onComplete(): void {
    this.cleanup();
    if (this.sink) {
      this.sink.end();
      this.doneResolve?.();
    } else this.failed();
  }

  onError(err: Error): void {
    this.cleanup();
    if (this.sink) {
      // bytes may have gone out: the sink ends the client's answer (an error event on a stream), the caller logs why
      this.sink.fail(err);
      this.doneReject?.(err);
    } else if (this.failStatus !== 0) this.failed(); // a broken error body: keep what came
    else this.finish({ ok: false, failure: this.up.transportFailure(err) });
  }

  /** The non-2xx answer as a failure, its body (as much as was read) redacted. */
  private failed(): void {
    if (this.settled) return;
    const text = Buffer.concat(this.chunks).toString('utf8');
    this.chunks = [];
    this.finish({ ok: false, failure: this.up.answerFailure(this.failStatus, this.failHeaders, text) });
  }
}

const CONTEXT_ERROR = /context[ _-]?(length|window)|maximum context|prompt is too long|too many (input )?tokens|reduce the length|input is too long/i;

/**
 * Keep-alive connection pools shared by the deployments of one gateway state that reach the same origin with the
 * same max_connections and connect timeout (a provider serves many LLMs from one host: api.openai.com has one pool,
 * not one per model). Each request still carries its deployment's header and idle timeouts. On the proxy bench,
 * where routing spreads the requests over three LLMs of one stand-in, the gateway held 123 upstream connections
 * with a pool per deployment and holds 64 now.
 */
export class SharedPools {
  private readonly pools = new Map<string, Pool>();
  private readonly closing = new Map<Pool, Promise<void>>();
  get(origin: string, cfg: DeploymentConfig): Pool {
    const key = `${origin}\u0000${cfg.maxConnections}\u0000${cfg.timeouts.connectMs}`;
    let p = this.pools.get(key);
    if (!p) {
      // no header or body timeout here: every request carries its own deployment's (Deployment.send)
      p = new Pool(origin, { connections: cfg.maxConnections, connect: { timeout: cfg.timeouts.connectMs }, keepAliveTimeout: 30_000 });
      this.pools.set(key, p);
    }
    return p;
  }
  /** Closes a pool once, however many deployments share it. */
  close(p: Pool): Promise<void> {
    let c = this.closing.get(p);
    if (!c) this.closing.set(p, (c = p.close()));
    return c;
  }
  /** How many distinct pools there are (for tests). */
  get size(): number {
    return this.pools.size;
  }
}

/** One place an LLM is served from: a connection pool (shared with deployments on the same origin) and a circuit breaker. */
export class Deployment {
  readonly pool: Pool;
  readonly breaker: Breaker;
  /** Requests sent here and not finished (for least-busy balancing). */
  inflight = 0;
  /** Smooth weighted round-robin's running weight. */
  current = 0;
  private readonly basePath: string;
  private readonly basicAuth: string | undefined;
  constructor(
    /** The LLM's name (for messages). */
    readonly llm: string,
    /** Its position among the LLM's deployments (a metric label). */
    readonly index: number,
    readonly provider: Provider,
    readonly cfg: DeploymentConfig,
    breaker: { failures: number; cooldownMs: number },
    tripped?: { count: number },
    private readonly pools: SharedPools = new SharedPools(),
  ) {
    const url = new URL(cfg.baseUrl);
    // credentials in the base URL are sent as Basic auth (when no API key is set), never in a message
    if (url.username) this.basicAuth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = pools.get(url.origin, cfg);
    this.breaker = new Breaker(breaker.failures, breaker.cooldownMs, tripped);
  }

  /** The API key, read when used (so that a rotated variable is picked up on reload). */
  apiKey(): string | undefined {
    return this.cfg.apiKeyEnv ? process.env[this.cfg.apiKeyEnv] || undefined : undefined;
  }

  /**
   * Secrets that must never reach a client: the API key and any credentials in the base URL, and the
   * Authorization values made of them (`Bearer <key>`, `Basic <base64 of user:password>`).
   */
  secrets(): string[] {
    const out: string[] = [];
    const key = this.apiKey();
    if (key && key.length >= 4) out.push(key, `Bearer ${key}`);
    const u = new URL(this.cfg.baseUrl);
    if (u.password) out.push(decodeURIComponent(u.password), u.password);
    if (u.username && u.password) out.push(decodeURIComponent(u.username));
    if (this.basicAuth) out.push(this.basicAuth, this.basicAuth.slice(6), `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`);
    return out;
  }

  /** Every form of the secrets (as they are, URL-encoded, base64): computed again only when the key changes. */
  secretForms(): string[] {
    const key = this.apiKey() ?? '';
    if (!this.forms || this.formsKey !== key) {
      this.forms = secretForms(this.secrets());
      this.formsKey = key;
    }
    return this.forms;
  }
  private forms: string[] | undefined;
  private formsKey = '';

  /**
   * Sends one request to `path` under the base URL (e.g. "/chat/completions", "/messages"). When a 2xx answer's
   * headers arrive, `open` gives the sink its body is relayed into, as it arrives; the result then says when that
   * ends. Anything else is an AttemptFailure (nothing has gone to the client), an error body read up to
   * `errorBytes` and redacted.
   */
  send(path: string, body: string, requestId: string, signal: RequestSignal, errorBytes: number, open: OpenSink, extraHeaders?: Record<string, string>): Promise<AttemptResult> {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
    const key = this.apiKey();
    if (this.provider === 'anthropic') {
      headers['anthropic-version'] = '2023-06-01';
      if (key) headers['x-api-key'] = key;
      else if (this.basicAuth) headers.authorization = this.basicAuth;
    } else if (key) headers.authorization = `Bearer ${key}`;
    else if (this.basicAuth) headers.authorization = this.basicAuth;
    if (extraHeaders) Object.assign(headers, extraHeaders);
    return new Promise<AttemptResult>((settle) => {
      const handler = new ProxyHandler(this, signal, errorBytes, open, settle);
      // this deployment's timeouts (its pool may be shared): headers, and the idle gap between two chunks of the body
      // (never the whole response)
      this.pool.dispatch({ path: this.basePath + path, method: 'POST', headers, body, headersTimeout: this.cfg.timeouts.headersMs, bodyTimeout: this.cfg.timeouts.idleMs }, handler as unknown as Dispatcher.DispatchHandler);
    });
  }

  /** A non-2xx answer as a failure: the upstream's error code when it gives one, its message redacted. */
  answerFailure(status: number, h: Record<string, string | string[]>, text: string): AttemptFailure {
    let code = 'upstream_error';
    let detail = text;
    try {
      const j = JSON.parse(text);
      const e = j?.error ?? j;
      if (typeof e?.code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(e.code)) code = e.code;
      else if (typeof e?.type === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(e.type)) code = e.type;
      detail = typeof e?.message === 'string' ? e.message : text;
    } catch {
      /* not JSON (or cut at the cap): keep the text */
    }
    detail = redact(detail.slice(0, 1000), this.secrets());
    const keep: Record<string, string | string[]> = {};
    for (const k of ['retry-after', 'x-request-id', 'request-id', 'x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', 'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens'])
      if (h[k] !== undefined) keep[k] = h[k];
    scrubHeaders(keep, this.secretForms());
    const contextLength = (status === 400 || status === 413 || status === 422) && (code === 'context_length_exceeded' || CONTEXT_ERROR.test(detail));
    return {
      status,
      code: contextLength && code === 'upstream_error' ? 'context_length_exceeded' : code,
      message: `upstream for "${this.llm}" answered ${status}${detail ? `: ${detail}` : ''}`,
      retryable: status === 408 || status === 429 || status >= 500,
      ...(contextLength ? { contextLength } : {}),
      headers: keep,
    };
  }

  transportFailure(e: unknown): AttemptFailure {
    const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
    const t = this.cfg.timeouts;
    const code = err?.code ?? err?.cause?.code ?? '';
    if (e instanceof undiciErrors.ConnectTimeoutError || code === 'UND_ERR_CONNECT_TIMEOUT')
      return { status: 504, code: 'upstream_connect_timeout', message: `upstream for "${this.llm}" did not accept a connection within ${t.connectMs} ms`, retryable: true };
    if (e instanceof undiciErrors.HeadersTimeoutError || code === 'UND_ERR_HEADERS_TIMEOUT')
      return { status: 504, code: 'upstream_headers_timeout', message: `upstream for "${this.llm}" sent no response headers within ${t.headersMs} ms`, retryable: true };
    const cause =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'DNS lookup failed'
          : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET'
            ? 'connection reset'
            : /CERT|SSL|TLS/i.test(code) || /certificate|SSL|TLS/i.test(err?.message ?? '')
              ? `TLS error (${code || 'handshake failed'})`
              : code || 'request failed';
    return { status: 502, code: 'upstream_unreachable', message: `upstream for "${this.llm}" failed: ${redact(cause, this.secrets())}`, retryable: true };
  }

  close(): Promise<void> {
    return this.pools.close(this.pool);
  }
}

/** An LLM with its deployments: picks one per attempt by weighted least-busy among those whose breaker allows. */
export class LlmUpstream {
  readonly deployments: Deployment[];
  constructor(
    readonly name: string,
    readonly cfg: UpstreamConfig,
    breaker: { failures: number; cooldownMs: number },
    tripped?: { count: number },
    pools?: SharedPools,
  ) {
    this.deployments = cfg.deployments.map((d, i) => new Deployment(name, i, cfg.provider, d, breaker, tripped, pools));
  }

  get provider(): Provider {
    return this.cfg.provider;
  }

  /** Whether any deployment takes a request now. */
  allows(now = Date.now()): boolean {
    for (const d of this.deployments) if (d.breaker.allows(now)) return true;
    return false;
  }

  /** When the first open breaker lets a probe through (ms from now), for Retry-After. */
  cooldownLeft(now = Date.now()): number {
    let best = Infinity;
    for (const d of this.deployments) best = Math.min(best, d.breaker.openFor(now));
    return Number.isFinite(best) ? best : 0;
  }

  /**
   * The deployment for the next attempt, among those whose breaker allows a request (the ones not tried yet by
   * this request first): the fewest requests in flight per unit of weight; among equally busy ones, smooth
   * weighted round-robin, so that the weights share the load when it is light too.
   */
  pick(tried?: Set<Deployment>, now = Date.now()): Deployment | undefined {
    const ds = this.deployments;
    if (ds.length === 1) return ds[0].breaker.allows(now) ? ds[0] : undefined;
    let fresh = false;
    let minLoad = Infinity;
    const open: Deployment[] = [];
    for (const d of ds) {
      if (!d.breaker.allows(now)) continue;
      open.push(d);
      if (!tried?.has(d)) fresh = true;
    }
    if (open.length === 0) return undefined;
    const pool = fresh && tried?.size ? open.filter((d) => !tried.has(d)) : open;
    for (const d of pool) minLoad = Math.min(minLoad, d.inflight / d.cfg.weight);
    let total = 0;
    let best: Deployment | undefined;
    for (const d of pool) {
      if (d.inflight / d.cfg.weight > minLoad + 1e-9) continue;
      d.current += d.cfg.weight;
      total += d.cfg.weight;
      if (!best || d.current > best.current) best = d;
    }
    best!.current -= total;
    return best;
  }

  close(): Promise<void> {
    return Promise.all(this.deployments.map((d) => d.close().catch(() => undefined))).then(() => undefined);
  }
}

/** Header values holding a secret (in any of its forms) have it replaced by [redacted], in place. */
export function scrubHeaders(h: Record<string, string | string[]>, forms: string[]): void {
  if (forms.length === 0) return;
  for (const k in h) {
    const v = h[k];
    if (typeof v === 'string') {
      for (const f of forms)
        if (v.includes(f)) {
          h[k] = redactSecrets(v, forms);
          break;
        }
    } else if (v.some((x) => forms.some((f) => x.includes(f)))) h[k] = v.map((x) => redactSecrets(x, forms));
  }
}

/** Replaces every secret in a text by [redacted]: as it is, URL-encoded or base64-encoded, and any credential by its form (src/redact.ts). */
export function redact(text: string, secrets: string[]): string {
  return redactSecrets(text, secrets);
}

export type { Timeouts };
