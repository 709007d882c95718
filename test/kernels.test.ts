/** Native kernels against the plain TypeScript reference implementations, on random data. */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { native } from '../src/engine/native.js';
import { HashedEmbedder } from '../src/embed/embedder.js';
import {
  kmeansObjective,
  mulberry32,
  referenceAssign,
  referenceEmbed,
  referenceFeatures,
  referenceKMeans,
  referenceScore,
} from '../src/engine/reference.js';
import { randomTexts } from './helpers.js';

function gaussian(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return x;
}

describe('embedder', () => {
  it('matches the TypeScript reference on random texts (features, projection, normalisation)', async () => {
    const texts = randomTexts(300, 1);
    const emb = await HashedEmbedder.fit(texts, { bucketsLog2: 12, dim: 32, seed: 3 });
    const probe = [...randomTexts(50, 2), 'What is 17*23?', 'a', '  MiXeD   case\ttext\n', 'x'.repeat(5000)];
    const got = emb.embedSync(probe);
    let maxErr = 0;
    probe.forEach((t, i) => {
      const ref = referenceEmbed({ ...emb.spec, projection: emb.projection, scale: emb.scale }, t);
      for (let d = 0; d < emb.dim; d++) maxErr = Math.max(maxErr, Math.abs(ref[d] - got[i * emb.dim + d]));
    });
    expect(maxErr).toBeLessThan(1e-5);
  });

  it('hashes exactly as specified: every reference feature lands in a bucket with a row', async () => {
    // with min_df = 1 every bucket seen in training has a row; a text made of training texts must use only those
    const texts = randomTexts(100, 4);
    const emb = await HashedEmbedder.fit(texts, { bucketsLog2: 14, dim: 8, minDf: 1 });
    for (const t of texts.slice(0, 20)) {
      for (const [b] of referenceFeatures(t, 14, 4)) expect(emb.scale[b]).toBeGreaterThan(0);
    }
  });

  it('is deterministic: the same seed gives identical projections, async and sync agree', async () => {
    const texts = randomTexts(200, 5);
    const a = await HashedEmbedder.fit(texts, { bucketsLog2: 12, dim: 16, seed: 9 });
    const b = await HashedEmbedder.fit(texts, { bucketsLog2: 12, dim: 16, seed: 9 });
    expect(Buffer.from(a.projection.buffer).equals(Buffer.from(b.projection.buffer))).toBe(true);
    expect(await a.embed(texts)).toEqual(a.embedSync(texts));
  });

  it('separates topics: same-topic prompts are closer than other-topic prompts', async () => {
    const texts = randomTexts(300, 6);
    const emb = await HashedEmbedder.fit(texts, { bucketsLog2: 14, dim: 32 });
    const e = emb.embedSync(texts);
    const dot = (i: number, j: number) => {
      let s = 0;
      for (let d = 0; d < 32; d++) s += e[i * 32 + d] * e[j * 32 + d];
      return s;
    };
    let same = 0;
    let other = 0;
    for (let i = 0; i + 3 < 300; i++) {
      same += dot(i, i + 3);
      other += dot(i, i + 1);
    }
    expect(same / 297).toBeGreaterThan(other / 297 + 0.2);
  });
});

describe('assignment', () => {
  it('agrees with brute force on random data (exact ids except float near-ties)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 24 }), fc.integer(), (n, d, k, seed) => {
        const X = gaussian(n * d, seed);
        const C = gaussian(k * d, seed + 1);
        const idx = new Int32Array(n);
        const dist = new Float32Array(n);
        native().assignSync(X, n, d, C, k, idx, dist);
        for (let i = 0; i < n; i++) {
          const r = referenceAssign(X, i * d, d, C, k);
          if (r.gap > 1e-3) expect(idx[i]).toBe(r.index);
          expect(Math.abs(dist[i] - r.distance)).toBeLessThan(1e-3 * Math.max(1, r.distance));
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('k-means', () => {
  it('reaches an objective no worse than the reference implementation', async () => {
    for (const seed of [1, 2, 3]) {
      const n = 600;
      const d = 16;
      const k = 8;
      // clustered data: 8 random centres + noise
      const centres = gaussian(k * d, seed * 10);
      const noise = gaussian(n * d, seed * 10 + 1);
      const X = new Float32Array(n * d);
      for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) X[i * d + j] = 3 * centres[(i % k) * d + j] + noise[i * d + j];
      const nat = await native().kmeans(X, n, d, k, { seed });
      const ref = referenceKMeans(X, n, d, k, seed);
      const natObj = kmeansObjective(X, n, d, nat.centroids, nat.assignments);
      expect(Math.abs(natObj - nat.inertia) / natObj).toBeLessThan(1e-4);
      expect(natObj).toBeLessThanOrEqual(ref.inertia * 1.0001);
    }
  });

  it('is fully determined by its seed and handles more clusters than distinct points', async () => {
    const X = gaussian(200 * 4, 7);
    const a = await native().kmeans(X, 200, 4, 6, { seed: 5 });
    const b = await native().kmeans(X, 200, 4, 6, { seed: 5 });
    expect(a.centroids).toEqual(b.centroids);
    expect(a.assignments).toEqual(b.assignments);
    const dup = new Float32Array(30 * 2).fill(1);
    const c = await native().kmeans(dup, 30, 2, 4, { seed: 1 });
    expect(c.assignments.every((v) => v >= 0 && v < 4)).toBe(true);
  });
});

describe('scoring', () => {
  it('matches the reference argmin, with and without an allowed set', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 12 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.integer(),
        (n, m, k, lambda, seed) => {
          const r = mulberry32(seed);
          const psi = Float32Array.from({ length: m * k }, () => Math.round(r() * 20) / 20);
          const cost = Float32Array.from({ length: m }, () => Math.round(r() * 10) / 100);
          const clusters = Int32Array.from({ length: n }, () => Math.floor(r() * k));
          const allowed = Uint8Array.from({ length: m }, (_, j) => (j === 0 || r() < 0.5 ? 1 : 0));
          const choice = new Int32Array(n);
          const choiceMasked = new Int32Array(n);
          native().scoreSync({ clusters, psi, cost, m, k, lambda, choice });
          native().scoreSync({ clusters, psi, cost, m, k, lambda, choice: choiceMasked, allowed });
          for (let i = 0; i < n; i++) {
            expect(choice[i]).toBe(referenceScore(psi, cost, m, k, clusters[i], lambda));
            expect(choiceMasked[i]).toBe(referenceScore(psi, cost, m, k, clusters[i], lambda, allowed));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('soft membership with one-hot rows equals hard scoring', () => {
    const m = 5;
    const k = 4;
    const n = 50;
    const r = mulberry32(2);
    const psi = Float32Array.from({ length: m * k }, () => r());
    const cost = Float32Array.from({ length: m }, () => r());
    const clusters = Int32Array.from({ length: n }, () => Math.floor(r() * k));
    const membership = new Float32Array(n * k);
    clusters.forEach((c, i) => (membership[i * k + c] = 1));
    const a = new Int32Array(n);
    const b = new Int32Array(n);
    native().scoreSync({ clusters, psi, cost, m, k, lambda: 0.3, choice: a });
    native().scoreSync({ membership, psi, cost, m, k, lambda: 0.3, choice: b });
    expect(b).toEqual(a);
  });
});

describe('an exception deep in the engine reaches JS as an error', () => {
  it('an allocation that fails inside training (address space capped with ulimit -v) rejects with OUT_OF_MEMORY; the process goes on', () => {
    const addon = resolve(__dirname, '..', 'build', 'Release', 'uniroute.node');
    const script = `
      const a = require(${JSON.stringify(addon)});
      const n = 64, d = 4;
      const X = new Float32Array(n * d).fill(0.5), Y = new Float32Array(n * 2).fill(0.5);
      // about 256 M parameters: with gradients and Adam's moments, over 4 GB: past the cap, deep in mlp_train
      a.trainMlp(X, n, Y, 2, { in: d, out: 2, hidden: [16000, 16000], batchnorm: false, inputBn: false, head: 'mixture' }, { epochs: 1, psi: new Float32Array(4).fill(0.5) })
        .then(() => console.log('trained'), (e) => console.log('rejected', e.code))
        .then(() => console.log('alive', a.getThreads() > 0));`;
    const r = spawnSync('bash', ['-c', `ulimit -v 4500000 && exec "${process.execPath}" -e '${script.replace(/'/g, "'\\''")}'`], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout, r.stderr).toMatch(/rejected OUT_OF_MEMORY\nalive true/);
  });

  it('a network far too large for memory is refused before anything is allocated, and the process goes on', () => {
    const config = { in: 4, out: 3, hidden: Array(8).fill(65536), batchnorm: false, inputBn: false, head: 'mixture' as const };
    expect(() => native().mlpForward(new Float32Array(10), config, new Float32Array(4), 1, new Float32Array(3))).toThrow(/the network has 30065754115 parameters; the limit is/);
    // the addon still works afterwards
    const out = new Int32Array(1);
    native().assignSync(Float32Array.from([1, 0]), 1, 2, Float32Array.from([0, 0, 1, 0]), 2, out, null);
    expect(out[0]).toBe(1);
  });
});

describe('buffers detached while the engine works (async calls read and write copies)', () => {
  const detach = (a: ArrayBufferView) => structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });

  it('k-means on points whose buffer is transferred right after the call gives the same result as without', async () => {
    const n = 4000;
    const d = 32;
    const X = gaussian(n * d, 21);
    const want = await native().kmeans(X.slice(), n, d, 12, { seed: 3, nInit: 2 });
    const pending = native().kmeans(X, n, d, 12, { seed: 3, nInit: 2 });
    detach(X);
    expect(X.byteLength).toBe(0);
    const got = await pending;
    expect(got.centroids).toEqual(want.centroids);
    expect(got.assignments).toEqual(want.assignments);
  });

  it('routing vectors: a detached input still routes; a detached output rejects with DETACHED_BUFFER, never writes', async () => {
    const n = 3000;
    const d = 16;
    const k = 5;
    const m = 3;
    const args = () => ({
      embeddings: gaussian(n * d, 5),
      dim: d,
      centroids: gaussian(k * d, 6),
      k,
      psi: Float32Array.from({ length: m * k }, (_, i) => ((i * 7) % 10) / 10),
      cost: Float32Array.from([1, 2, 3]),
      m,
      lambda: 0.01,
      choice: new Int32Array(n),
      cluster: new Int32Array(n),
      distance: new Float32Array(n),
    });
    const ref = args();
    await native().routeVectors(ref);
    const a = args();
    const p = native().routeVectors(a)!;
    detach(a.embeddings);
    detach(a.centroids);
    await p;
    expect(a.choice).toEqual(ref.choice);
    expect(a.cluster).toEqual(ref.cluster);
    const b = args();
    const q = native().routeVectors(b)!;
    detach(b.choice);
    await expect(q).rejects.toMatchObject({ code: 'DETACHED_BUFFER' });
  });
});

describe('the thread pool', () => {
  it('k-means and vector routing give identical results on 1 and 2 threads, on inputs that use every thread', async () => {
    const n = 20_000;
    const d = 24;
    const X = gaussian(n * d, 8);
    const k = 16;
    const routeOn = async (threads: number) => {
      native().setThreads(threads);
      const out = { choice: new Int32Array(n), cluster: new Int32Array(n), distance: new Float32Array(n) };
      const psi = Float32Array.from({ length: 4 * k }, (_, i) => ((i * 13) % 17) / 17);
      await native().routeVectors({ embeddings: X, dim: d, centroids: X.subarray(0, k * d), k, psi, cost: Float32Array.from([1, 2, 3, 4]), m: 4, lambda: 0.02, ...out });
      return out;
    };
    try {
      native().setThreads(1);
      const one = await native().kmeans(X, n, d, k, { seed: 4, nInit: 2 });
      native().setThreads(2);
      const two = await native().kmeans(X, n, d, k, { seed: 4, nInit: 2 });
      expect(two.centroids).toEqual(one.centroids);
      expect(two.assignments).toEqual(one.assignments);
      expect(two.inertia).toBe(one.inertia);
      const r1 = await routeOn(1);
      const r2 = await routeOn(2);
      expect(r2).toEqual(r1);
    } finally {
      native().setThreads(0);
    }
  });
});

describe('concurrent calls share the worker pool safely', () => {
  it('four k-means and four vector routes at once give what each gives alone', async () => {
    const n = 6000;
    const d = 32;
    const sets = [0, 1, 2, 3].map((s) => gaussian(n * d, 100 + s));
    const alone = [];
    for (const X of sets) alone.push(await native().kmeans(X, n, d, 9, { seed: 2, nInit: 2 }));
    const together = await Promise.all(sets.map((X) => native().kmeans(X, n, d, 9, { seed: 2, nInit: 2 })));
    together.forEach((r, i) => {
      expect(r.centroids).toEqual(alone[i].centroids);
      expect(r.assignments).toEqual(alone[i].assignments);
    });
    const route = (X: Float32Array) => {
      const out = { choice: new Int32Array(n), cluster: new Int32Array(n), distance: new Float32Array(n) };
      const k = 9;
      return native()
        .routeVectors({ embeddings: X, dim: d, centroids: alone[0].centroids, k, psi: Float32Array.from({ length: 3 * k }, (_, i) => (i % 7) / 7), cost: Float32Array.from([1, 2, 3]), m: 3, lambda: 0.05, ...out })!
        .then(() => out);
    };
    const one = [];
    for (const X of sets) one.push(await route(X));
    const all = await Promise.all(sets.map(route));
    all.forEach((r, i) => expect(r).toEqual(one[i]));
  });
});
