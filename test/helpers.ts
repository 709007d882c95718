/** Test fixtures: a small synthetic dataset in the project's format, written to a temporary folder. */
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mulberry32 } from '../src/engine/reference.js';
import { startLocalRedis, type LocalRedis } from '../bench/redis-server.js';

/** The real data sets: $UNIROUTE_DATA (a copy of your own in the same layout), else ../shared/data beside the clone. */
export const SHARED_DATA = process.env.UNIROUTE_DATA ? resolve(process.env.UNIROUTE_DATA) : resolve(__dirname, '..', '..', 'shared', 'data');
/**
 * The node options the CLI runs with: bin/uniroute.js's shebang line passes them, so a test that starts the CLI with
 * `process.execPath` passes them too (Node 20 can deadlock at exit with concurrent recompilation, nodejs/node#54918;
 * see the bin). Read from the shebang, so the two cannot drift apart.
 */
export const NODE_CLI_FLAGS: string[] = (/^#!\/usr\/bin\/env -S node(.*)$/m.exec(readFileSync(resolve(__dirname, '..', 'bin', 'uniroute.js'), 'utf8').split('\n')[0])?.[1] ?? '')
  .trim()
  .split(/\s+/)
  .filter(Boolean);
export const HAS_SHARED_DATA = existsSync(join(SHARED_DATA, 'routerbench', 'labels.csv'));
export const SKIP_REASON = `real-data tests skipped: ${SHARED_DATA} has no routerbench/ (set UNIROUTE_DATA to a folder holding routerbench/ and zeroeval/)`;

const TOPICS: Record<string, string[]> = {
  math: ['integral', 'derivative', 'equation', 'solve', 'algebra', 'sum', 'prime', 'number', 'fraction', 'compute'],
  code: ['python', 'function', 'return', 'list', 'loop', 'class', 'string', 'array', 'recursion', 'compile'],
  history: ['empire', 'king', 'war', 'century', 'battle', 'treaty', 'dynasty', 'revolution', 'ancient', 'queen'],
};

/** Per-topic accuracy of each synthetic LLM, and its cost per query. */
export const SYNTH_MODELS: Record<string, { acc: Record<string, number>; cost: number }> = {
  'cheap-math': { acc: { math: 0.9, code: 0.2, history: 0.3 }, cost: 0.1 },
  'cheap-code': { acc: { math: 0.2, code: 0.9, history: 0.3 }, cost: 0.1 },
  'mid-all': { acc: { math: 0.6, code: 0.6, history: 0.7 }, cost: 0.5 },
  'big-all': { acc: { math: 0.95, code: 0.95, history: 0.95 }, cost: 2.0 },
  'cheap-history': { acc: { math: 0.1, code: 0.1, history: 0.9 }, cost: 0.1 },
};

export function synthText(topic: string, rand: () => number): string {
  const words = TOPICS[topic];
  const n = 8 + Math.floor(rand() * 10);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(words[Math.floor(rand() * words.length)]);
  return `Question: ${out.join(' ')}?`;
}

export function makeSyntheticDataset(nPrompts = 600, seed = 3, opts: { withCost?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-ds-'));
  const rand = mulberry32(seed);
  const topics = Object.keys(TOPICS);
  const prompts: string[] = [];
  const labels: string[] = [opts.withCost === false ? 'prompt_id,model,correct' : 'prompt_id,model,correct,cost_usd'];
  for (let i = 0; i < nPrompts; i++) {
    const topic = topics[i % topics.length];
    prompts.push(JSON.stringify({ id: `p${i}`, benchmark: topic, text: synthText(topic, rand) }));
    for (const [m, spec] of Object.entries(SYNTH_MODELS)) {
      const correct = rand() < spec.acc[topic] ? 1 : 0;
      labels.push(opts.withCost === false ? `p${i},${m},${correct}` : `p${i},${m},${correct},${spec.cost}`);
    }
  }
  writeFileSync(join(dir, 'prompts.jsonl'), prompts.join('\n') + '\n');
  writeFileSync(join(dir, 'labels.csv'), labels.join('\n') + '\n');
  writeFileSync(
    join(dir, 'models.csv'),
    'model,price_in_usd_per_1m_tokens,price_out_usd_per_1m_tokens\n' +
      Object.keys(SYNTH_MODELS).map((m) => `${m},1,2`).join('\n') + '\n',
  );
  return dir;
}

export function randomTexts(n: number, seed: number): string[] {
  const rand = mulberry32(seed);
  const topics = Object.keys(TOPICS);
  return Array.from({ length: n }, (_, i) => synthText(topics[i % 3], rand) + (i % 7 === 0 ? ' Ünïcode — 数学 ∑' : ''));
}

/**
 * A real redis-server on a free local port, for the tests that need one (stopped by its pid). Absent redis-server:
 * null, and the caller skips with a clear message, except in CI (`CI=true`), where `.ci/run` installs it and a
 * missing one is a failure.
 */
export async function startRedis(opts: { dir?: string; port?: number } = {}): Promise<LocalRedis | null> {
  const redis = await startLocalRedis(opts);
  if (!redis && process.env.CI === 'true') throw new Error('redis-server is missing: .ci/run installs it (apt-get install redis-server)');
  return redis;
}

/**
 * A real `uniroute serve` process on a free port: resolves once it says where it serves, with its stdout and
 * stderr so far (`out()`, `err()`); rejects when it exits first.
 */
export async function startServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ proc: import('node:child_process').ChildProcess; url: string; out: () => string; err: () => string }> {
  const { spawn } = await import('node:child_process');
  const proc = spawn(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  return new Promise((ok, fail) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /serving on (http:\/\/[^\s]+)/.exec(err);
      if (m) ok({ proc, url: m[1], out: () => out, err: () => err });
    });
    proc.on('exit', (c) => fail(new Error(`serve exited early (${c}): ${err}`)));
  });
}
