/** The one module that loads the native addon; everything else goes through the typed interface below. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnirouteError, fromNative } from '../errors.js';

export interface NativeEmbedderOptions {
  bucketsLog2: number;
  dim: number;
  charN: number;
  projection: Int8Array;
  scale: Float32Array;
}

/** The parts of a routing call after the embedding (native/binding: read_route_parts). */
export interface NativeRouteParts {
  centroids: Float32Array;
  /** Their squared norms (centroidNorms()), kept by the router; computed per call when absent. */
  centroidNorms?: Float32Array;
  evidenceNorms?: Float32Array;
  k: number;
  psi: Float32Array;
  cost: Float32Array;
  m: number;
  lambda: number;
  allowed?: Uint8Array | null;
  allowedPerRow?: boolean;
  /** logit Ψ (m x k) and the common slope: γ = σ(logit Ψ + slope·r), r from the difficulty model. */
  psiLogit?: Float32Array;
  slope?: number;
  difficulty?: { w: Float32Array; w0: number; mu: Float32Array };
  /** m x k (or m x evidenceCells) flags: LLMs with evidence in the prompt's cluster (cell) are preferred. */
  evidence?: Uint8Array | null;
  evidenceCells?: number;
  evidenceCentroids?: Float32Array;
  /** K + 1 offsets: the cells of each cluster. */
  evidenceStart?: Int32Array;
  /** Receives each prompt's evidence cell (with evidenceCells). */
  cellOut?: Int32Array;
  choice: Int32Array;
  cluster: Int32Array;
  distance: Float32Array;
  gamma?: Float32Array | null;
  chosen?: Float32Array | null;
}

export interface NativeRouteArgs extends NativeRouteParts {
  texts: string[];
}

/** The fixed parts of a route (NativeRouteParts less λ, the masks and the outputs), checked and copied once. */
export type NativeRouteModelParts = Omit<NativeRouteParts, 'lambda' | 'allowed' | 'allowedPerRow' | 'cellOut' | 'choice' | 'cluster' | 'distance' | 'gamma' | 'chosen'> & { dim: number };

/** An opaque route model (routeModel()). */
export type NativeRouteModel = { readonly __brand: 'NativeRouteModel' };

export interface NativeEmbedder {
  readonly dim: number;
  embedSync(texts: string[], out: Float32Array): void;
  embed(texts: string[], out: Float32Array): Promise<void>;
  routeSync(args: NativeRouteArgs): void;
  /** routeSync with the fixed parts from a route model: per call, only λ, the mask and the outputs are read. */
  routeModelSync(
    model: NativeRouteModel,
    texts: string[],
    lambda: number,
    allowed: Uint8Array | null,
    allowedPerRow: boolean,
    choice: Int32Array,
    cluster: Int32Array,
    distance: Float32Array,
    gamma: Float32Array | null,
    chosen: Float32Array | null,
    cellOut: Int32Array | null,
  ): void;
  route(args: NativeRouteArgs): Promise<void>;
}

export interface NativeFitEmbedderOptions {
  bucketsLog2?: number;
  dim?: number;
  charN?: number;
  seed?: number;
  minDf?: number;
  powerIters?: number;
  oversample?: number;
}

export interface NativeFitEmbedderResult {
  projection: Int8Array;
  scale: Float32Array;
  singularValues: Float32Array;
  keptBuckets: number;
  rank: number;
}

export interface NativeKMeansResult {
  centroids: Float32Array;
  assignments: Int32Array;
  inertia: number;
  iterations: number;
  reseeded: number;
}

export interface NativeScoreArgs {
  clusters?: Int32Array;
  membership?: Float32Array;
  psi: Float32Array;
  cost: Float32Array;
  m: number;
  k: number;
  lambda: number;
  allowed?: Uint8Array | null;
  allowedPerRow?: boolean;
  psiLogit?: Float32Array;
  slope?: number;
  evidence?: Uint8Array | null;
  evidenceCells?: number;
  /** Per prompt evidence cell (with evidenceCells). */
  cells?: Int32Array | null;
  /** Per prompt r = d − μ (with psiLogit). */
  resid?: Float32Array | null;
  choice: Int32Array;
  gamma?: Float32Array | null;
}

export interface NativeVectorRouteArgs extends NativeRouteParts {
  embeddings: Float32Array;
  dim: number;
  map?: { params: Float32Array; config: MlpConfig };
  sync?: boolean;
}

export interface NativeArgminArgs {
  predicted: Float32Array;
  cost: Float32Array;
  m: number;
  lambda: number;
  allowed?: Uint8Array | null;
  allowedPerRow?: boolean;
  k?: number;
  evidence?: Uint8Array | null;
  evidenceCells?: number;
  cells?: Int32Array;
  choice: Int32Array;
}

export interface MlpConfig {
  in: number;
  out: number;
  hidden: number[];
  batchnorm?: boolean;
  inputBn?: boolean;
  head: 'mixture' | 'sigmoid';
}

export interface MlpTrainOptions {
  psi?: Float32Array;
  valX?: Float32Array;
  valY?: Float32Array;
  lr?: number;
  batch?: number;
  epochs?: number;
  patience?: number;
  weightDecay?: number;
  seed?: number;
}

export type Backend = 'auto' | 'cpu' | 'cuda';

export interface BackendInfo {
  backend: 'cpu' | 'cuda';
  /** Every registered backend, the CPU first. */
  backends: string[];
  /** Engine calls that a failing backend handed to the CPU (the answer is the CPU's; a sticky error disables it). */
  fallbacks: number;
  /** Why the last of those failed, or null. */
  lastFailure: string | null;
  cuda: {
    compiled: boolean;
    available: boolean;
    reason: string | null;
    device: { name: string; computeCapability: string; memoryBytes: number } | null;
    runtimeVersion: number;
    driverVersion: number;
  };
  /**
   * The instruction set of the CPU kernels: the best this CPU supports, or the one forced by UNIROUTE_ISA /
   * setIsa(). `supported` lists what this CPU and build can run; `cpuFeatures` what the CPU reports of the
   * features they need. Process-wide.
   */
  isa: { active: Isa; forced: boolean; supported: Isa[]; cpuFeatures: string };
}

/** The CPU kernels' instruction sets: a portable baseline (SSE2 on x86-64), AVX2 + FMA, AVX-512 (F, VL, BW, DQ). */
export type Isa = 'baseline' | 'avx2' | 'avx512';

export interface NativeAddon {
  Embedder: new (opts: NativeEmbedderOptions) => NativeEmbedder;
  fitEmbedder(texts: string[], opts: NativeFitEmbedderOptions): Promise<NativeFitEmbedderResult>;
  kmeans(
    points: Float32Array,
    n: number,
    d: number,
    k: number,
    opts?: { seed?: number; maxIter?: number; tol?: number; nInit?: number },
  ): Promise<NativeKMeansResult>;
  assignSync(
    points: Float32Array,
    n: number,
    d: number,
    centroids: Float32Array,
    k: number,
    outIndex: Int32Array,
    outDistance?: Float32Array | null,
  ): void;
  scoreSync(args: NativeScoreArgs): void;
  argminSync(args: NativeArgminArgs): void;
  /** The squared norms of k centroids of d values, as the distance kernels compute them. */
  centroidNorms(centroids: Float32Array, k: number, d: number): Float32Array;
  /** Decisions for rows of embeddings, in bounded chunks; a Promise unless `sync`. */
  routeVectors(args: NativeVectorRouteArgs): Promise<void> | undefined;
  /** The fixed parts of a route checked and copied once, for NativeEmbedder.routeModelSync. */
  routeModel(parts: NativeRouteModelParts): NativeRouteModel;
  trainMlp(
    points: Float32Array,
    n: number,
    labels: Float32Array,
    m: number,
    config: MlpConfig,
    opts: MlpTrainOptions,
  ): Promise<{ params: Float32Array; trainLoss: number[]; valLoss: number[]; bestEpoch: number }>;
  mlpForward(params: Float32Array, config: MlpConfig, points: Float32Array, n: number, out: Float32Array): void;
  setThreads(n: number): void;
  getThreads(): number;
  backendInfo(): BackendInfo;
  setBackend(backend: Backend): 'cpu' | 'cuda';
  setIsa(isa: Isa | 'auto'): Isa;
  abiVersion: number;
}

const here = dirname(fileURLToPath(import.meta.url));

/** The package's root: the first folder upward holding uniroute's package.json (src/engine or dist/src/engine). */
function packageRoot(): string {
  let dir = here;
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        if ((JSON.parse(readFileSync(p, 'utf8')) as { name?: string }).name === 'uniroute') return dir;
      } catch {
        // not a package.json we can read: keep looking upward
      }
    }
    dir = dirname(dir);
  }
  return resolve(here, '..', '..', '..');
}

let cached: NativeAddon | undefined;
let loadedFrom: string | undefined;

/**
 * Where the addon may be, in the order tried: $UNIROUTE_ADDON; node-gyp-build's choice (a source build in
 * build/Release or build/Debug before the prebuilt addon in prebuilds/<platform>-<arch>/, the one an installed
 * package has); then, when that one fails to load, the others.
 */
function addonCandidates(root: string, require: NodeJS.Require): { paths: string[]; notes: string[] } {
  const notes: string[] = [];
  const paths: string[] = [];
  if (process.env.UNIROUTE_ADDON) paths.push(process.env.UNIROUTE_ADDON);
  try {
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    paths.push(nodeGypBuild.path(root));
  } catch (err) {
    notes.push(`node-gyp-build found nothing: ${String((err as Error).message).trim().split('\n')[0]}`);
  }
  const prebuilds = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const shipped = existsSync(prebuilds) ? readdirSync(prebuilds).filter((f) => f.endsWith('.node')).map((f) => join(prebuilds, f)) : [];
  for (const p of [join(root, 'build', 'Release', 'uniroute.node'), join(root, 'build', 'Debug', 'uniroute.node'), ...shipped])
    if (!paths.includes(p)) paths.push(p);
  if (shipped.length === 0) notes.push(`no prebuilt addon for ${process.platform}-${process.arch} in ${prebuilds}`);
  return { paths, notes };
}

/** Loads the addon once. On failure the error lists every path tried and the likely fix. */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const { paths, notes } = addonCandidates(root, require);
  const tried: string[] = [];
  for (const p of paths) {
    if (!existsSync(p)) {
      tried.push(`${p} (missing)`);
      continue;
    }
    try {
      const addon = require(p) as NativeAddon;
      const threads = Number(process.env.UNIROUTE_THREADS ?? 0);
      if (Number.isInteger(threads) && threads > 0) addon.setThreads(threads);
      cached = addon;
      loadedFrom = p;
      const b = process.env.UNIROUTE_BACKEND;
      if (b) setBackend(b as Backend);
      const isa = process.env.UNIROUTE_ISA;
      if (isa) setIsa(isa as Isa | 'auto');
      return addon;
    } catch (err) {
      if (err instanceof UnirouteError) throw err; // a bad UNIROUTE_BACKEND / UNIROUTE_ISA: not a load failure
      tried.push(`${p} (${String((err as Error).message).split('\n')[0]})`);
    }
  }
  throw new UnirouteError(
    'NATIVE_UNAVAILABLE',
    `could not load the uniroute native addon; tried:\n  ${[...tried, ...notes].join('\n  ')}\n` +
      'Build it from source (needs cmake >= 3.18 and a C++17 compiler): `npm run build:native` in a clone of uniroute, ' +
      'or `npm explore uniroute -- npm run build:native` where uniroute is an installed package.',
  );
}

/** The file the addon was loaded from (loading it first if need be): a source build, or the prebuilt addon. */
export function addonPath(): string {
  native();
  return loadedFrom!;
}

/** Runs a native call and converts its errors to UnirouteError. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err);
  }
}

export async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err);
  }
}

export function setThreads(n: number): void {
  call(() => native().setThreads(n));
}

export function getThreads(): number {
  return native().getThreads();
}

/**
 * Chooses the engine's backend: 'cpu' (the default), 'cuda' (an error naming the reason when no usable device),
 * or 'auto' (CUDA when usable, else CPU). Also set by UNIROUTE_BACKEND. Returns the backend now in use.
 */
export function setBackend(backend: Backend): 'cpu' | 'cuda' {
  if (backend !== 'auto' && backend !== 'cpu' && backend !== 'cuda')
    throw new UnirouteError('INVALID_ARGUMENT', `Expected "auto", "cpu" or "cuda" for the backend but received "${String(backend)}"`);
  return call(() => native().setBackend(backend));
}

/**
 * Forces the CPU kernels' instruction set ('auto': the best this CPU supports, the default). Also set by
 * UNIROUTE_ISA. An instruction set the CPU lacks is refused (BACKEND_UNAVAILABLE) and the current one kept.
 * Returns the set now in use.
 */
export function setIsa(isa: Isa | 'auto'): Isa {
  if (!['auto', 'baseline', 'avx2', 'avx512'].includes(isa as string))
    throw new UnirouteError('INVALID_ARGUMENT', `Expected "auto", "baseline", "avx2" or "avx512" for the instruction set (UNIROUTE_ISA) but received "${String(isa)}"`);
  return call(() => native().setIsa(isa));
}

export function backendInfo(): BackendInfo {
  return native().backendInfo();
}
