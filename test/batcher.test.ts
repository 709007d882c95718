/**
 * The gateway's micro-batcher on the built-in router: with the default 0 ms window the prompts that arrive in one
 * event-loop turn go to the engine as one batch (and a lone prompt is not held back); each request gets its own
 * row, the same decision as routing it alone; a longer window gathers prompts across turns.
 */
import { describe, expect, it } from 'vitest';
import { MicroBatcher } from '../src/server/batcher.js';
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
});
