/** The one JSONL reader: parsed records with their line numbers, from a file or '-' (stdin). */
import { isAscii } from 'node:buffer';
import { createReadStream, existsSync } from 'node:fs';
import { UnirouteError, type ErrorCode } from '../errors.js';

/** The longest line read (bytes); a longer one is skipped without being held in memory. */
export const MAX_LINE_BYTES = 16 * 2 ** 20;

export type JsonLine = { rec: any; line: number; malformed?: boolean; why?: string };

/**
 * Yields each non-blank line's JSON record; a missing file is an error, and so is a malformed or over-long line
 * with `code` — or, with `tolerant`, it is yielded as {line, malformed: true, why} for the caller to report and
 * go on. Lines are split on the bytes, so memory stays bounded by `maxLineBytes` whatever the input holds (a
 * 600 MB line with no newline is one skipped line, not a crash).
 */
export async function* jsonLines(
  file: string,
  code: ErrorCode = 'INVALID_ARGUMENT',
  opts: { tolerant?: boolean; maxLineBytes?: number } = {},
): AsyncGenerator<JsonLine> {
  for await (const batch of jsonLineBatches(file, code, opts)) yield* batch;
}

/**
 * The same records as `jsonLines`, a read chunk's worth (about 1 MB of input) at a time, with no promise per line
 * (batch routing of millions of lines reads through this).
 */
export async function* jsonLineBatches(
  file: string,
  code: ErrorCode = 'INVALID_ARGUMENT',
  opts: { tolerant?: boolean; maxLineBytes?: number } = {},
): AsyncGenerator<JsonLine[]> {
  if (file !== '-' && !existsSync(file)) throw new UnirouteError(code === 'INVALID_ARGUMENT' ? 'NOT_FOUND' : code, `${file} does not exist`);
  const max = opts.maxLineBytes ?? MAX_LINE_BYTES;
  const input: AsyncIterable<Buffer> = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 2 ** 20 });
  let carry: Buffer[] = []; // the start of a line that has not ended yet (at most `max` bytes)
  let carryLen = 0;
  let tooLong = false; // the current line is past `max`: skip to its newline
  let line = 0;
  const over = (): JsonLine => {
    const why = `line longer than ${max} bytes`;
    if (opts.tolerant) return { rec: undefined, line, malformed: true, why };
    throw new UnirouteError(code, `${file}:${line}: ${why}`);
  };
  /** One line (at most `max` bytes) to its record, or to a per-line error. */
  const parse = (text: string, out: JsonLine[]) => {
    line++;
    if (text.length > 0 && text.charCodeAt(text.length - 1) === 13) text = text.slice(0, -1);
    if (!/\S/.test(text)) return;
    try {
      out.push({ rec: JSON.parse(text), line });
    } catch (e) {
      if (opts.tolerant) out.push({ rec: undefined, line, malformed: true, why: 'malformed JSON' });
      else throw new UnirouteError(code, `${file}:${line}: malformed JSON (${(e as Error).message})`);
    }
  };
  let start = true;
  for await (const chunk of input) {
    let c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    // a UTF-8 byte order mark (an editor's, Excel's) is not part of the first line
    if (start && c.length > 0) {
      start = false;
      if (c.length >= 3 && c[0] === 0xef && c[1] === 0xbb && c[2] === 0xbf) c = c.subarray(3);
    }
    const out: JsonLine[] = [];
    const first = c.indexOf(10);
    if (first < 0) {
      // no line ends in this chunk
      if (!tooLong && carryLen + c.length > max) {
        tooLong = true;
        carry = [];
        carryLen = 0;
      } else if (!tooLong) {
        carry.push(c);
        carryLen += c.length;
      }
      continue;
    }
    // the line that was carried ends at `first`
    if (tooLong) {
      line++;
      out.push(over());
      tooLong = false;
    } else if (carryLen + first > max) {
      line++;
      out.push(over());
    } else {
      parse(Buffer.concat([...carry, c.subarray(0, first)], carryLen + first).toString('utf8'), out);
    }
    carry = [];
    carryLen = 0;
    // the complete lines after it: an ASCII line (most prompts) is decoded as latin1, many times faster than UTF-8
    let last = first;
    for (;;) {
      const nl = c.indexOf(10, last + 1);
      if (nl < 0) break;
      const sub = c.subarray(last + 1, nl);
      if (sub.length > max) {
        line++;
        out.push(over());
      } else parse(isAscii(sub) ? sub.toString('latin1') : sub.toString('utf8'), out);
      last = nl;
    }
    if (last + 1 < c.length) {
      carry.push(c.subarray(last + 1));
      carryLen = c.length - last - 1;
      if (carryLen > max) {
        tooLong = true;
        carry = [];
        carryLen = 0;
      }
    }
    if (out.length) yield out;
  }
  if (carryLen > 0 || tooLong) {
    const out: JsonLine[] = [];
    if (tooLong) {
      line++;
      out.push(over());
    } else parse(Buffer.concat(carry, carryLen).toString('utf8'), out);
    if (out.length) yield out;
  }
}

/**
 * The good records of a JSONL file, for inputs a user may hand-edit (outcomes, candidate prompts). `take` returns a
 * line's value, or throws a UnirouteError saying what is wrong with it. Bad lines (malformed, over-long, refused by
 * `take`) are skipped and counted; at `maxErrors` of them reading stops with one error naming the count and the
 * first, so the wrong file fails fast. Fewer are reported through `warn` (one line). maxErrors 0 never stops.
 */
export async function readRecords<T>(
  file: string,
  take: (rec: any, line: number) => T | undefined,
  opts: { maxErrors: number; warn?: (message: string) => void },
): Promise<T[]> {
  const out: T[] = [];
  let bad = 0;
  let first = '';
  for await (const batch of jsonLineBatches(file, 'INVALID_ARGUMENT', { tolerant: true })) {
    for (const { rec, line, malformed, why } of batch) {
      let problem: string | undefined;
      if (malformed) problem = `${file}:${line}: ${why ?? 'malformed JSON'}`;
      else {
        try {
          const v = take(rec, line);
          if (v !== undefined) out.push(v);
        } catch (e) {
          if (!(e instanceof UnirouteError)) throw e;
          problem = e.message;
        }
      }
      if (problem === undefined) continue;
      if (bad++ === 0) first = problem;
      if (opts.maxErrors > 0 && bad >= opts.maxErrors)
        throw new UnirouteError('INVALID_ARGUMENT', `stopped after ${bad} bad lines of ${file} (--max-errors ${opts.maxErrors}); the first: ${first}`);
    }
  }
  if (bad > 0) opts.warn?.(`skipped ${bad} bad line${bad === 1 ? '' : 's'} of ${file} (the first: ${first}); --max-errors ${opts.maxErrors} would stop reading`);
  return out;
}
