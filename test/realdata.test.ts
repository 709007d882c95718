/** The real-data sequence on ../shared/data/routerbench (skipped, with a message, where it is absent). */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadDataset, permutation, costPerQuery } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { HAS_SHARED_DATA, SHARED_DATA, SKIP_REASON } from './helpers.js';

if (!HAS_SHARED_DATA) console.warn(SKIP_REASON);

describe.skipIf(!HAS_SHARED_DATA)('routerbench: fit on 5 LLMs, onboard 6 unseen from 600 validation prompts, route 1,000 others', () => {
  it('every decision is valid and in input order; lambda = 0 routing is within 3 points of the best unseen LLM', async () => {
    const ds = await loadDataset(join(SHARED_DATA, 'routerbench'));
    expect(ds.prompts.length).toBe(3164);
    expect(ds.models.length).toBe(11);
    const perm = permutation(ds.prompts.length, 11);
    const fitIdx = perm.subarray(0, 1564);
    const valIdx = perm.subarray(1564, 2164);
    const testIdx = perm.subarray(2164, 3164);
    const train = ds.models.slice(0, 5);
    const unseen = ds.models.slice(5);
    // fit only on the first prompts: a dataset view restricted to them
    const sub = { ...ds, prompts: Array.from(fitIdx, (i) => ds.prompts[i]) };
    sub.outcomes = new Map([...ds.outcomes].map(([m, o]) => [m, Float32Array.from(fitIdx, (i) => o[i])]));
    const { router } = await fitRouter(sub, { trainModels: train, seed: 1 });
    for (const m of unseen) {
      const o = ds.outcomes.get(m)!;
      await router.addModel(m, {
        costPerQuery: costPerQuery(ds, m),
        outcomes: Array.from(valIdx, (i) => ({ text: ds.prompts[i].text, correct: o[i] })),
      });
    }
    expect(router.size).toBe(11);
    const texts = Array.from(testIdx, (i) => ds.prompts[i].text);
    const b = await router.routeBatch(texts, { lambda: 0, models: unseen });
    expect(b.choice.length).toBe(1000);
    for (let i = 0; i < 1000; i++) {
      expect(unseen).toContain(b.models[b.choice[i]]);
      expect(b.cluster[i]).toBeGreaterThanOrEqual(0);
      expect(b.cluster[i]).toBeLessThan(router.k);
    }
    // in order: routing prompts one by one gives the same decisions
    const one = await Promise.all(texts.slice(0, 25).map((t) => router.routeBatch([t], { lambda: 0, models: unseen })));
    one.forEach((r, i) => expect(r.models[r.choice[0]]).toBe(b.models[b.choice[i]]));
    // routing among unseen LLMs at lambda = 0 is at least as accurate on test prompts as their best single LLM, less 3 points
    let routed = 0;
    for (let i = 0; i < 1000; i++) routed += ds.outcomes.get(b.models[b.choice[i]])![testIdx[i]];
    const single = Math.max(...unseen.map((m) => Array.from(testIdx).reduce((a, i) => a + ds.outcomes.get(m)![i], 0)));
    expect(routed / 1000).toBeGreaterThan(single / 1000 - 0.03);
  });
});
