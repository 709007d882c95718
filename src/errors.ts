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
  | 'EMBEDDER_NOT_ALLOWED'
  | 'IO_ERROR'
  | 'OVERLOADED'
  | 'VERSION_CONFLICT'
  | 'ALREADY_COUNTED'
  | 'STORE_UNAVAILABLE'
  | 'FILE_IN_USE'
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
  EMBEDDER_NOT_ALLOWED: 503,
  IO_ERROR: 500,
  OVERLOADED: 503,
  VERSION_CONFLICT: 412,
  ALREADY_COUNTED: 409,
  STORE_UNAVAILABLE: 503,
  FILE_IN_USE: 409,
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

/** The known names closest to a mistyped one (edit distance, case-insensitive), for "did you mean" hints. */
export function closest(name: string, known: Iterable<string>, most = 3): string[] {
  const a = name.toLowerCase();
  const dist = (b: string) => {
    const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diag = prev[0];
      prev[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const up = prev[j];
        prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
        diag = up;
      }
    }
    return prev[b.length];
  };
  const scored = [...known].map((k) => {
    const kl = k.toLowerCase();
    // a name contained in the other counts as close
    const d = kl.includes(a) || a.includes(kl) ? Math.abs(kl.length - a.length) * 0.1 : dist(kl);
    return { k, d };
  });
  const limit = Math.max(2, Math.floor(a.length / 3));
  return scored
    .filter((x) => x.d <= limit)
    .sort((x, y) => x.d - y.d || x.k.localeCompare(y.k))
    .slice(0, most)
    .map((x) => x.k);
}

/** " (did you mean "a" or "b"?)" or "" — appended to an unknown-name message. */
export function didYouMean(name: string, known: Iterable<string>): string {
  const c = closest(name, known);
  if (c.length === 0) return '';
  return ` (did you mean ${c.map((x) => `"${x}"`).join(' or ')}?)`;
}
