/**
 * Proxy benchmark: /v1/chat/completions through uniroute (routing every request with the built-in router, then
 * forwarding) against a bare fastify + undici proxy of the same request (parse the body, change "model", forward
 * on a keep-alive undici Pool, stream the answer back with its headers), both in front of the same local stand-in
 * upstream, at 64 connections, non-streaming and streaming, in one run. Each of the three servers is its own
 * process; autocannon drives them from this one.
 *   node dist/bench/proxy.js [--quick] [--connections 64] [--seconds 10] [--rounds 1]
 * With --rounds N the pair is measured N times in each mode, and a summary line per mode gives the median of the N
 * ratios: on a shared machine one pair can land on a busy second. One at a time (the default), both proxies are
 * started once and kept warm, and the pair's order alternates by round (bare first in odd rounds, uniroute first
 * in even ones).
 * uniroute runs its whole gateway path: routing, spend from usage (streams ask the upstream for it and the usage
 * chunk is kept from the client), the metrics and the (no-op) trace spans.
 * With --together both proxies are driven at the same time (each by its own 64 connections) instead of one after
 * the other: on a machine other work shares, both then see the same neighbours, and the scheduler's fair share
 * makes the throughput ratio the ratio of the two proxies' costs per request.
 * Writes results/bench/proxy.jsonl; the goal is >= 0.9x the bare hop's throughput and <= 1.3x its p99.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { Pool } from 'undici';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { buildApp } from '../src/server/app.js';
import { parseConfig } from '../src/server/config.js';
import { passHeaders } from '../src/server/gateway.js';
import { loadSummary, startChild } from './load.js';
import { chatPrompts } from './prompts.js';

const argv = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};

/** The stand-in upstream: a fixed chat completion (~600 bytes), or 8 SSE chunks (and a usage chunk when asked, as OpenAI does) and [DONE]. */
function upstream() {
  const answer = JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1,
    model: 'stand-in',
    choices: [{ index: 0, message: { role: 'assistant', content: 'The answer is 391. '.repeat(20) }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140 },
  });
  const usageChunk = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'stand-in', choices: [], usage: { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140 } })}\n\n`;
  const chunk = (w: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'stand-in', choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const stream = body.includes('"stream":true');
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': String(req.headers['x-request-id'] ?? 'none'), 'x-ratelimit-remaining-requests': '999' });
        for (let i = 0; i < 8; i++) res.write(chunk(`word${i} `));
        if (body.includes('"include_usage":true')) res.write(usageChunk);
        res.end('data: [DONE]\n\n');
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer), 'x-ratelimit-remaining-requests': '999' });
        res.end(answer);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const a = server.address() as { port: number };
    process.send!({ url: `http://127.0.0.1:${a.port}` });
  });
}

/** The peer: a bare fastify + undici proxy doing the same work, with no routing. */
async function bare(up: string) {
  const pool = new Pool(up, { connections: 64, keepAliveTimeout: 30_000 });
  const app = Fastify({ bodyLimit: 4 * 1024 * 1024 });
  app.post<{ Body: Record<string, unknown> }>('/v1/chat/completions', async (req, reply) => {
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...req.body, model: 'stand-in' }) });
    reply.status(res.statusCode).headers(passHeaders(res.headers));
    return reply.send(res.body);
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ url });
}

/** uniroute: the built-in router, every LLM of its pool on the stand-in upstream. */
async function uniroute(up: string) {
  const router = await Router.load(defaultRouterPath());
  // every LLM on the stand-in, with a price: spend is counted from each answer's usage (streams ask for it)
  const config = parseConfig({ upstreams: Object.fromEntries(router.snapshot().names.map((m) => [m, { base_url: `${up}/v1`, model: 'stand-in', max_connections: 64, price: { input_per_1m: 1, output_per_1m: 2 }, stream_usage: process.env.UNIROUTE_BENCH_STREAM_USAGE !== '0' }])) }, 'bench');
  const app = await buildApp({ router, config, batchWindowMs: process.env.UNIROUTE_BENCH_WINDOW ? Number(process.env.UNIROUTE_BENCH_WINDOW) : undefined });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ url });
}

async function start(kind: string, up = ''): Promise<{ proc: ChildProcess; url: string }> {
  // UNIROUTE_PROF=DIR writes a CPU profile of each proxy process there
  const prof = process.env.UNIROUTE_PROF && kind !== 'upstream' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.UNIROUTE_PROF}`] : [];
  return startChild(fileURLToPath(import.meta.url), [kind, up], prof);
}

const cpuOf = (proc: ChildProcess): Promise<number> =>
  new Promise((res) => {
    const on = (m: any) => {
      if (m?.cpu) {
        proc.off('message', on);
        res(m.cpu.user + m.cpu.system);
      }
    };
    proc.on('message', on);
    proc.send('cpu');
  });

async function measure(name: string, proc: ChildProcess, url: string, bodies: string[], connections: number, seconds: number, warm = true) {
  const requests = bodies.map((body) => ({ method: 'POST' as const, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body }));
  if (warm) await autocannon({ url, connections, duration: 1, requests }); // warm-up
  const c0 = await cpuOf(proc);
  const r = await autocannon({ url, connections, duration: seconds, requests });
  const cpu = (await cpuOf(proc)) - c0;
  return {
    ...loadSummary(name, r, connections, seconds),
    /** The proxy process's CPU time per answered request (user + system). */
    cpu_us_per_request: Math.round(cpu / Math.max(1, r.requests.total)),
  };
}

if (argv[0] === '--child') {
  // asked for its CPU time (user + system, µs) after a measurement; a clean exit on SIGTERM (for --cpu-prof)
  process.on('message', (m: any) => m === 'cpu' && process.send!({ cpu: process.cpuUsage() }));
  process.once('SIGTERM', () => process.exit(0));
  if (argv[1] === 'upstream') upstream();
  else if (argv[1] === 'bare') await bare(argv[2]);
  else await uniroute(argv[2]);
} else {
  const quick = argv.includes('--quick');
  const connections = arg('--connections', 64);
  const seconds = arg('--seconds', quick ? 3 : 10);
  const prompts = chatPrompts.slice(0, 8);
  const body = (model: string, stream: boolean) => prompts.map((p) => JSON.stringify({ model, messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: p }], temperature: 0.2, ...(stream ? { stream: true } : {}) }));
  const rounds = arg('--rounds', 1);
  const together = argv.includes('--together');
  const suffix = together ? '-together' : '';
  const up = await start('upstream');
  // both proxies are started once and kept warm: in a fresh process's first seconds both sides cost about 40 % more
  // CPU per request than later, and that part swings the most. One at a time, they are driven in turn, the order
  // alternating by round (bare first in odd rounds, uniroute first in even ones), so that a neighbour's load that
  // grows or fades during the run falls on both sides alike;
  // together: both started once too, kept warm across the rounds, and driven at the same time
  const pair = await Promise.all([start('bare', up.url), start('uniroute', up.url)]);
  const warmed = new Set<string>();
  const results: Array<Record<string, unknown>> = [];
  const ratios: Record<string, Array<{ throughput: number; p99: number; met: boolean }>> = { json: [], stream: [] };
  const load0 = loadavg()[0];
  try {
    for (let round = 1; round <= rounds; round++)
      for (const stream of [false, true]) {
        const tag = stream ? 'stream' : 'json';
        const model = process.env.UNIROUTE_BENCH_MODEL ?? 'uniroute';
        let peer: Awaited<ReturnType<typeof measure>>;
        let ours: Awaited<ReturnType<typeof measure>>;
        const [b, u] = pair;
        const warm = !warmed.has(tag);
        warmed.add(tag);
        if (together) {
          // both at once: the same neighbours for both
          const warmUp = (url: string, m: string) => autocannon({ url, connections, duration: 1, requests: body(m, stream).map((x) => ({ method: 'POST' as const, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: x })) });
          if (warm) await Promise.all([warmUp(b.url, 'any'), warmUp(u.url, model)]);
          [peer, ours] = await Promise.all([measure(`proxy-bare-${tag}-together`, b.proc, b.url, body('any', stream), connections, seconds, false), measure(`proxy-uniroute-${tag}-together`, u.proc, u.url, body(model, stream), connections, seconds, false)]);
        } else {
          // one server driven at a time, so that neither competes with the other for the two cores
          const runBare = () => measure(`proxy-bare-${tag}`, b.proc, b.url, body('any', stream), connections, seconds, warm);
          const runOurs = () => measure(`proxy-uniroute-${tag}`, u.proc, u.url, body(model, stream), connections, seconds, warm);
          if (round % 2 === 1) {
            peer = await runBare();
            ours = await runOurs();
          } else {
            ours = await runOurs();
            peer = await runBare();
          }
        }
        const throughput = ours.req_per_s / peer.req_per_s;
        const p99 = ours.latency_ms.p99 / Math.max(peer.latency_ms.p99, 1);
        const met = throughput >= 0.9 && p99 <= 1.3 && ours.errors === 0 && peer.errors === 0;
        ratios[tag].push({ throughput, p99, met });
        results.push({ ...peer, round }, { ...ours, round }, { name: `proxy-uniroute-vs-bare-${tag}${suffix}`, throughput_ratio: throughput, p99_ratio: p99, round, cpu_ratio: ours.cpu_us_per_request / Math.max(1, peer.cpu_us_per_request), goal: 'throughput >= 0.9x, p99 <= 1.3x, no errors', met, load_1m: loadavg()[0] });
      }
  } finally {
    for (const c of pair) c.proc.kill('SIGTERM');
    up.proc.kill('SIGTERM');
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  if (rounds > 1)
    for (const tag of ['json', 'stream'])
      results.push({
        name: `proxy-uniroute-vs-bare-${tag}${suffix}-median`,
        throughput_ratio: median(ratios[tag].map((r) => r.throughput)),
        p99_ratio: median(ratios[tag].map((r) => r.p99)),
        rounds,
        rounds_met: ratios[tag].filter((r) => r.met).length,
        load_1m: { start: load0, end: loadavg()[0] },
      });
  const machine = { cpu: cpus()[0]?.model, cores: cpus().length };
  const lines = results.map((r) => JSON.stringify({ ...r, machine }));
  for (const l of lines) console.log(l);
  mkdirSync(join('results', 'bench'), { recursive: true });
  writeFileSync(join('results', 'bench', 'proxy.jsonl'), lines.join('\n') + '\n');
}
