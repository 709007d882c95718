/**
 * The `batch:` section of the gateway config. Every value is checked and every error names its key.
 *
 *   batch:
 *     dir: /var/lib/uniroute/batch   # uploaded files (and, without a SQLite or Redis pool, batches.sqlite)
 *     share: 0.5                     # of each upstream's connections a batch may use: online traffic keeps the rest
 *     concurrency: 256               # most lines in flight per process, over all upstreams
 *     chunk_lines: 64                # lines per work item (decided in one engine call; one queue item on Redis)
 *     lock_ms: 30000                 # a work item's lock: a dead worker's items are taken over once it expires
 *     line_retries: 2                # rounds over a line's LLMs again (after a backoff) when every one failed retryably
 *     max_file_bytes: 209715200      # largest upload
 *     max_lines: 1000000             # most lines in one input file
 *     max_line_bytes: 1048576        # longest line (a longer one is an error line, never read whole)
 *     upstream_rpm: { gpt-4o: 600 }  # lines per minute a process sends to an LLM (paced evenly), beside the share
 */
import { UnirouteError, didYouMean } from '../errors.js';

export interface BatchConfig {
  dir?: string;
  share: number;
  concurrency: number;
  chunkLines: number;
  lockMs: number;
  lineRetries: number;
  maxFileBytes: number;
  maxLines: number;
  maxLineBytes: number;
  /** Lines per minute one process sends to an LLM (paced evenly); absent: no rate limit. */
  upstreamRpm?: Record<string, number>;
}

export const DEFAULT_BATCH: BatchConfig = {
  share: 0.5,
  concurrency: 256,
  chunkLines: 64,
  lockMs: 30_000,
  lineRetries: 2,
  maxFileBytes: 200 * 2 ** 20,
  maxLines: 1_000_000,
  maxLineBytes: 2 ** 20,
};

const KEYS: Record<string, [keyof BatchConfig, number, number, boolean]> = {
  share: ['share', 0.01, 1, false],
  concurrency: ['concurrency', 1, 100_000, true],
  chunk_lines: ['chunkLines', 1, 4096, true],
  lock_ms: ['lockMs', 1000, 86_400_000, true],
  line_retries: ['lineRetries', 0, 100, true],
  max_file_bytes: ['maxFileBytes', 1, 2 ** 40, true],
  max_lines: ['maxLines', 1, 1e9, true],
  max_line_bytes: ['maxLineBytes', 64, 2 ** 30, true],
};

export function parseBatchConfig(v: unknown, source = 'config'): BatchConfig {
  const out: BatchConfig = { ...DEFAULT_BATCH };
  if (v === undefined || v === null) return out;
  const bad = (k: string, why: string): never => {
    throw new UnirouteError('INVALID_ARGUMENT', `${source}: batch${k ? `.${k}` : ''}: ${why}`);
  };
  if (typeof v !== 'object' || Array.isArray(v)) bad('', `expected a mapping, got ${JSON.stringify(v)}`);
  const known = ['dir', 'upstream_rpm', ...Object.keys(KEYS)];
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === 'upstream_rpm') {
      if (!x || typeof x !== 'object' || Array.isArray(x)) bad(k, `expected a mapping of LLM name to lines per minute, got ${JSON.stringify(x)}`);
      const rpm: Record<string, number> = {};
      for (const [llm, n] of Object.entries(x as Record<string, unknown>)) {
        if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0 || n > 1e7) bad(`${k}.${llm}`, `expected lines per minute in (0, 10000000], got ${JSON.stringify(n)}`);
        rpm[llm] = n as number;
      }
      out.upstreamRpm = rpm;
      continue;
    }
    if (k === 'dir') {
      if (typeof x !== 'string' || x.trim() === '') bad(k, `expected a folder path, got ${JSON.stringify(x)}`);
      out.dir = x as string;
      continue;
    }
    const spec = KEYS[k];
    if (!spec) bad(k, `unknown key${didYouMean(k, known)}; known: ${known.join(', ')}`);
    const [field, min, max, integer] = spec;
    if (typeof x !== 'number' || !Number.isFinite(x)) bad(k, `expected a number, got ${JSON.stringify(x)}`);
    if ((x as number) < min || (x as number) > max || (integer && !Number.isInteger(x))) bad(k, `expected ${integer ? 'a whole number' : 'a number'} in [${min}, ${max}], got ${x}`);
    (out as unknown as Record<string, number>)[field] = x as number;
  }
  return out;
}
