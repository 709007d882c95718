/**
 * Decisions that hold on real traffic, on ../shared/data (skipped, with a message, where it is absent): a thin LLM
 * is not trusted like a veteran, a fully described bad and dear LLM is not chosen by an evidence rule, the default
 * point follows the pool, everyday prompts are routed by cost by the built-in router, and the unseen LLMs' intervals
 * cover what their held-out prompts show.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { costPerQuery, loadDataset, permutation } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { Router, explain } from '../src/router/router.js';
import { intervalOf } from '../src/decide/posterior.js';
import { defaultRouterPath } from '../src/defaults.js';
import { evaluate } from '../src/eval/protocol.js';
import { HAS_SHARED_DATA, SHARED_DATA, SKIP_REASON } from './helpers.js';

if (!HAS_SHARED_DATA) console.warn(SKIP_REASON);

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, x) => a + x, 0) / xs.length;

describe.skipIf(!HAS_SHARED_DATA)('decisions on real data', () => {
  it('zeroeval: an LLM added from 12 outcomes, all correct, on one benchmark gets an honest interval, and risk 2 gives it fewer prompts', async () => {
    const ds = await loadDataset(join(SHARED_DATA, 'zeroeval'));
    const { router } = await fitRouter(ds, { seed: 1, pricePerBillionParams: 0.0125 });
    const gsm = [...ds.prompts.keys()].filter((i) => ds.prompts[i].benchmark === 'gsm');
    await router.addModel('thin', { costPerQuery: 1e-7, outcomes: gsm.slice(0, 12).map((i) => ({ text: ds.prompts[i].text, correct: 1 })) });
    // where its outcomes are: every cluster holding its outcomes (the 95 % interval of its error rate there)
    const info = router.models().find((m) => m.name === 'thin')!;
    const veteran = router.models().find((m) => m.name.startsWith('o1-mini'))!;
    const cells = info.counts.map((n, k) => ({ k, n, hi: intervalOf(info.errorVector[k], info.errorSd[k])[1], vet: intervalOf(veteran.errorVector[k], veteran.errorSd[k])[1] })).filter((c) => c.n > 0);
    console.log(`thin LLM, per cluster of its outcomes: ${cells.map((c) => `${c.n} outcome(s): upper ${c.hi.toFixed(3)} (o1-mini ${c.vet.toFixed(3)})`).join('; ')}`);
    // wider than a veteran's everywhere, and at least 0.15 where more than a stray outcome or two fell
    for (const c of cells) expect(c.hi).toBeGreaterThan(c.vet);
    for (const c of cells.filter((x) => x.n >= 2)) expect(c.hi).toBeGreaterThanOrEqual(0.15);
    expect(info.ability.sd).toBeGreaterThan(0.2);
    // over the training distribution it is predicted like an LLM of the pool, not at the 0 its outcomes show
    const others = router.models().filter((m) => m.name !== 'thin').map((m) => m.predictedError).sort((a, b) => a - b);
    const median = others[others.length >> 1];
    console.log(`thin LLM: observed error ${info.overallError.toFixed(3)}, predicted ${info.predictedError.toFixed(3)} over the training distribution (pool median ${median.toFixed(3)})`);
    expect(info.overallError).toBe(0);
    expect(info.predictedError).toBeGreaterThanOrEqual(0.5 * median);
    const next = gsm.slice(100, 400).map((i) => ds.prompts[i].text);
    const share = async (o: { risk: number; tradeoff?: number }) => {
      const b = await router.routeBatch(next, o);
      return b.choice.filter((j) => b.models[j] === 'thin').length;
    };
    // at the default point and along the tradeoff, the first point where it wins prompts: risk 2 gives it fewer
    let shown = false;
    for (const t of [undefined, 0.5, 0.6, 0.7, 0.8, 0.9]) {
      const [r0, r2] = [await share({ risk: 0, tradeoff: t }), await share({ risk: 2, tradeoff: t })];
      console.log(`thin LLM takes ${r0} of 300 GSM8K prompts at ${t === undefined ? 'the default point' : `tradeoff ${t}`}, ${r2} with --risk 2`);
      if (r0 === 0) continue;
      expect(r2).toBeLessThan(r0);
      shown = true;
      break;
    }
    expect(shown).toBe(true);
  }, 300_000);

  it('routerbench: a fully described LLM that is the worst and among the dearest is never chosen at tradeoff 1, rarely at the default point, and the point follows add-model', async () => {
    const ds = await loadDataset(join(SHARED_DATA, 'routerbench'));
    const late = ['claude-v2', 'gpt-4-1106-preview'];
    for (const m of late) expect(ds.models).toContain(m);
    const { router } = await fitRouter(ds, { seed: 1, excludeModels: late });
    const before = router.operatingPoint()!;
    for (const m of late) {
      const o = ds.outcomes.get(m)!;
      await router.addModel(m, { costPerQuery: costPerQuery(ds, m), outcomes: ds.prompts.map((p, i) => ({ text: p.text, correct: o[i] })) });
    }
    const after = router.operatingPoint()!;
    expect(after).not.toEqual(before);
    const idx = permutation(ds.prompts.length, 5).subarray(0, 1000);
    const texts = Array.from(idx, (i) => ds.prompts[i].text);
    const cheapest = router.snapshot().names[router.snapshot().cost.indexOf(Math.min(...router.snapshot().cost))];
    const t1 = await router.routeBatch(texts, { tradeoff: 1 });
    expect(t1.choice.every((j) => t1.models[j] === cheapest)).toBe(true);
    const dflt = await router.routeBatch(texts);
    const zero = await router.routeBatch(texts, { lambda: 0 });
    const claude = dflt.choice.filter((j) => dflt.models[j] === 'claude-v2').length;
    const predErr = (b: typeof dflt) => mean(b.chosenError);
    console.log(
      `after add-model: default lambda ${after.lambda.toPrecision(4)} (was ${before.lambda.toPrecision(4)}); claude-v2 takes ${claude} of 1,000 at the default point; ` +
        `predicted error ${predErr(dflt).toFixed(4)} against ${predErr(zero).toFixed(4)} at lambda 0`,
    );
    expect(claude).toBeLessThanOrEqual(10);
    expect(predErr(dflt) - predErr(zero)).toBeLessThanOrEqual(0.015);
  }, 300_000);

  it('the built-in router: at most 10 of 50 everyday prompts are out of distribution, and routing them costs at most 1.2x routing them with --no-ood', async () => {
    const router = await Router.load(defaultRouterPath());
    const texts = readFileSync(join(__dirname, 'fixtures', 'everyday.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).text as string);
    expect(texts.length).toBe(50);
    const a = await router.routeBatch(texts);
    const b = await router.routeBatch(texts, { ood: false });
    const ood = [...a.ood.keys()].filter((i) => a.ood[i] === 1);
    const cost = (x: typeof a, rows: number[]) => rows.reduce((s, i) => s + x.costs[x.choice[i]], 0);
    console.log(`built-in router: ${ood.length} of 50 everyday prompts out of distribution; their cost ${ood.length ? (cost(a, ood) / cost(b, ood)).toFixed(2) : '-'}x the --no-ood decisions'`);
    expect(ood.length).toBeLessThanOrEqual(10);
    if (ood.length) expect(cost(a, ood)).toBeLessThanOrEqual(1.2 * cost(b, ood) + 1e-12);
    // the explanation says why
    const [d] = explain(await router.routeBatch([texts[ood[0] ?? 0]], { ood: { quantile: 0.5 } }));
    expect(d.ood).toBe(true);
    expect(d.reason).toMatch(/out of distribution/);
  }, 120_000);

  it('routerbench and zeroeval: the unseen LLMs\' 95 % intervals cover 88-99 % of (LLM, cluster) cells at every budget from 10 to 400 validation prompts (3 seeds)', async () => {
    for (const name of ['routerbench', 'zeroeval']) {
      const ds = await loadDataset(join(SHARED_DATA, name));
      const r = await evaluate(ds, { seeds: 3, methods: ['uniroute-kmeans'], valPrompts: [10, 25, 50, 100, 200, 400] });
      const c = r.calibration!;
      console.log(`${name}: coverage of the 95 % predictive intervals by validation prompts: ${Object.entries(c.coverage95).map(([v, x]) => `${v}: ${x.toFixed(3)} (${c.cells[v]} cells)`).join(', ')}`);
      expect(Object.keys(c.coverage95).map(Number)).toEqual([10, 25, 50, 100, 200, 400]);
      for (const [v, x] of Object.entries(c.coverage95)) {
        expect(c.cells[v], `${name} N=${v}`).toBeGreaterThanOrEqual(30);
        expect(x, `${name} N=${v}`).toBeGreaterThanOrEqual(0.88);
        expect(x, `${name} N=${v}`).toBeLessThanOrEqual(0.99);
      }
    }
  }, 300_000);
});
