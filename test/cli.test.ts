/** The `uniroute` command end to end, as a user runs it (a child process per command). */
import { describe, expect, it, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeSyntheticDataset, randomTexts, startServe, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
const run = (args: string[], input?: string) => {
  const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args], { input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

let tmp: string;
let data: string;
let routerFile: string;

beforeAll(() => {
  if (!existsSync(resolve(__dirname, '..', 'dist', 'src', 'cli', 'index.js'))) throw new Error('run `npm run build` first');
  tmp = mkdtempSync(join(tmpdir(), 'uniroute-cli-'));
  data = makeSyntheticDataset(450, 8);
  routerFile = join(tmp, 'r.uniroute');
});

describe('uniroute CLI', () => {
  it('--help on every command', () => {
    for (const cmd of [[], ['fit'], ['add-model'], ['remove-model'], ['export'], ['import'], ['feedback'], ['models'], ['suggest-labels'], ['route'], ['eval'], ['serve'], ['info']]) {
      const r = run([...cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/Usage: uniroute/);
    }
  });

  it('--version (and -V) prints the package.json version', () => {
    const { version } = JSON.parse(readFileSync(resolve(__dirname, '..', 'package.json'), 'utf8'));
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toBe(`${version}\n`);
    }
    expect(run(['--help']).out).toMatch(/-V, --version +print the version/);
  });

  it('fit -> add-model -> models -> route -> remove-model', () => {
    const fit = run(['fit', '--data', data, '--train-models', 'cheap-math,big-all,mid-all', '--clusters', '4', '--out', routerFile, '--quiet', '--json']);
    expect(fit.code, fit.err).toBe(0);
    expect(JSON.parse(fit.out).clusters).toBe(4);
    // without --json: a short summary (the chosen K, each LLM's cost and coverage, the operating point), not JSON
    const human = run(['fit', '--data', data, '--train-models', 'cheap-math,big-all,mid-all', '--out', join(tmp, 'h.uniroute'), '--quiet']);
    expect(human.code, human.err).toBe(0);
    expect(human.out).toMatch(/^router {5}.*h\.uniroute, fitted in [0-9.]+ s\nclusters {3}\d+ \(chosen on validation prompts among [0-9, ]+\)/);
    expect(human.out).toMatch(/\nLLM +cost\/query +outcomes +coverage\n/);
    expect(human.out).toMatch(/\ncheap-math +1\.000e-1 +\d+ +100 %/);
    expect(human.out).toMatch(/\noperating  default lambda/);
    expect(() => JSON.parse(human.out)).toThrow();
    const outcomes = randomTexts(90, 5).map((text, i) => JSON.stringify({ text, correct: i % 3 === 1 ? 1 : 0 })).join('\n');
    const outFile = join(tmp, 'outcomes.jsonl');
    writeFileSync(outFile, outcomes);
    const add = run(['add-model', '--router', routerFile, '--name', 'cheap-code', '--outcomes', outFile, '--cost', '0.1']);
    expect(add.code, add.err).toBe(0);
    expect(add.out).toMatch(/^added "cheap-code" -> .*: 90 outcomes \(observed error [0-9.]+\), predicted error [0-9.]+ over the training distribution, cost 1\.000e-1 per query, coverage \d+ % of the prompts\n$/);
    const labels = run(['add-model', '--router', routerFile, '--name', 'cheap-history', '--labels', join(data, 'labels.csv'), '--data', data, '--quiet', '--json']);
    expect(labels.code, labels.err).toBe(0);
    expect(JSON.parse(labels.out).costPerQuery).toBeCloseTo(0.1, 6); // from cost_usd
    const models = run(['models', '--router', routerFile, '--json']);
    expect(models.out.trim().split('\n').map((l) => JSON.parse(l).name)).toEqual(['cheap-math', 'big-all', 'mid-all', 'cheap-code', 'cheap-history']);
    const input = randomTexts(50, 9).map((text, i) => JSON.stringify({ id: `q${i}`, text })).join('\n') + '\n';
    const route = run(['route', '--router', routerFile, '--lambda', '0.1'], input);
    expect(route.code, route.err).toBe(0);
    const lines = route.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual(Array.from({ length: 50 }, (_, i) => `q${i}`));
    for (const l of lines) expect(['cheap-math', 'big-all', 'mid-all', 'cheap-code', 'cheap-history']).toContain(l.model);
    const explained = run(['route', '--router', routerFile, '--explain', '--models', 'big-all,mid-all'], input);
    const first = JSON.parse(explained.out.split('\n')[0]);
    expect(Object.keys(first.candidates)).toHaveLength(5);
    expect(['big-all', 'mid-all']).toContain(first.model);
    // each candidate: predicted error, cost, its outcomes in the prompt's cluster, evidence, a 95 % interval
    for (const c of Object.values<any>(first.candidates)) {
      expect(Object.keys(c).sort()).toEqual(['cost', 'evidence', 'interval', 'outcomes', 'predicted_error']);
      expect(c.interval[0]).toBeLessThanOrEqual(c.predicted_error + 1e-5);
      expect(c.interval[1]).toBeGreaterThanOrEqual(c.predicted_error - 1e-5);
    }
    // risk aversion moves decisions toward LLMs with more evidence (cheap-code has 90 outcomes, the others 100+)
    const risky = run(['route', '--router', routerFile, '--lambda', '0.1', '--risk', '3'], input);
    expect(risky.code, risky.err).toBe(0);
    expect(run(['route', '--router', routerFile, '--risk', '-1'], input).code).not.toBe(0);
    // suggest-labels: deterministic for a seed, no prompt twice, ready to send
    const cand = join(tmp, 'candidates.jsonl');
    writeFileSync(cand, input + input); // every prompt twice: one candidate each
    const s1 = run(['suggest-labels', '--router', routerFile, '--candidates', cand, '--budget', '20', '--model', 'new-llm', '--seed', '4']);
    expect(s1.code, s1.err).toBe(0);
    const picked = s1.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(picked).toHaveLength(20);
    expect(new Set(picked.map((p) => p.id)).size).toBe(20);
    for (const p of picked) expect(typeof p.text).toBe('string');
    expect(run(['suggest-labels', '--router', routerFile, '--candidates', cand, '--budget', '20', '--model', 'new-llm', '--seed', '4']).out).toBe(s1.out);
    expect(run(['suggest-labels', '--router', routerFile, '--candidates', cand, '--budget', '0']).code).not.toBe(0);
    const rm = run(['remove-model', '--router', routerFile, '--name', 'cheap-code']);
    expect(rm.code).toBe(0);
    expect(run(['models', '--router', routerFile, '--json']).out.trim().split('\n')).toHaveLength(4);
  });

  it('bad input lines get error records, the rest is routed, exit status 2', () => {
    const input = ['{"id":"a","text":"Question: integral solve?"}', 'not json', '{"id":"c","text":""}', '{"id":"d"}', '{"id":"e","text":"Question: python loop?"}'].join('\n');
    const r = run(['route', '--router', routerFile, '--quiet'], input);
    expect(r.code).toBe(2);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual(['a', null, 'c', 'd', 'e']);
    expect(lines[1].error.code).toBe('INVALID_ARGUMENT');
    expect(lines[2].error.code).toBe('EMPTY_TEXT');
    expect(lines[4].model).toBeTruthy();
  });

  it('errors are one line with a code and a non-zero status', () => {
    const before = readFileSync(routerFile);
    const emptyFile = join(tmp, 'empty.jsonl');
    writeFileSync(emptyFile, '');
    const cases: Array<[string[], RegExp]> = [
      [['route', '--router', join(tmp, 'missing.uniroute')], /NOT_FOUND/],
      [['route', '--router', routerFile, '--models', 'ghost'], /UNKNOWN_MODEL: .*ghost/],
      [['remove-model', '--router', routerFile, '--name', 'ghost'], /UNKNOWN_MODEL/],
      [['add-model', '--router', routerFile, '--name', 'x', '--outcomes', join(tmp, 'outcomes.jsonl')], /NO_COST/],
      [['add-model', '--router', routerFile, '--name', 'x', '--labels', join(data, 'labels.csv'), '--data', data], /UNKNOWN_MODEL: .*no row for model "x"/],
      [['fit', '--data', join(tmp, 'nowhere'), '--out', join(tmp, 'x')], /BAD_DATASET/],
      [['route', '--router', routerFile, '--lambda', 'abc'], /lambda/],
      // bad values found by the action, and by a subcommand's parser: a message, status 2, before any work
      [['fit', '--data', data, '--clusters', '0', '--out', join(tmp, 'x')], /INVALID_ARGUMENT: --clusters must be a whole number >= 1/],
      [['fit', '--data', data, '--clusters', 'abc', '--out', join(tmp, 'x')], /--clusters/],
      [['fit', '--data', data, '--seed', '-3', '--out', join(tmp, 'x')], /--seed/],
      [['route', '--router', routerFile, '--risk', '-1'], /--risk/],
      [['route', '--router', routerFile, '--tradeoff', '1.5'], /--tradeoff must be in \[0, 1\]/],
      [['route', '--router', routerFile, '--tradeoff', '0.5', '--lambda', '1'], /at most one of --lambda, --tradeoff/],
      [['route', '--router', routerFile, '--max-errors', '-2'], /--max-errors/],
      // every command: a missing file, a file of the wrong type, an empty file, an out-of-range value
      [['fit', '--data', data, '--embeddings', join(data, 'labels.csv'), '--out', join(tmp, 'x')], /labels\.csv:1: malformed JSON/],
      [['add-model', '--router', routerFile, '--name', 'x', '--outcomes', join(tmp, 'none.jsonl'), '--cost', '0.1'], /NOT_FOUND: .*none\.jsonl does not exist/],
      [['add-model', '--router', routerFile, '--name', 'x', '--outcomes', join(data, 'labels.csv'), '--cost', '0.1'], /malformed JSON/],
      [['add-model', '--router', routerFile, '--name', 'x', '--outcomes', emptyFile, '--cost', '0.1'], /needs at least one outcome/],
      [['add-model', '--router', routerFile, '--name', 'x', '--outcomes', emptyFile, '--cost', '-1'], /--cost/],
      [['models', '--router', join(data, 'labels.csv')], /BAD_ARTIFACT: .*labels\.csv is not a valid uniroute router/],
      [['info', '--router', join(tmp, 'none.uniroute')], /NOT_FOUND: cannot read router file/],
      [['eval', '--data', join(tmp, 'nowhere'), '--out', join(tmp, 'e')], /BAD_DATASET/],
      [['eval', '--data', data, '--seeds', '0', '--out', join(tmp, 'e')], /--seeds/],
      [['eval', '--data', data, '--unseen-fraction', '2', '--out', join(tmp, 'e')], /--unseen-fraction must be between 0 and 1/],
      [['serve', '--port', 'abc'], /--port/],
      [['serve', '--config', join(tmp, 'none.yaml')], /NOT_FOUND: cannot read config file/],
      [['suggest-labels', '--candidates', join(tmp, 'none.jsonl'), '--budget', '5'], /NOT_FOUND/],
      [['suggest-labels', '--candidates', emptyFile, '--budget', '5'], /has no candidate prompt/],
      [['suggest-labels', '--candidates', emptyFile, '--budget', '0'], /--budget/],
      [['export', '--router', routerFile, '--pool', 'bogus://x', '--out', join(tmp, 'o')], /pool/i],
      [['import', '--router', join(tmp, 'none.uniroute'), '--pool', 'memory:'], /NOT_FOUND/],
      [['feedback', join(tmp, 'none.jsonl'), '--router', routerFile, '--pool', 'memory:'], /UNIROUTE_FEEDBACK_SECRET|NOT_FOUND/],
      [['route', '--router', routerFile, '--threads', '-1'], /--threads/],
      [['route', '--router', routerFile, '--backend', 'gpu'], /auto, cpu, cuda/],
      // an output that cannot be written: one coded line, no stack trace
      [['route', '--router', routerFile, '--output', '/proc/nonexistent/x'], /IO_ERROR: cannot write \/proc\/nonexistent\/x/],
    ];
    for (const [args, msg] of cases) {
      const r = run(args, '{"id":1,"text":"hello"}\n');
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n').length, r.err).toBeLessThanOrEqual(2);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
      if (/--(clusters|seed|risk)/.test(args.join(' '))) expect(r.code, args.join(' ')).toBe(2);
      // bad option values are refused before any work: no progress line precedes the error
      if (/--(clusters|seed)/.test(args.join(' '))) expect(r.err).not.toMatch(/reading dataset/);
    }
    // the wrong file: it stops after --max-errors bad lines (default 10) with one summary, not one record per line
    const csv = Array.from({ length: 500 }, (_, i) => `p${i},m,1`).join('\n') + '\n';
    const wrong = run(['route', '--router', routerFile], csv);
    expect(wrong.code).toBe(2);
    expect(wrong.out.trim().split('\n')).toHaveLength(10);
    expect(wrong.err).toMatch(/stopped after 10 bad input lines \(--max-errors 10\); the first: line 1: malformed JSON/);
    expect(wrong.err.trim().split('\n')).toHaveLength(1);
    const all = run(['route', '--router', routerFile, '--max-errors', '0'], csv);
    expect(all.out.trim().split('\n')).toHaveLength(500);
    // a few bad lines among good ones are reported per line and the rest routed
    const mixed = run(['route', '--router', routerFile], '{"id":1,"text":"hello"}\nnot json\n{"id":2,"text":"integral"}\n');
    expect(mixed.code).toBe(2);
    expect(mixed.out.trim().split('\n').map((l) => Object.keys(JSON.parse(l)).includes('error'))).toEqual([false, true, false]);
    // an empty input says so
    const empty = run(['route', '--router', routerFile], '');
    expect(empty.code).toBe(0);
    expect(empty.err).toMatch(/no prompt line/);
    expect(readFileSync(routerFile).equals(before)).toBe(true);
  });

  it('everyday edits: --exclude-models, add-model --replace, did-you-mean for LLM names', () => {
    const file = join(tmp, 'edits.uniroute');
    const fit = run(['fit', '--data', data, '--exclude-models', 'cheap-code', '--clusters', '3', '--out', file, '--quiet']);
    expect(fit.code, fit.err).toBe(0);
    const names = run(['models', '--router', file, '--json']).out.trim().split('\n').map((l) => JSON.parse(l).name);
    expect(names).not.toContain('cheap-code');
    expect(names).toHaveLength(4);
    const typo = run(['fit', '--data', data, '--exclude-models', 'cheap-cod', '--out', join(tmp, 'z')]);
    expect(typo.code).not.toBe(0);
    expect(typo.err).toMatch(/did you mean "cheap-code"/);
    const outcomes = join(tmp, 'edit-outcomes.jsonl');
    writeFileSync(outcomes, randomTexts(40, 2).map((text, i) => JSON.stringify({ text, correct: i % 2 })).join('\n'));
    const again = run(['add-model', '--router', file, '--name', 'mid-all', '--outcomes', outcomes, '--cost', '0.3']);
    expect(again.code).not.toBe(0);
    expect(again.err).toMatch(/DUPLICATE_MODEL: .*--replace/);
    const replaced = run(['add-model', '--router', file, '--name', 'mid-all', '--outcomes', outcomes, '--cost', '0.3', '--replace', '--quiet']);
    expect(replaced.code, replaced.err).toBe(0);
    const mid = run(['models', '--router', file, '--json']).out.trim().split('\n').map((l) => JSON.parse(l)).find((m) => m.name === 'mid-all');
    expect(mid.outcomes).toBe(40);
    expect(mid.costPerQuery).toBeCloseTo(0.3, 6);
    // route ends with a summary: prompts, rate, mean cost and predicted error, the mix of LLMs
    const summary = run(['route', '--router', file, '--output', join(tmp, 'routed.jsonl')], randomTexts(30, 4).map((text, i) => JSON.stringify({ id: i, text })).join('\n'));
    expect(summary.code, summary.err).toBe(0);
    expect(summary.err).toMatch(/routed 30 prompts in [0-9.]+ s \([0-9,]+\/s, peak memory [0-9]+ MB\); mean cost [0-9.e+-]+, mean predicted error [0-9.]+; \S+ [0-9.]+ %/);
    const wrong = run(['route', '--router', file, '--models', 'big-al'], '{"id":1,"text":"hello"}\n');
    expect(wrong.err).toMatch(/did you mean "big-all"/);
    const rm = run(['remove-model', '--router', file, '--name', 'Big-All']);
    expect(rm.err).toMatch(/did you mean "big-all"/);
  });

  it('a dataset missing a column is refused with the column named', () => {
    const bad = makeSyntheticDataset(30, 1);
    writeFileSync(join(bad, 'labels.csv'), 'prompt_id,model\np0,a\n');
    const r = run(['fit', '--data', bad, '--out', join(tmp, 'y')]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/BAD_DATASET: .*lacks the column\(s\) correct/);
  });

  it('the built-in default router routes with no --router', () => {
    const r = run(['route', '--quiet'], '{"id":"1","text":"What is 17*23?"}\n');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).model).toBeTruthy();
    const info = JSON.parse(run(['info', '--json']).out);
    expect(info.router.models).toBeGreaterThan(10);
    expect(info.backend).toBe("cpu");
    // without --json: a short summary a person reads, with the operating point in force
    const human = run(['info']).out;
    expect(human.trim().split('\n').length).toBeLessThanOrEqual(10);
    expect(human).toMatch(/pool\s+\d+ LLMs/);
    expect(human).toMatch(/operating\s+default lambda [0-9.]+/);
  });
});

describe('uniroute CLI on your own embeddings', () => {
  it('fit --embeddings, add-model, route {"id","embedding"} lines; wrong sizes refused per line', () => {
    // embeddings: a 3-d one-hot of the prompt's topic plus noise (the synthetic prompts cycle math, code, history)
    const ids = readFileSync(join(data, 'prompts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).id as string);
    const vec = (i: number) => [0, 1, 2].map((t) => (t === i % 3 ? 1 : 0) + 0.01 * Math.sin(i * (t + 1)));
    const embFile = join(tmp, 'emb.jsonl');
    writeFileSync(embFile, ids.map((id, i) => JSON.stringify({ id, embedding: vec(i) })).join('\n'));
    const file = join(tmp, 'pre.uniroute');
    const fit = run(['fit', '--data', data, '--embeddings', embFile, '--embedding-name', 'toy', '--train-models', 'big-all,mid-all', '--clusters', '3', '--out', file, '--quiet']);
    expect(fit.code, fit.err).toBe(0);
    const add = run(['add-model', '--router', file, '--name', 'cheap-math', '--labels', join(data, 'labels.csv'), '--data', data, '--embeddings', embFile, '--quiet']);
    expect(add.code, add.err).toBe(0);
    const info = JSON.parse(run(['info', '--router', file, '--json']).out);
    expect(info.router.embedder).toEqual({ kind: "precomputed", dim: 3, name: "toy" });
    const input = [
      JSON.stringify({ id: 'm', embedding: [1, 0, 0] }),
      JSON.stringify({ id: 'bad', embedding: [1, 0] }),
      JSON.stringify({ id: 'txt', text: 'hello' }),
    ].join('\n');
    const r = run(['route', '--router', file, '--lambda', '0.2', '--quiet'], input);
    expect(r.code).toBe(2);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0].model).toBe('cheap-math');
    expect(lines[1].error.code).toBe('DIMENSION_MISMATCH');
    expect(lines[2].error.code).toBe('INVALID_ARGUMENT');
  });
});

describe('uniroute route --max-cost / --min-accuracy', () => {
  it('calibrates lambda on the first batch and keeps to the budget; conflicting options are refused', () => {
    const input = randomTexts(200, 31).map((text, i) => JSON.stringify({ id: i, text })).join('\n');
    const r = run(['route', '--router', routerFile, '--max-cost', '0.3', '--quiet'], input);
    expect(r.code, r.err).toBe(0);
    const costs = r.out.trim().split('\n').map((l) => JSON.parse(l).cost);
    expect(costs.reduce((a: number, x: number) => a + x, 0) / costs.length).toBeLessThanOrEqual(0.3 + 1e-12);
    const bad = run(['route', '--router', routerFile, '--max-cost', '0.3', '--lambda', '1'], input);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/at most one of --lambda, --tradeoff, --max-cost, --min-accuracy and --max-error/);
  });
});

describe('reading JSONL in bounded memory', () => {
  it('jsonLines: over-long lines are skipped with a clear per-line error, the rest read with their line numbers; CRLF; no final newline', async () => {
    const { jsonLines } = await import('../src/data/jsonl.js');
    const f = join(mkdtempSync(join(tmpdir(), 'uniroute-jsonl-')), 'x.jsonl');
    writeFileSync(f, `{"a":1}\r\n${JSON.stringify({ text: 'x'.repeat(5000) })}\n\n{"a":3}\nnot json\n{"a":5}`);
    const got: Array<{ line: number; rec?: unknown; why?: string }> = [];
    for await (const r of jsonLines(f, 'INVALID_ARGUMENT', { tolerant: true, maxLineBytes: 1000 })) got.push({ line: r.line, rec: r.rec, why: r.why });
    expect(got).toEqual([
      { line: 1, rec: { a: 1 }, why: undefined },
      { line: 2, rec: undefined, why: 'line longer than 1000 bytes' },
      { line: 4, rec: { a: 3 }, why: undefined },
      { line: 5, rec: undefined, why: 'malformed JSON' },
      { line: 6, rec: { a: 5 }, why: undefined },
    ]);
    await expect(async () => {
      for await (const _ of jsonLines(f, 'INVALID_ARGUMENT', { maxLineBytes: 1000 })) void _;
    }).rejects.toThrow(/x\.jsonl:2: line longer than 1000 bytes/);
  });

  it('uniroute route: a 20 MB line with no JSON end is one error in the output, the other prompts are routed', () => {
    const f = join(tmp, 'huge.jsonl');
    writeFileSync(f, `{"id":"a","text":"What is 17*23?"}\n{"id":"b","text":"${'y'.repeat(20 * 2 ** 20)}\n{"id":"c","text":"Write a Python loop."}\n`);
    const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'route', '--input', f], { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 2 ** 20 });
    expect(r.status).toBe(2); // some lines could not be routed: said on stderr, and in their records
    expect(r.stderr).toContain('1 input line(s) could not be routed');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0].model).toBeTypeOf('string');
    expect(lines[1].error.message).toMatch(/line 2: line longer than 16777216 bytes/);
    expect(lines[2].id).toBe('c');
    expect(lines[2].model).toBeTypeOf('string');
  });
});

describe('uniroute route --shard', () => {
  it('N shards route every line exactly once between them; a bad spec is refused', () => {
    const input = randomTexts(25, 31).map((t, i) => JSON.stringify({ id: `q${i}`, text: t })).join('\n') + '\n';
    const ids: string[] = [];
    for (const i of [1, 2, 3]) {
      const r = run(['route', '--shard', `${i}/3`], input);
      expect(r.code, r.err).toBe(0);
      ids.push(...r.out.trim().split('\n').map((l) => JSON.parse(l).id));
    }
    expect(ids.slice().sort()).toEqual(Array.from({ length: 25 }, (_, i) => `q${i}`).sort());
    const whole = run(['route'], input).out.trim().split('\n').map((l) => JSON.parse(l));
    const first = run(['route', '--shard', '1/3'], input).out.trim().split('\n').map((l) => JSON.parse(l));
    expect(first).toEqual(whole.filter((_, i) => i % 3 === 0)); // the same decisions as routing the whole file
    for (const bad of ['0/3', '4/3', '1-3', 'x']) expect(run(['route', '--shard', bad], input).code).not.toBe(0);
  });
});

describe('batch routing streams', () => {
  it('the chunked reader gives exactly what splitting the file gives: multi-byte characters across 1 MB chunk ends, CRLF, blank lines', async () => {
    const { jsonLines } = await import('../src/data/jsonl.js');
    const words = ['plain', 'café', 'naïve', '数学', '🙂 emoji', 'x'.repeat(300), 'Ünïcödé'];
    const lines: string[] = [];
    for (let i = 0; i < 30_000; i++) lines.push(i % 97 === 0 ? '' : JSON.stringify({ id: i, text: `${words[i % words.length]} ${i} ${words[(i * 3) % words.length]}` }) + (i % 13 === 0 ? '\r' : ''));
    const f = join(mkdtempSync(join(tmpdir(), 'uniroute-jsonl-')), 'big.jsonl');
    writeFileSync(f, lines.join('\n'));
    const want = lines.map((l, i) => ({ line: i + 1, l: l.replace(/\r$/, '') })).filter((x) => x.l.trim()).map((x) => ({ line: x.line, rec: JSON.parse(x.l) }));
    const got: Array<{ line: number; rec: unknown }> = [];
    for await (const r of jsonLines(f)) got.push({ line: r.line, rec: r.rec });
    expect(got.length).toBe(want.length);
    expect(got).toEqual(want);
  });

  // A short run ends before the heap reaches its working size, so the baseline is a run long enough to reach it:
  // from there, four times the prompts must not raise the peak. Measured (the built-in router, AMD EPYC):
  // 200 k 161-170 MB, 500 k 171-178 MB, 1 M 177-197 MB, 2 M 179-188 MB; 200 k against 1 M missed 15 % in CI.
  it('uniroute route holds flat memory: 2,000,000 piped prompts peak within 15 % of 500,000 (and under 400 MB)', () => {
    const gen = (n: number) => {
      let s = '';
      for (let i = 0; i < n; i++) s += `{"id":${i},"text":"prompt ${i}: ${['solve the integral of x^2', 'write a python function', 'who won the war of 1812', 'translate to French'][i % 4]}"}\n`;
      return s;
    };
    const peak = (n: number) => {
      const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'route', '--input', '-', '--output', '/dev/null'], { input: gen(n), encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      const m = /routed (\d+) prompts in .*peak memory (\d+) MB/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      expect(Number(m![1])).toBe(n);
      return Number(m![2]);
    };
    const small = peak(500_000);
    const large = peak(2_000_000);
    expect(large).toBeLessThan(400);
    expect(large).toBeLessThan(small * 1.15);
  }, 240_000);
});

describe('one decision shape', () => {
  it('uniroute route lines (with and without --explain) validate against the HTTP decision schema', async () => {
    const { default: Ajv } = await import('ajv');
    const ajv = new (Ajv as any)({ allErrors: true, strict: false });
    const { decisionSchema } = await import('../src/server/schemas.js');
    const input = ['{"id":"a","text":"What is 17*23?"}', '{"id":7,"text":"Write a Python loop over a list."}'].join('\n') + '\n';
    for (const extra of [[], ['--explain']]) {
      const r = run(['route', ...extra], input);
      expect(r.code, r.err).toBe(0);
      const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines).toHaveLength(2);
      for (const d of lines) expect(ajv.validate(decisionSchema, d), JSON.stringify(ajv.errors)).toBe(true);
      if (extra.length) expect(Object.keys(lines[0].candidates).length).toBeGreaterThan(1);
    }
  });
});

// the README's day-one walk-through runs as written in test/docs.test.ts, with every page of docs/

describe('progress on stderr', () => {
  it('says the rate, and the time left when the total is known', async () => {
    const { Progress, formatSeconds } = await import('../src/cli/progress.js');
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = (s: string) => (lines.push(s), true);
    const realNow = Date.now;
    let t = 1_000_000;
    Date.now = () => t;
    try {
      const p = new Progress(true, false);
      p.update('seeds', 0, 10);
      t += 4000;
      p.update('seeds', 2, 10);
      t += 3000;
      p.update('routed', 0);
      t += 2000;
      p.update('routed', 50_000);
    } finally {
      Date.now = realNow;
      (process.stderr as any).write = write;
    }
    // in a log, no "0 done" lines (they would stand just before an error about the input)
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^seeds \[#{5}\.{19}\] 2\/10 \(0\.50\/s, ETA 16 s\)\n$/);
    expect(lines[1]).toMatch(/^routed 50,000 \(25,000\/s\)\n$/);
    expect(formatSeconds(75)).toBe('1 min 15 s');
    expect(formatSeconds(4000)).toBe('1 h 7 min');
  });
});

describe('the library and the CLI write the same decisions', () => {
  it('decisionJson of Router.route equals uniroute route\'s lines, byte for byte, with and without --explain', async () => {
    const { Router, decisionJson } = await import('../src/router/router.js');
    const router = await Router.load(routerFile);
    const texts = randomTexts(12, 88);
    const input = texts.map((text, i) => JSON.stringify({ id: `q${i}`, text })).join('\n') + '\n';
    for (const explain of [false, true]) {
      const cli = run(['route', '--router', routerFile, '--lambda', '0.2', ...(explain ? ['--explain'] : [])], input);
      expect(cli.code, cli.err).toBe(0);
      const lib = (await router.route(texts, { lambda: 0.2 })).map((d, i) => decisionJson(d, explain, `q${i}`));
      expect(cli.out.trim().split('\n')).toEqual(lib);
    }
  });
});

describe('hand-edited inputs: a few bad lines are skipped with a warning, the wrong file stops at --max-errors', () => {
  it('add-model --outcomes and suggest-labels --candidates', () => {
    const file = join(tmp, 'r-bad.uniroute');
    expect(run(['fit', '--data', data, '--clusters', '3', '--out', file, '--quiet']).code).toBe(0);
    const good = randomTexts(60, 3).map((text, i) => JSON.stringify({ text, correct: i % 2 }));
    const outcomes = join(tmp, 'some-bad.jsonl');
    writeFileSync(outcomes, [...good.slice(0, 30), 'not json', JSON.stringify({ text: 'x', correct: 7 }), ...good.slice(30)].join('\n') + '\n');
    const add = run(['add-model', '--router', file, '--name', 'edited', '--outcomes', outcomes, '--cost', '0.2', '--json']);
    expect(add.code, add.err).toBe(0);
    expect(JSON.parse(add.out).outcomes).toBe(60);
    expect(add.err).toMatch(/warning: skipped 2 bad lines of .*some-bad\.jsonl \(the first: .*some-bad\.jsonl:31: malformed JSON\)/);
    const strict = run(['add-model', '--router', file, '--name', 'edited2', '--outcomes', outcomes, '--cost', '0.2', '--max-errors', '1']);
    expect(strict.code).not.toBe(0);
    expect(strict.err).toMatch(/stopped after 1 bad lines .*--max-errors 1/);
    const cands = join(tmp, 'cands.jsonl');
    writeFileSync(cands, [...randomTexts(20, 4).map((text, i) => JSON.stringify({ id: i, text })), '{"text":"no id"}'].join('\n') + '\n');
    const sug = run(['suggest-labels', '--router', file, '--candidates', cands, '--budget', '5']);
    expect(sug.code, sug.err).toBe(0);
    expect(sug.out.trim().split('\n')).toHaveLength(5);
    expect(sug.err).toMatch(/skipped 1 bad line of .*cands\.jsonl \(the first: .*cands\.jsonl:21: needs an "id"\)/);
  });
});
