/**
 * Server-sent events and token usage, for the gateway's relay: splitting a byte stream into whole events (without
 * copying in the common case, where an upstream writes whole events), reading an event's fields, and finding the
 * `usage` object an OpenAI or Anthropic answer carries (JSON or stream) without parsing the whole answer.
 */

/** Tokens an answer used, as the upstream reported them. */
export interface Usage {
  /** Prompt tokens (Anthropic: input + cache creation + cache read). */
  input: number;
  output: number;
}

/** Where a byte string has a blank line ("\n\n" or "\r\n\r\n"): the index just past the last one, or -1. */
function lastBoundary(b: Buffer): number {
  const i = b.lastIndexOf('\n\n');
  const j = b.lastIndexOf('\r\n\r\n');
  return Math.max(i >= 0 ? i + 2 : -1, j >= 0 ? j + 4 : -1);
}

/** Splits a byte stream into whole events: push() returns the complete events so far, keeping a partial one. */
export class SseSplitter {
  private carry: Buffer | null = null;
  /** Bytes held back (a partial event), for bounds. */
  get pending(): number {
    return this.carry ? this.carry.length : 0;
  }
  push(chunk: Buffer): Buffer | null {
    const n = chunk.length;
    // the common case: an upstream writes whole events, so a chunk ends with its blank line
    if (this.carry === null && n >= 2 && chunk[n - 1] === 0x0a && (chunk[n - 2] === 0x0a || (n >= 4 && chunk[n - 2] === 0x0d && chunk[n - 3] === 0x0a && chunk[n - 4] === 0x0d))) return chunk;
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    const end = lastBoundary(buf);
    if (end < 0) {
      this.carry = buf;
      return null;
    }
    this.carry = end < buf.length ? buf.subarray(end) : null;
    return end === buf.length ? buf : buf.subarray(0, end);
  }
  /** What is left at the end (an event with no closing blank line). */
  rest(): Buffer | null {
    const r = this.carry;
    this.carry = null;
    return r && r.length > 0 ? r : null;
  }
}

export interface SseEvent {
  event?: string;
  data: string;
  /** The event's bytes as they came (for relaying it unchanged). */
  raw: string;
}

/** The events of a text of whole events (comments and ids are kept in `raw` only). */
export function parseEvents(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    let data: string | undefined;
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) {
        const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
        data = data === undefined ? v : `${data}\n${v}`;
      } else if (line.startsWith('event:')) event = line.slice(line.charCodeAt(6) === 32 ? 7 : 6);
    }
    out.push({ ...(event !== undefined ? { event } : {}), data: data ?? '', raw: `${block}\n\n` });
  }
  return out;
}

const USAGE = Buffer.from('"usage"');
/**
 * The key's tail, searched for instead of the whole key: a needle that starts with `"` tries every quote of a JSON
 * text (1.3 us over a 1.5 KB stream chunk), one that starts with `u` almost none (0.17 us).
 */
const USAGE_TAIL = Buffer.from('usage"');

/** The index of the first `"usage"` in b at or after `from`, or -1. */
function usageKey(b: Buffer, from = 0): number {
  let i = b.indexOf(USAGE_TAIL, from + 1);
  while (i > 0 && b[i - 1] !== 0x22) i = b.indexOf(USAGE_TAIL, i + 1);
  return i > 0 ? i - 1 : -1;
}

/** The index of the last `"usage"` in b that starts at or before `at`, or -1. */
function lastUsageKey(b: Buffer, at = b.length): number {
  let i = at < 0 ? -1 : b.lastIndexOf(USAGE_TAIL, at + 1);
  while (i > 0 && b[i - 1] !== 0x22) i = b.lastIndexOf(USAGE_TAIL, i - 1);
  return i > 0 ? i - 1 : -1;
}

/** Whether the bytes hold `"usage"` followed by an object (not `"usage":null`). */
export function hasUsageObject(b: Buffer): boolean {
  let i = usageKey(b);
  while (i >= 0) {
    let j = i + USAGE.length;
    while (j < b.length && (b[j] === 0x20 || b[j] === 0x3a || b[j] === 0x0a || b[j] === 0x0d || b[j] === 0x09)) j++;
    if (b[j] === 0x7b) return true;
    i = usageKey(b, i + 1); // from the next byte: keys may overlap in a text that is not JSON
  }
  return false;
}

/** Token counts from a usage object of either API (undefined fields when absent). */
export function readUsage(u: unknown): Partial<Usage> {
  if (!u || typeof u !== 'object') return {};
  const o = u as Record<string, unknown>;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);
  return usageOf(n(o.prompt_tokens), n(o.input_tokens), n(o.cache_creation_input_tokens), n(o.cache_read_input_tokens), n(o.completion_tokens), n(o.output_tokens));
}

/** The usage of the counts a usage object gives (undefined: absent): OpenAI's fields first, else Anthropic's. */
function usageOf(prompt?: number, input?: number, creation?: number, read?: number, completion?: number, output?: number): Partial<Usage> {
  const out: Partial<Usage> = {};
  if (prompt !== undefined) out.input = prompt;
  else if (input !== undefined) out.input = input + (creation ?? 0) + (read ?? 0);
  const o = completion ?? output;
  if (o !== undefined) out.output = o;
  return out;
}

/** Folds a usage report into what was known (counts only grow: Anthropic's stream reports output tokens as they go). */
export function mergeUsage(into: Partial<Usage>, u: Partial<Usage>): void {
  if (u.input !== undefined) into.input = Math.max(into.input ?? 0, u.input);
  if (u.output !== undefined) into.output = Math.max(into.output ?? 0, u.output);
}

/** The usage object of a parsed answer or stream event, wherever the API puts it. */
export function usageIn(j: any): Partial<Usage> {
  if (!j || typeof j !== 'object') return {};
  return readUsage(j.usage ?? j.message?.usage ?? j.response?.usage);
}

/**
 * The last `"usage": {...}` object in a JSON body's bytes, parsed: the bytes are searched from the end, and only
 * the object is decoded (an answer's usage is near its end; the rest is never turned into a string), by the strict
 * byte reader below (`read: 'parse'`: by JSON.parse only, the reference the bench times it against).
 */
export function findUsageBytes(b: Buffer, read: 'bytes' | 'parse' = 'bytes'): Partial<Usage> | undefined {
  let at = lastUsageKey(b);
  while (at >= 0) {
    let i = at + USAGE.length;
    while (i < b.length && (b[i] === 0x20 || b[i] === 0x3a || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
    if (b[i] === 0x7b) {
      const fast = read === 'bytes' ? usageObjectAt(b, i, b.length) : null;
      if (fast !== null) return fast;
      const end = objectEnd(b, i);
      if (end < 0) return undefined;
      try {
        return readUsage(JSON.parse(b.toString('utf8', i, end)));
      } catch {
        return undefined;
      }
    }
    at = at > 0 ? lastUsageKey(b, at - 1) : -1;
  }
  return undefined;
}

/** The index past the JSON object starting at `i` (strings skipped), or -1 when it does not end in `b`. */
function objectEnd(b: Buffer, i: number): number {
  let depth = 0;
  let inStr = false;
  for (let j = i; j < b.length; j++) {
    const c = b[j];
    if (inStr) {
      if (c === 92) j++;
      else if (c === 34) inStr = false;
    } else if (c === 34) inStr = true;
    else if (c === 123) depth++;
    else if (c === 125 && --depth === 0) return j + 1;
  }
  return -1;
}

/** An event that carries a usage object: its span in the block, its usage, and whether it is OpenAI's usage-only chunk. */
export interface UsageEvent {
  start: number;
  end: number;
  usage: Partial<Usage>;
  /** The event's `choices` is an empty list (the usage chunk a stream sends last when asked for it). */
  usageOnly: boolean;
}

/**
 * The events of a block of whole SSE events that carry a usage object (events without one are not decoded). An
 * event that is one `data:` line of simple JSON (how OpenAI writes them) is read from its bytes by the strict
 * reader below; any other is parsed whole, with the same result (`read: 'parse'`: every one, the bench's reference).
 */
export function usageEvents(b: Buffer, read: 'bytes' | 'parse' = 'bytes'): UsageEvent[] {
  const out: UsageEvent[] = [];
  let at = usageKey(b);
  while (at >= 0) {
    let i = at + USAGE.length;
    while (i < b.length && (b[i] === 0x20 || b[i] === 0x3a || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
    if (b[i] === 0x7b) {
      // the event around it: from the blank line before to the one after (LF or CRLF)
      const start = eventStart(b, at);
      const end = eventEnd(b, at);
      const e = (read === 'bytes' ? fastUsageEvent(b, start, end) : null) ?? slowUsageEvent(b, start, end);
      if (e) out.push(e);
      at = usageKey(b, end);
    } else at = usageKey(b, at + 1);
  }
  return out;
}

/** Whether b[j] is the last byte of a blank line's ending ("\n\n" or "\r\n\r\n"). */
const blankLineAt = (b: Buffer, j: number) => b[j] === 0x0a && (b[j - 1] === 0x0a || (j >= 3 && b[j - 1] === 0x0d && b[j - 2] === 0x0a && b[j - 3] === 0x0d));

/** The index just past the last blank line before `at` (LF or CRLF), or 0. */
function eventStart(b: Buffer, at: number): number {
  for (let j = at - 1; j >= 1; j--) if (blankLineAt(b, j)) return j + 1;
  return 0;
}

/** The index just past the first blank line after `at` (LF or CRLF), or the block's end. */
function eventEnd(b: Buffer, at: number): number {
  for (let j = at + 1; j < b.length; j++) if (blankLineAt(b, j)) return j + 1;
  return b.length;
}

/** An event read whole: its data parsed, then the usage and `choices` taken from the object. */
function slowUsageEvent(b: Buffer, start: number, end: number): UsageEvent | undefined {
  const data = singleData(b, start, end) ?? parseEvents(b.toString('utf8', start, end))[0]?.data;
  if (!data || data === '[DONE]') return undefined;
  let j: any;
  try {
    j = JSON.parse(data);
  } catch {
    return undefined; // not JSON: not a usage report
  }
  return { start, end, usage: usageIn(j), usageOnly: !!j && Array.isArray(j.choices) && j.choices.length === 0 };
}

/**
 * An event that is one `data:` line (after an `event:` line or none) holding a JSON object whose top-level `usage`
 * is an object, read from its bytes; null where the strict reader gives up (the caller then parses the event whole).
 */
function fastUsageEvent(b: Buffer, start: number, end: number): UsageEvent | null {
  let at = start;
  // an `event:` line first (Anthropic names every event): skipped
  if (end - at > 6 && b[at] === 0x65 && b[at + 1] === 0x76 && b[at + 2] === 0x65 && b[at + 3] === 0x6e && b[at + 4] === 0x74 && b[at + 5] === 0x3a) {
    while (at < end && b[at] !== 0x0a && b[at] !== 0x0d) at++;
    if (b[at] === 0x0d && b[at + 1] === 0x0a) at++;
    at++;
  }
  // the data must be one line: a line break ends the field, and the reader must not read on across it
  const stop = dataLineEnd(b, at, end);
  if (stop < 0) return null;
  const r = new Reader(b, stop);
  const top = r.members(dataStart(b, at), TOP_KEYS);
  if (top < 0 || r.skipWs(top) !== stop) return null; // not one JSON object: parse it whole
  if (r.usage === undefined) return null; // usage null at the top, given in message or response: parse it whole
  return { start, end, usage: r.usage, usageOnly: r.emptyChoices };
}

/**
 * The usage object at b[i] (a `{`), read from its bytes; null where the strict reader gives up (then the caller
 * parses it: the result is the same).
 */
function usageObjectAt(b: Buffer, i: number, end: number): Partial<Usage> | null {
  const r = new Reader(b, end);
  return r.members(i, USAGE_KEYS) < 0 ? null : r.counts();
}

const keyBytes = (...ks: string[]) => ks.map((k) => Buffer.from(k));
/** The top-level keys the stream reader looks at. */
const TOP_KEYS = keyBytes('usage', 'choices');
/** The token counts of both APIs (readUsage's fields), in the order of Reader.n. */
const USAGE_KEYS = keyBytes('prompt_tokens', 'input_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens', 'completion_tokens', 'output_tokens');

/**
 * A strict reader of JSON for the usage hot path: JSON.parse costs about 0.9 µs on a stream's 170-byte usage event
 * (it builds every object), this about a quarter of that. It checks the whole text's grammar (the same texts are
 * accepted as by JSON.parse) and gives up (-1) on what it does not need to handle fast: an escape in a key, a
 * token count that is not a plain integer, nesting deeper than 16, control characters in strings. Given up, the
 * caller parses with JSON.parse, so that the result is always JSON.parse's.
 */
class Reader {
  /** The token counts read (readUsage's fields, by USAGE_KEYS' order; undefined: absent). */
  private readonly n: Array<number | undefined> = [undefined, undefined, undefined, undefined, undefined, undefined];
  /** The top-level `usage`, read (undefined: absent or not an object). */
  usage: Partial<Usage> | undefined;
  /** The top-level `choices` is `[]`. */
  emptyChoices = false;
  constructor(
    private readonly b: Buffer,
    private readonly end: number,
  ) {}

  skipWs(i: number): number {
    const b = this.b;
    while (i < this.end && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
    return i;
  }

  /** Where the last key read ends (past its closing quote). */
  private keyEnd = 0;

  /** Which of `keys` the string key at b[i] (a `"`) is (-1: none; its end in keyEnd); -2: give up. */
  private key(i: number, keys: Buffer[] | null): number {
    const b = this.b;
    let j = i + 1;
    while (j < this.end && b[j] !== 0x22) {
      if (b[j] === 0x5c || b[j] < 0x20) return -2;
      j++;
    }
    if (j >= this.end) return -2;
    this.keyEnd = j + 1;
    if (keys)
      for (let k = 0; k < keys.length; k++) {
        const key = keys[k];
        if (key.length !== j - i - 1) continue;
        let x = 0;
        while (x < key.length && b[i + 1 + x] === key[x]) x++;
        if (x === key.length) return k;
      }
    return -1;
  }

  /**
   * The object at b[i] (a `{`): checks it, and reads the members whose keys are in `keys` (TOP_KEYS or
   * USAGE_KEYS); the index past it, or -1.
   */
  members(i: number, keys: Buffer[] | null, depth = 0): number {
    const b = this.b;
    if (b[i] !== 0x7b || depth > 16) return -1;
    i = this.skipWs(i + 1);
    if (b[i] === 0x7d) return i + 1;
    for (;;) {
      if (b[i] !== 0x22) return -1;
      const which = this.key(i, keys);
      if (which === -2) return -1;
      i = this.skipWs(this.keyEnd);
      if (b[i] !== 0x3a) return -1;
      i = this.skipWs(i + 1);
      if (which >= 0 && keys === USAGE_KEYS) {
        // a token count: a plain integer is read here; any other number gives up; other values are skipped
        const c = b[i];
        if (c >= 0x30 && c <= 0x39) {
          let v = 0;
          let j = i;
          while (j < this.end && b[j] >= 0x30 && b[j] <= 0x39) v = v * 10 + (b[j++] - 0x30);
          if (j - i > 15 || (c === 0x30 && j - i > 1) || b[j] === 0x2e || b[j] === 0x65 || b[j] === 0x45) return -1;
          this.n[which] = v;
          i = j;
        } else if (c === 0x2d) return -1;
        else {
          i = this.value(i, depth + 1);
          this.n[which] = undefined; // not a number (null, a string, ...): not a count, and a later duplicate key wins
        }
      } else if (which === 0 && keys === TOP_KEYS) {
        // the top-level usage: read as an object of counts, or (null, ...) noted as not there
        if (b[i] === 0x7b) {
          this.n.fill(undefined);
          i = this.members(i, USAGE_KEYS, depth + 1);
          this.usage = i < 0 ? undefined : this.counts();
        } else {
          i = this.value(i, depth + 1);
          this.usage = undefined;
        }
      } else if (which === 1 && keys === TOP_KEYS) {
        const j = this.skipWs(i + 1);
        this.emptyChoices = b[i] === 0x5b && b[j] === 0x5d;
        i = this.value(i, depth + 1);
      } else i = this.value(i, depth + 1);
      if (i < 0) return -1;
      i = this.skipWs(i);
      if (b[i] === 0x2c) i = this.skipWs(i + 1);
      else if (b[i] === 0x7d) return i + 1;
      else return -1;
    }
  }

  /** Any JSON value at b[i], checked and skipped: the index past it, or -1. */
  private value(i: number, depth: number): number {
    const b = this.b;
    const c = b[i];
    if (c === 0x22) return this.string(i);
    if (c === 0x7b) return this.members(i, null, depth);
    if (c === 0x5b) {
      if (depth > 16) return -1;
      i = this.skipWs(i + 1);
      if (b[i] === 0x5d) return i + 1;
      for (;;) {
        i = this.value(i, depth + 1);
        if (i < 0) return -1;
        i = this.skipWs(i);
        if (b[i] === 0x2c) i = this.skipWs(i + 1);
        else if (b[i] === 0x5d) return i + 1;
        else return -1;
      }
    }
    if (c === 0x74) return this.word(i, TRUE);
    if (c === 0x66) return this.word(i, FALSE);
    if (c === 0x6e) return this.word(i, NULL);
    return this.number(i);
  }

  private word(i: number, w: Buffer): number {
    for (let x = 0; x < w.length; x++) if (this.b[i + x] !== w[x] || i + x >= this.end) return -1;
    return i + w.length;
  }

  /** A string at b[i] (a `"`), escapes checked: the index past it, or -1. */
  private string(i: number): number {
    const b = this.b;
    for (let j = i + 1; j < this.end; j++) {
      const c = b[j];
      if (c === 0x22) return j + 1;
      if (c < 0x20) return -1;
      if (c === 0x5c) {
        const e = b[j + 1];
        if (e === 0x75) {
          for (let x = 2; x < 6; x++) if (!isHex(b[j + x])) return -1;
          j += 5;
        } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) j++;
        else return -1;
      }
    }
    return -1;
  }

  /** The digits at b[i]: the index past them, or -1 where there is none. */
  private digits(i: number): number {
    const b = this.b;
    const s = i;
    while (i < this.end && b[i] >= 0x30 && b[i] <= 0x39) i++;
    return i > s ? i : -1;
  }

  /** A number at b[i] (JSON's grammar): the index past it, or -1. */
  private number(i: number): number {
    const b = this.b;
    if (b[i] === 0x2d) i++;
    if (b[i] === 0x30) i++;
    else if ((i = this.digits(i)) < 0) return -1;
    if (b[i] === 0x2e && (i = this.digits(i + 1)) < 0) return -1;
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === 0x2d) i++;
      if ((i = this.digits(i)) < 0) return -1;
    }
    return i <= this.end ? i : -1;
  }

  /** The usage of the counts read (readUsage's rule). */
  counts(): Partial<Usage> {
    const n = this.n;
    return usageOf(n[0], n[1], n[2], n[3], n[4], n[5]);
  }
}

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');
const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/**
 * The data of an event that is one `data:` line (how OpenAI writes every event), read straight from the bytes
 * [start, end) (the event and its blank line); undefined for any other shape, which parseEvents then reads.
 */
function singleData(b: Buffer, start: number, end: number): string | undefined {
  const stop = dataLineEnd(b, start, end);
  return stop < 0 ? undefined : b.toString('utf8', dataStart(b, start), stop);
}

/**
 * Where the data ends in an event [start, end) (with its blank line) that is one `data:` line, or -1 for any other
 * shape; the data starts at dataStart(b, start).
 */
function dataLineEnd(b: Buffer, start: number, end: number): number {
  // "data:" at the start
  if (end - start < 7 || b[start] !== 0x64 || b[start + 1] !== 0x61 || b[start + 2] !== 0x74 || b[start + 3] !== 0x61 || b[start + 4] !== 0x3a) return -1;
  let stop = end;
  while (stop > start && (b[stop - 1] === 0x0a || b[stop - 1] === 0x0d)) stop--;
  // one line: no line break before the blank line
  const from = dataStart(b, start);
  const nl = b.indexOf(0x0a, from);
  const cr = b.indexOf(0x0d, from);
  return (nl >= 0 && nl < stop) || (cr >= 0 && cr < stop) ? -1 : stop;
}

/** Where a `data:` line's value starts (after the field name and one optional space). */
const dataStart = (b: Buffer, start: number) => start + (b[start + 5] === 0x20 ? 6 : 5);

/** Keeps the last `max` bytes of a body (by reference; one copy at the end), to find its usage there. */
export class TailKeeper {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max = 65_536) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.chunks.length > 1 && this.size - this.chunks[0].length >= this.max) this.size -= this.chunks.shift()!.length;
  }
  bytes(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
  }
}
