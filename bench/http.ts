/**
 * HTTP benchmark: `/v1/route` with one prompt at 64 connections against the router server, and against a plain
 * fastify route of the same shape (same schema, a precomputed response of the same size) in the same run.
 * Each server runs in a child process; autocannon drives it from this one.
 *   node dist/bench/http.js [--quick] [--connections 64] [--seconds 10]
 */
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { readPrompts } from '../src/data/dataset.js';
import { Router } from '../src/router/router.js';
import { defaultRouterPath } from '../src/defaults.js';
import { buildApp } from '../src/server/app.js';
import { loadSummary, startChild } from './load.js';

const argv = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};

async function prompts(): Promise<string[]> {
  const f = resolve(process.env.UNIROUTE_DATA ?? join(process.cwd(), '..', 'shared', 'data'), 'zeroeval', 'prompts.jsonl');
  if (existsSync(f)) return (await readPrompts(f)).map((p) => p.text).filter((t) => t.length >= 300 && t.length <= 900).slice(0, 200);
  return Array.from({ length: 200 }, (_, i) => `Question ${i}: ` + 'compute the integral of the function and explain the steps '.repeat(10));
}

async function child(kind: string) {
  const router = await Router.load(defaultRouterPath());
  let app;
  if (kind === 'server') {
    app = await buildApp({ router });
  } else {
    // the plain route: same schema, a precomputed response of the same shape and size
    const sample = await (await buildApp({ router })).inject({ method: 'POST', url: '/v1/route', payload: { prompt: 'What is 17*23?' } });
    const canned = sample.json();
    app = Fastify({ bodyLimit: 4 * 1024 * 1024 });
    app.post('/v1/route', {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { prompt: { type: 'string' }, prompts: { type: 'array', items: { type: 'string' } }, lambda: { type: 'number', minimum: 0 }, models: { type: 'array', items: { type: 'string' } } },
          oneOf: [{ required: ['prompt'] }, { required: ['prompts'] }],
        },
      },
    }, async () => canned);
  }
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send!({ url });
}

async function measure(kind: string, bodies: string[], connections: number, seconds: number) {
  const { proc, url } = await startChild(fileURLToPath(import.meta.url), [kind]);
  const requests = bodies.map((body) => ({ method: 'POST' as const, path: '/v1/route', headers: { 'content-type': 'application/json' }, body }));
  await autocannon({ url, connections, duration: 1, requests }); // warm-up
  const r = await autocannon({ url, connections, duration: seconds, requests });
  proc.kill('SIGTERM');
  return loadSummary(`http-${kind === 'server' ? 'route' : 'plain'}`, r, connections, seconds);
}

if (argv[0] === '--child') {
  await child(argv[1]);
} else {
  const quick = argv.includes('--quick');
  const connections = arg('--connections', 64);
  const seconds = arg('--seconds', quick ? 3 : 10);
  const texts = await prompts();
  const bodies = texts.map((t) => JSON.stringify({ prompt: t }));
  const meanChars = Math.round(texts.reduce((a, t) => a + t.length, 0) / texts.length);
  const route = await measure('server', bodies, connections, seconds);
  const plain = await measure('plain', bodies, connections, seconds);
  const machine = { cpu: cpus()[0]?.model, cores: cpus().length };
  for (const r of [route, plain]) console.log(JSON.stringify({ ...r, mean_prompt_chars: meanChars, machine }));
  console.log(JSON.stringify({ name: 'http-route-vs-plain', ratio: route.req_per_s / plain.req_per_s }));
}
