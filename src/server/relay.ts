/**
 * Sinks: where an upstream's 2xx answer goes on its way to the client (src/server/gateway.ts feeds them).
 *
 *   PassSink       the answer as it came (same API both sides), watched for its token usage: a JSON answer's
 *                  last 64 KiB are searched for `"usage"` at the end; a stream's events are split and only those
 *                  carrying a usage object are parsed (the usage-only chunk the gateway asked an OpenAI upstream
 *                  for is dropped when the client did not ask for it).
 *   JsonSink       a whole JSON answer translated to the client's API (Anthropic <-> OpenAI) before it is sent.
 *   SseSink        a stream translated event by event.
 *
 * A stream cut after its headers ends with an error event in the client's API (OpenAI: a data line with an
 * `error` object; Anthropic: `event: error`), and a properly terminated body, so that the client's SDK raises
 * instead of taking a cut answer for a whole one.
 */
import type { ServerResponse } from 'node:http';
import type { Sink } from './gateway.js';
import { SseSplitter, TailKeeper, findUsageBytes, hasUsageObject, mergeUsage, parseEvents, usageEvents, usageIn, type Usage } from './sse.js';
import { anthropicError } from './anthropic.js';

/** The client's API, for the error event of a cut stream. */
export type ClientApi = 'openai' | 'anthropic';

/** The SSE error event that ends a cut stream. */
export function streamErrorEvent(api: ClientApi, message: string, code: string): string {
  if (api === 'anthropic') return `event: error\ndata: ${JSON.stringify(anthropicError(502, message, code))}\n\n`;
  return `data: ${JSON.stringify({ error: { message, type: 'upstream_error', param: null, code } })}\n\n`;
}

const cutMessage = (err: Error & { code?: string }) =>
  err?.code === 'UND_ERR_BODY_TIMEOUT' ? ['upstream_idle_timeout', 'the upstream stopped sending mid-answer (idle timeout)'] : ['upstream_stream_cut', 'the upstream closed the stream mid-answer'];

abstract class BaseSink implements Sink {
  /** Tokens the answer used, as far as it said. */
  readonly usage: Partial<Usage> = {};
  /** performance.now() of the first body byte. */
  firstByteAt = 0;
  protected ended = false;
  private resume: (() => void) | undefined;
  constructor(protected readonly res: ServerResponse) {}
  onDrain(resume: () => void): void {
    this.resume = resume; // listened for only when a write fills the socket's buffer (a listener per request showed in the profile)
  }
  abstract write(chunk: Buffer): boolean;
  abstract end(): void;
  abstract fail(err: Error): void;
  // The pieces of an answer that come in one turn (a stream's events arrive as one read, one undici callback each)
  // go to the client in one write without anything here: node's response corks its socket at a turn's first write
  // and uncorks it at the turn's end (write_ in _http_outgoing). A cork of our own on top cost a nextTick per answer.
  protected out(text: string | Buffer): boolean {
    if (this.res.destroyed) return true;
    const ok = this.res.write(text);
    if (!ok && this.resume) this.res.once('drain', this.resume);
    return ok;
  }
}

export interface PassOptions {
  /** The answer is a stream (text/event-stream). */
  sse: boolean;
  /** Drop the usage-only chunk (OpenAI: `choices: []`): the gateway asked for it, the client did not. */
  stripUsageChunk: boolean;
  api: ClientApi;
}

/** The answer as it came, its usage read on the way. */
export class PassSink extends BaseSink {
  private readonly tail: TailKeeper | undefined;
  private readonly split: SseSplitter | undefined;
  constructor(
    res: ServerResponse,
    private readonly o: PassOptions,
  ) {
    super(res);
    if (o.sse) this.split = new SseSplitter();
    else this.tail = new TailKeeper();
  }

  write(chunk: Buffer): boolean {
    if (this.firstByteAt === 0) this.firstByteAt = performance.now();
    if (this.tail) {
      this.tail.push(chunk);
      return this.out(chunk);
    }
    // a stream: whole events only, so that a usage event is seen (and dropped) whole
    const whole = this.split!.push(chunk);
    if (whole === null) {
      // an event longer than 1 MiB is passed on as it comes (its usage, if any, is missed)
      if (this.split!.pending > 1 << 20) return this.out(this.split!.rest()!);
      return true;
    }
    if (!hasUsageObject(whole)) return this.out(whole);
    const kept = this.usageEvents(whole);
    return kept.length === 0 ? true : this.out(kept); // an empty write would still go through the socket
  }

  /** Reads the usage of the events that carry one (only those are decoded); drops the usage-only chunk when asked. */
  private usageEvents(whole: Buffer): Buffer {
    const drop: Array<[number, number]> = [];
    for (const e of usageEvents(whole)) {
      mergeUsage(this.usage, e.usage);
      if (this.o.stripUsageChunk && e.usageOnly) drop.push([e.start, e.end]);
    }
    if (drop.length === 0) return whole;
    const parts: Buffer[] = [];
    let at = 0;
    for (const [a, b] of drop) {
      if (a > at) parts.push(whole.subarray(at, a));
      at = b;
    }
    if (at < whole.length) parts.push(whole.subarray(at));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.tail) {
      const u = findUsageBytes(this.tail.bytes());
      if (u) mergeUsage(this.usage, u);
    } else {
      const rest = this.split!.rest();
      if (rest) this.out(rest);
    }
    this.res.end();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (this.split && !this.res.destroyed) {
      const rest = this.split.rest();
      if (rest) this.out(rest);
      const [code, message] = cutMessage(err);
      this.out(streamErrorEvent(this.o.api, message, code));
      this.res.end();
      return;
    }
    if (!this.res.destroyed) this.res.destroy();
  }
}

/**
 * A whole JSON answer, translated, then sent: the client's status line and headers go out only then, so that an
 * answer that cannot be read is still a clean 502.
 */
export class JsonSink extends BaseSink {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(
    res: ServerResponse,
    private readonly status: number,
    private readonly headers: Record<string, string | string[]>,
    private readonly translate: (j: any) => any,
    private readonly onError: (status: number, message: string, code: string) => string,
    private readonly maxBytes = 64 * 1024 * 1024,
  ) {
    super(res);
  }
  write(chunk: Buffer): boolean {
    if (this.firstByteAt === 0) this.firstByteAt = performance.now();
    this.size += chunk.length;
    if (this.size > this.maxBytes) this.chunks = []; // read on to the end, kept no more: a 502 then
    else this.chunks.push(chunk);
    return true;
  }
  private send(status: number, body: string): void {
    if (this.res.destroyed) return;
    const h = { ...this.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    this.res.writeHead(status, h);
    this.res.end(body);
  }
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.size > this.maxBytes) {
      this.send(502, this.onError(502, `the upstream's answer exceeds ${this.maxBytes} bytes, too large to translate`, 'upstream_bad_response'));
      return;
    }
    let j: any;
    try {
      j = JSON.parse(Buffer.concat(this.chunks).toString('utf8'));
    } catch {
      this.send(502, this.onError(502, 'the upstream answered with malformed JSON', 'upstream_bad_response'));
      return;
    }
    this.chunks = [];
    mergeUsage(this.usage, usageIn(j));
    let body: string;
    try {
      body = JSON.stringify(this.translate(j));
    } catch (e) {
      this.send(502, this.onError(502, `the upstream's answer could not be translated: ${(e as Error).message}`, 'upstream_bad_response'));
      return;
    }
    this.send(this.status, body);
  }
  fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    const [code, message] = cutMessage(err);
    if (!this.res.headersSent) this.send(502, this.onError(502, message, code));
    else if (!this.res.destroyed) this.res.destroy();
  }
}

/** A translator of stream events: takes one upstream event, gives the client's text; end() closes the stream. */
export interface StreamTranslator {
  /** `data` is the event's JSON (null for OpenAI's [DONE]). */
  push(event: string | undefined, data: any): string;
  end(): string;
  readonly usage: Partial<Usage>;
}

/** A stream translated event by event. */
export class SseSink extends BaseSink {
  private readonly split = new SseSplitter();
  constructor(
    res: ServerResponse,
    private readonly t: StreamTranslator,
    private readonly api: ClientApi,
  ) {
    super(res);
  }
  private events(b: Buffer): string {
    let out = '';
    for (const e of parseEvents(b.toString('utf8'))) {
      if (e.data === '') continue;
      if (e.data === '[DONE]') {
        out += this.t.push(e.event, null);
        continue;
      }
      let j: any;
      try {
        j = JSON.parse(e.data);
      } catch {
        continue; // not an event of the API: nothing to translate
      }
      if (e.event === 'error' || (j && typeof j === 'object' && j.type === 'error') || (j && j.error && !j.choices)) {
        const msg = String(j?.error?.message ?? 'the upstream reported an error mid-stream');
        out += streamErrorEvent(this.api, `upstream error mid-stream: ${msg}`, 'upstream_stream_error');
        this.ended = true;
        return out;
      }
      out += this.t.push(e.event, j);
    }
    return out;
  }
  write(chunk: Buffer): boolean {
    if (this.ended) return true;
    if (this.firstByteAt === 0) this.firstByteAt = performance.now();
    const whole = this.split.push(chunk);
    if (whole === null) return true;
    const text = this.events(whole);
    mergeUsage(this.usage, this.t.usage);
    if (this.ended) {
      this.out(text);
      this.res.end();
      return true;
    }
    return text === '' ? true : this.out(text);
  }
  end(): void {
    if (this.ended) return;
    const rest = this.split.rest();
    let text = rest ? this.events(rest) : '';
    if (!this.ended) text += this.t.end();
    this.ended = true;
    mergeUsage(this.usage, this.t.usage);
    if (text) this.out(text);
    this.res.end();
  }
  fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    const [code, message] = cutMessage(err);
    if (!this.res.destroyed) {
      this.out(streamErrorEvent(this.api, message, code));
      this.res.end();
    }
  }
}
