/**
 * The day-one rough edges a new user hit (issue 25), each as the user met it: costs, pool URLs, exit statuses,
 * input errors, output and help.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeSyntheticDataset, randomTexts, startServe, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
const run = (args: string[], input?: string, env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args], { input, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

let tmp: string;
let data: string;
let routerFile: string;
const prompts = (n: number, seed: number) => randomTexts(n, seed).map((text, i) => JSON.stringify({ id: `q${i}`, text })).join('\n') + '\n';

beforeAll(() => {
  if (!existsSync(resolve(__dirname, '..', 'dist', 'src', 'cli', 'index.js'))) throw new Error('run `npm run build` first');
  tmp = mkdtempSync(join(tmpdir(), 'uniroute-edges-'));
  data = makeSyntheticDataset(450, 61);
  routerFile = join(tmp, 'r.uniroute');
  const fit = run(['fit', '--data', data, '--train-models', 'cheap-math,big-all,mid-all', '--clusters', '4', '--out', routerFile, '--quiet']);
  if (fit.code !== 0) throw new Error(fit.err);
});

/** A copy of the synthetic dataset with one labels.csv (or models.csv) line replaced. */
function datasetWith(file: 'labels.csv' | 'models.csv', edit: (lines: string[]) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-edit-'));
  cpSync(data, dir, { recursive: true });
  const lines = readFileSync(join(dir, file), 'utf8').trimEnd().split('\n');
  edit(lines);
  writeFileSync(join(dir, file), lines.join('\n') + '\n');
  return dir;
}

describe('bad costs', () => {
  it('a cost_usd of NaN, "abc" or -0.1 is refused with the file, the line and the column (not replaced by a list-price estimate)', () => {
    for (const bad of ['NaN', 'abc', '-0.1']) {
      const dir = datasetWith('labels.csv', (l) => (l[7] = l[7].replace(/,[^,]*$/, `,${bad}`)));
      const r = run(['fit', '--data', dir, '--out', join(tmp, 'x.uniroute'), '--quiet']);
      expect(r.code, bad).toBe(1);
      expect(r.err).toContain(`uniroute: BAD_DATASET: ${join(dir, 'labels.csv')}:8: cost_usd = "${bad}" is not a number >= 0`);
    }
    // the same rule for list prices
    const dir = datasetWith('models.csv', (l) => (l[2] = l[2].replace(/,1,2$/, ',abc,2')));
    const r = run(['fit', '--data', dir, '--out', join(tmp, 'x.uniroute'), '--quiet']);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(dir, 'models.csv')}:3: price_in_usd_per_1m_tokens = "abc" is not a number >= 0`);
    // add-model --labels reads the same rows
    const dir2 = datasetWith('labels.csv', (l) => (l[5] = l[5].replace(/,[^,]*$/, ',oops')));
    const add = run(['add-model', '--router', routerFile, '--out', join(tmp, 'y.uniroute'), '--name', 'cheap-code', '--labels', join(dir2, 'labels.csv'), '--data', dir2]);
    expect(add.code).toBe(1);
    expect(add.err).toContain(`${join(dir2, 'labels.csv')}:6: cost_usd = "oops"`);
  });

  it('--model-cost naming an LLM the dataset does not have is refused before the fit (fit and eval), with a did-you-mean', () => {
    const fit = run(['fit', '--data', data, '--model-cost', 'cheap-mth=0.2', '--out', join(tmp, 'x.uniroute')]);
    expect(fit.code).toBe(2);
    expect(fit.err).toMatch(/UNKNOWN_MODEL: --model-cost "cheap-mth=…": no LLM of that name has outcomes in .* \(did you mean "cheap-math"\?\)/);
    expect(fit.err).not.toMatch(/fitted|embedding/);
    const ev = run(['eval', '--data', data, '--model-cost', 'ghost=1', '--out', join(tmp, 'ev')]);
    expect(ev.code).toBe(2);
    expect(ev.err).toContain('--model-cost "ghost=…"');
  });

  it('NO_COST names --model-cost; eval takes --model-cost and uses it', () => {
    // no cost_usd column, and no list price for cheap-history
    const dir = makeSyntheticDataset(300, 62, { withCost: false });
    const models = readFileSync(join(dir, 'models.csv'), 'utf8').split('\n').filter((l) => !l.startsWith('cheap-history')).join('\n');
    writeFileSync(join(dir, 'models.csv'), models);
    const fit = run(['fit', '--data', dir, '--out', join(tmp, 'nc.uniroute'), '--quiet']);
    expect(fit.code).toBe(1);
    expect(fit.err).toContain('NO_COST: no cost for LLM "cheap-history"');
    expect(fit.err).toContain('--model-cost "cheap-history=USD" (fit, eval)');
    const args = ['eval', '--data', dir, '--seeds', '1', '--methods', 'best-single', '--val-prompts', '50', '--quiet'];
    const without = run([...args, '--out', join(tmp, 'ev0')]);
    expect(without.code).toBe(1);
    expect(without.err).toContain('--model-cost "cheap-history=USD"');
    const withCost = run([...args, '--model-cost', 'cheap-history=0.0425', '--out', join(tmp, 'ev1')]);
    expect(withCost.code, withCost.err).toBe(0);
    expect(readFileSync(join(tmp, 'ev1', 'report.json'), 'utf8')).toContain('0.0425');
  });
});

describe('the proxy price of open LLMs (a documented default)', () => {
  it('an LLM with a parameter count and no list price costs 0.0125 USD per 1M tokens per billion parameters by default; none turns the proxy off', () => {
    // no cost_usd; cheap-history has no list price but 7 billion parameters
    const dir = makeSyntheticDataset(300, 63, { withCost: false });
    const models = readFileSync(join(dir, 'models.csv'), 'utf8').trimEnd().split('\n');
    writeFileSync(join(dir, 'models.csv'), [`${models[0]},params_b`, ...models.slice(1).map((l) => (l.startsWith('cheap-history,') ? 'cheap-history,,,7' : `${l},`))].join('\n') + '\n');
    const fit = run(['fit', '--data', dir, '--clusters', '3', '--out', join(tmp, 'pp.uniroute'), '--quiet', '--json']);
    expect(fit.code, fit.err).toBe(0);
    const cost = JSON.parse(fit.out).models.find((m: { name: string }) => m.name === 'cheap-history').costPerQuery;
    // its prompts' characters / 4 tokens at 0.0125 x 7 USD per 1M tokens, in and out (no output_chars: input alone)
    const texts = readFileSync(join(dir, 'prompts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text as string);
    const expected = texts.reduce((a, t) => a + t.length / 4, 0) / texts.length * 0.0125 * 7 / 1e6;
    expect(cost).toBeCloseTo(expected, 12);
    const other = run(['fit', '--data', dir, '--clusters', '3', '--price-per-billion-params', '0.025', '--out', join(tmp, 'pp2.uniroute'), '--quiet', '--json']);
    expect(JSON.parse(other.out).models.find((m: { name: string }) => m.name === 'cheap-history').costPerQuery).toBeCloseTo(2 * expected, 12);
    const off = run(['fit', '--data', dir, '--price-per-billion-params', 'none', '--out', join(tmp, 'pp3.uniroute'), '--quiet']);
    expect(off.code).toBe(1);
    expect(off.err).toContain('NO_COST: no cost for LLM "cheap-history"');
    expect(off.err).toContain('--price-per-billion-params USD (not none), since its parameter count is known');
    const bad = run(['fit', '--data', dir, '--price-per-billion-params', 'cheap', '--out', join(tmp, 'pp4.uniroute')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--price-per-billion-params must be a number >= 0/);
    expect(run(['fit', '--help']).out).toMatch(/--price-per-billion-params <usd>[\s\S]*none: no proxy \(default 0\.0125/);
  });
});

describe('fit --default-lambda', () => {
  it('fixes the default lambda (models says so, and route without --lambda uses it); a bad value exits 2 before the fit', () => {
    const out = join(tmp, 'dl.uniroute');
    const fit = run(['fit', '--data', data, '--clusters', '3', '--default-lambda', '0', '--out', out, '--quiet']);
    expect(fit.code, fit.err).toBe(0);
    expect(run(['models', '--router', out]).out).toMatch(/^operating {2}default lambda 0 \(fixed; without it, the pool's operating point\)/);
    const input = prompts(20, 5);
    expect(run(['route', '--router', out], input).out).toBe(run(['route', '--router', out, '--lambda', '0'], input).out);
    const bad = run(['fit', '--data', data, '--default-lambda', '-1', '--out', join(tmp, 'dl2.uniroute')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--default-lambda must be a number >= 0/);
  });
});

describe('a closed pipe', () => {
  it('`uniroute models --json | head -1`, run through the bin\'s shebang as npx runs it, ends every time (Node 20 deadlocked at exit in about 1 run in 11 without --no-concurrent-recompilation)', () => {
    expect(NODE_CLI_FLAGS).toContain('--no-concurrent-recompilation');
    const script = `for i in $(seq 1 20); do timeout 20 "${BIN}" models --router "${routerFile}" --json | head -1 > /dev/null; s=\${PIPESTATUS[0]}; [ "$s" = 124 ] && echo "run $i hung"; done; echo done`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 110_000 });
    expect(r.stdout.trim()).toBe('done');
  });
});

describe('pool URLs', () => {
  it('read-only commands (models, route, export) create no store: a missing sqlite file is NOT_FOUND and its folder is not made', () => {
    const missing = join(tmp, 'nowhere', 'sub', 'x.db');
    for (const args of [
      ['models', '--router', routerFile],
      ['route', '--router', routerFile],
      ['export', '--router', routerFile, '--out', join(tmp, 'e.uniroute')],
    ]) {
      const r = run([...args, '--pool', `sqlite:${missing}`], '{"id":1,"text":"hi"}\n');
      expect(r.code, args[0]).toBe(1);
      expect(r.err).toContain(`NOT_FOUND: no pool store at ${missing}: a read-only command does not create one`);
      expect(r.out).toBe('');
    }
    expect(existsSync(join(tmp, 'nowhere'))).toBe(false);
    // a file that is not a pool store is named as such, and left alone
    const notStore = join(tmp, 'not-a-store.db');
    writeFileSync(notStore, 'hello');
    const r = run(['models', '--router', routerFile, '--pool', `sqlite:${notStore}`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/STORE_UNAVAILABLE: cannot read the pool store .*not-a-store\.db: .*is it a uniroute pool store\?/);
    expect(readFileSync(notStore, 'utf8')).toBe('hello');
  });

  it('a store without this model\'s pool is NOT_FOUND for a read-only command; the command that creates it works, then models reads it', () => {
    const store = `sqlite:${join(tmp, 'pool.db')}`;
    const other = join(tmp, 'other.uniroute');
    expect(run(['fit', '--data', data, '--train-models', 'cheap-code,big-all', '--clusters', '3', '--out', other, '--quiet']).code).toBe(0);
    const outcomes = join(tmp, 'o.jsonl');
    writeFileSync(outcomes, randomTexts(40, 3).map((text, i) => JSON.stringify({ text, correct: i % 2 })).join('\n'));
    const add = run(['add-model', '--router', other, '--pool', store, '--name', 'new-llm', '--outcomes', outcomes, '--cost', '0.2', '--quiet']);
    expect(add.code, add.err).toBe(0);
    const none = run(['models', '--router', routerFile, '--pool', store]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/NOT_FOUND: sqlite:.*pool\.db holds no pool for this router's model \([0-9a-f]{12}\); a read-only command does not create one/);
    const some = run(['models', '--router', other, '--pool', store, '--json']);
    expect(some.code, some.err).toBe(0);
    expect(some.out.trim().split('\n').map((l) => JSON.parse(l).name)).toContain('new-llm');
  });

  it('commands that change the pool and exit refuse memory: (the change would be reported with a version and lost)', () => {
    const outcomes = join(tmp, 'o2.jsonl');
    writeFileSync(outcomes, randomTexts(30, 4).map((text, i) => JSON.stringify({ text, correct: i % 2 })).join('\n'));
    for (const args of [
      ['add-model', '--router', routerFile, '--name', 'n', '--outcomes', outcomes, '--cost', '0.1'],
      ['remove-model', '--router', routerFile, '--name', 'mid-all'],
      ['import', '--router', routerFile],
    ]) {
      const r = run([...args, '--pool', 'memory:']);
      expect(r.code, args[0]).toBe(2);
      expect(r.err).toContain(`--pool memory: lives in one process: \`uniroute ${args[0]}\` would report a pool version and lose the change when it exits`);
      expect(r.out).toBe('');
    }
    const fb = join(tmp, 'fb.jsonl');
    writeFileSync(fb, '{"decision_id":"x","correct":1}\n');
    const r = run(['feedback', fb, '--router', routerFile, '--pool', 'memory:'], undefined, { UNIROUTE_FEEDBACK_SECRET: 'a secret of at least sixteen bytes' });
    expect(r.code).toBe(2);
    expect(r.err).toContain('`uniroute feedback` would report a pool version');
    // the router file is untouched and read-only use of memory: still works
    expect(run(['models', '--router', routerFile, '--pool', 'memory:', '--json']).out.trim().split('\n')).toHaveLength(3);
  });
});

describe('exit statuses: a bad option value is status 2, before any work', () => {
  it('route: --tradeoff 2, --min-accuracy 1.5, --max-error -1, --shard 3/2', () => {
    for (const [args, msg] of [
      [['--tradeoff', '2'], /--tradeoff must be in \[0, 1\]/],
      [['--min-accuracy', '1.5'], /--min-accuracy must be in \[0, 1\]/],
      [['--max-error', '-1'], /--max-error must be in \[0, 1\]/],
      [['--shard', '3/2'], /--shard must be I\/N with 1 <= I <= N/],
      [['--shard', 'x'], /--shard must be I\/N/],
    ] as const) {
      const r = run(['route', '--router', routerFile, ...args], prompts(5, 1));
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.out).toBe('');
    }
  });

  it('fit: --clusters more than the train prompts, --out in a missing folder, --data a file, --val-fraction out of (0, 1)', () => {
    const t0 = Date.now();
    const many = run(['fit', '--data', data, '--clusters', '10000', '--out', join(tmp, 'k.uniroute')]);
    expect(many.code).toBe(2);
    expect(many.err).toContain('INVALID_ARGUMENT: --clusters 10000 is more than the 337 train prompts (450 prompts, --val-fraction 0.25); give at most 337, or "auto"');
    expect(many.err).not.toMatch(/embedding|clustering|fitted/);
    const out = run(['fit', '--data', data, '--out', join(tmp, 'missing', 'dir', 'x.uniroute')]);
    expect(out.code).toBe(2);
    expect(out.err).toContain(`NOT_FOUND: --out ${join(tmp, 'missing', 'dir', 'x.uniroute')}: the folder ${join(tmp, 'missing', 'dir')} does not exist`);
    expect(out.err).not.toMatch(/reading dataset|\.tmp/);
    const file = run(['fit', '--data', join(data, 'prompts.jsonl'), '--out', join(tmp, 'f.uniroute')]);
    expect(file.code).toBe(2);
    expect(file.err).toContain(`BAD_DATASET: ${join(data, 'prompts.jsonl')} is a file; --data takes the dataset folder holding prompts.jsonl, labels.csv and models.csv (${data}?)`);
    expect(file.err).not.toContain('prompts.jsonl/prompts.jsonl');
    for (const f of ['1', '0', '1.5']) {
      const r = run(['fit', '--data', data, '--val-fraction', f, '--out', join(tmp, 'v.uniroute')]);
      expect(r.code, f).toBe(2);
      expect(r.err).toMatch(/--val-fraction must be between 0 and 1 \(exclusive\)/);
    }
    expect(Date.now() - t0).toBeLessThan(60_000); // none of them fitted anything
  });

  it('fit --val-fraction 0.95 warns that few train prompts are left, and fits', () => {
    const r = run(['fit', '--data', data, '--val-fraction', '0.95', '--clusters', '3', '--out', join(tmp, 'few.uniroute'), '--quiet']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('uniroute: warning: --val-fraction 0.95 leaves 22 train prompts (they fit the embedder and the clusters) and 428 validation prompts (they describe the LLMs) of 450; with fewer than 50 in a part the router is mostly noise');
    // the default split gets no such warning
    expect(run(['fit', '--data', data, '--clusters', '3', '--out', join(tmp, 'ok.uniroute'), '--quiet']).err).not.toContain('--val-fraction');
  });

  it('serve: --port 99999 is status 2; a port in use is one line in words, status 1', async () => {
    const bad = run(['serve', '--router', routerFile, '--port', '99999']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--port must be a whole number in \[0, 65535\]/);
    const s = await startServe(['--router', routerFile]);
    try {
      const port = new URL(s.url).port;
      const busy = run(['serve', '--router', routerFile, '--port', port]);
      expect(busy.code).toBe(1);
      expect(busy.err.trim()).toBe(`uniroute: IO_ERROR: cannot listen on 127.0.0.1:${port}: another process is listening there (another uniroute serve?); pick another --port, or stop it`);
    } finally {
      s.proc.kill('SIGTERM');
    }
  });
});

describe('input errors', () => {
  it('add-model --outcomes names the file\'s line of a bad outcome, past skipped lines (not its index among the kept ones)', () => {
    const lines = randomTexts(30, 7).map((text, i) => JSON.stringify({ text, correct: i % 2 }));
    lines.splice(0, 0, 'not json');
    lines.splice(4, 0, JSON.stringify({ text: '   ', correct: 1 })); // file line 5: an empty text
    const file = join(tmp, 'bad-outcomes.jsonl');
    writeFileSync(file, lines.join('\n'));
    const r = run(['add-model', '--router', routerFile, '--out', join(tmp, 'a.uniroute'), '--name', 'n', '--outcomes', file, '--cost', '0.1']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain(`skipped 2 bad lines of ${file} (the first: ${file}:1: malformed JSON)`);
    const stop = run(['add-model', '--router', routerFile, '--out', join(tmp, 'a.uniroute'), '--name', 'n', '--outcomes', file, '--cost', '0.1', '--max-errors', '2']);
    expect(stop.code).toBe(1);
    expect(stop.err).toContain('stopped after 2 bad lines');
    const onlyEmpty = join(tmp, 'empty-text.jsonl');
    writeFileSync(onlyEmpty, [JSON.stringify({ text: 'fine question', correct: 1 }), JSON.stringify({ text: '', correct: 0 })].join('\n'));
    const one = run(['add-model', '--router', routerFile, '--out', join(tmp, 'a.uniroute'), '--name', 'n', '--outcomes', onlyEmpty, '--cost', '0.1', '--max-errors', '1']);
    expect(one.err).toContain(`${onlyEmpty}:2: "text" is empty`);
  });

  it('a UTF-8 byte order mark before the first line is not "malformed JSON" (route, add-model)', () => {
    const r = run(['route', '--router', routerFile, '--quiet'], '\ufeff{"id":"a","text":"integral of x"}\n{"id":"b","text":"python loop"}\n');
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['a', 'b']);
    const file = join(tmp, 'bom.jsonl');
    writeFileSync(file, '\ufeff' + randomTexts(20, 9).map((text, i) => JSON.stringify({ text, correct: i % 2 })).join('\n'));
    const add = run(['add-model', '--router', routerFile, '--out', join(tmp, 'b.uniroute'), '--name', 'n', '--outcomes', file, '--cost', '0.1', '--json']);
    expect(add.code, add.err).toBe(0);
    expect(JSON.parse(add.out).outcomes).toBe(20);
    expect(add.err).not.toContain('skipped');
  });

  it('lines without an "id" are routed with a warning naming how many and the first', () => {
    const r = run(['route', '--router', routerFile, '--quiet'], '{"text":"integral"}\n{"id":"x","text":"python"}\n{"text":"history of rome"}\n');
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual([null, 'x', null]);
    expect(r.err).toContain('uniroute: warning: 2 input lines had no "id" (the first: line 1); their decisions carry "id": null');
    expect(run(['route', '--router', routerFile, '--quiet'], '{"id":0,"text":"integral"}\n').err).not.toContain('warning');
  });
});

describe('output', () => {
  it('models writes the operating point and the tradeoff scale to stdout with the table (a pipe keeps them)', () => {
    const r = run(['models', '--router', routerFile]);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^operating  default lambda /);
    expect(r.out).toMatch(/\ntradeoff   --tradeoff t maps onto lambda = /);
    expect(r.out).toMatch(/\nLLM +cost\/query +overall error +outcomes +coverage\ncheap-math +1\.000e-1 +0\.\d{3} +\d+ +\d+ %\n/);
    // --json stays one object per line
    expect(run(['models', '--router', routerFile, '--json']).out.trim().split('\n').map((l) => JSON.parse(l).name)).toEqual(['cheap-math', 'big-all', 'mid-all']);
  });

  it('route prints its summary on stderr when neither stdout nor stderr is a terminal', () => {
    const r = run(['route', '--router', routerFile], prompts(30, 5));
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^routed 30 prompts in [0-9.]+ s \(.*\/s, peak memory \d+ MB\); mean cost [0-9.e+-]+, mean predicted error 0\.\d{3}; /);
    expect(run(['route', '--router', routerFile, '--quiet'], prompts(3, 5)).err).toBe('');
    expect(run(['route', '--router', routerFile], prompts(1, 5)).err).toMatch(/^routed 1 prompt in /);
  });
});

describe('help', () => {
  it('required options are marked; eval --methods lists the methods; --prior-strength says what it shrinks toward; serve --help names the tokens', async () => {
    const fit = run(['fit', '--help']).out;
    expect(fit).toMatch(/--data <dir> +dataset folder \(required\)/);
    expect(fit).toMatch(/--out <file> +where to write the router[^\n]*\n?[^-]*\(required\)/);
    expect(fit).not.toMatch(/--seed <n>[^\n]*\(required\)/);
    expect(fit.replace(/\s+/g, ' ')).toContain("each cluster's error is shrunk toward the LLM's prior there, sigma(cluster difficulty + the LLM's ability)");
    expect(fit).not.toContain("toward the LLM's overall error");
    const { ALL_METHODS, EXTRA_METHODS } = await import('../src/eval/protocol.js');
    const evalHelp = run(['eval', '--help']).out.replace(/\s+/g, ' ');
    for (const m of [...ALL_METHODS, ...EXTRA_METHODS]) expect(evalHelp).toContain(m);
    expect(evalHelp).toMatch(/--model-cost <name=cost>/);
    for (const cmd of ['suggest-labels', 'export', 'feedback']) expect(run([cmd, '--help']).out, cmd).toContain('(required)');
    const serve = run(['serve', '--help']).out;
    for (const v of ['UNIROUTE_ADMIN_TOKEN', 'UNIROUTE_FEEDBACK_TOKEN', 'UNIROUTE_FEEDBACK_SECRET']) expect(serve).toContain(v);
  });

  it('serve warns when the feedback token is set without --pool (feedback would stay off)', async () => {
    const s = await startServe(['--router', routerFile], { UNIROUTE_FEEDBACK_TOKEN: 'tok' });
    try {
      expect(s.err()).toContain('uniroute: warning: UNIROUTE_FEEDBACK_TOKEN is set but there is no --pool: POST /v1/feedback stays off');
    } finally {
      s.proc.kill('SIGTERM');
    }
    const quiet = await startServe(['--router', routerFile]);
    try {
      expect(quiet.err()).not.toContain('warning');
    } finally {
      quiet.proc.kill('SIGTERM');
    }
  });
});
