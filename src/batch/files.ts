/**
 * Uploaded files on disk (the batch folder's files/, or a configured directory: a shared one lets every replica of
 * a fleet read any upload). An upload is streamed to a temporary file, its lines counted on the way, and renamed
 * into place once whole: a file is never held in memory, and a cut upload leaves nothing behind.
 */
import { createReadStream, createWriteStream, mkdirSync, existsSync } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { UnirouteError } from '../errors.js';
import { LineSplitter } from './lines.js';

export const newId = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;

export class FileDir {
  readonly dir: string;
  constructor(root: string) {
    this.dir = join(root, 'files');
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (e) {
      throw new UnirouteError('IO_ERROR', `cannot create the batch folder ${this.dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }

  pathOf(id: string): string {
    if (!/^file-[0-9a-f]{24}$/.test(id)) throw new UnirouteError('INVALID_ARGUMENT', `not an uploaded file id: ${JSON.stringify(id).slice(0, 60)}`);
    return join(this.dir, `${id}.jsonl`);
  }

  has(id: string): boolean {
    return existsSync(this.pathOf(id));
  }

  /**
   * Streams `input` to the file `id`; resolves with its size and non-blank lines. Over `maxBytes` or `maxLines`:
   * the upload is cut, the partial file removed, and a PAYLOAD_TOO_LARGE / INVALID_ARGUMENT error names the limit.
   */
  async save(id: string, input: Readable, limits: { maxBytes: number; maxLines: number; maxLineBytes: number }): Promise<{ bytes: number; lines: number }> {
    const path = this.pathOf(id);
    const tmp = `${path}.part-${randomBytes(4).toString('hex')}`;
    const out = createWriteStream(tmp);
    const sp = new LineSplitter(limits.maxLineBytes);
    let bytes = 0;
    const noop = () => undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        out.once('error', reject);
        out.once('open', () => resolve());
      });
      for await (const chunk of input) {
        const b = chunk as Buffer;
        bytes += b.length;
        if (bytes > limits.maxBytes) throw new TooLarge(`the file is larger than ${limits.maxBytes} bytes (batch.max_file_bytes)`);
        sp.push(b, noop);
        if (sp.count > limits.maxLines) throw new UnirouteError('INVALID_ARGUMENT', `the file has more than ${limits.maxLines} lines (batch.max_lines): split it into several batches`);
        if (!out.write(b)) await new Promise<void>((r, j) => {
          out.once('drain', r);
          out.once('error', j);
        });
      }
      sp.end(noop);
      if (sp.count > limits.maxLines) throw new UnirouteError('INVALID_ARGUMENT', `the file has more than ${limits.maxLines} lines (batch.max_lines): split it into several batches`);
      await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      await rename(tmp, path);
      return { bytes, lines: sp.count };
    } catch (e) {
      out.destroy();
      await unlink(tmp).catch(() => undefined);
      input.resume?.(); // drain what is left of the request
      if (e instanceof UnirouteError) throw e;
      throw new UnirouteError('IO_ERROR', `saving the upload failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }

  read(id: string): Readable {
    return createReadStream(this.pathOf(id));
  }

  async remove(id: string): Promise<void> {
    await unlink(this.pathOf(id)).catch(() => undefined);
  }
}

/** An upload over batch.max_file_bytes (HTTP 413). */
export class TooLarge extends UnirouteError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
  override get httpStatus(): number {
    return 413;
  }
}
