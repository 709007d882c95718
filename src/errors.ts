/** Stable error codes shared by the library, the CLI (exit status, message) and the server (HTTP status, body). */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'DIMENSION_MISMATCH'
  | 'NON_FINITE'
  | 'EMPTY_TEXT'
  | 'UNKNOWN_MODEL'
  | 'DUPLICATE_MODEL'
  | 'NO_MODELS'
  | 'NO_COST'
  | 'BAD_DATASET'
  | 'BAD_ARTIFACT'
  | 'ARTIFACT_MISMATCH'
  | 'NOT_FOUND'
  | 'NATIVE_UNAVAILABLE'
  | 'BACKEND_UNAVAILABLE'
  | 'OUT_OF_MEMORY'
  | 'EMBEDDER_FAILED'
  | 'IO_ERROR'
  | 'INTERNAL';

const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  DIMENSION_MISMATCH: 400,
  NON_FINITE: 400,
  EMPTY_TEXT: 400,
  UNKNOWN_MODEL: 404,
  DUPLICATE_MODEL: 409,
  NO_MODELS: 409,
  NO_COST: 400,
  BAD_DATASET: 400,
  BAD_ARTIFACT: 422,
  ARTIFACT_MISMATCH: 409,
  NOT_FOUND: 404,
  NATIVE_UNAVAILABLE: 500,
  BACKEND_UNAVAILABLE: 503,
  OUT_OF_MEMORY: 503,
  EMBEDDER_FAILED: 502,
  IO_ERROR: 500,
  INTERNAL: 500,
};

export class UnirouteError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnirouteError';
    this.code = code;
  }
  get httpStatus(): number {
    return HTTP_STATUS[this.code] ?? 500;
  }
}

const KNOWN = new Set(Object.keys(HTTP_STATUS));

/** Wraps an error thrown by the addon (which carries a `code`) into a UnirouteError, keeping the caller's stack. */
export function fromNative(err: unknown): UnirouteError {
  if (err instanceof UnirouteError) return err;
  const e = err as { code?: string; message?: string };
  const code = (e && typeof e.code === 'string' && KNOWN.has(e.code) ? e.code : 'INTERNAL') as ErrorCode;
  return new UnirouteError(code, e?.message ?? String(err), { cause: err });
}

export function fail(code: ErrorCode, message: string): never {
  throw new UnirouteError(code, message);
}
