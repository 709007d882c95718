/**
 * A remote embedder: any OpenAI-compatible `POST {baseUrl}/embeddings` endpoint (OpenAI, vLLM, TEI, Ollama, …).
 * Batched requests, bounded concurrency, retries with backoff on 429 / 5xx / network errors (honouring
 * Retry-After), a timeout per request, a dimension check on every vector, and errors that name the problem without
 * echoing secrets. The spec (model, base URL, dimension) is recorded in the fitted model and checked on load.
 *
 * A router file never decides which secret is sent where. The key is always the operator's: the variable named by
 * `--embedder-key-env` (or a config's `embedder.key_env`), else UNIROUTE_EMBEDDER_KEY, else none. A key variable
 * recorded in a file (older files have `apiKeyEnv`) is ignored. The endpoint recorded in a file is used only when
 * the operator allows it (`--trust-embedder-url`, UNIROUTE_TRUST_EMBEDDER_URL=1, or `embedder.trust_file_url`);
 * otherwise the operator names one (`--embedder-url`, UNIROUTE_EMBEDDER_URL, `embedder.url`), or nothing is sent.
 */
import { UnirouteError } from '../errors.js';
import { redactSecrets } from '../redact.js';

export { redactSecrets };

export interface RemoteEmbedderSpec {
  kind: 'openai';
  /** The embedding model's name at the endpoint. */
  model: string;
  /** Base URL up to and including the API version, e.g. http://localhost:8000/v1 (no credentials). */
  baseUrl: string;
  dim: number;
  /** Recorded by files of older versions: the variable their key came from. Never read. */
  apiKeyEnv?: string;
}

/** The operator's say over a router file's remote embedder: where its prompts may go, and with which key. */
export interface EmbedderAccess {
  /** The endpoint to use (it wins over the file's). */
  url?: string;
  /** Use the endpoint recorded in the router file. */
  trustFileUrl?: boolean;
  /** The environment variable holding the API key. */
  keyEnv?: string;
  /** Where each setting came from (for `uniroute info` and messages). */
  from?: { url?: string; trust?: string; key?: string };
}

/** The access settings from the environment: UNIROUTE_EMBEDDER_URL, UNIROUTE_TRUST_EMBEDDER_URL=1 (keys: UNIROUTE_EMBEDDER_KEY, read when used). */
export function embedderAccessFromEnv(env: NodeJS.ProcessEnv = process.env): EmbedderAccess {
  const a: EmbedderAccess = { from: {} };
  if (env.UNIROUTE_EMBEDDER_URL) {
    a.url = env.UNIROUTE_EMBEDDER_URL;
    a.from!.url = 'UNIROUTE_EMBEDDER_URL';
  }
  if (env.UNIROUTE_TRUST_EMBEDDER_URL !== undefined && !/^(|0|false|no)$/i.test(env.UNIROUTE_TRUST_EMBEDDER_URL)) {
    a.trustFileUrl = true;
    a.from!.trust = 'UNIROUTE_TRUST_EMBEDDER_URL';
  }
  return a;
}

/** `over`'s settings where it has them, else `base`'s. */
export function mergeAccess(base: EmbedderAccess, over: EmbedderAccess): EmbedderAccess {
  return {
    url: over.url ?? base.url,
    trustFileUrl: over.trustFileUrl ?? base.trustFileUrl,
    keyEnv: over.keyEnv ?? base.keyEnv,
    from: {
      url: over.url !== undefined ? over.from?.url : base.from?.url,
      trust: over.trustFileUrl !== undefined ? over.from?.trust : base.from?.trust,
      key: over.keyEnv !== undefined ? over.from?.key : base.from?.key,
    },
  };
}

/** An http(s) base URL without credentials, trailing slashes dropped; `what` names the setting in errors. */
export function checkBaseUrl(raw: string, what: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnirouteError('INVALID_ARGUMENT', `${what} has an invalid base URL "${raw.replace(/\/\/[^@/]*@/, '//[redacted]@')}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UnirouteError('INVALID_ARGUMENT', `${what}: the base URL must be http:// or https://`);
  if (url.username || url.password) throw new UnirouteError('INVALID_ARGUMENT', `${what}: put the API key in an environment variable, not in the URL`);
  return url.toString().replace(/\/+$/, '');
}

/** Where a file's remote embedder sends prompts, and with which key, under the operator's settings. */
export interface ResolvedAccess {
  /** The endpoint used; undefined when none is allowed. */
  baseUrl: string | undefined;
  /** Why (a sentence for `uniroute info`). */
  endpointNote: string;
  /** The variable the key is read from when used, or undefined for none. */
  keyEnv: string | undefined;
  keyNote: string;
}

export function resolveAccess(spec: Pick<RemoteEmbedderSpec, 'baseUrl' | 'apiKeyEnv'>, access: EmbedderAccess, env: NodeJS.ProcessEnv = process.env): ResolvedAccess {
  let baseUrl: string | undefined;
  let endpointNote: string;
  if (access.url) {
    baseUrl = checkBaseUrl(access.url, access.from?.url ?? '--embedder-url');
    endpointNote = `${baseUrl} (named by ${access.from?.url ?? 'the operator'}; the file's ${spec.baseUrl} is not used)`;
  } else if (access.trustFileUrl) {
    baseUrl = spec.baseUrl;
    endpointNote = `${baseUrl} (the file's, allowed by ${access.from?.trust ?? 'the operator'})`;
  } else {
    baseUrl = undefined;
    endpointNote = `none: the file names ${spec.baseUrl}, which is used only when you allow it (--trust-embedder-url or UNIROUTE_TRUST_EMBEDDER_URL=1), or name one (--embedder-url URL or UNIROUTE_EMBEDDER_URL)`;
  }
  const ignored = spec.apiKeyEnv ? `; the file's key variable ${spec.apiKeyEnv} is ignored` : '';
  let keyEnv: string | undefined;
  let keyNote: string;
  if (access.keyEnv) {
    keyEnv = access.keyEnv;
    keyNote = `from $${keyEnv} (named by ${access.from?.key ?? 'the operator'}; ${env[keyEnv] ? 'set' : 'not set: none is sent'})${ignored}`;
  } else if (env.UNIROUTE_EMBEDDER_KEY) {
    keyEnv = 'UNIROUTE_EMBEDDER_KEY';
    keyNote = `from $UNIROUTE_EMBEDDER_KEY${ignored}`;
  } else {
    keyEnv = undefined;
    keyNote = `none sent (name its variable with --embedder-key-env VAR, or set UNIROUTE_EMBEDDER_KEY)${ignored}`;
  }
  return { baseUrl, endpointNote, keyEnv, keyNote };
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
  /** The environment variable holding the API key, read when a request is sent (none sent without one). */
  keyEnv?: string;
  /**
   * Set when no endpoint is allowed for this embedder (a router file's, not trusted): embedding then fails with
   * this message, and nothing is sent anywhere.
   */
  refused?: string;
  /** What `uniroute info` says about the endpoint and the key. */
  notes?: { endpoint: string; key: string };
}

/** Parses `openai:MODEL@BASE_URL` (the key is not part of the spec: it is the operator's, named at run time). */
export function parseEmbedderArg(arg: string): Omit<RemoteEmbedderSpec, 'dim'> {
  const m = /^openai:([^@]+)@(https?:\/\/.+)$/.exec(arg);
  if (!m) throw new UnirouteError('INVALID_ARGUMENT', `--embedder must look like openai:MODEL@BASE_URL (for example openai:text-embedding-3-small@https://api.openai.com/v1), got "${arg.replace(/\/\/[^@/]*@/, '//[redacted]@')}"`);
  return { kind: 'openai', model: m[1], baseUrl: checkBaseUrl(m[2], '--embedder') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Tuning = 'batchSize' | 'concurrency' | 'attempts' | 'timeoutMs' | 'backoffMs';

export class RemoteEmbedder {
  /** What the router records: the model, the base URL (the file's, for a loaded router), the dimension. */
  spec: RemoteEmbedderSpec;
  /** Where requests go (undefined: nowhere is allowed, see `refused`). */
  readonly endpoint: string | undefined;
  readonly keyEnv: string | undefined;
  readonly refused: string | undefined;
  readonly notes: { endpoint: string; key: string };
  private readonly o: Record<Tuning, number> & Pick<RemoteEmbedderOptions, 'onProgress'>;

  /** dim 0: learnt from the first response (when fitting). Requests go to spec.baseUrl unless opts say otherwise. */
  constructor(spec: Omit<RemoteEmbedderSpec, 'dim'> & { dim?: number }, opts: RemoteEmbedderOptions & { endpoint?: string } = {}) {
    const { apiKeyEnv: _ignored, ...rest } = spec;
    this.spec = { ...rest, dim: spec.dim ?? 0 };
    if (spec.apiKeyEnv !== undefined) this.spec.apiKeyEnv = spec.apiKeyEnv; // kept as recorded (the model's hash covers it), never read
    this.refused = opts.refused;
    this.endpoint = opts.refused ? undefined : (opts.endpoint ?? spec.baseUrl);
    this.keyEnv = opts.keyEnv;
    this.notes = opts.notes ?? { endpoint: this.endpoint ?? 'none', key: this.keyEnv ? `from $${this.keyEnv}` : 'none sent' };
    this.o = {
      batchSize: opts.batchSize ?? 64,
      concurrency: opts.concurrency ?? 4,
      attempts: opts.attempts ?? 5,
      timeoutMs: opts.timeoutMs ?? 30_000,
      backoffMs: opts.backoffMs ?? 250,
      onProgress: opts.onProgress,
    };
    for (const k of ['batchSize', 'concurrency', 'attempts', 'timeoutMs', 'backoffMs'] as const) {
      const v = this.o[k];
      if (!(Number.isInteger(v) && v >= (k === 'backoffMs' ? 0 : 1)))
        throw new UnirouteError('INVALID_ARGUMENT', `remote embedder option ${k} must be a whole number >= ${k === 'backoffMs' ? 0 : 1} (got ${String(v)})`);
    }
  }

  /** A router file's embedder under the operator's settings (see the module's comment). */
  static forFile(spec: RemoteEmbedderSpec, access: EmbedderAccess, opts: RemoteEmbedderOptions = {}, env: NodeJS.ProcessEnv = process.env): RemoteEmbedder {
    const r = resolveAccess(spec, access, env);
    return new RemoteEmbedder(spec, {
      ...opts,
      endpoint: r.baseUrl,
      keyEnv: r.keyEnv,
      notes: { endpoint: r.endpointNote, key: r.keyNote },
      ...(r.baseUrl ? {} : { refused: `this router embeds prompts through a remote endpoint, and no endpoint is allowed: ${r.endpointNote}` }),
    });
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
    return `the embedding endpoint ${this.endpoint ?? this.spec.baseUrl} (model ${this.spec.model})`;
  }

  /** One request with retries: 429, 5xx, timeouts and network errors are retried with backoff. */
  private async request(input: string[]): Promise<number[][]> {
    if (this.refused || !this.endpoint) throw new UnirouteError('EMBEDDER_NOT_ALLOWED', this.refused ?? 'no embedding endpoint is allowed');
    const key = (this.keyEnv ? process.env[this.keyEnv] : undefined) || undefined;
    const redact = (s: string) => redactSecrets(s, key ? [key, `Bearer ${key}`] : []);
    let last = '';
    for (let attempt = 0; attempt < this.o.attempts; attempt++) {
      let wait = this.o.backoffMs * 2 ** attempt;
      try {
        const res = await fetch(`${this.endpoint}/embeddings`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
          body: JSON.stringify({ model: this.spec.model, input }),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
        const text = await res.text();
        if (res.ok) return this.parse(text, input.length);
        last = `HTTP ${res.status}: ${redact(text).slice(0, 200)}`;
        if ((res.status === 401 || res.status === 403) && !key)
          last += ` (no API key was sent: name its variable with --embedder-key-env VAR${this.keyEnv ? ` (${this.keyEnv} is not set)` : ''}, or set UNIROUTE_EMBEDDER_KEY)`;
        if (res.status !== 429 && res.status < 500) break; // a client error does not get better by retrying
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra > 0) wait = Math.min(ra * 1000, 60_000);
      } catch (e) {
        if (e instanceof UnirouteError) throw e;
        const err = e as Error & { cause?: { code?: string } };
        last = err.name === 'TimeoutError' ? `timed out after ${this.o.timeoutMs} ms` : redact(`${err.cause?.code ?? err.message}`);
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

