/**
 * Reading an answer's token usage on the gateway's relay: the strict byte reader (src/server/sse.ts: findUsageBytes
 * for a JSON answer, usageEvents for a stream's usage event) against the same functions reading by JSON.parse
 * (`read: 'parse'`), the way the relay read them before: a JSON answer's last `"usage"` object cut out by a brace
 * count and parsed; a stream event's data line parsed whole, its usage and its `choices` read from the object.
 * Same inputs, same process; both sides' results are checked equal before timing, and each keeps its best of five
 * alternating runs. Nanoseconds per read.
 *   node dist/bench/usage.js [--reads 200000]
 * Writes results/bench/usage.jsonl.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { findUsageBytes, usageEvents } from '../src/server/sse.js';
import { machineInfo } from './machine.js';

const argv = process.argv.slice(2);
const i = argv.indexOf('--reads');
const reads = i >= 0 ? Number(argv[i + 1]) : 200_000;

const content = 'The answer is 391. '.repeat(20);
const openaiUsage = { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 } };
const json = {
  'a JSON answer (the proxy bench stand-in)': JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion', created: 1, model: 'stand-in', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage: { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140 } }),
  "a JSON answer (OpenAI's shape, usage details)": JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion', created: 1, model: 'gpt-4o', choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: openaiUsage, system_fingerprint: 'fp_x' }),
};
const events = {
  "OpenAI's usage chunk (the stand-in's)": `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'stand-in', choices: [], usage: { prompt_tokens: 20, completion_tokens: 120, total_tokens: 140 } })}\n\n`,
  "OpenAI's usage chunk (usage details)": `data: ${JSON.stringify({ id: 'chatcmpl-AbC', object: 'chat.completion.chunk', created: 1733000000, model: 'gpt-4o-2024-08-06', system_fingerprint: 'fp_x', choices: [], usage: openaiUsage })}\n\n`,
  "Anthropic's message_delta": `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}\n\n`,
};

function time(f: () => unknown): number {
  for (let k = 0; k < 20_000; k++) f();
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < reads; k++) f();
  return Number(process.hrtime.bigint() - t0) / reads;
}

function compare(name: string, ours: () => unknown, peer: () => unknown) {
  if (!isDeepStrictEqual(ours(), peer())) throw new Error(`${name}: the byte reader and the parse disagree: ${JSON.stringify(ours())} vs ${JSON.stringify(peer())}`);
  let a = Infinity;
  let b = Infinity;
  for (let r = 0; r < 5; r++) {
    a = Math.min(a, time(ours));
    b = Math.min(b, time(peer));
  }
  return { name: `usage: ${name}`, ns_per_read: Math.round(a), parse_ns_per_read: Math.round(b), speedup: b / a };
}

const rows = [
  ...Object.entries(json).map(([name, text]) => {
    const b = Buffer.from(text);
    return compare(name, () => findUsageBytes(b), () => findUsageBytes(b, 'parse'));
  }),
  ...Object.entries(events).map(([name, text]) => {
    const b = Buffer.from(text);
    return compare(name, () => usageEvents(b), () => usageEvents(b, 'parse'));
  }),
];
const machine = machineInfo();
const lines = rows.map((r) => JSON.stringify({ ...r, machine }));
for (const l of lines) console.log(l);
mkdirSync(join('results', 'bench'), { recursive: true });
writeFileSync(join('results', 'bench', 'usage.jsonl'), lines.join('\n') + '\n');
