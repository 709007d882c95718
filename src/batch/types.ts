/** The Batch API's records: files, jobs (OpenAI's Batch object plus uniroute's accounting) and output lines. */

export type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

/** States a batch never leaves. */
export const FINAL: ReadonlySet<BatchStatus> = new Set(['failed', 'completed', 'expired', 'cancelled']);

export type BatchEndpoint = '/v1/chat/completions' | '/v1/messages';
export const ENDPOINTS: readonly BatchEndpoint[] = ['/v1/chat/completions', '/v1/messages'];

/** An uploaded file (its bytes on disk under the batch folder), or a batch's output or error file (lines in the store). */
export interface FileRecord {
  id: string;
  bytes: number;
  /** Unix seconds. */
  createdAt: number;
  filename: string;
  purpose: string;
  /** Non-blank lines (counted as the upload streamed to disk, by the same splitter the jobs read it with). */
  lines: number;
  /** The client key that uploaded it (null without client keys). */
  owner: string | null;
}

export interface BatchRecord {
  id: string;
  endpoint: BatchEndpoint;
  inputFileId: string;
  completionWindow: string;
  status: BatchStatus;
  /** Unix seconds. */
  createdAt: number;
  expiresAt: number;
  inProgressAt: number | null;
  finalizingAt: number | null;
  completedAt: number | null;
  failedAt: number | null;
  expiredAt: number | null;
  cancellingAt: number | null;
  cancelledAt: number | null;
  outputFileId: string | null;
  errorFileId: string | null;
  metadata: Record<string, string> | null;
  /** Errors of the batch as a whole (OpenAI's `errors.data`). */
  errors: Array<{ code: string; message: string; line?: number | null; param?: string | null }> | null;
  owner: string | null;
  /** Lines in the input file (every line gets exactly one output or error record). */
  total: number;
  completed: number;
  failed: number;
  /** USD spent (tokens x price, else the estimated cost per query), and what the same lines would have cost on `referenceLlm`. */
  cost: number;
  referenceCost: number;
  /** The most accurate LLM with an upstream (lowest predicted error over the pool's prior), set by the first line. */
  referenceLlm: string | null;
  inputTokens: number;
  outputTokens: number;
  /** Answered lines per LLM. */
  models: Record<string, number>;
  /** Bytes of the output and error files so far. */
  outputBytes: number;
  errorBytes: number;
  /** Fleet: every line is in the queue (the planner finished), and in how many work items. */
  enqueued: boolean;
  chunks: number;
}

/** One line's result: exactly one per input line, keyed by its custom_id (or by its line number when it has none that it owns). */
export interface OutputRecord {
  key: string;
  line: number;
  ok: boolean;
  /** The JSON line written to the output (ok) or error file. */
  json: string;
  llm: string | null;
  cost: number;
  referenceCost: number;
  inputTokens: number;
  outputTokens: number;
}

/** The key of a line that has no custom_id it owns (malformed, duplicate, too long): never a valid custom_id. */
export const lineKey = (line: number) => `\u0001${line}`;

/** One valid line of a job, as the workers take it. */
export interface LineItem {
  line: number;
  customId: string;
  body: Record<string, any>;
}

export const outputFileId = (batchId: string) => `file-out-${batchId.slice('batch_'.length)}`;
export const errorFileId = (batchId: string) => `file-err-${batchId.slice('batch_'.length)}`;
/** The batch of an output or error file id, and which of the two it is. */
export function resultFileOf(fileId: string): { batchId: string; kind: 'output' | 'error' } | undefined {
  const m = /^file-(out|err)-([0-9a-f]{24})$/.exec(fileId);
  return m ? { batchId: `batch_${m[2]}`, kind: m[1] === 'out' ? 'output' : 'error' } : undefined;
}
