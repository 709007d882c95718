/**
 * The gateway's micro-batcher on the built-in router: with the default 0 ms window the prompts that arrive in one
 * event-loop turn go to the engine as one batch (and a lone prompt is not held back); each request gets its own
 * row, the same decision as routing it alone; a longer window gathers prompts across turns.
 */
import { describe, expect, it } from 'vitest';
import { MicroBatcher, samePolicy, type Policy } from '../src/server/batcher.js';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { randomTexts } from './helpers.js';

describe('MicroBatcher', async () => {
  const router = await Router.load(defaultRouterPath());
  const texts = randomTexts(24, 11);
  const policy = { lambda: router.defaultLambda, explain: false };

  it('0 ms: one batch for the prompts of one turn, each row its own decision', async () => {
    const sizes: number[] = [];
    const b = new MicroBatcher(() => router, { windowMs: 0, maxBatch: 512, onBatch: (n) => sizes.push(n) });
    const slices = await Promise.all(texts.map((t) => b.route([t], policy)));
    expect(sizes).toEqual([texts.length]);
    const alone = texts.map((t) => router.routeBatchSync([t], policy));
    slices.forEach((s, i) => {
      expect(s.count).toBe(1);
      expect(s.batch.models[s.batch.choice[s.offset]]).toBe(alone[i].models[alone[i].choice[0]]);
      expect(s.batch.cluster[s.offset]).toBe(alone[i].cluster[0]);
    });
    expect(b.pending).toBe(0);
  });

  it('0 ms: prompts of separate turns are separate batches; a lone prompt is answered in the next turn', async () => {
    const sizes: number[] = [];
    const b = new MicroBatcher(() => router, { windowMs: 0, maxBatch: 512, onBatch: (n) => sizes.push(n) });
    const first = await b.route([texts[0]], policy);
    const second = await b.route([texts[1]], policy);
    expect(sizes).toEqual([1, 1]);
    expect(first.batch).not.toBe(second.batch);
    // answered before a 20 ms timer fires: nothing waits for a window
    const won = await Promise.race([b.route([texts[2]], policy).then(() => 'batcher'), new Promise((r) => setTimeout(() => r('timer'), 20))]);
    expect(won).toBe('batcher');
  });

  it('a window gathers prompts across turns, and maxBatch flushes at once', async () => {
    const sizes: number[] = [];
    const b = new MicroBatcher(() => router, { windowMs: 30, maxBatch: 4, onBatch: (n) => sizes.push(n) });
    const a = b.route([texts[0]], policy);
    await new Promise((r) => setImmediate(r));
    const c = b.route([texts[1]], policy);
    await Promise.all([a, c]);
    expect(sizes).toEqual([2]);
    sizes.length = 0;
    await Promise.all(texts.slice(0, 8).map((t) => b.route([t], policy)));
    expect(sizes).toEqual([4, 4]);
  });

  it('requests share a batch only with an equal policy (equal values in separate objects do), each row decided by its own', async () => {
    const sizes: number[] = [];
    const b = new MicroBatcher(() => router, { windowMs: 0, maxBatch: 512, onBatch: (n) => sizes.push(n) });
    const policies: Policy[] = [
      { lambda: 0.5, explain: false },
      { lambda: 0.5, explain: false }, // equal to the first: the same batch
      { lambda: 0.5, explain: false, ood: false },
      { lambda: 0.5, explain: false, risk: 1 },
      { lambda: 50, explain: false },
      { lambda: 0.5, explain: false, ood: { quantile: 0.5, fallback: 'best-overall' } },
      { lambda: 0.5, explain: false, ood: { quantile: 0.5, fallback: 'best-overall' } },
    ];
    const slices = await Promise.all(policies.map((p, i) => b.route([texts[i]], p)));
    expect(sizes.sort()).toEqual([1, 1, 1, 2, 2]);
    slices.forEach((s, i) => {
      const alone = router.routeBatchSync([texts[i]], policies[i]);
      expect(s.batch.models[s.batch.choice[s.offset]]).toBe(alone.models[alone.choice[0]]);
      expect(s.batch.ood[s.offset] ?? 0).toBe(alone.ood[0] ?? 0);
    });
  });

  it('samePolicy compares every field a batch is routed with', () => {
    const base: Policy = { lambda: 1, explain: false };
    expect(samePolicy(base, { lambda: 1, explain: false })).toBe(true);
    expect(samePolicy(base, { lambda: 1, explain: false, risk: 0, evidence: 'prefer', explore: 0 })).toBe(true);
    for (const other of [{ lambda: 2 }, { risk: 0.5 }, { evidence: 'ignore' as const }, { maxError: 0.2 }, { explain: true }, { explore: 0.1 }, { ood: false as const }, { ood: { quantile: 0.9 } }, { ood: { fallback: 'route' } }])
      expect(samePolicy(base, { ...base, ...other })).toBe(false);
    expect(samePolicy({ ...base, ood: { quantile: 0.9, fallback: 'route' } }, { ...base, ood: { quantile: 0.9, fallback: 'route' } })).toBe(true);
    expect(samePolicy({ ...base, ood: false }, { ...base, ood: false })).toBe(true);
  });
});
