/** The one JSONL reader: parsed records with their line numbers, from a file or '-' (stdin). */
import { createReadStream, existsSync } from 'node:fs';
import { UnirouteError, type ErrorCode } from '../errors.js';

/** The longest line read (bytes); a longer one is skipped without being held in memory. */
export const MAX_LINE_BYTES = 16 * 2 ** 20;

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
): AsyncGenerator<{ rec: any; line: number; malformed?: boolean; why?: string }> {
  if (file !== '-' && !existsSync(file)) throw new UnirouteError(code === 'INVALID_ARGUMENT' ? 'NOT_FOUND' : code, `${file} does not exist`);
  const max = opts.maxLineBytes ?? MAX_LINE_BYTES;
  const input: AsyncIterable<Buffer> = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 2 ** 20 });
  let parts: Buffer[] = [];
  let len = 0;
  let tooLong = false;
  let line = 0;
  type Out = { rec: any; line: number; malformed?: boolean; why?: string };
  /** The record of the line gathered so far (null for a blank line), and a reset. A plain function: cheap per line. */
  const finish = (): Out | null => {
    line++;
    const over = tooLong;
    const buf = over ? undefined : parts.length === 1 ? parts[0] : Buffer.concat(parts, len);
    parts = [];
    len = 0;
    tooLong = false;
    if (!buf) {
      const why = `line longer than ${max} bytes`;
      if (opts.tolerant) return { rec: undefined, line, malformed: true, why };
      throw new UnirouteError(code, `${file}:${line}: ${why}`);
    }
    let text = buf.toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (!text.trim()) return null;
    try {
      return { rec: JSON.parse(text), line };
    } catch (e) {
      if (opts.tolerant) return { rec: undefined, line, malformed: true, why: 'malformed JSON' };
      throw new UnirouteError(code, `${file}:${line}: malformed JSON (${(e as Error).message})`);
    }
  };
  for await (const chunk of input) {
    const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (;;) {
      const nl = c.indexOf(10, start);
      const end = nl < 0 ? c.length : nl;
      if (!tooLong) {
        if (len + end - start > max) {
          tooLong = true; // drop what was gathered; skip to the next newline
          parts = [];
          len = 0;
        } else if (end > start) {
          parts.push(c.subarray(start, end));
          len += end - start;
        }
      }
      if (nl < 0) break;
      const out = finish();
      if (out) yield out;
      start = nl + 1;
    }
  }
  if (len > 0 || tooLong) {
    const out = finish();
    if (out) yield out;
  }
}
