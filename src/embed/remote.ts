/**
 * A remote embedder: any OpenAI-compatible `POST {baseUrl}/embeddings` endpoint (OpenAI, vLLM, TEI, Ollama, …).
 * Batched requests, bounded concurrency, retries with backoff on 429 / 5xx / network errors (honouring
 * Retry-After), a timeout per request, a dimension check on every vector, and errors that name the problem without
 * echoing secrets. The spec (model, base URL, dimension, key variable) is recorded in the fitted model and checked
 * on load.
 */
import { UnirouteError } from '../errors.js';

export interface RemoteEmbedderSpec {
  kind: 'openai';
  /** The embedding model's name at the endpoint. */
  model: string;
  /** Base URL up to and including the API version, e.g. http://localhost:8000/v1 (no credentials). */
  baseUrl: string;
  dim: number;
  /** Environment variable holding the API key (none sent when it is unset). */
  apiKeyEnv?: string;
}

export interface RemoteEmbedderOptions {
  /** Texts per request (default 64). */
  batchSize?: number;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Attempts per request, the first included (default 5). */
  attempts?: number;
  /** Timeout of one request in ms (default 30,000). */
  timeoutMs?: number;
  /** First backoff in ms, doubled per retry (default 250). */
  backoffMs?: number;
  /** Called with (texts done, total) while embedding. */
  onProgress?: (done: number, total: number) => void;
}

/** Parses `openai:MODEL@BASE_URL`. */
export function parseEmbedderArg(arg: string, apiKeyEnv = 'OPENAI_API_KEY'): Omit<RemoteEmbedderSpec, 'dim'> {
  const m = /^openai:([^@]+)@(https?:\/\/.+)$/.exec(arg);
  if (!m) throw new UnirouteError('INVALID_ARGUMENT', `--embedder must look like openai:MODEL@BASE_URL (for example openai:text-embedding-3-small@https://api.openai.com/v1), got "${arg}"`);
  let url: URL;
  try {
    url = new URL(m[2]);
  } catch {
    throw new UnirouteError('INVALID_ARGUMENT', `--embedder has an invalid base URL "${m[2]}"`);
  }
  if (url.username || url.password) throw new UnirouteError('INVALID_ARGUMENT', '--embedder: put the API key in an environment variable, not in the URL');
  return { kind: 'openai', model: m[1], baseUrl: url.toString().replace(/\/+$/, ''), apiKeyEnv };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RemoteEmbedder {
  spec: RemoteEmbedderSpec;
  private readonly o: Required<Omit<RemoteEmbedderOptions, 'onProgress'>> & Pick<RemoteEmbedderOptions, 'onProgress'>;

  /** dim 0: learnt from the first response (when fitting). */
  constructor(spec: Omit<RemoteEmbedderSpec, 'dim'> & { dim?: number }, opts: RemoteEmbedderOptions = {}) {
    this.spec = { ...spec, dim: spec.dim ?? 0 };
    this.o = {
      batchSize: opts.batchSize ?? 64,
      concurrency: opts.concurrency ?? 4,
      attempts: opts.attempts ?? 5,
      timeoutMs: opts.timeoutMs ?? 30_000,
      backoffMs: opts.backoffMs ?? 250,
      onProgress: opts.onProgress,
    };
    for (const [k, v] of Object.entries(this.o))
      if (k !== 'onProgress' && !(Number.isInteger(v) && (v as number) >= (k === 'backoffMs' ? 0 : 1)))
        throw new UnirouteError('INVALID_ARGUMENT', `remote embedder option ${k} must be a whole number >= 1 (got ${String(v)})`);
  }

  get dim(): number {
    return this.spec.dim;
  }

  /** Embeds texts (n x dim, row-major), in batches, with at most `concurrency` requests in flight. */
  async embed(texts: string[]): Promise<Float32Array> {
    const n = texts.length;
    const batches: Array<[number, number]> = [];
    for (let b = 0; b < n; b += this.o.batchSize) batches.push([b, Math.min(n, b + this.o.batchSize)]);
    if (n > 0 && this.spec.dim === 0) {
      // learn the dimension from the first batch before the others run
      const first = await this.request(texts.slice(batches[0][0], batches[0][1]));
      this.spec.dim = first[0].length;
      if (!(this.spec.dim > 0)) throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} returned an empty embedding`);
      const out = new Float32Array(n * this.spec.dim);
      this.place(out, first, 0);
      await this.run(texts, batches.slice(1), out, batches[0][1] - batches[0][0]);
      return out;
    }
    const out = new Float32Array(n * this.spec.dim);
    await this.run(texts, batches, out, 0);
    return out;
  }

  private async run(texts: string[], batches: Array<[number, number]>, out: Float32Array, done0: number) {
    let next = 0;
    let done = done0;
    const worker = async () => {
      while (next < batches.length) {
        const [b, e] = batches[next++];
        const rows = await this.request(texts.slice(b, e));
        this.place(out, rows, b);
        done += e - b;
        this.o.onProgress?.(done, texts.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency, batches.length) }, worker));
  }

  private place(out: Float32Array, rows: number[][], at: number) {
    rows.forEach((r, i) => {
      if (r.length !== this.spec.dim)
        throw new UnirouteError('DIMENSION_MISMATCH', `${this.where()} returned an embedding of ${r.length} values; the router expects ${this.spec.dim}`);
      out.set(r, (at + i) * this.spec.dim);
    });
  }

  private where(): string {
    return `the embedding endpoint ${this.spec.baseUrl} (model ${this.spec.model})`;
  }

  /** One request with retries: 429, 5xx, timeouts and network errors are retried with backoff. */
  private async request(input: string[]): Promise<number[][]> {
    const key = this.spec.apiKeyEnv ? process.env[this.spec.apiKeyEnv] : undefined;
    const redact = (s: string) => (key ? s.split(key).join('[redacted]') : s);
    let last = '';
    for (let attempt = 0; attempt < this.o.attempts; attempt++) {
      let wait = this.o.backoffMs * 2 ** attempt;
      try {
        const res = await fetch(`${this.spec.baseUrl}/embeddings`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
          body: JSON.stringify({ model: this.spec.model, input }),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
        const text = await res.text();
        if (res.ok) return this.parse(text, input.length);
        last = `HTTP ${res.status}: ${redact(text).slice(0, 200)}`;
        if (res.status !== 429 && res.status < 500) break; // a client error does not get better by retrying
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra > 0) wait = Math.min(ra * 1000, 60_000);
      } catch (e) {
        if (e instanceof UnirouteError) throw e;
        const err = e as Error & { cause?: { code?: string } };
        last = err.name === 'TimeoutError' ? `timed out after ${this.o.timeoutMs} ms` : `${err.cause?.code ?? err.message}`;
      }
      if (attempt + 1 < this.o.attempts) await sleep(wait);
    }
    throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} failed after ${this.o.attempts} attempt(s): ${last}`);
  }

  private parse(text: string, n: number): number[][] {
    let j: any;
    try {
      j = JSON.parse(text);
    } catch {
      throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} answered with something that is not JSON`);
    }
    const data = j?.data;
    if (!Array.isArray(data) || data.length !== n)
      throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} returned ${Array.isArray(data) ? data.length : 'no'} embeddings for ${n} texts`);
    const rows: number[][] = new Array(n);
    data.forEach((d: any, i: number) => {
      const idx = Number.isInteger(d?.index) ? d.index : i;
      const e = d?.embedding;
      if (!(idx >= 0 && idx < n) || !Array.isArray(e) || !e.every((v: unknown) => typeof v === 'number' && Number.isFinite(v)))
        throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} returned a malformed embedding at ${i}`);
      rows[idx] = e;
    });
    if (rows.some((r) => !r)) throw new UnirouteError('EMBEDDER_FAILED', `${this.where()} returned duplicate indices`);
    return rows;
  }
}
