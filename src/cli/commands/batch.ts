/**
 * `uniroute batch submit|status|results|cancel|list`: the Batch API from the command line, through a server
 * (--server URL, default $UNIROUTE_URL or http://127.0.0.1:8080; the key in $UNIROUTE_API_KEY) or straight on the
 * pool store (--pool sqlite:PATH | redis://…: a serve or worker process on that store runs the lines). Progress on
 * stderr: lines done, rate, ETA, cost so far.
 */
import { createReadStream, openAsBlob, statSync } from 'node:fs';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { type CliContext, openOutput } from '../shared.js';
import { formatSeconds } from '../progress.js';
import { DEFAULT_BATCH } from '../../batch/config.js';

type Json = Record<string, any>;

/** The Batch API over HTTP or straight on the store. */
interface BatchClient {
  upload(file: string): Promise<Json>;
  create(body: Json): Promise<Json>;
  get(id: string): Promise<Json>;
  list(limit: number): Promise<Json[]>;
  cancel(id: string): Promise<Json>;
  content(fileId: string): Promise<Readable>;
  close(): Promise<void>;
}

function httpClient(base: string, key: string | undefined): BatchClient {
  const url = base.replace(/\/+$/, '');
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    let r: Response;
    try {
      r = await fetch(`${url}${path}`, { method, headers: { ...headers, ...(body && !(body instanceof FormData) ? { 'content-type': 'application/json' } : {}) }, body: body instanceof FormData ? body : body ? JSON.stringify(body) : undefined });
    } catch (e) {
      throw new UnirouteError('IO_ERROR', `cannot reach ${url}: ${(e as Error & { cause?: Error }).cause?.message ?? (e as Error).message} (start one with \`uniroute serve\`, or give --server URL or --pool URL)`);
    }
    if (!r.ok) {
      const t = await r.text();
      let msg = t.slice(0, 500);
      try {
        msg = JSON.parse(t).error?.message ?? msg;
      } catch {
        /* not JSON */
      }
      throw new UnirouteError(r.status === 404 ? 'NOT_FOUND' : 'INVALID_ARGUMENT', `${method} ${path}: ${r.status}: ${msg}`);
    }
    return r;
  };
  return {
    async upload(file) {
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('file', await openAsBlob(file), basename(file)); // streamed from disk
      return (await (await call('POST', '/v1/files', form)).json()) as Json;
    },
    create: async (b) => (await (await call('POST', '/v1/batches', b)).json()) as Json,
    get: async (id) => (await (await call('GET', `/v1/batches/${encodeURIComponent(id)}`)).json()) as Json,
    list: async (limit) => ((await (await call('GET', `/v1/batches?limit=${limit}`)).json()) as Json).data,
    cancel: async (id) => (await (await call('POST', `/v1/batches/${encodeURIComponent(id)}/cancel`)).json()) as Json,
    content: async (id) => Readable.fromWeb((await call('GET', `/v1/files/${encodeURIComponent(id)}/content`)).body as any),
    close: async () => undefined,
  };
}

/** Straight on the store (the service loaded only for this: other commands start without it). */
async function storeClient(pool: string, dir: string | undefined): Promise<BatchClient> {
  const { BatchService, batchJson, fileJson } = await import('../../batch/service.js');
  const s = BatchService.open({ pool, cfg: { ...DEFAULT_BATCH, ...(dir ? { dir } : {}) }, role: 'cli' });
  return {
    upload: async (file) => fileJson(await s.upload(createReadStream(file), basename(file), 'batch', null)),
    create: async (b) => batchJson(await s.create(b, null, false)),
    get: async (id) => batchJson(await s.get(id, null, false)),
    list: async (limit) => (await s.list({ limit }, null, false)).map(batchJson),
    cancel: async (id) => batchJson(await s.cancel(id, null, false)),
    content: async (id) => (await s.content(id, null, false)).stream,
    close: () => s.close(),
  };
}

const FINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

const usd = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `$${x < 0.01 ? x.toPrecision(3) : x.toFixed(4)}`);

/** One status line: lines done, rate, ETA, cost so far (and against the reference LLM). */
export function statusLine(b: Json, rate: number): string {
  const c = b.request_counts ?? { total: 0, completed: 0, failed: 0 };
  const done = c.completed + c.failed;
  const w = 24;
  const f = c.total > 0 ? Math.min(1, done / c.total) : 0;
  const bar = '#'.repeat(Math.round(f * w)).padEnd(w, '.');
  const u = b.uniroute ?? {};
  const eta = rate > 0 && done < c.total && !FINAL.has(b.status) ? `, ETA ${formatSeconds((c.total - done) / rate)}` : '';
  const ref = u.reference_llm && u.reference_cost > 0 ? ` (all on ${u.reference_llm}: ${usd(u.reference_cost)})` : '';
  return `${b.id} ${b.status} [${bar}] ${done}/${c.total}${c.failed ? ` (${c.failed} failed)` : ''}${rate > 0 ? ` ${rate >= 100 ? Math.round(rate) : rate.toPrecision(2)} lines/s${eta}` : ''} cost ${usd(u.cost)}${ref}`;
}

async function follow(client: BatchClient, id: string, quiet: boolean, everyMs = 1000): Promise<Json> {
  const tty = !!process.stderr.isTTY;
  let first: { at: number; done: number } | undefined;
  let lastPrint = 0;
  for (;;) {
    const b = await client.get(id);
    const done = b.request_counts.completed + b.request_counts.failed;
    const now = Date.now();
    first ??= { at: now, done };
    const rate = now - first.at >= 1000 ? ((done - first.done) * 1000) / (now - first.at) : 0;
    const final = FINAL.has(b.status);
    if (!quiet && (tty || final || now - lastPrint >= 5000)) {
      lastPrint = now;
      process.stderr.write(tty ? `\r\x1b[2K${statusLine(b, rate)}${final ? '\n' : ''}` : `${statusLine(b, rate)}\n`);
    }
    if (final) return b;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function registerBatch(program: Command, { io, quiet }: CliContext): void {
  const cmd = program.command('batch').description('the Batch API: submit a JSONL file of requests, each line routed and sent to its LLM; follow it, fetch its results, cancel it');
  const where = (c: Command) =>
    c
      .option('--server <url>', 'a uniroute server (default $UNIROUTE_URL or http://127.0.0.1:8080); its key in $UNIROUTE_API_KEY')
      .option('--pool <url>', 'straight on the pool store instead (sqlite:PATH or redis://HOST:PORT/DB): a serve or worker process on it runs the lines')
      .option('--batch-dir <dir>', 'with --pool: the batch folder (as the servers have it)');
  const clientOf = (o: { server?: string; pool?: string; batchDir?: string }): BatchClient | Promise<BatchClient> => {
    if (o.server && o.pool) throw new UnirouteError('INVALID_ARGUMENT', 'give --server or --pool, not both');
    if (o.pool) return storeClient(o.pool, o.batchDir);
    return httpClient(o.server ?? process.env.UNIROUTE_URL ?? 'http://127.0.0.1:8080', process.env.UNIROUTE_API_KEY);
  };
  const run = async (o: Json, fn: (c: BatchClient) => Promise<void>) => {
    const c = await clientOf(o);
    try {
      await fn(c);
    } finally {
      await c.close();
    }
  };

  where(
    cmd
      .command('submit <file>')
      .description('upload a JSONL file ({"custom_id", "method": "POST", "url", "body"} per line; body.model "uniroute", a preset or an LLM) and start its batch; prints the batch id')
      .option('--endpoint <path>', '/v1/chat/completions or /v1/messages', '/v1/chat/completions')
      .option('--window <hours>', 'completion window', '24h')
      .option('--metadata <k=v...>', 'metadata (up to 16)')
      .option('--wait', 'follow it to the end with a progress bar (lines, rate, ETA, cost)'),
  ).action(async (file: string, o) =>
    run(o, async (c) => {
      try {
        statSync(file);
      } catch {
        throw new UnirouteError('NOT_FOUND', `cannot read ${file}`);
      }
      const f = await c.upload(file);
      const metadata = o.metadata ? Object.fromEntries((o.metadata as string[]).map((kv) => [kv.split('=')[0], kv.slice(kv.indexOf('=') + 1)])) : undefined;
      const b = await c.create({ input_file_id: f.id, endpoint: o.endpoint, completion_window: o.window, ...(metadata ? { metadata } : {}) });
      io.stdout.write(`${b.id}\n`);
      if (!quiet()) process.stderr.write(`${basename(file)}: ${f.bytes} bytes, ${b.request_counts.total} lines -> ${b.id}\n`);
      if (o.wait) {
        const end = await follow(c, b.id, quiet());
        if (end.status !== 'completed') process.exitCode = 1;
      }
    }),
  );

  where(cmd.command('status <id>').description("a batch's status, counts and cost (--wait: follow it to the end)").option('--wait', 'follow it with a progress bar').option('--json', 'the Batch object as JSON')).action(async (id: string, o) =>
    run(o, async (c) => {
      const b = o.wait ? await follow(c, id, quiet()) : await c.get(id);
      io.stdout.write(o.json ? `${JSON.stringify(b, null, 2)}\n` : `${statusLine(b, 0)}\n`);
    }),
  );

  where(
    cmd
      .command('results <id>')
      .description("a finished batch's output lines (stdout or --out), and its error lines (--errors)")
      .option('--out <file>', 'write the output lines here')
      .option('--errors <file>', 'write the error lines here'),
  ).action(async (id: string, o) =>
    run(o, async (c) => {
      const b = await c.get(id);
      if (!FINAL.has(b.status)) throw new UnirouteError('INVALID_ARGUMENT', `${id} is ${b.status} (${b.request_counts.completed + b.request_counts.failed}/${b.request_counts.total} lines): wait for it (uniroute batch status ${id} --wait)`);
      if (b.output_file_id) await pipeline(await c.content(b.output_file_id), o.out ? await openOutput(o.out) : io.stdout, ...(o.out ? [] : [{ end: false }] as never[]));
      if (o.errors && b.error_file_id) await pipeline(await c.content(b.error_file_id), await openOutput(o.errors));
      if (!quiet()) process.stderr.write(`${statusLine(b, 0)}\n${b.error_file_id && !o.errors ? `${b.request_counts.failed} error lines: --errors FILE writes them\n` : ''}`);
    }),
  );

  where(cmd.command('cancel <id>').description('cancel a batch: no new line is sent; the lines answered so far stay in its output')).action(async (id: string, o) =>
    run(o, async (c) => {
      const b = await c.cancel(id);
      io.stdout.write(`${statusLine(b, 0)}\n`);
    }),
  );

  where(cmd.command('list').description('the latest batches').option('--limit <n>', 'how many', '20')).action(async (o) =>
    run(o, async (c) => {
      for (const b of await c.list(Number(o.limit) || 20)) io.stdout.write(`${statusLine(b, 0)}\n`);
    }),
  );
}
