/**
 * A stand-in OpenAI-compatible upstream for the Batch API's tests and bench (never the product): answers
 * POST …/chat/completions after a fixed delay with a small completion and its usage, and keeps count of the calls:
 * per tag (the text after "#" in the last user message, e.g. a line's custom_id), per x-request-id prefix, and
 * the requests open right now. A user text containing "FAIL500" is answered 500; "FAIL400" 400.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface StandIn {
  url: string;
  /** Calls per tag. */
  calls: Map<string, number>;
  /** Every call's x-request-id, by tag (who sent each). */
  ids: Map<string, string[]>;
  total: () => number;
  /** Requests received and not answered yet. */
  open: () => number;
  /** The most requests open at once since the last reset (resetPeak). */
  peak: () => number;
  resetPeak: () => void;
  setDelay: (ms: number) => void;
  close: () => Promise<void>;
}

export async function startStandIn(o: { delayMs?: number; keepIds?: boolean } = {}): Promise<StandIn> {
  let delay = o.delayMs ?? 20;
  let total = 0;
  let open = 0;
  let peak = 0;
  const calls = new Map<string, number>();
  const ids = new Map<string, string[]>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === '/stats') {
      // the counts, for a bench that runs the stand-in in a process of its own
      const body = JSON.stringify({ total, open, calls: Object.fromEntries(calls), ids: Object.fromEntries(ids) });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      return;
    }
    if (req.method === 'POST' && req.url === '/delay') {
      let d = '';
      req.on('data', (c) => (d += c));
      req.on('end', () => {
        delay = Number(d);
        res.end('ok');
      });
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      total++;
      open++;
      if (open > peak) peak = open;
      let body: any = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        /* answered below */
      }
      const msgs = Array.isArray(body.messages) ? body.messages : [];
      const last = msgs.filter((m: any) => m?.role === 'user').pop();
      const text = typeof last?.content === 'string' ? last.content : '';
      const tag = /#(\S+)/.exec(text)?.[1] ?? '';
      calls.set(tag, (calls.get(tag) ?? 0) + 1);
      if (o.keepIds) {
        const l = ids.get(tag) ?? [];
        l.push(String(req.headers['x-request-id'] ?? ''));
        ids.set(tag, l);
      }
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          open--;
        }
      };
      res.on('close', finish);
      setTimeout(() => {
        if (text.includes('FAIL500')) {
          res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'stand-in failure', type: 'server_error', code: 'stand_in_500' } }));
          return finish();
        }
        if (text.includes('FAIL400')) {
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'stand-in refuses this request', type: 'invalid_request_error', code: 'stand_in_400' } }));
          return finish();
        }
        const answer = JSON.stringify({
          id: `chatcmpl-${total}`,
          object: 'chat.completion',
          created: 1,
          model: body.model ?? 'unknown',
          choices: [{ index: 0, message: { role: 'assistant', content: `answer to ${tag || 'untagged'}` }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) }).end(answer);
        finish();
      }, delay);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    calls,
    ids,
    total: () => total,
    open: () => open,
    peak: () => peak,
    resetPeak: () => void (peak = open),
    setDelay: (ms) => void (delay = ms),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A batch input file's lines: `n` chat requests, tagged "#c<i>" (their custom_id), on `model`, over three topics. */
export function batchLines(n: number, model = 'uniroute', offset = 0): string[] {
  const topics = ['integral derivative equation solve algebra', 'python function return list loop class', 'empire king war century battle treaty'];
  const out: string[] = [];
  for (let i = offset; i < offset + n; i++)
    out.push(JSON.stringify({ custom_id: `c${i}`, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: `Question ${i}: ${topics[i % 3]} #c${i}` }], max_tokens: 16 } }));
  return out;
}
