/**
 * The gateway's pieces on their own: SSE splitting and usage reading (LF and CRLF, events cut anywhere, braces
 * inside strings), the stream translators both ways, the backoff, deployment picking, and the config's new keys
 * with errors that name them.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createServer, request as httpRequest } from 'node:http';
import { SseSplitter, findUsageBytes, hasUsageObject, parseEvents, readUsage, usageEvents, usageIn } from '../src/server/sse.js';
import { AnthropicToChatStream, ChatToAnthropicStream, chatToMessagesRequest, messagesToChatRequest } from '../src/server/anthropic.js';
import { backoffDelay } from '../src/server/call.js';
import { LlmUpstream, SharedPools, passHeaders, passRawHeaders } from '../src/server/gateway.js';
import { PassSink } from '../src/server/relay.js';
import { checkAgainstPool, parseConfig } from '../src/server/config.js';

describe('SSE and usage', () => {
  it('the splitter gives whole events however the bytes are cut (property)', () => {
    const events = ['data: {"a":1}\n\n', 'event: x\ndata: {"b":"\\n\\n"}\n\n', 'data: [DONE]\r\n\r\n', ': comment\n\n'];
    const text = events.join('');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 8 }), (cuts) => {
        const at = [...new Set(cuts)].sort((a, b) => a - b);
        const s = new SseSplitter();
        let out = '';
        let prev = 0;
        for (const c of [...at, text.length]) {
          const w = s.push(Buffer.from(text.slice(prev, c)));
          if (w) {
            expect(/(\n\n|\r\n\r\n)$/.test(w.toString())).toBe(true); // only whole events come out
            out += w.toString();
          }
          prev = c;
        }
        expect(out + (s.rest()?.toString() ?? '')).toBe(text);
      }),
    );
    expect(parseEvents('event: message_start\ndata: {"x":1}\n\ndata: a\ndata: b\n\n')).toMatchObject([{ event: 'message_start', data: '{"x":1}' }, { data: 'a\nb' }]);
  });

  it('finds the usage object from the end, braces in strings skipped; "usage": null is not one', () => {
    const body = Buffer.from(JSON.stringify({ choices: [{ message: { content: 'a "usage": {"prompt_tokens": 99} } {' } }], usage: { prompt_tokens: 12, completion_tokens: 34, prompt_tokens_details: { cached_tokens: 1 } }, system_fingerprint: 'x' }));
    expect(findUsageBytes(body)).toEqual({ input: 12, output: 34 });
    expect(findUsageBytes(Buffer.from('{"usage":null}'))).toBeUndefined();
    expect(hasUsageObject(Buffer.from('data: {"usage":null}\n\n'))).toBe(false);
    expect(hasUsageObject(Buffer.from('data: {"usage": {"x":1}}\n\n'))).toBe(true);
    // Anthropic: input = input + cache creation + cache read
    expect(findUsageBytes(Buffer.from('{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":2,"output_tokens":7}}'))).toEqual({ input: 17, output: 7 });
    // the events carrying usage, LF or CRLF, with their span in the block
    for (const nl of ['\n', '\r\n']) {
      const block = Buffer.from(`data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}${nl}${nl}data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}${nl}${nl}data: [DONE]${nl}${nl}`);
      const evs = usageEvents(block);
      expect(evs).toHaveLength(1);
      expect(evs[0]).toMatchObject({ usage: { input: 3, output: 4 }, usageOnly: true });
      const kept = Buffer.concat([block.subarray(0, evs[0].start), block.subarray(evs[0].end)]).toString();
      expect(kept).toBe(`data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}${nl}${nl}data: [DONE]${nl}${nl}`);
    }
    // events of other shapes (an event line, data over two lines, no space after the colon) are read whole
    const other = Buffer.from('event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\ndata:{"choices":[],\ndata: "usage":{"prompt_tokens":5}}\n\n');
    expect(usageEvents(other).map((e) => e.usage)).toEqual([{ output: 9 }, { input: 5 }]);
    expect(usageEvents(other).map((e) => e.usageOnly)).toEqual([false, true]);
    expect(usageEvents(Buffer.from('data:{"choices":[],"usage":{"prompt_tokens":6}}\r\n\r\n')).map((e) => e.usage)).toEqual([{ input: 6 }]);
  });

  it('the "usage" key is found wherever it is, and only as a whole key (property, against a regex)', () => {
    // texts built from pieces that make near misses: usage" with no quote before, ""usage", the key at index 0
    const piece = fc.constantFrom('"', 'usage', 'usage"', '"usage"', ':', ' ', '{', '}', '1', 'x', 'null', '\n');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), (parts) => {
        const text = parts.join('');
        const b = Buffer.from(text);
        expect(hasUsageObject(b)).toBe(/"usage"[ \t\r\n:]*\{/.test(text));
        // findUsageBytes reads the last key followed by an object: the same as a search from the end by regex
        const keys = [...text.matchAll(/"usage"[ \t\r\n:]*\{/g)];
        if (keys.length === 0) expect(findUsageBytes(b)).toBeUndefined();
      }),
      { numRuns: 2000 },
    );
    expect(findUsageBytes(Buffer.from('"usage":{"prompt_tokens":1}, "usage":{"prompt_tokens":2}'))).toEqual({ input: 2 });
    expect(findUsageBytes(Buffer.from('"usage":{"prompt_tokens":1}, usage":{"prompt_tokens":2}'))).toEqual({ input: 1 });
  });
});

/** The slow reading of one SSE event (JSON.parse of its data), the reference the byte reader must equal. */
function parsedEvent(text: string): { usage: object; usageOnly: boolean } | undefined {
  const data = parseEvents(text)[0]?.data;
  let j: any;
  try {
    j = JSON.parse(data ?? '');
  } catch {
    return undefined;
  }
  return { usage: usageIn(j), usageOnly: !!j && Array.isArray(j.choices) && j.choices.length === 0 };
}

/** The slow reading of a JSON body's usage: the object after the last "usage" key, cut by a brace count, parsed. */
function parsedTail(text: string): object | undefined {
  const keys = [...text.matchAll(/"usage"[ \t\r\n:]*\{/g)];
  if (keys.length === 0) return undefined;
  const at = keys[keys.length - 1].index! + keys[keys.length - 1][0].length - 1;
  let depth = 0;
  let inStr = false;
  for (let j = at; j < text.length; j++) {
    const c = text[j];
    if (inStr) {
      if (c === '\\') j++;
      else if (c === '"') inStr = false;
    } else if (c === '"') inStr = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      try {
        return readUsage(JSON.parse(text.slice(at, j + 1)));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

describe('usage read from the bytes', () => {
  // values a usage field may hold: counts, other numbers (read by JSON.parse, given up on by the byte reader),
  // and what is not a count
  const count = fc.oneof(fc.nat(), fc.nat({ max: 10 }), fc.constantFrom(0, 1e15, 2 ** 53), fc.double({ noNaN: true }), fc.integer({ min: -5, max: -1 }), fc.constant(null), fc.string({ maxLength: 3 }), fc.dictionary(fc.constantFrom('cached_tokens', 'audio_tokens'), fc.nat()));
  const usage = fc.record(
    { prompt_tokens: count, completion_tokens: count, total_tokens: count, input_tokens: count, output_tokens: count, cache_creation_input_tokens: count, cache_read_input_tokens: count, prompt_tokens_details: fc.jsonValue({ maxDepth: 2 }) },
    { requiredKeys: [] },
  );
  const event = fc.record({
    id: fc.string({ maxLength: 8 }),
    choices: fc.oneof(fc.constant([]), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 2 }), fc.constant(null)),
    usage: fc.oneof(usage, fc.constant(null)),
    message: fc.option(fc.record({ usage }), { nil: undefined }),
    extra: fc.jsonValue({ maxDepth: 3 }),
  });

  it('a stream event: the same usage and usage-only flag as parsing it whole (property, any JSON, any spacing)', () => {
    fc.assert(
      fc.property(event, fc.integer({ min: 0, max: 2 }), fc.boolean(), fc.constantFrom('\n\n', '\r\n\r\n'), fc.boolean(), (obj, indent, named, nl, oneLine) => {
        // one data line, or (indented) the JSON's later lines left as lines of their own, which end the data field
        // at its first line: then neither reading may take the usage that follows
        const json = oneLine ? JSON.stringify(obj, null, indent).replace(/\n/g, ' ') : JSON.stringify(obj, null, indent);
        const text = `${named ? 'event: message_delta\n' : ''}data: ${json}${nl}`;
        const evs = usageEvents(Buffer.from(text));
        const want = parsedEvent(text);
        if (!hasUsageObject(Buffer.from(text))) expect(evs).toEqual([]);
        else {
          expect(evs.map((e) => ({ usage: e.usage, usageOnly: e.usageOnly }))).toEqual(want ? [want] : []);
          expect(usageEvents(Buffer.from(text), 'parse')).toEqual(evs); // the bench's reference reads it alike
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('a stream event or a JSON body that is not quite JSON: the same as parsing it (property, one byte changed)', () => {
    const body = JSON.stringify({ id: 'x', choices: [], usage: { prompt_tokens: 12, completion_tokens: 345, total_tokens: 357, prompt_tokens_details: { cached_tokens: 0 } }, x: [true, false, null, -1.5e-3, 'a\\"b\u00e9'] });
    const bytes = [...'{}[]":,. -+eE0159tfnlu\\\n\r\t\u0001x'];
    fc.assert(
      fc.property(fc.integer({ min: 0, max: body.length - 1 }), fc.constantFrom(...bytes), fc.constantFrom('replace', 'insert', 'delete'), (at, c, how) => {
        const t = how === 'delete' ? body.slice(0, at) + body.slice(at + 1) : body.slice(0, at) + c + body.slice(how === 'replace' ? at + 1 : at);
        const text = `data: ${t}\n\n`;
        if (hasUsageObject(Buffer.from(text)) && !/[\r\n]/.test(t)) {
          const evs = usageEvents(Buffer.from(text));
          const want = parsedEvent(text);
          expect(evs.map((e) => ({ usage: e.usage, usageOnly: e.usageOnly }))).toEqual(want ? [want] : []);
        }
        expect(findUsageBytes(Buffer.from(t))).toEqual(parsedTail(t));
        expect(findUsageBytes(Buffer.from(t), 'parse')).toEqual(parsedTail(t));
      }),
      { numRuns: 4000 },
    );
  });

  it('what the byte reader gives up on is read by parsing, with the same result', () => {
    const cases: Array<[string, object]> = [
      ['{"usage":{"prompt_tokens":5,"prompt_tokens":null}}', {}], // a later duplicate wins
      ['{"usage":{"prompt_tokens":null,"prompt_tokens":7}}', { input: 7 }],
      ['{"usage":{"prompt\\u005ftokens":8}}', { input: 8 }], // an escaped key
      ['{"usage":{"prompt_tokens":1e2,"completion_tokens":2.5}}', { input: 100, output: 2.5 }],
      ['{"usage":{"prompt_tokens":-0}}', { input: -0 }],
      ['{"usage":{"prompt_tokens":-1,"output_tokens":3}}', { output: 3 }],
      ['{"usage":{"prompt_tokens":01}}', {}], // not JSON
      ['{"usage":{"prompt_tokens":1234567890123456789}}', { input: 1234567890123456789 }],
      ['{"usage":{"input_tokens":10,"cache_read_input_tokens":3}}', { input: 13 }],
    ];
    for (const [json, want] of cases) {
      const got = findUsageBytes(Buffer.from(json));
      if (Object.keys(want).length === 0) expect(got ?? {}).toEqual({});
      else expect(got).toEqual(want);
      expect(usageEvents(Buffer.from(`data: ${json}\n\n`)).map((e) => e.usage)).toEqual(parsedEvent(`data: ${json}\n\n`) ? [parsedEvent(`data: ${json}\n\n`)!.usage] : []);
    }
    // a top-level usage that is null defers to message.usage (Anthropic's message_start), as usageIn does
    const start = 'event: message_start\ndata: {"type":"message_start","usage":null,"message":{"usage":{"input_tokens":4,"output_tokens":1}}}\n\n';
    expect(usageEvents(Buffer.from(start)).map((e) => e.usage)).toEqual([{ input: 4, output: 1 }]);
  });
});

describe('relaying', () => {
  it("a turn's events go to the client in one socket write (node corks a response per turn), the next turn's in another", async () => {
    const writes: number[] = [];
    let received = '';
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const sock = res.socket as any;
      for (const m of ['_write', '_writev']) {
        const f = sock[m].bind(sock);
        sock[m] = (...a: unknown[]) => (writes.push(m === '_writev' ? (a[0] as unknown[]).length : 1), f(...a));
      }
      const sink = new PassSink(res, { sse: true, stripUsageChunk: true, api: 'openai' });
      for (let i = 0; i < 3; i++) sink.write(Buffer.from(`data: ${i}\n\n`));
      sink.write(Buffer.from('data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5}}\n\n'));
      setImmediate(() => {
        expect(sink.usage).toEqual({ input: 2, output: 5 }); // read, and the usage-only chunk kept from the client
        sink.write(Buffer.from('data: [DONE]\n\n'));
        sink.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ port, host: '127.0.0.1', path: '/' }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d) => (received += d));
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    server.close();
    expect(received).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n');
    // the headers and three events in one write; [DONE] and the end of the chunked body in another
    expect(writes.length).toBe(2);
  });

  it('a JSON answer is written as it comes, never corked, its usage read at the end', async () => {
    const log: string[] = [];
    const res = {
      destroyed: false,
      cork: () => log.push('cork'),
      uncork: () => log.push('uncork'),
      write: (b: Buffer | string) => (log.push(`sent ${b.toString().length}`), true),
      end: () => log.push('end'),
      once: () => undefined,
    };
    const sink = new PassSink(res as any, { sse: false, stripUsageChunk: false, api: 'openai' });
    const body = JSON.stringify({ id: 'x', choices: [{ message: { content: 'hi' } }], usage: { prompt_tokens: 7, completion_tokens: 3 } });
    sink.write(Buffer.from(body.slice(0, 20)));
    sink.write(Buffer.from(body.slice(20)));
    sink.end();
    await new Promise((r) => process.nextTick(r));
    expect(log).toEqual(['sent 20', `sent ${body.length - 20}`, 'end']);
    expect(sink.usage).toEqual({ input: 7, output: 3 });
  });
});

describe('translation', () => {
  it('Anthropic stream events to OpenAI chunks: text, tool calls, finish reason, usage; and back', () => {
    const a = new AnthropicToChatStream(true);
    let out = '';
    out += a.push('message_start', { message: { id: 'msg_1', model: 'claude', usage: { input_tokens: 11, output_tokens: 1 } } });
    out += a.push('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    out += a.push('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hi' } });
    out += a.push('content_block_start', { index: 1, content_block: { type: 'tool_use', id: 'toolu_1', name: 'f' } });
    out += a.push('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"x":1}' } });
    out += a.push('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } });
    out += a.push('message_stop', {});
    const chunks = parseEvents(out).map((e) => (e.data === '[DONE]' ? '[DONE]' : JSON.parse(e.data)));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c: any) => c.choices?.[0]?.delta?.content).filter(Boolean).join('')).toBe('Hi');
    const tool = chunks.flatMap((c: any) => c.choices?.[0]?.delta?.tool_calls ?? []);
    expect(tool[0]).toMatchObject({ index: 0, id: 'toolu_1', function: { name: 'f' } });
    expect(tool.map((t: any) => t.function.arguments).join('')).toBe('{"x":1}');
    expect(chunks.find((c: any) => c.choices?.[0]?.finish_reason)?.choices[0].finish_reason).toBe('tool_calls');
    expect(chunks[chunks.length - 2].usage).toEqual({ prompt_tokens: 11, completion_tokens: 9, total_tokens: 20 });
    expect(chunks[chunks.length - 1]).toBe('[DONE]');

    const c = new ChatToAnthropicStream('m');
    let ev = '';
    ev += c.push({ id: 'chatcmpl-1', model: 'gpt', choices: [{ delta: { role: 'assistant', content: '' } }] });
    ev += c.push({ choices: [{ delta: { content: 'Hel' } }] });
    ev += c.push({ choices: [{ delta: { content: 'lo' } }] });
    ev += c.push({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '{"a"' } }] } }] });
    ev += c.push({ choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: ':2}' } }] } }] });
    ev += c.push({ choices: [{ delta: {}, finish_reason: 'tool_calls' }] });
    ev += c.push({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 6 } });
    ev += c.push(null);
    const events = parseEvents(ev);
    expect(events.map((e) => e.event)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    const delta = JSON.parse(events[9].data);
    expect(delta).toMatchObject({ delta: { stop_reason: 'tool_use' }, usage: { input_tokens: 5, output_tokens: 6 } });
    expect(JSON.parse(events[5].data).content_block).toMatchObject({ type: 'tool_use', id: 'call_1', name: 'f' });
  });

  it('requests: what has no equivalent is dropped or refused in words', () => {
    expect(() => chatToMessagesRequest({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, 'c', 10)).toThrow(/response_format "json_object" is not supported/);
    expect(() => chatToMessagesRequest({ messages: [{ role: 'wizard', content: 'x' }] }, 'c', 10)).toThrow(/messages\[0\]\.role: "wizard"/);
    const r = chatToMessagesRequest({ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }], seed: 3, frequency_penalty: 1, max_tokens: 5, temperature: 1.7 }, 'c', 10);
    expect(r).toEqual({ model: 'c', max_tokens: 5, temperature: 1, messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] });
    const m = messagesToChatRequest({ max_tokens: 9, system: [{ type: 'text', text: 'S' }], messages: [{ role: 'user', content: 'q' }], top_k: 5, stop_sequences: ['Z'], tool_choice: { type: 'auto', disable_parallel_tool_use: true }, tools: [{ name: 't', input_schema: { type: 'object' } }] }, 'g');
    expect(m).toEqual({ model: 'g', max_tokens: 9, stop: ['Z'], messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'q' }], tools: [{ type: 'function', function: { name: 't', parameters: { type: 'object' } } }], tool_choice: 'auto', parallel_tool_calls: false });
  });
});

describe('headers from the raw list', () => {
  it('as passHeaders: hop-by-hop and Connection-named ones out, repeats kept as a list, names lower-cased', () => {
    const raw = ['Content-Type', 'application/json', 'Connection', 'keep-alive, X-Private', 'Keep-Alive', 'timeout=5', 'X-Private', '1', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Transfer-Encoding', 'chunked', 'X-Request-Id', 'r'].map((x) => Buffer.from(x));
    expect(passRawHeaders(raw)).toEqual({ 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'], 'x-request-id': 'r' });
    expect(passHeaders({ 'content-type': 'application/json', connection: 'keep-alive, x-private', 'x-private': '1', 'set-cookie': ['a=1', 'b=2'], 'x-request-id': 'r' })).toEqual({ 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'], 'x-request-id': 'r' });
  });

  it('names seen before (kept lower-cased by their bytes) give the same answers as new ones, in any case, past the cache', () => {
    const b = (x: string) => Buffer.from(x);
    // the same names again and again, in two cases, with a plain `connection: keep-alive`
    for (let round = 0; round < 3; round++) {
      expect(passRawHeaders([b('Content-Type'), b('text/plain'), b('CONTENT-TYPE'), b('x'), b('Connection'), b('keep-alive'), b('Keep-Alive'), b('timeout=5')])).toEqual({ 'content-type': ['text/plain', 'x'] });
      expect(passRawHeaders([b('connection'), b('X-Gone'), b('x-gone'), b('1'), b('X-Kept'), b('2')])).toEqual({ 'x-kept': '2' });
    }
    // more distinct names than the cache keeps, and names that differ in one byte
    const raw: Buffer[] = [];
    for (let i = 0; i < 600; i++) raw.push(b(`X-Name-${i}`), b(String(i)));
    for (let round = 0; round < 2; round++) {
      const h = passRawHeaders(raw);
      expect(Object.keys(h).length).toBe(600);
      expect(h['x-name-0']).toBe('0');
      expect(h['x-name-599']).toBe('599');
      expect(h['x-name-59']).toBe('59');
    }
    expect(passRawHeaders([b('__proto__'), b('x'), b('Connection'), b('__proto__, x-a'), b('X-A'), b('1')])).toEqual({});
  });
});

describe('retries and balancing', () => {
  it('backoff: full jitter under an exponential cap', () => {
    const p = { attempts: 3, backoffMs: 100, maxBackoffMs: 1000, perLlm: 4 };
    expect(backoffDelay(1, p, () => 0.999)).toBeCloseTo(99.9, 6);
    expect(backoffDelay(3, p, () => 0.5)).toBe(200);
    expect(backoffDelay(10, p, () => 1)).toBe(1000);
    expect(backoffDelay(2, p, () => 0)).toBe(0);
  });

  it('deployments on one origin with the same size and connect timeout share a pool, closed once', async () => {
    const cfg = parseConfig(
      {
        upstreams: {
          a: { base_url: 'http://127.0.0.1:1/v1', timeouts: { headers_ms: 100 } },
          b: { base_url: 'http://127.0.0.1:1/other/v1' },
          c: { base_url: 'http://127.0.0.1:1/v1', max_connections: 8 },
          d: { deployments: [{ base_url: 'http://127.0.0.1:2/v1' }, { base_url: 'http://127.0.0.1:1/v1' }] },
        },
      },
      't',
    );
    const pools = new SharedPools();
    const ups = [...cfg.upstreams].map(([n, u]) => new LlmUpstream(n, u, cfg.breaker, undefined, pools));
    const [a, b, c, d] = ups;
    expect(a.deployments[0].pool).toBe(b.deployments[0].pool); // same origin, size, connect timeout
    expect(c.deployments[0].pool).not.toBe(a.deployments[0].pool); // another size
    expect(d.deployments[0].pool).not.toBe(a.deployments[0].pool); // another origin
    expect(d.deployments[1].pool).toBe(a.deployments[0].pool);
    expect(pools.size).toBe(3);
    await Promise.all(ups.map((u) => u.close()));
    expect(a.deployments[0].pool.closed).toBe(true);
  });

  it('least busy per unit of weight first; untried twins before a second try; open breakers never', () => {
    const cfg = parseConfig({ upstreams: { m: { deployments: [{ base_url: 'http://127.0.0.1:1/v1', weight: 1 }, { base_url: 'http://127.0.0.1:2/v1', weight: 1 }, { base_url: 'http://127.0.0.1:3/v1', weight: 2 }] } } }, 't');
    const u = new LlmUpstream('m', cfg.upstreams.get('m')!, { failures: 1, cooldownMs: 60_000 });
    const [a, b, c] = u.deployments;
    a.inflight = 1;
    b.inflight = 1;
    c.inflight = 1; // per unit of weight: 1, 1, 0.5
    expect(u.pick()).toBe(c);
    expect(u.pick(new Set([c]))).not.toBe(c);
    c.breaker.failure();
    for (let i = 0; i < 10; i++) expect(u.pick()).not.toBe(c);
    a.breaker.failure();
    b.breaker.failure();
    expect(u.pick()).toBeUndefined();
    expect(u.cooldownLeft()).toBeGreaterThan(59_000);
    // a half-open breaker whose probe's client left is free for the next probe
    const br = new (a.breaker.constructor as any)(1, 1);
    br.failure(Date.now() - 10);
    expect(br.allows()).toBe(true);
    br.begin();
    expect(br.allows()).toBe(false); // the probe is out
    br.cancel();
    expect(br.allows()).toBe(true);
    void Promise.all(u.deployments.map((d) => d.close()));
  });
});

describe('the config\'s gateway keys', () => {
  it('deployments, providers, windows, prices, fallbacks, retry and key limits; errors name the key', () => {
    const cfg = parseConfig(
      {
        upstreams: {
          a: { provider: 'anthropic', model: 'claude', api_key_env: 'K', deployments: [{ base_url: 'https://x/v1/', weight: 3 }, { base_url: 'https://y/v1', model: 'c2', api_key_env: 'K2' }], context_window: 1000, price: { input_per_1m: 1, output_per_1m: 2 }, fallbacks: ['b'], max_tokens: 99 },
          b: { base_url: 'http://z/v1' },
        },
        retry: { attempts: 4, per_llm: 2, backoff_ms: 5, max_backoff_ms: 50 },
        keys: { t: { key_env: 'T', rpm: 10, tpm: 1000, max_usd_per_day: 2 } },
      },
      'c.yaml',
    );
    const a = cfg.upstreams.get('a')!;
    expect(a).toMatchObject({ provider: 'anthropic', contextWindow: 1000, price: { inputPer1m: 1, outputPer1m: 2 }, fallbacks: ['b'], maxTokens: 99 });
    expect(a.deployments.map((d) => [d.baseUrl, d.model, d.weight, d.apiKeyEnv])).toEqual([
      ['https://x/v1', 'claude', 3, 'K'],
      ['https://y/v1', 'c2', 1, 'K2'],
    ]);
    expect(cfg.retry).toEqual({ attempts: 4, perLlm: 2, backoffMs: 5, maxBackoffMs: 50 });
    expect(cfg.keys.get('t')).toEqual({ keyEnv: 'T', rpm: 10, tpm: 1000, maxUsdPerDay: 2 });
    expect(checkAgainstPool(cfg, ['a', 'b'], { K: '1', T: '1' }).errors).toEqual(['upstreams.a.deployments[1].api_key_env: the environment variable K2 is not set']);
    const bad: Array<[unknown, RegExp]> = [
      [{ upstreams: { a: { base_url: 'http://x/v1', deployments: [] } } }, /upstreams\.a: give base_url or deployments, not both/],
      [{ upstreams: { a: {} } }, /upstreams\.a: needs base_url .* or deployments/],
      [{ upstreams: { a: { deployments: [{ base_url: 'ftp://x' }] } } }, /upstreams\.a\.deployments\[0\]\.base_url: expected http:\/\/ or https:\/\//],
      [{ upstreams: { a: { deployments: [{ base_url: 'http://x', wieght: 2 }] } } }, /upstreams\.a\.deployments\[0\]\.wieght: unknown key \(did you mean "weight"\?\)/],
      [{ upstreams: { a: { base_url: 'http://x', provider: 'antropic' } } }, /upstreams\.a\.provider: expected openai or anthropic, got "antropic" \(did you mean "anthropic"\?\)/],
      [{ upstreams: { a: { base_url: 'http://x', fallbacks: ['ghost'] } } }, /upstreams\.a\.fallbacks\[0\]: "ghost" has no upstream here/],
      [{ upstreams: { a: { base_url: 'http://x', fallbacks: ['a'] } } }, /cannot fall back to itself/],
      [{ upstreams: { a: { base_url: 'http://x', price: { input_per_1m: 1 } } } }, /upstreams\.a\.price: needs input_per_1m and output_per_1m/],
      [{ upstreams: { a: { base_url: 'http://x', context_window: 0 } } }, /upstreams\.a\.context_window: expected a value in \[1, 1000000000\], got 0/],
      [{ keys: { t: { key_env: 'T', rpm: 0.5 } } }, /keys\.t\.rpm: expected an integer, got 0\.5/],
      [{ retry: { backof_ms: 5 } }, /retry\.backof_ms: unknown key \(did you mean "backoff_ms"\?\)/],
      [{ upstreams: { a: { base_url: 'http://x', stream_usage: 'no' } } }, /upstreams\.a\.stream_usage: expected true or false, got "no"/],
    ];
    for (const [doc, msg] of bad) expect(() => parseConfig(doc, 'c.yaml'), JSON.stringify(doc)).toThrow(msg);
  });
});
