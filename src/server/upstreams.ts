/** Upstream LLM endpoints for the OpenAI-compatible proxy: {"upstreams": {"<llm>": {base_url, api_key_env, model}}}. */
import { readFileSync } from 'node:fs';
import { UnirouteError } from '../errors.js';

export interface Upstream {
  baseUrl: string;
  apiKeyEnv?: string;
  model: string;
}

export function parseUpstreams(json: unknown, source = 'upstreams'): Map<string, Upstream> {
  const bad = (why: string): never => {
    throw new UnirouteError('INVALID_ARGUMENT', `${source}: ${why}`);
  };
  const u = (json as any)?.upstreams;
  if (!u || typeof u !== 'object' || Array.isArray(u)) bad('expected {"upstreams": {"<llm>": {"base_url", "api_key_env", "model"}}}');
  const out = new Map<string, Upstream>();
  for (const [name, v] of Object.entries<any>(u)) {
    if (!v || typeof v.base_url !== 'string') bad(`upstream "${name}" needs a string "base_url"`);
    try {
      new URL(v.base_url);
    } catch {
      bad(`upstream "${name}" has an invalid base_url "${v.base_url}"`);
    }
    if (v.api_key_env !== undefined && typeof v.api_key_env !== 'string') bad(`upstream "${name}": "api_key_env" must be a string`);
    if (v.model !== undefined && typeof v.model !== 'string') bad(`upstream "${name}": "model" must be a string`);
    out.set(name, { baseUrl: v.base_url.replace(/\/+$/, ''), apiKeyEnv: v.api_key_env, model: v.model ?? name });
  }
  return out;
}

export function loadUpstreams(file: string): Map<string, Upstream> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UnirouteError('NOT_FOUND', `cannot read upstreams file ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UnirouteError('INVALID_ARGUMENT', `${file}: malformed JSON (${(e as Error).message})`);
  }
  return parseUpstreams(json, file);
}
