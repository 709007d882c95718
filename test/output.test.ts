/**
 * What uniroute prints: costs as the shortest decimal that reads back as the same float32, the same bytes from the
 * library, `uniroute route` and `/v1/route`; a one-seed evaluation without "seeds" or "± 0"; progress within a seed;
 * one metric prefix; no log lines for scrapes and probes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { costJson, decisionJson, shortestCost } from '../src/decide/explain.js';
import { Router } from '../src/router/router.js';
import { loadDataset } from '../src/data/dataset.js';
import { evaluate } from '../src/eval/protocol.js';
import { mulberry32 } from '../src/engine/reference.js';
import { makeSyntheticDataset, randomTexts, startServe, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
const run = (args: string[], input?: string) => {
  const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args], { input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
/** Every `"cost":…` of a JSON text, as written. */
const costTexts = (s: string) => [...s.matchAll(/"cost":([^,}]+)/g)].map((m) => m[1]);

let tmp: string;
let data: string;
let routerFile: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'uniroute-output-'));
  data = makeSyntheticDataset(300, 71);
  routerFile = join(tmp, 'r.uniroute');
  // costs that float32 cannot hold exactly: 0.1 is 0.10000000149011612 there, 0.005 is 0.004999999888241291
  const fit = run(['fit', '--data', data, '--clusters', '3', '--model-cost', 'big-all=0.005', '--model-cost', 'mid-all=0.0004', '--out', routerFile, '--quiet']);
  expect(fit.code, fit.err).toBe(0);
});

describe('costs: the shortest decimal that reads back as the same float32', () => {
  it('known values, and values that are not float32 come back as they are', () => {
    expect(shortestCost(Math.fround(0.005))).toBe(0.005);
    expect(String(Math.fround(0.005))).toBe('0.004999999888241291'); // what was printed before
    expect(shortestCost(Math.fround(0.1))).toBe(0.1);
    expect(shortestCost(Math.fround(2.5e-7))).toBe(2.5e-7);
    expect(costJson(Math.fround(0.0004))).toBe('0.0004');
    expect(costJson(Math.fround(1.2345678e-5))).toBe('0.000012345678');
    expect(shortestCost(2)).toBe(2);
    expect(shortestCost(0)).toBe(0);
    expect(shortestCost(0.1 + 0.2)).toBe(0.1 + 0.2); // a double, not a float32: unchanged
  });

  it('for 20,000 random float32 costs: reads back as the same float32, and no decimal with fewer digits does', () => {
    const rand = mulberry32(9);
    const digits = (x: number) => x.toExponential().replace(/e.*$/, '').replace(/[.-]/g, '').length;
    for (let i = 0; i < 20_000; i++) {
      const x = Math.fround(10 ** (-9 + 11 * rand()) * rand());
      if (x === 0) continue;
      const y = shortestCost(x);
      expect(Math.fround(y)).toBe(x);
      const p = digits(y);
      if (p > 1) expect(Math.fround(Number(x.toPrecision(p - 1)))).not.toBe(x);
      expect(costJson(x)).toBe(JSON.stringify(y));
    }
  });

  it('the library, uniroute route (fast path and --explain) and /v1/route write the same cost bytes, none of them float32 noise', async () => {
    const texts = randomTexts(40, 12);
    const input = texts.map((text, i) => JSON.stringify({ id: i, text })).join('\n') + '\n';
    const router = await Router.load(routerFile);
    const srv = await startServe(['--router', routerFile]);
    try {
      for (const lambda of [0, 30, 1e6]) {
        const fast = run(['route', '--router', routerFile, '--lambda', String(lambda), '--quiet'], input);
        expect(fast.code, fast.err).toBe(0);
        const explained = run(['route', '--router', routerFile, '--lambda', String(lambda), '--explain', '--quiet'], input);
        expect(explained.code, explained.err).toBe(0);
        const decisions = await router.route(texts, { lambda });
        const lib = decisions.map((d, i) => decisionJson(d, false, i)).join('\n');
        const libExplained = decisions.map((d, i) => decisionJson(d, true, i)).join('\n');
        const http = await fetch(`${srv.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompts: texts, lambda }) });
        expect(http.status).toBe(200);
        const body = await http.text();
        // the chosen LLM's cost, then (explained) every candidate's: the same sequence everywhere
        expect(costTexts(fast.out)).toEqual(costTexts(lib));
        expect(costTexts(explained.out)).toEqual(costTexts(libExplained));
        expect(costTexts(body)).toEqual(costTexts(libExplained));
        const seen = new Set(costTexts(explained.out));
        expect(seen.size).toBeGreaterThanOrEqual(3);
        for (const c of seen) expect(c, 'no float32 noise').toMatch(/^(0\.1|0\.005|0\.0004|2)$/);
      }
    } finally {
      srv.proc.kill('SIGTERM');
    }
  });
});

describe('uniroute eval output', () => {
  it('one seed: "1 seed", and no sd (no "± 0.0000") in the tables', () => {
    const out = join(tmp, 'ev1');
    const r = run(['eval', '--data', data, '--seeds', '1', '--methods', 'uniroute-kmeans,zero-router,oracle', '--val-prompts', '60', '--out', out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/\n1 seed in [0-9.]+ s -> /);
    expect(r.err).not.toMatch(/1 seeds/);
    expect(r.out).toMatch(/\| uniroute-kmeans \| 0\.\d{4} \| /);
    expect(r.out).not.toContain('±');
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/^1 seed; /m);
    expect(md).not.toContain('±');
    expect(readFileSync(join(out, 'report.html'), 'utf8')).not.toMatch(/1 seeds|± 0\.0/);
    // two seeds keep their spread
    const two = run(['eval', '--data', data, '--seeds', '2', '--methods', 'uniroute-kmeans,zero-router', '--val-prompts', '60', '--out', join(tmp, 'ev2'), '--quiet']);
    expect(two.code, two.err).toBe(0);
    expect(two.out).toMatch(/\| uniroute-kmeans \| 0\.\d{4} ± 0\.\d{4} \| /);
  });

  it('progress within a seed: the embedder, the selection and each method at each validation size, counted to the total', async () => {
    const ds = await loadDataset(data);
    const calls: Array<{ stage: string; done: number; total: number; detail?: string }> = [];
    const report = await evaluate(ds, {
      seeds: 2,
      valPrompts: [30, 60],
      methods: ['uniroute-kmeans', 'zero-router', 'knn'],
      online: { startLabels: 10, explore: [0] },
      onProgress: (stage, done, total, detail) => calls.push({ stage, done, total, detail }),
    });
    // the regret curve ends where the stream of test prompts does (not at the next multiple of 25)
    const curve = report.online!.rates['0'].curve;
    expect(curve[curve.length - 1].prompts).toBe((report.settings as any).split_sizes.test);
    expect((report.settings as any).split_sizes.test % 25).not.toBe(0);
    const total = 2 * (1 + 2 * (1 + 3) + 1);
    expect(calls.every((c) => c.stage === 'evaluating' && c.total === total)).toBe(true);
    const steps = calls.filter((c) => c.detail);
    expect(steps).toHaveLength(total);
    expect(steps.map((c) => c.done)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(calls[calls.length - 1]).toEqual({ stage: 'evaluating', done: total, total, detail: undefined });
    const seed2 = steps.filter((c) => c.detail!.startsWith('seed 2/2: ')).map((c) => c.detail!.slice('seed 2/2: '.length));
    expect(seed2).toEqual([
      'fitting the embedder on the train prompts',
      '30 validation prompts, choosing K and the prior strength',
      '30 validation prompts, uniroute-kmeans',
      '30 validation prompts, knn',
      '30 validation prompts, zero-router',
      '60 validation prompts, choosing K and the prior strength',
      '60 validation prompts, uniroute-kmeans',
      'learning from traffic, greedy',
      '60 validation prompts, knn',
      '60 validation prompts, zero-router',
    ]);
  }, 180_000);

  it('the progress line carries what runs now, after the bar', async () => {
    const { Progress } = await import('../src/cli/progress.js');
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = (s: string) => (lines.push(s), true);
    try {
      const p = new Progress(true, false);
      p.update('evaluating', 3, 10, 'seed 1/2: 400 validation prompts, knn');
      p.update('evaluating', 10, 10);
    } finally {
      (process.stderr as any).write = write;
    }
    expect(lines[0]).toBe('evaluating [#######.................] 3/10: seed 1/2: 400 validation prompts, knn\n');
    expect(lines[1]).toBe('evaluating [########################] 10/10\n');
  });
});

describe('serve: metrics and logs', () => {
  it('one prefix on Node\'s own metrics, and --log writes nothing for scrapes and probes but logs routing', async () => {
    const srv = await startServe(['--router', routerFile, '--log']);
    try {
      for (let i = 0; i < 3; i++) expect((await fetch(`${srv.url}/metrics`)).status).toBe(200);
      const text = await (await fetch(`${srv.url}/metrics`)).text();
      const names = [...new Set(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]))];
      expect(names).toContain('uniroute_process_cpu_seconds_total');
      expect(names).toContain('uniroute_nodejs_eventloop_lag_seconds');
      expect(names.filter((n) => !n.startsWith('uniroute_') || /process_process|nodejs_nodejs|uniroute_process_nodejs/.test(n))).toEqual([]);
      for (const path of ['/healthz', '/readyz']) expect((await fetch(`${srv.url}${path}`)).status).toBe(200);
      const r = await fetch(`${srv.url}/v1/route`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'integral of x' }) });
      expect(r.status).toBe(200);
      const missing = await fetch(`${srv.url}/v1/nothing`);
      expect(missing.status).toBe(404);
      await new Promise((ok) => setTimeout(ok, 300));
      const logged = srv.out().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const urls = logged.map((l) => l.req?.url ?? '').filter(Boolean);
      expect(urls.filter((u: string) => /^\/(metrics|healthz|readyz)/.test(u))).toEqual([]);
      expect(urls).toContain('/v1/route');
      expect(urls).toContain('/v1/nothing');
    } finally {
      srv.proc.kill('SIGTERM');
    }
  });
});
