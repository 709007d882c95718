/**
 * Translation between OpenAI's chat completions and Anthropic's messages, both ways: requests (system prompts,
 * images, tools and tool results), answers, streams (event by event) and errors. What one side has and the other
 * does not is dropped where it changes nothing the caller relies on (sampling knobs without an equivalent) and
 * refused with a clear 400 where it would (n > 1, a JSON response format on an Anthropic upstream).
 */
import { randomUUID } from 'node:crypto';
import { UnirouteError } from '../errors.js';
import type { Usage } from './sse.js';

type Json = Record<string, any>;

const unsupported = (what: string) => new UnirouteError('INVALID_ARGUMENT', what);

/** The text of OpenAI content (a string or parts). */
function oaiText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .filter((p) => p && p.type === 'text' && typeof p.text === 'string')
    .map((p) => p.text)
    .join('\n');
}

/** An OpenAI image_url part as an Anthropic image block (base64 data URLs inline, other URLs by reference). */
function imageBlock(url: string): Json {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (m) return { type: 'image', source: { type: 'base64', media_type: m[1], data: m[2] } };
  return { type: 'image', source: { type: 'url', url } };
}

function oaiPartsToBlocks(content: unknown, where: string): Json[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (content == null) return [];
  if (!Array.isArray(content)) throw unsupported(`${where}.content: expected a string or a list of parts`);
  const out: Json[] = [];
  content.forEach((p, i) => {
    if (p?.type === 'text') out.push({ type: 'text', text: String(p.text ?? '') });
    else if (p?.type === 'image_url') {
      const url = typeof p.image_url === 'string' ? p.image_url : p.image_url?.url;
      if (typeof url !== 'string') throw unsupported(`${where}.content[${i}].image_url.url: expected a URL`);
      out.push(imageBlock(url));
    } else throw unsupported(`${where}.content[${i}]: a part of type ${JSON.stringify(p?.type)} cannot be sent to an Anthropic upstream`);
  });
  return out;
}

function parseArguments(args: unknown, where: string): unknown {
  if (args == null || args === '') return {};
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    throw unsupported(`${where}.function.arguments: not valid JSON`);
  }
}

/** An OpenAI chat completions request as an Anthropic messages request for `model`. */
export function chatToMessagesRequest(body: Json, model: string, defaultMaxTokens: number): Json {
  if (typeof body.n === 'number' && body.n > 1) throw unsupported('`n` > 1 is not supported by an Anthropic upstream');
  const rf = body.response_format?.type;
  if (rf && rf !== 'text') throw unsupported(`response_format ${JSON.stringify(rf)} is not supported by an Anthropic upstream`);
  const system: string[] = [];
  const messages: Json[] = [];
  const push = (role: 'user' | 'assistant', blocks: Json[]) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  };
  (body.messages as unknown[]).forEach((m: any, i) => {
    const where = `messages[${i}]`;
    switch (m?.role) {
      case 'system':
      case 'developer':
        system.push(oaiText(m.content));
        break;
      case 'user':
        push('user', oaiPartsToBlocks(m.content, where));
        break;
      case 'assistant': {
        const blocks = oaiPartsToBlocks(typeof m.content === 'string' || Array.isArray(m.content) ? m.content : null, where).filter((b) => b.type === 'text');
        for (const [j, t] of (Array.isArray(m.tool_calls) ? m.tool_calls : []).entries())
          blocks.push({ type: 'tool_use', id: String(t.id ?? `toolu_${j}`), name: String(t.function?.name ?? ''), input: parseArguments(t.function?.arguments, `${where}.tool_calls[${j}]`) });
        push('assistant', blocks);
        break;
      }
      case 'tool':
        push('user', [{ type: 'tool_result', tool_use_id: String(m.tool_call_id ?? ''), content: oaiText(m.content) }]);
        break;
      default:
        throw unsupported(`${where}.role: ${JSON.stringify(m?.role)} is not one of system, developer, user, assistant, tool`);
    }
  });
  const out: Json = { model, messages, max_tokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens };
  const sys = system.filter((s) => s !== '').join('\n\n');
  if (sys) out.system = sys;
  if (body.temperature != null) out.temperature = Math.min(1, body.temperature); // Anthropic's range is [0, 1]
  if (body.top_p != null) out.top_p = body.top_p;
  if (body.stop != null) out.stop_sequences = Array.isArray(body.stop) ? body.stop : [body.stop];
  if (body.stream) out.stream = true;
  if (typeof body.user === 'string') out.metadata = { user_id: body.user };
  if (Array.isArray(body.tools) && body.tools.length) {
    out.tools = body.tools.map((t: any, i: number) => {
      if (t?.type !== 'function' || !t.function?.name) throw unsupported(`tools[${i}]: only function tools can be sent to an Anthropic upstream`);
      return { name: t.function.name, ...(t.function.description ? { description: t.function.description } : {}), input_schema: t.function.parameters ?? { type: 'object', properties: {} } };
    });
    const tc = body.tool_choice;
    let choice: Json | undefined;
    if (tc === 'auto') choice = { type: 'auto' };
    else if (tc === 'required') choice = { type: 'any' };
    else if (tc === 'none') choice = { type: 'none' };
    else if (tc && typeof tc === 'object' && tc.function?.name) choice = { type: 'tool', name: tc.function.name };
    if (body.parallel_tool_calls === false) choice = { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true };
    if (choice) out.tool_choice = choice;
  }
  return out;
}

const FINISH_OF_STOP: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', refusal: 'content_filter', pause_turn: 'stop' };
const STOP_OF_FINISH: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' };

const oaiUsage = (u: Partial<Usage>) => ({ prompt_tokens: u.input ?? 0, completion_tokens: u.output ?? 0, total_tokens: (u.input ?? 0) + (u.output ?? 0) });

function anthropicUsage(u: any): Partial<Usage> {
  if (!u) return {};
  return { input: (u.input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0), output: u.output_tokens ?? 0 };
}

/** An Anthropic message (answer) as an OpenAI chat completion. */
export function messageToChatCompletion(msg: Json): Json {
  let text = '';
  const toolCalls: Json[] = [];
  for (const b of Array.isArray(msg.content) ? msg.content : []) {
    if (b?.type === 'text') text += b.text ?? '';
    else if (b?.type === 'tool_use') toolCalls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
  }
  const message: Json = { role: 'assistant', content: text === '' && toolCalls.length ? null : text };
  if (toolCalls.length) message.tool_calls = toolCalls;
  return {
    id: `chatcmpl-${String(msg.id ?? randomUUID())}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: msg.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: FINISH_OF_STOP[msg.stop_reason] ?? 'stop' }],
    usage: oaiUsage(anthropicUsage(msg.usage)),
  };
}

/** Anthropic content blocks of a user turn as OpenAI messages: tool results first (as `tool` messages), then the rest. */
function anthropicUserToOai(content: unknown, where: string): Json[] {
  if (typeof content === 'string') return [{ role: 'user', content }];
  if (!Array.isArray(content)) throw unsupported(`${where}.content: expected a string or a list of blocks`);
  const tools: Json[] = [];
  const parts: Json[] = [];
  content.forEach((b: any, i) => {
    if (b?.type === 'text') parts.push({ type: 'text', text: String(b.text ?? '') });
    else if (b?.type === 'image') {
      const s = b.source ?? {};
      if (s.type === 'base64') parts.push({ type: 'image_url', image_url: { url: `data:${s.media_type};base64,${s.data}` } });
      else if (s.type === 'url') parts.push({ type: 'image_url', image_url: { url: s.url } });
      else throw unsupported(`${where}.content[${i}].source: an image source of type ${JSON.stringify(s.type)} cannot be sent to an OpenAI upstream`);
    } else if (b?.type === 'tool_result') {
      const c = b.content;
      const text = typeof c === 'string' ? c : Array.isArray(c) ? c.filter((x: any) => x?.type === 'text').map((x: any) => x.text).join('\n') : '';
      tools.push({ role: 'tool', tool_call_id: String(b.tool_use_id ?? ''), content: b.is_error ? `error: ${text}` : text });
    } else if (b?.type === 'document') throw unsupported(`${where}.content[${i}]: documents cannot be sent to an OpenAI upstream`);
    // thinking and other assistant-side blocks carry nothing an OpenAI upstream takes
  });
  const out = [...tools];
  if (parts.length) out.push({ role: 'user', content: parts.every((p) => p.type === 'text') ? parts.map((p) => p.text).join('\n') : parts });
  return out;
}

/** An Anthropic messages request as an OpenAI chat completions request for `model`. */
export function messagesToChatRequest(body: Json, model: string): Json {
  const messages: Json[] = [];
  const sys = typeof body.system === 'string' ? body.system : Array.isArray(body.system) ? body.system.filter((b: any) => b?.type === 'text').map((b: any) => b.text).join('\n\n') : '';
  if (sys) messages.push({ role: 'system', content: sys });
  (body.messages as unknown[]).forEach((m: any, i) => {
    const where = `messages[${i}]`;
    if (m?.role === 'user') messages.push(...anthropicUserToOai(m.content, where));
    else if (m?.role === 'assistant') {
      if (typeof m.content === 'string') {
        messages.push({ role: 'assistant', content: m.content });
        return;
      }
      let text = '';
      const toolCalls: Json[] = [];
      for (const b of Array.isArray(m.content) ? m.content : []) {
        if (b?.type === 'text') text += b.text ?? '';
        else if (b?.type === 'tool_use') toolCalls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
      }
      messages.push({ role: 'assistant', content: text === '' && toolCalls.length ? null : text, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) });
    } else throw unsupported(`${where}.role: ${JSON.stringify(m?.role)} is not user or assistant`);
  });
  const out: Json = { model, messages };
  if (body.max_tokens != null) out.max_tokens = body.max_tokens;
  if (body.temperature != null) out.temperature = body.temperature;
  if (body.top_p != null) out.top_p = body.top_p;
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length) out.stop = body.stop_sequences;
  if (body.stream) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  if (typeof body.metadata?.user_id === 'string') out.user = body.metadata.user_id;
  if (Array.isArray(body.tools) && body.tools.length) {
    out.tools = body.tools.map((t: any, i: number) => {
      if (!t?.name || (t.type !== undefined && t.type !== 'custom')) throw unsupported(`tools[${i}]: only custom tools (name, input_schema) can be sent to an OpenAI upstream`);
      return { type: 'function', function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.input_schema ?? { type: 'object', properties: {} } } };
    });
    const tc = body.tool_choice;
    if (tc?.type === 'auto') out.tool_choice = 'auto';
    else if (tc?.type === 'any') out.tool_choice = 'required';
    else if (tc?.type === 'none') out.tool_choice = 'none';
    else if (tc?.type === 'tool') out.tool_choice = { type: 'function', function: { name: tc.name } };
    if (tc?.disable_parallel_tool_use) out.parallel_tool_calls = false;
  }
  return out;
}

/** An OpenAI chat completion (answer) as an Anthropic message. */
export function chatCompletionToMessage(c: Json): Json {
  const choice = c.choices?.[0] ?? {};
  const m = choice.message ?? {};
  const content: Json[] = [];
  const text = typeof m.content === 'string' ? m.content : oaiText(m.content);
  if (text) content.push({ type: 'text', text });
  for (const t of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
    let input: unknown = {};
    try {
      input = JSON.parse(t.function?.arguments || '{}');
    } catch {
      input = { _raw: String(t.function?.arguments ?? '') };
    }
    content.push({ type: 'tool_use', id: t.id, name: t.function?.name, input });
  }
  const u = c.usage ?? {};
  return {
    id: `msg_${String(c.id ?? randomUUID()).replace(/^chatcmpl-/, '')}`,
    type: 'message',
    role: 'assistant',
    model: c.model,
    content,
    stop_reason: STOP_OF_FINISH[choice.finish_reason] ?? 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: u.prompt_tokens ?? 0, output_tokens: u.completion_tokens ?? 0 },
  };
}

// ---- errors ------------------------------------------------------------------------------------------------------

const ANTHROPIC_ERROR_TYPE: Record<number, string> = { 400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error', 500: 'api_error', 502: 'api_error', 503: 'overloaded_error', 504: 'api_error', 529: 'overloaded_error' };

/** An error body in Anthropic's shape (the stable uniroute code rides along). */
export function anthropicError(status: number, message: string, code?: string | null): Json {
  const type = ANTHROPIC_ERROR_TYPE[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
  return { type: 'error', error: { type, message, ...(code ? { code } : {}) } };
}

/** An error body in OpenAI's shape. */
export function openaiError(status: number, message: string, code: string | null, param: string | null = null): Json {
  const type = status === 429 ? 'rate_limit_error' : status === 401 ? 'authentication_error' : status < 500 ? 'invalid_request_error' : status === 500 ? 'server_error' : 'upstream_error';
  return { error: { message, type, param, code } };
}

// ---- streams -----------------------------------------------------------------------------------------------------

/** The SSE text of one Anthropic event. */
export const anthropicEvent = (type: string, data: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

/**
 * Anthropic stream events to OpenAI chat chunks. Feed each event's name and parsed data; the returned text is the
 * chunks to send (possibly empty). `includeUsage`: end with a usage chunk (the client asked for stream_options).
 */
export class AnthropicToChatStream {
  private id = `chatcmpl-${randomUUID()}`;
  private model = '';
  private created = Math.floor(Date.now() / 1000);
  private toolIndex = -1;
  /** Anthropic block index -> OpenAI tool call index. */
  private toolOf = new Map<number, number>();
  private finish: string | null = null;
  readonly usage: Partial<Usage> = {};
  private done = false;
  constructor(private readonly includeUsage: boolean) {}

  private chunk(delta: Json, finish: string | null = null, extra: Json = {}): string {
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra })}\n\n`;
  }

  push(type: string, d: Json): string {
    switch (type) {
      case 'message_start': {
        const m = d.message ?? {};
        if (m.id) this.id = `chatcmpl-${m.id}`;
        this.model = m.model ?? '';
        Object.assign(this.usage, anthropicUsage(m.usage));
        return this.chunk({ role: 'assistant', content: '' });
      }
      case 'content_block_start': {
        const b = d.content_block ?? {};
        if (b.type === 'tool_use') {
          const i = ++this.toolIndex;
          this.toolOf.set(d.index, i);
          return this.chunk({ tool_calls: [{ index: i, id: b.id, type: 'function', function: { name: b.name, arguments: '' } }] });
        }
        if (b.type === 'text' && b.text) return this.chunk({ content: b.text });
        return '';
      }
      case 'content_block_delta': {
        const x = d.delta ?? {};
        if (x.type === 'text_delta') return this.chunk({ content: x.text ?? '' });
        if (x.type === 'input_json_delta') {
          const i = this.toolOf.get(d.index);
          return i === undefined ? '' : this.chunk({ tool_calls: [{ index: i, function: { arguments: x.partial_json ?? '' } }] });
        }
        return '';
      }
      case 'message_delta': {
        if (d.usage) {
          const u = d.usage;
          if (u.output_tokens != null) this.usage.output = u.output_tokens;
          if (u.input_tokens != null) this.usage.input = anthropicUsage(u).input;
        }
        this.finish = FINISH_OF_STOP[d.delta?.stop_reason] ?? 'stop';
        return this.chunk({}, this.finish);
      }
      case 'message_stop':
        return this.end();
      default:
        return ''; // ping, content_block_stop
    }
  }

  /** The closing chunks (usage when asked, then [DONE]); once. */
  end(): string {
    if (this.done) return '';
    this.done = true;
    let out = '';
    if (this.includeUsage) out += `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [], usage: oaiUsage(this.usage) })}\n\n`;
    return `${out}data: [DONE]\n\n`;
  }
}

/** OpenAI chat chunks to Anthropic stream events. Feed each chunk's parsed data ([DONE] as null). */
export class ChatToAnthropicStream {
  private started = false;
  private open: { index: number; kind: 'text' | 'tool'; tool?: number } | null = null;
  private next = 0;
  private stop: string = 'end_turn';
  readonly usage: Partial<Usage> = {};
  private done = false;
  constructor(private readonly model: string) {}

  private start(c: Json): string {
    if (this.started) return '';
    this.started = true;
    const id = `msg_${String(c?.id ?? randomUUID()).replace(/^chatcmpl-/, '')}`;
    return anthropicEvent('message_start', { message: { id, type: 'message', role: 'assistant', model: c?.model ?? this.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } } });
  }

  private close(): string {
    if (!this.open) return '';
    const i = this.open.index;
    this.open = null;
    return anthropicEvent('content_block_stop', { index: i });
  }

  push(c: Json | null): string {
    if (c === null) return this.end();
    let out = this.start(c);
    if (c.usage) {
      const u = c.usage;
      if (u.prompt_tokens != null) this.usage.input = u.prompt_tokens;
      if (u.completion_tokens != null) this.usage.output = u.completion_tokens;
    }
    const ch = c.choices?.[0];
    if (!ch) return out;
    const d = ch.delta ?? {};
    if (typeof d.content === 'string' && d.content !== '') {
      if (this.open?.kind !== 'text') {
        out += this.close();
        this.open = { index: this.next++, kind: 'text' };
        out += anthropicEvent('content_block_start', { index: this.open.index, content_block: { type: 'text', text: '' } });
      }
      out += anthropicEvent('content_block_delta', { index: this.open.index, delta: { type: 'text_delta', text: d.content } });
    }
    for (const t of Array.isArray(d.tool_calls) ? d.tool_calls : []) {
      const ti = typeof t.index === 'number' ? t.index : 0;
      if (this.open?.kind !== 'tool' || this.open.tool !== ti) {
        out += this.close();
        this.open = { index: this.next++, kind: 'tool', tool: ti };
        out += anthropicEvent('content_block_start', { index: this.open.index, content_block: { type: 'tool_use', id: t.id ?? `toolu_${ti}`, name: t.function?.name ?? '', input: {} } });
      }
      const args = t.function?.arguments;
      if (typeof args === 'string' && args !== '') out += anthropicEvent('content_block_delta', { index: this.open.index, delta: { type: 'input_json_delta', partial_json: args } });
    }
    if (ch.finish_reason) this.stop = STOP_OF_FINISH[ch.finish_reason] ?? 'end_turn';
    return out;
  }

  /** The closing events (message_delta with the usage, message_stop); once. */
  end(): string {
    if (this.done) return '';
    this.done = true;
    let out = this.start(null as unknown as Json);
    out += this.close();
    out += anthropicEvent('message_delta', { delta: { stop_reason: this.stop, stop_sequence: null }, usage: { input_tokens: this.usage.input ?? 0, output_tokens: this.usage.output ?? 0 } });
    out += anthropicEvent('message_stop', {});
    return out;
  }
}
