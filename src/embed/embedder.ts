/**
 * Embedders behind one interface: the native hashed n-gram LSA embedder, caller-supplied (precomputed) embeddings of
 * any dimension, or a remote OpenAI-compatible endpoint (remote.ts).
 */
import { UnirouteError } from '../errors.js';
import { call, callAsync, native, type NativeEmbedder, type NativeFitEmbedderOptions } from '../engine/native.js';
import type { RemoteEmbedderSpec } from './remote.js';

export interface HashedEmbedderSpec {
  kind: 'hashed-lsa';
  bucketsLog2: number;
  dim: number;
  charN: number;
  seed: number;
  minDf: number;
  keptBuckets?: number;
  rank?: number;
}

export interface PrecomputedEmbedderSpec {
  kind: 'precomputed';
  dim: number;
  /** Free-form name of the caller's embedding model, checked on load when given. */
  name?: string;
}

export type EmbedderSpec = HashedEmbedderSpec | PrecomputedEmbedderSpec | RemoteEmbedderSpec;

/** What turns prompt texts into embeddings: the native hashed embedder or a remote endpoint. */
export interface TextEmbedder {
  readonly dim: number;
  embed(texts: string[]): Promise<Float32Array>;
}

/** Options of fitting the hashed embedder: the engine's, less the oversampling. */
export type HashedFitOptions = Omit<NativeFitEmbedderOptions, 'oversample'>;

/** Throws a clear error for anything that is not a non-empty string array. */
export function checkTexts(texts: unknown, name = 'texts'): asserts texts is string[] {
  if (!Array.isArray(texts)) throw new UnirouteError('INVALID_ARGUMENT', `Expected an array of strings for \`${name}\``);
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    if (typeof t !== 'string')
      throw new UnirouteError('INVALID_ARGUMENT', `Expected a string for \`${name}[${i}]\` but received ${t === null ? 'null' : typeof t}`);
    if (t.trim().length === 0) throw new UnirouteError('EMPTY_TEXT', `\`${name}[${i}]\` is empty`);
  }
}

export class HashedEmbedder {
  readonly spec: HashedEmbedderSpec;
  readonly projection: Int8Array;
  readonly scale: Float32Array;
  private readonly handle: NativeEmbedder;

  constructor(spec: HashedEmbedderSpec, projection: Int8Array, scale: Float32Array) {
    this.spec = spec;
    this.projection = projection;
    this.scale = scale;
    this.handle = call(
      () =>
        new (native().Embedder)({
          bucketsLog2: spec.bucketsLog2,
          dim: spec.dim,
          charN: spec.charN,
          projection,
          scale,
        }),
    );
  }

  get dim(): number {
    return this.spec.dim;
  }

  get nativeHandle(): NativeEmbedder {
    return this.handle;
  }

  /** Fits IDF and the LSA projection on unlabelled training texts (off the event loop). */
  static async fit(texts: string[], opts: HashedFitOptions = {}): Promise<HashedEmbedder> {
    checkTexts(texts);
    if (texts.length === 0) throw new UnirouteError('INVALID_ARGUMENT', 'fitting the embedder needs at least one text');
    const spec: HashedEmbedderSpec = {
      kind: 'hashed-lsa',
      bucketsLog2: opts.bucketsLog2 ?? 16,
      dim: opts.dim ?? 256,
      charN: opts.charN ?? 4,
      seed: opts.seed ?? 1,
      minDf: opts.minDf ?? 2,
    };
    const r = await callAsync(() =>
      native().fitEmbedder(texts, { ...spec, powerIters: opts.powerIters ?? 3 }),
    );
    spec.keptBuckets = r.keptBuckets;
    spec.rank = r.rank;
    return new HashedEmbedder(spec, r.projection, r.scale);
  }

  embedSync(texts: string[]): Float32Array {
    checkTexts(texts);
    const out = new Float32Array(texts.length * this.dim);
    call(() => this.handle.embedSync(texts, out));
    return out;
  }

  async embed(texts: string[]): Promise<Float32Array> {
    checkTexts(texts);
    const out = new Float32Array(texts.length * this.dim);
    await callAsync(() => this.handle.embed(texts, out));
    return out;
  }
}

/** Checks a caller's embedding matrix: n rows of `dim` finite values. */
export function checkEmbeddings(emb: unknown, dim: number, name = 'embeddings'): Float32Array {
  if (!(emb instanceof Float32Array)) throw new UnirouteError('INVALID_ARGUMENT', `Expected a Float32Array for \`${name}\``);
  if (emb.length % dim !== 0)
    throw new UnirouteError(
      'DIMENSION_MISMATCH',
      `\`${name}\` has ${emb.length} values, not a multiple of the router's embedding dimension ${dim}`,
    );
  for (let i = 0; i < emb.length; i++)
    if (!Number.isFinite(emb[i])) throw new UnirouteError('NON_FINITE', `\`${name}\` has a non-finite value at index ${i}`);
  return emb;
}

/** Converts rows given as number arrays to one row-major Float32Array, checking each row's length. */
export function embeddingsFromRows(rows: ArrayLike<number>[], dim: number, name = 'embeddings'): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => {
    if (!r || r.length !== dim)
      throw new UnirouteError('DIMENSION_MISMATCH', `\`${name}[${i}]\` has ${r?.length ?? 0} values; the router expects ${dim}`);
    for (let j = 0; j < dim; j++) {
      const v = Number(r[j]);
      if (!Number.isFinite(v)) throw new UnirouteError('NON_FINITE', `\`${name}[${i}][${j}]\` is not a finite number`);
      out[i * dim + j] = v;
    }
  });
  return out;
}
