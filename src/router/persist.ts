/**
 * A router as one artifact (src/router/artifact.ts: safetensors + manifest, checksummed): what is written, how it
 * is read back and checked, and the fitted model's identity (the hash a pool store is keyed by).
 */
import { createHash } from 'node:crypto';
import { UnirouteError } from '../errors.js';
import { native } from '../engine/native.js';
import { HashedEmbedder, type EmbedderSpec, type HashedEmbedderSpec } from '../embed/embedder.js';
import { RemoteEmbedder, embedderAccessFromEnv, type EmbedderAccess, type RemoteEmbedderSpec } from '../embed/remote.js';
import { decodeArtifact, type Tensor, type TensorMap } from './artifact.js';
import { badFile, checkDistanceQuantiles, checkFiniteTensor, checkManifestShape, type DistanceQuantiles } from './checks.js';
import type { PsiPrior } from '../decide/posterior.js';
import type { EvidenceCells } from '../decide/snapshot.js';
import { Router, type LearnedMap } from './router.js';

export function artifactParts(r: Router): { manifest: Record<string, unknown>; tensors: TensorMap } {
  const pool = r.poolEntries();
  const m = pool.length;
  const k = r.k;
  const sums = new Float32Array(m * k);
  const counts = new Float32Array(m * k);
  pool.forEach((e, j) => {
    sums.set(e.errorSums, j * k);
    counts.set(e.counts, j * k);
  });
  const tensors: TensorMap = {
    centroids: { data: r.centroids, shape: [k, r.dim] },
    'pool.error_sums': { data: sums, shape: [m, k] },
    'pool.counts': { data: counts, shape: [m, k] },
  };
  if (r.map) tensors['map.params'] = { data: r.map.params, shape: [r.map.params.length] };
  if (r.prior) {
    tensors['prior.cluster_logit'] = { data: r.prior.clusterLogit, shape: [k] };
    if (r.prior.difficulty) {
      tensors['prior.difficulty_w'] = { data: r.prior.difficulty.w, shape: [r.dim] };
      tensors['prior.difficulty_mu'] = { data: r.prior.difficulty.mu, shape: [k] };
    }
  }
  if (r.clusterShare) tensors['prior.cluster_share'] = { data: r.clusterShare, shape: [k] };
  if (r.cells) {
    const E = r.cells.count;
    tensors['evidence.centroids'] = { data: r.cells.centroids, shape: [E, r.dim] };
    tensors['evidence.share'] = { data: r.cells.share, shape: [E] };
    tensors['evidence.start'] = { data: r.cells.start, shape: [k + 1] };
    // -1 marks an entry with no cell counts (evidence everywhere)
    const cc = new Float32Array(m * E);
    pool.forEach((e, j) => (e.cellCounts ? cc.set(e.cellCounts, j * E) : cc.fill(-1, j * E, (j + 1) * E)));
    tensors['pool.cell_counts'] = { data: cc, shape: [m, E] };
  }
  if (r.keptPrompts) tensors['operating.embeddings'] = { data: r.keptPrompts, shape: [r.keptPrompts.length / r.dim, r.dim] };
  if (r.hashed) {
    const B = 2 ** (r.embedderSpec as HashedEmbedderSpec).bucketsLog2;
    tensors['embedder.projection'] = { data: r.hashed.projection, shape: [B, r.dim] };
    tensors['embedder.scale'] = { data: r.hashed.scale, shape: [B] };
  }
  const manifest = {
    embedder: r.embedderSpec,
    clusters: k,
    priorStrength: r.priorStrength,
    defaultLambda: r.fixedLambda ?? r.defaultLambda,
    // 'pool': the default λ is the pool's operating point on the kept prompts; 'fixed': defaultLambda as given
    operating: r.keptPrompts && r.fixedLambda === undefined ? 'pool' : 'fixed',
    minEvidence: r.minEvidence,
    ...(r.cells ? { evidenceCells: r.cells.count } : {}),
    ...(r.prior?.difficulty ? { difficulty: { w0: r.prior.difficulty.w0, slope: r.prior.difficulty.slope } } : {}),
    ...(r.prior?.ability ? { ability: r.prior.ability } : {}),
    ...(r.prior?.deviation ? { deviation: r.prior.deviation } : {}),
    ...(r.prior?.outcomeWeight !== undefined ? { outcomeWeight: r.prior.outcomeWeight } : {}),
    ...(r.prior?.groups ? { abilityGroups: { of: Array.from(r.prior.groups.of), abilities: r.prior.groups.abilities } } : {}),
    ...(r.distanceQuantiles ? { distanceQuantiles: r.distanceQuantiles } : {}),
    pool: pool.map((e) => ({ name: e.name, costPerQuery: e.costPerQuery })),
    clusterMap: r.map ? { kind: 'learned', config: r.map.config } : { kind: 'nearest-centroid' },
    info: r.info,
  };
  return { manifest, tensors };
}

/**
 * The fitted model's identity: a sha256 over the embedder, centroids, learned map, prior, evidence cells, distance
 * quantiles, kept prompts and fit information, not the pool or the settings. A pool store is keyed by it.
 */
export function modelHashOf(r: Router): string {
  const { manifest, tensors } = artifactParts(r);
  const h = createHash('sha256');
  // settings a user may change (prior strength, default λ, min evidence) and the pool are not the model
  const { pool: _p, priorStrength: _s, defaultLambda: _l, minEvidence: _e, operating: _o, ...fitted } = manifest;
  h.update(JSON.stringify(fitted));
  for (const name of Object.keys(tensors).sort()) {
    if (name.startsWith('pool.')) continue;
    const t = tensors[name];
    h.update(`\u0000${name}:${t.shape.join('x')}:${t.data.constructor.name}\u0000`);
    h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/** How a router file is loaded: what the operator allows (the file itself decides nothing of it). */
export interface LoadOptions {
  /** Load a file without `sha256_all` (older, or stripped): for `uniroute migrate`, which rewrites it. */
  allowLegacy?: boolean;
  /** Where an openai embedder's prompts may go and with which key (default: embedderAccessFromEnv()). */
  embedder?: EmbedderAccess;
}

/**
 * A router from its file's bytes. The file is untrusted input: every value is checked as the admin API checks it
 * (names, costs in [0, 1e30], 0 <= sums <= counts, finite tensors of the right type and length, settings in
 * range), whether or not its checksums hold; anything else is BAD_ARTIFACT naming the value.
 */
export function routerFromArtifact(buf: Buffer, source = 'artifact', expect?: { embedder?: Partial<EmbedderSpec> }, load: LoadOptions = {}): Router {
  const { manifest, tensors } = decodeArtifact(buf, source, { allowLegacy: load.allowLegacy });
  try {
    return build(manifest, tensors, source, expect, load);
  } catch (e) {
    // a value the constructor (or the engine) refuses is a bad file, said as such
    if (e instanceof UnirouteError) {
      if (e.code === 'BAD_ARTIFACT' || e.code === 'ARTIFACT_MISMATCH') throw e;
      throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${e.message}`);
    }
    throw new UnirouteError('BAD_ARTIFACT', `${source} is not a valid uniroute router: ${(e as Error)?.message ?? String(e)}`);
  }
}

function build(manifest: unknown, tensors: Record<string, Tensor>, source: string, expect: { embedder?: Partial<EmbedderSpec> } | undefined, load: LoadOptions): Router {
  const bad = (why: string): never => badFile(source, why);
  checkManifestShape(manifest, source);
  const spec = manifest.embedder as EmbedderSpec;
  if (expect?.embedder) {
    for (const [key, v] of Object.entries(expect.embedder))
      if (v !== undefined && (spec as any)[key] !== v)
        throw new UnirouteError('ARTIFACT_MISMATCH', `${source} was fitted with embedder ${key} = ${JSON.stringify((spec as any)[key])}, but ${JSON.stringify(v)} is required`);
  }
  const k = manifest.clusters as number;
  const pool = manifest.pool as Array<{ name: string; costPerQuery: number }>;
  const DTYPE: Record<string, string> = { Float32Array: 'F32', Int8Array: 'I8', Int32Array: 'I32' };
  const need = (name: string, len: number, type: 'F32' | 'I8' | 'I32' = 'F32') => {
    const t = tensors[name];
    if (!t) bad(`tensor ${name} is missing`);
    if (DTYPE[t.constructor.name] !== type) bad(`tensor ${name} is ${DTYPE[t.constructor.name]}, not ${type}`);
    if (t.length !== len) bad(`tensor ${name} has ${t.length} values, expected ${len}`);
    if (type === 'F32') checkFiniteTensor(t as Float32Array, name, source);
    return t;
  };
  const known = new Set([
    'centroids', 'pool.error_sums', 'pool.counts', 'pool.cell_counts', 'map.params', 'prior.cluster_logit', 'prior.difficulty_w', 'prior.difficulty_mu',
    'prior.cluster_share', 'evidence.centroids', 'evidence.share', 'evidence.start', 'operating.embeddings', 'embedder.projection', 'embedder.scale',
  ]);
  for (const name of Object.keys(tensors)) if (!known.has(name)) bad(`tensor ${JSON.stringify(name.slice(0, 64))} is not one a router has`);
  const centroids = need('centroids', k * spec.dim) as Float32Array;
  const sums = need('pool.error_sums', pool.length * k) as Float32Array;
  const counts = need('pool.counts', pool.length * k) as Float32Array;
  let remote: RemoteEmbedder | undefined;
  if (spec.kind === 'openai') remote = RemoteEmbedder.forFile(spec as RemoteEmbedderSpec, load.embedder ?? embedderAccessFromEnv());
  let hashed: HashedEmbedder | undefined;
  if (spec.kind === 'hashed-lsa') {
    const B = 2 ** spec.bucketsLog2;
    hashed = new HashedEmbedder(spec, need('embedder.projection', B * spec.dim, 'I8') as Int8Array, need('embedder.scale', B) as Float32Array);
  }
  let map: LearnedMap | undefined;
  if (manifest.clusterMap?.kind === 'learned') {
    const t = tensors['map.params'];
    if (!(t instanceof Float32Array)) bad("the learned map's parameters are missing");
    checkFiniteTensor(t as Float32Array, 'map.params', source);
    map = { config: manifest.clusterMap.config, params: t as Float32Array };
    // the engine checks the declared network against its parameters (a forward pass of no rows), at load
    try {
      native().mlpForward(map.params, map.config, new Float32Array(0), 0, new Float32Array(0));
    } catch (e) {
      bad(`the learned map's parameters do not fit its declared network (${(e as Error).message})`);
    }
  } else if (tensors['map.params']) bad('tensor map.params is present without a learned cluster map');
  let prior: PsiPrior | undefined;
  if (tensors['prior.cluster_logit']) {
    prior = { clusterLogit: need('prior.cluster_logit', k) as Float32Array };
    if (manifest.ability !== undefined) {
      const { mean, sd, points, bandwidth } = manifest.ability ?? {};
      if (typeof mean !== 'number' || typeof sd !== 'number' || !Number.isFinite(mean) || !(sd > 0 && sd < 100)) bad('the ability prior needs a finite mean and an sd in (0, 100)');
      prior.ability = { mean, sd };
      if (points !== undefined || bandwidth !== undefined) {
        if (!Array.isArray(points) || points.length < 1 || points.length > 100_000 || !points.every((x) => typeof x === 'number' && Number.isFinite(x) && Math.abs(x) < 100))
          bad('the ability prior\'s points must be a list of finite numbers');
        if (typeof bandwidth !== 'number' || !(bandwidth > 0 && bandwidth < 100)) bad('the ability prior\'s bandwidth must be a number in (0, 100)');
        prior.ability = { mean, sd, points, bandwidth };
      }
    }
    if (manifest.abilityGroups !== undefined) {
      const g = manifest.abilityGroups ?? {};
      if (!Array.isArray(g.of) || g.of.length !== k || !Array.isArray(g.abilities) || g.abilities.length < 1 || g.abilities.length > MAX_GROUPS)
        bad(`abilityGroups needs a group for each of the ${k} clusters and at least one ability prior`);
      if (!g.of.every((x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < g.abilities.length)) bad('abilityGroups.of names a group that does not exist');
      const abilities = (g.abilities as any[]).map((a, i) => {
        const ok =
          a && typeof a.mean === 'number' && Number.isFinite(a.mean) && typeof a.sd === 'number' && a.sd > 0 && a.sd < 100 &&
          (a.points === undefined || (Array.isArray(a.points) && a.points.length > 0 && a.points.length <= 100_000 && a.points.every((x: unknown) => typeof x === 'number' && Number.isFinite(x) && Math.abs(x) < 100) && typeof a.bandwidth === 'number' && a.bandwidth > 0 && a.bandwidth < 100));
        if (!ok) bad(`abilityGroups.abilities[${i}] is not a valid ability prior`);
        return a.points ? { mean: a.mean, sd: a.sd, points: a.points, bandwidth: a.bandwidth } : { mean: a.mean, sd: a.sd };
      });
      prior.groups = { of: Int32Array.from(g.of), abilities };
    }
    if (manifest.outcomeWeight !== undefined) {
      const w = manifest.outcomeWeight;
      if (typeof w !== 'number' || !(w >= 1 && w <= 20)) bad('outcomeWeight must be a number in [1, 20]');
      prior.outcomeWeight = w;
    }
    if (manifest.deviation !== undefined) {
      const { share, strength } = manifest.deviation ?? {};
      if (typeof share !== 'number' || typeof strength !== 'number' || !(share >= 0 && share < 1) || !(strength > 0 && strength < 1e6))
        bad('the cell prior\'s deviation needs a share in [0, 1) and a strength > 0');
      prior.deviation = { share, strength };
    }
    if (manifest.difficulty) {
      const { w0, slope } = manifest.difficulty;
      if (typeof w0 !== 'number' || typeof slope !== 'number' || !Number.isFinite(w0) || !Number.isFinite(slope)) bad('the difficulty model lacks its offset or slope (finite numbers)');
      prior.difficulty = { w: need('prior.difficulty_w', spec.dim) as Float32Array, mu: need('prior.difficulty_mu', k) as Float32Array, w0, slope };
    }
  } else if (manifest.ability !== undefined || manifest.difficulty !== undefined || manifest.abilityGroups !== undefined || manifest.deviation !== undefined)
    bad('the manifest describes a prior, but tensor prior.cluster_logit is missing');
  const clusterShare = tensors['prior.cluster_share'] ? (need('prior.cluster_share', k) as Float32Array) : undefined;
  if (clusterShare) checkFiniteTensor(clusterShare, 'prior.cluster_share', source, 0);
  let cells: EvidenceCells | undefined;
  let cellCounts: Float32Array | undefined;
  if (tensors['evidence.centroids']) {
    const E = manifest.evidenceCells;
    if (!Number.isInteger(E) || E < 1) bad('evidenceCells is missing or not a positive integer');
    const share = need('evidence.share', E) as Float32Array;
    checkFiniteTensor(share, 'evidence.share', source, 0);
    cells = {
      count: E,
      centroids: need('evidence.centroids', E * spec.dim) as Float32Array,
      share,
      start: need('evidence.start', k + 1, 'I32') as Int32Array,
    };
    cellCounts = need('pool.cell_counts', pool.length * E) as Float32Array;
    // a row is all -1 (no cell counts recorded) or all counts >= 0
    for (let j = 0; j < pool.length; j++) {
      const row = cellCounts.subarray(j * E, (j + 1) * E);
      if (!(row.every((v) => v === -1) || row.every((v) => v >= 0))) bad(`tensor pool.cell_counts: LLM "${pool[j].name}" has a row that is neither all -1 nor all counts >= 0`);
    }
  } else if (manifest.evidenceCells !== undefined || tensors['evidence.share'] || tensors['evidence.start'] || tensors['pool.cell_counts'])
    bad('the evidence cells are incomplete (tensor evidence.centroids is missing)');
  let keptPrompts: Float32Array | undefined;
  const kept = tensors['operating.embeddings'];
  if (kept) {
    if (!(kept instanceof Float32Array) || kept.length % spec.dim !== 0) bad(`tensor operating.embeddings is not rows of ${spec.dim} F32 values`);
    checkFiniteTensor(kept as Float32Array, 'operating.embeddings', source);
    keptPrompts = kept as Float32Array;
  }
  const validQuantiles = (x: DistanceQuantiles) => {
    try {
      return checkDistanceQuantiles(x, 'distanceQuantiles');
    } catch (e) {
      return bad((e as Error).message);
    }
  };
  if (manifest.operating !== undefined && manifest.operating !== 'pool' && manifest.operating !== 'fixed') bad(`operating must be "pool" or "fixed" (got ${JSON.stringify(manifest.operating)})`);
  const fixed = manifest.operating === 'pool' && keptPrompts ? undefined : (manifest.defaultLambda ?? 0);
  return new Router({
    embedder: spec,
    hashed,
    remote,
    map,
    centroids,
    k,
    prior,
    clusterShare,
    cells,
    keptPrompts,
    minEvidence: manifest.minEvidence ?? 1,
    ...(manifest.distanceQuantiles !== undefined ? { distanceQuantiles: validQuantiles(manifest.distanceQuantiles) } : {}),
    priorStrength: manifest.priorStrength ?? 0,
    defaultLambda: fixed,
    info: manifest.info ?? {},
    pool: pool.map((p, j) => ({
      name: p.name,
      costPerQuery: p.costPerQuery,
      errorSums: sums.slice(j * k, (j + 1) * k),
      counts: counts.slice(j * k, (j + 1) * k),
      ...(cells && cellCounts && cellCounts[j * cells.count] >= 0 ? { cellCounts: cellCounts.slice(j * cells.count, (j + 1) * cells.count) } : {}),
    })),
  });
}

const MAX_GROUPS = 65_536;
