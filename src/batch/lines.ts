/**
 * JSONL lines out of a byte stream, with a cap per line: a line longer than the cap is reported (its number and
 * length) and its bytes dropped as they come, so that a file of one huge line is never held in memory. The same
 * splitter counts an upload's lines and reads a job's, so both agree on what a line is: the bytes between two
 * "\n" (a "\r" before it dropped), numbered from 1; a line of only whitespace is no request.
 */
import { createReadStream } from 'node:fs';

export type SplitLine = { line: number; text: string; tooLong?: false } | { line: number; text?: undefined; tooLong: true; bytes: number };

const isBlank = (b: Buffer, start: number, end: number) => {
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
};

export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;
  private over = false;
  private overBytes = 0;
  private blank = true;
  /** Physical line number of the line being read (1-based). */
  private n = 1;
  /** Non-blank lines so far. */
  count = 0;

  constructor(private readonly maxLineBytes: number) {}

  /** Feeds a chunk; calls `emit` for every complete non-blank line. */
  push(chunk: Buffer, emit: (l: SplitLine) => void): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      this.take(chunk, start, end);
      if (nl < 0) return;
      this.endLine(emit);
      start = nl + 1;
    }
  }

  /** The last line, when the input does not end with a newline. */
  end(emit: (l: SplitLine) => void): void {
    if (this.held > 0 || this.over) this.endLine(emit);
  }

  private take(chunk: Buffer, start: number, end: number): void {
    if (end <= start) return;
    if (this.blank && !isBlank(chunk, start, end)) this.blank = false;
    if (this.over) {
      this.overBytes += end - start;
      return;
    }
    if (this.held + (end - start) > this.maxLineBytes) {
      this.over = true;
      this.overBytes = this.held + (end - start);
      this.parts = [];
      this.held = 0;
      return;
    }
    this.parts.push(chunk.subarray(start, end));
    this.held += end - start;
  }

  private endLine(emit: (l: SplitLine) => void): void {
    const line = this.n++;
    if (!this.blank) {
      this.count++;
      if (this.over) emit({ line, tooLong: true, bytes: this.overBytes });
      else {
        let text = this.parts.length === 1 ? this.parts[0].toString('utf8') : Buffer.concat(this.parts, this.held).toString('utf8');
        if (text.endsWith('\r')) text = text.slice(0, -1);
        emit({ line, text });
      }
    }
    this.parts = [];
    this.held = 0;
    this.over = false;
    this.overBytes = 0;
    this.blank = true;
  }
}

/** The non-blank lines of a file, read in bounded chunks. */
export async function* fileLines(path: string, maxLineBytes: number): AsyncGenerator<SplitLine> {
  const sp = new LineSplitter(maxLineBytes);
  const out: SplitLine[] = [];
  const emit = (l: SplitLine) => void out.push(l);
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    sp.push(chunk as Buffer, emit);
    while (out.length) yield out.shift()!;
  }
  sp.end(emit);
  while (out.length) yield out.shift()!;
}
