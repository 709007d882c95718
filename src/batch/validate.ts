/**
 * What a line of a batch input file must be, checked without the router: JSON, an object with a custom_id (a
 * string of 1 to 512 printable characters), method POST, the batch's endpoint as url, and a body object with a
 * model and messages. A line that fails becomes an error line naming the problem; the job goes on.
 */
import type { BatchEndpoint, LineItem } from './types.js';
import type { SplitLine } from './lines.js';

export type LineCheck = { ok: true; item: LineItem } | { ok: false; customId: string | null; code: string; message: string };

const CUSTOM_ID = /^[^\x00-\x1f\x7f]{1,512}$/;

export function checkLine(l: SplitLine, endpoint: BatchEndpoint, maxLineBytes: number): LineCheck {
  if (l.tooLong) return { ok: false, customId: null, code: 'line_too_long', message: `line ${l.line} has ${l.bytes} bytes; the limit is ${maxLineBytes} (batch.max_line_bytes)` };
  let rec: any;
  try {
    rec = JSON.parse(l.text);
  } catch (e) {
    return { ok: false, customId: null, code: 'invalid_json_line', message: `line ${l.line} is not valid JSON (${(e as Error).message.slice(0, 120)})` };
  }
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return { ok: false, customId: null, code: 'invalid_json_line', message: `line ${l.line} is not a JSON object` };
  const id = rec.custom_id;
  if (typeof id !== 'string' || !CUSTOM_ID.test(id))
    return { ok: false, customId: typeof id === 'string' ? id.slice(0, 512) : null, code: 'invalid_custom_id', message: `line ${l.line}: custom_id must be a string of 1 to 512 printable characters, got ${JSON.stringify(id)?.slice(0, 80)}` };
  const bad = (code: string, message: string): LineCheck => ({ ok: false, customId: id, code, message: `line ${l.line} (custom_id ${JSON.stringify(id)}): ${message}` });
  if (rec.method !== undefined && rec.method !== 'POST') return bad('invalid_method', `method must be "POST", got ${JSON.stringify(rec.method)}`);
  if (rec.url !== endpoint) return bad('invalid_url', `url must be the batch's endpoint "${endpoint}", got ${JSON.stringify(rec.url)?.slice(0, 80)}`);
  const body = rec.body;
  if (!body || typeof body !== 'object' || Array.isArray(body)) return bad('invalid_body', 'body must be a JSON object (the request to the endpoint)');
  if (typeof body.model !== 'string' || body.model === '' || body.model.length > 256) return bad('invalid_body', 'body.model must be "uniroute", "uniroute/<preset>" or an LLM name');
  if (!Array.isArray(body.messages) || body.messages.length === 0) return bad('invalid_body', 'body.messages must be a non-empty list');
  return { ok: true, item: { line: l.line, customId: id, body } };
}
