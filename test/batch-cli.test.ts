/**
 * `uniroute batch` end to end: submit with a progress bar through a server (--server) and straight on the pool
 * store (--pool sqlite:, run by the server on that store), status, results into files, cancel, and the errors a
 * user sees (a batch that does not exist, results asked too early).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { batchLines, startStandIn, type StandIn } from '../bench/batch-standin.js';
import { makeSyntheticDataset, startServe, NODE_CLI_FLAGS } from './helpers.js';

let dir: string;
let routerPath: string;
let up: StandIn;
let serve: Awaited<ReturnType<typeof startServe>>;
let pool: string;

const cli = (args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number; out: string; err: string }>((ok) => {
    const p = spawn(process.execPath, [...NODE_CLI_FLAGS, resolve(__dirname, '..', 'bin', 'uniroute.js'), ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => ok({ code: code ?? -1, out, err }));
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'uniroute-batch-cli-'));
  const ds = await loadDataset(makeSyntheticDataset(450, 5));
  routerPath = join(dir, 'r.uniroute');
  await (await fitRouter(ds, { seed: 1, clusters: 4, embedder: { bucketsLog2: 13, dim: 32 } })).router.save(routerPath);
  up = await startStandIn({ delayMs: 5 });
  const cfg = join(dir, 'gw.json');
  writeFileSync(cfg, JSON.stringify({ upstreams: Object.fromEntries(['cheap-math', 'cheap-code', 'mid-all', 'big-all', 'cheap-history'].map((n) => [n, { base_url: up.url, price: { input_per_1m: 1, output_per_1m: 2 } }])), batch: { dir: join(dir, 'b') } }));
  pool = `sqlite:${join(dir, 'pool.db')}`;
  serve = await startServe(['--router', routerPath, '--config', cfg, '--pool', pool]);
});
afterAll(async () => {
  serve?.proc.kill('SIGKILL');
  await up?.close();
});

describe('uniroute batch', () => {
  it('submit --wait through a server: the id on stdout, progress on stderr; status, results and errors into files', async () => {
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, [...batchLines(50, 'uniroute'), 'not json'].join('\n') + '\n');
    const s = await cli(['batch', 'submit', input, '--server', serve.url, '--wait', '--metadata', 'team=qa']);
    expect(s.err).toMatch(/in\.jsonl: \d+ bytes, 51 lines -> batch_[0-9a-f]{24}/);
    expect(s.err).toMatch(/completed \[#{24}\] 51\/51 \(1 failed\).* cost \$/);
    expect(s.code).toBe(0); // completed (with one error line)
    const id = s.out.trim();
    expect(id).toMatch(/^batch_[0-9a-f]{24}$/);
    const st = await cli(['batch', 'status', id, '--server', serve.url, '--json']);
    expect(JSON.parse(st.out)).toMatchObject({ id, status: 'completed', metadata: { team: 'qa' }, request_counts: { total: 51, completed: 50, failed: 1 } });
    const r = await cli(['batch', 'results', id, '--server', serve.url, '--out', join(dir, 'out.jsonl'), '--errors', join(dir, 'err.jsonl')]);
    expect(r.code).toBe(0);
    const out = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out.map((l) => l.custom_id)).toEqual(batchLines(50).map((l) => JSON.parse(l).custom_id));
    expect(JSON.parse(readFileSync(join(dir, 'err.jsonl'), 'utf8')).error).toMatchObject({ code: 'invalid_json_line', line: 51 });
    const toStdout = await cli(['batch', 'results', id, '--server', serve.url]);
    expect(toStdout.out.trim().split('\n')).toHaveLength(50);
    expect(toStdout.err).toMatch(/1 error lines: --errors FILE writes them/);
  });

  it('--pool: submitted straight to the store, run by the server on it; errors say what to do', async () => {
    const input = join(dir, 'in2.jsonl');
    writeFileSync(input, batchLines(20, 'uniroute', 100).join('\n'));
    const s = await cli(['batch', 'submit', input, '--pool', pool, '--batch-dir', join(dir, 'b'), '-q']);
    expect(s.code).toBe(0);
    const id = s.out.trim();
    const w = await cli(['batch', 'status', id, '--pool', pool, '--batch-dir', join(dir, 'b'), '--wait', '-q']);
    expect(w.out).toMatch(new RegExp(`${id} completed .* 20/20`));
    const lst = await cli(['batch', 'list', '--server', serve.url]);
    expect(lst.out).toContain(id);
    const missing = await cli(['batch', 'status', 'batch_000000000000000000000000', '--server', serve.url]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/NOT_FOUND: .*404: no batch "batch_000000000000000000000000"/);
    const down = await cli(['batch', 'status', id, '--server', 'http://127.0.0.1:9']);
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9.*uniroute serve/);
    const both = await cli(['batch', 'status', id, '--server', serve.url, '--pool', pool]);
    expect(both.err).toMatch(/give --server or --pool, not both/);
  });

  it('results of a batch still running: a clear error; cancel stops it', async () => {
    up.setDelay(1500);
    try {
      const input = join(dir, 'in3.jsonl');
      writeFileSync(input, batchLines(2000, 'uniroute', 500).join('\n'));
      const id = (await cli(['batch', 'submit', input, '--server', serve.url, '-q'])).out.trim();
      const early = await cli(['batch', 'results', id, '--server', serve.url]);
      expect(early.code).toBe(1);
      expect(early.err).toMatch(/is (validating|in_progress) .*wait for it \(uniroute batch status .* --wait\)/);
      const c = await cli(['batch', 'cancel', id, '--server', serve.url]);
      expect(c.err + c.out).toMatch(/cancell(ing|ed)/);
      const w = await cli(['batch', 'status', id, '--server', serve.url, '--wait', '-q']);
      expect(w.out).toMatch(/cancelled/);
    } finally {
      up.setDelay(5);
    }
  });
});
