/** The one JSONL reader: parsed records with their line numbers, from a file or '-' (stdin). */
import { createReadStream, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { UnirouteError, type ErrorCode } from '../errors.js';

/**
 * Yields each non-blank line's JSON record; a missing file is an error, and so is a malformed line with `code` —
 * or, with `tolerant`, it is yielded as {line, malformed: true} for the caller to report and go on.
 */
export async function* jsonLines(
  file: string,
  code: ErrorCode = 'INVALID_ARGUMENT',
  opts: { tolerant?: boolean } = {},
): AsyncGenerator<{ rec: any; line: number; malformed?: boolean }> {
  if (file !== '-' && !existsSync(file)) throw new UnirouteError(code === 'INVALID_ARGUMENT' ? 'NOT_FOUND' : code, `${file} does not exist`);
  const rl = createInterface({ input: file === '-' ? process.stdin : createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of rl) {
    line++;
    if (!raw.trim()) continue;
    let rec: any;
    try {
      rec = JSON.parse(raw);
    } catch (e) {
      if (opts.tolerant) {
        yield { rec: undefined, line, malformed: true };
        continue;
      }
      throw new UnirouteError(code, `${file}:${line}: malformed JSON (${(e as Error).message})`);
    }
    yield { rec, line };
  }
}
