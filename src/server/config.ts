/**
 * The gateway's config file (`uniroute serve --config uniroute.yaml`, YAML or JSON): upstreams, routing presets
 * (model aliases "uniroute/<name>"), retry, circuit breaker, default timeouts and limits. Every value is checked
 * here and every error names its key (`upstreams.gpt-4o.timeouts.idle_ms: ...`). Stable keys:
 *
 *   upstreams:
 *     <llm>: { base_url, api_key_env, model, max_connections: 64,
 *              timeouts: { connect_ms: 5000, headers_ms: 30000, idle_ms: 30000 },
 *              provider: openai,            # or anthropic (Messages API upstream)
 *              context_window: 128000,      # tokens; a longer request never goes there
 *              price: { input_per_1m: 2.5, output_per_1m: 10 },   # USD; spend from the answer's usage
 *              fallbacks: [other-llm, ...], # tried in order when this LLM fails, before the router's next-best
 *              max_tokens: 4096,            # for anthropic upstreams when the request gives none
 *              stream_usage: true }         # ask OpenAI streams for their usage (false: servers that refuse it)
 *     <llm>: { deployments: [ { base_url, api_key_env, model, weight: 1, max_connections, timeouts }, ... ], ... }
 *              # instead of one base_url: weighted least-busy balancing, a breaker per deployment; the LLM's
 *              # api_key_env / model / max_connections / timeouts are the deployments' defaults
 *   presets:                  # "model": "uniroute/<name>"
 *     cheap: { lambda: 0.5 }  # or max_cost, min_accuracy, max_error, models: [...]
 *   retry: { attempts: 3, per_llm: 2, backoff_ms: 100, max_backoff_ms: 2000 }
 *              # attempts: LLMs tried per request; per_llm: calls on one LLM's deployments (twins first), with
 *              # exponential backoff and full jitter between them
 *   breaker: { failures: 5, cooldown_ms: 30000 }
 *   timeouts: { connect_ms, headers_ms, idle_ms }      # the default for every upstream
 *   limits: { body_bytes, prompt_chars, prompts_per_request, upstream_error_bytes }
 *   tokens: { admin_env: UNIROUTE_ADMIN_TOKEN }
 *   sticky: { margin: 0.02, max_sessions: 100000, ttl_ms: 3600000 }   # sticky: false = off
 *   keys: { team-a: { key_env: TEAM_A_KEY, budget_usd_per_day: 20, rpm: 600, tpm: 200000, max_usd_per_day: 50 } }
 *              # client keys: needed on every route but /healthz and /readyz; spend per key; budget_usd_per_day
 *              # paces λ, rpm / tpm / max_usd_per_day are hard limits (429 + Retry-After) counted in the pool store
 *   ood: { quantile: 0.99, fallback: prior }   # decided on the pool's prior over clusters at the request's λ; or
 *              # best-overall, an LLM's name, or route (flag only); ood: false = off
 *   explore: 0.05   # with feedback on (--pool): this share of routed requests decided by Thompson sampling
 *   batch: { dir, share: 0.5, concurrency: 256, chunk_lines: 64, lock_ms: 30000, ... }   # the Batch API (src/batch/config.ts)
 *
 * The older `--upstreams` file ({"upstreams": {...}}) is a config file with only that key, so it keeps working.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { UnirouteError, didYouMean } from '../errors.js';
import { parseBatchConfig, type BatchConfig } from '../batch/config.js';

export interface Timeouts {
  connectMs: number;
  headersMs: number;
  idleMs: number;
}

/** One place an LLM is served from (a key, a region, a provider's endpoint). */
export interface DeploymentConfig {
  /** Base URL up to and including the API version, e.g. https://api.openai.com/v1 (no trailing slash). */
  baseUrl: string;
  apiKeyEnv?: string;
  /** The model name sent upstream. */
  model: string;
  /** Share of the load relative to the LLM's other deployments (least-busy weighted by it). */
  weight: number;
  maxConnections: number;
  timeouts: Timeouts;
}

export type Provider = 'openai' | 'anthropic';

export interface UpstreamConfig {
  /** The API the upstream speaks: OpenAI's chat completions or Anthropic's messages. */
  provider: Provider;
  /** Where the LLM is served; one for `base_url`, several for `deployments`. */
  deployments: DeploymentConfig[];
  /** The first deployment's (kept for callers that knew one base URL). */
  baseUrl: string;
  apiKeyEnv?: string;
  model: string;
  maxConnections: number;
  timeouts: Timeouts;
  /** The context window in tokens: a request estimated longer is never sent here. */
  contextWindow?: number;
  /** USD per million tokens, for spend from the answer's usage. */
  price?: { inputPer1m: number; outputPer1m: number };
  /** LLMs to try, in order, when this one fails (before the router's next-best). */
  fallbacks: string[];
  /** max_tokens sent to an Anthropic upstream when the request gives none (Anthropic requires it). */
  maxTokens: number;
  /** Ask an OpenAI upstream's streams for their usage (stream_options.include_usage); false for servers that refuse it. */
  streamUsage: boolean;
}

/** A client key: budget pacing and hard limits. */
export interface KeyConfig {
  keyEnv: string;
  budgetUsdPerDay?: number;
  /** Requests per minute. */
  rpm?: number;
  /** Tokens (input + output, from the answers' usage) per minute. */
  tpm?: number;
  /** Spend per UTC day, a hard stop (budget_usd_per_day only paces λ). */
  maxUsdPerDay?: number;
}

export interface Preset {
  lambda?: number;
  maxCost?: number;
  minAccuracy?: number;
  maxError?: number;
  models?: string[];
}

export interface GatewayConfig {
  upstreams: Map<string, UpstreamConfig>;
  presets: Map<string, Preset>;
  /** attempts: LLMs tried per request; perLlm: calls on one LLM's deployments (undefined: each deployment once, at most 3); backoff between those. */
  retry: { attempts: number; perLlm?: number; backoffMs: number; maxBackoffMs: number };
  breaker: { failures: number; cooldownMs: number };
  limits: { bodyBytes?: number; promptChars?: number; promptsPerRequest?: number; upstreamErrorBytes: number };
  tokens: { adminEnv?: string };
  /** Out-of-distribution prompts: the distance quantile beyond which a prompt is OOD, and how it is decided ('prior', 'best-overall', an LLM, 'route'); false: off. */
  ood: { quantile: number; fallback: string } | false;
  /** With feedback on: the share of routed requests decided by Thompson sampling from the posterior (default 0). */
  explore: number;
  /**
   * Client API keys of the proxy (`keys: {<name>: {key_env, budget_usd_per_day?}}`): when any is set, a chat
   * request must present one (Authorization: Bearer), spend is counted per key, and a key with a budget has its λ
   * paced online so that its spend tracks the budget.
   */
  keys: Map<string, KeyConfig>;
  /** Sticky conversations: keep a session's LLM unless another scores better by more than `margin`. */
  sticky: { margin: number; maxSessions: number; ttlMs: number } | false;
  /** A remote embedder's endpoint and key (the router file's endpoint only with trust_file_url). */
  embedder?: { url?: string; keyEnv?: string; trustFileUrl?: boolean };
  /** The Batch API's settings (src/batch/config.ts). */
  batch: BatchConfig;
  /** Where it was read from (for messages). */
  source: string;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5_000, headersMs: 30_000, idleMs: 30_000 };

const bad = (source: string, key: string, why: string): never => {
  throw new UnirouteError('INVALID_ARGUMENT', `${source}: ${key ? `${key}: ` : ''}${why}`);
};

function object(source: string, key: string, v: unknown, known: string[]): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) bad(source, key, `expected a mapping, got ${JSON.stringify(v)}`);
  for (const k of Object.keys(v as object))
    if (!known.includes(k)) bad(source, key ? `${key}.${k}` : k, `unknown key${didYouMean(k, known)}; known: ${known.join(', ')}`);
  return v as Record<string, unknown>;
}

function num(source: string, key: string, v: unknown, min: number, max: number, integer = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return bad(source, key, `expected a number, got ${JSON.stringify(v)}`);
  if (integer && !Number.isInteger(v)) bad(source, key, `expected an integer, got ${v}`);
  if (v < min || v > max) bad(source, key, `expected a value in [${min}, ${max}], got ${v}`);
  return v;
}

function bool(source: string, key: string, v: unknown): boolean {
  if (typeof v !== 'boolean') return bad(source, key, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

function str(source: string, key: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) return bad(source, key, `expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function timeouts(source: string, key: string, v: unknown, base: Timeouts): Timeouts {
  if (v === undefined) return base;
  const o = object(source, key, v, ['connect_ms', 'headers_ms', 'idle_ms']);
  const ms = (k: string, d: number) => (o[k] === undefined ? d : num(source, `${key}.${k}`, o[k], 1, 86_400_000, true));
  return { connectMs: ms('connect_ms', base.connectMs), headersMs: ms('headers_ms', base.headersMs), idleMs: ms('idle_ms', base.idleMs) };
}

function baseUrlOf(source: string, key: string, v: unknown): string {
  const baseUrl = str(source, key, v);
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return bad(source, key, `not a valid URL: ${JSON.stringify(baseUrl.slice(0, 100))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') bad(source, key, `expected http:// or https://, got ${url.protocol}`);
  if (url.search || url.hash) bad(source, key, 'must not have a query or fragment');
  return baseUrl.replace(/\/+$/, '');
}

/** Checks a parsed config document; `defaults` are the CLI's flags, overridden by the file. */
export function parseConfig(doc: unknown, source = 'config', defaults: Partial<Timeouts> = {}): GatewayConfig {
  const top = object(source, '', doc ?? {}, ['upstreams', 'presets', 'retry', 'breaker', 'timeouts', 'limits', 'tokens', 'ood', 'sticky', 'keys', 'explore', 'embedder', 'batch']);
  const base = timeouts(source, 'timeouts', top.timeouts, { ...DEFAULT_TIMEOUTS, ...defaults });
  const upstreams = new Map<string, UpstreamConfig>();
  if (top.upstreams !== undefined) {
    const u = object(source, 'upstreams', top.upstreams, Object.keys((top.upstreams as object) ?? {}));
    for (const [name, v] of Object.entries(u)) {
      const key = `upstreams.${name}`;
      const o = object(source, key, v, ['base_url', 'api_key_env', 'model', 'max_connections', 'timeouts', 'deployments', 'provider', 'context_window', 'price', 'fallbacks', 'max_tokens', 'stream_usage']);
      if (o.base_url !== undefined && o.deployments !== undefined) bad(source, key, 'give base_url or deployments, not both');
      if (o.base_url === undefined && o.deployments === undefined) bad(source, key, 'needs base_url (one place it is served) or deployments (several)');
      const provider = (o.provider === undefined ? 'openai' : str(source, `${key}.provider`, o.provider)) as Provider;
      if (provider !== 'openai' && provider !== 'anthropic') bad(source, `${key}.provider`, `expected openai or anthropic, got ${JSON.stringify(provider)}${didYouMean(provider, ['openai', 'anthropic'])}`);
      // the LLM's own fields are its deployments' defaults
      const llmTimeouts = timeouts(source, `${key}.timeouts`, o.timeouts, base);
      const llmKeyEnv = o.api_key_env === undefined ? undefined : str(source, `${key}.api_key_env`, o.api_key_env);
      const llmModel = o.model === undefined ? name : str(source, `${key}.model`, o.model);
      const llmConns = o.max_connections === undefined ? 64 : num(source, `${key}.max_connections`, o.max_connections, 1, 100_000, true);
      const deployment = (dk: string, d: Record<string, unknown>): DeploymentConfig => ({
        baseUrl: baseUrlOf(source, `${dk}.base_url`, d.base_url),
        apiKeyEnv: d.api_key_env === undefined ? llmKeyEnv : str(source, `${dk}.api_key_env`, d.api_key_env),
        model: d.model === undefined ? llmModel : str(source, `${dk}.model`, d.model),
        weight: d.weight === undefined ? 1 : num(source, `${dk}.weight`, d.weight, 1e-6, 1e6),
        maxConnections: d.max_connections === undefined ? llmConns : num(source, `${dk}.max_connections`, d.max_connections, 1, 100_000, true),
        timeouts: timeouts(source, `${dk}.timeouts`, d.timeouts, llmTimeouts),
      });
      let deployments: DeploymentConfig[];
      if (o.deployments !== undefined) {
        if (!Array.isArray(o.deployments) || o.deployments.length === 0) return bad(source, `${key}.deployments`, 'expected a non-empty list of {base_url, api_key_env, model, weight}');
        if (o.deployments.length > 256) bad(source, `${key}.deployments`, `at most 256 deployments, got ${o.deployments.length}`);
        deployments = (o.deployments as unknown[]).map((d, i) =>
          deployment(`${key}.deployments[${i}]`, object(source, `${key}.deployments[${i}]`, d, ['base_url', 'api_key_env', 'model', 'weight', 'max_connections', 'timeouts'])),
        );
      } else deployments = [deployment(key, { base_url: o.base_url })];
      let price: UpstreamConfig['price'];
      if (o.price !== undefined) {
        const p = object(source, `${key}.price`, o.price, ['input_per_1m', 'output_per_1m']);
        if (p.input_per_1m === undefined || p.output_per_1m === undefined) bad(source, `${key}.price`, 'needs input_per_1m and output_per_1m (USD per million tokens)');
        price = { inputPer1m: num(source, `${key}.price.input_per_1m`, p.input_per_1m, 0, 1e6), outputPer1m: num(source, `${key}.price.output_per_1m`, p.output_per_1m, 0, 1e6) };
      }
      let fallbacks: string[] = [];
      if (o.fallbacks !== undefined) {
        if (!Array.isArray(o.fallbacks)) bad(source, `${key}.fallbacks`, 'expected a list of LLM names');
        fallbacks = (o.fallbacks as unknown[]).map((f, i) => str(source, `${key}.fallbacks[${i}]`, f));
        if (fallbacks.includes(name)) bad(source, `${key}.fallbacks`, `"${name}" cannot fall back to itself`);
      }
      const first = deployments[0];
      upstreams.set(name, {
        provider,
        deployments,
        baseUrl: first.baseUrl,
        apiKeyEnv: first.apiKeyEnv,
        model: first.model,
        maxConnections: first.maxConnections,
        timeouts: first.timeouts,
        ...(o.context_window !== undefined ? { contextWindow: num(source, `${key}.context_window`, o.context_window, 1, 1e9, true) } : {}),
        ...(price ? { price } : {}),
        fallbacks,
        maxTokens: o.max_tokens === undefined ? 4096 : num(source, `${key}.max_tokens`, o.max_tokens, 1, 10_000_000, true),
        streamUsage: o.stream_usage === undefined ? true : bool(source, `${key}.stream_usage`, o.stream_usage),
      });
    }
    for (const [name, up] of upstreams)
      up.fallbacks.forEach((f, i) => {
        if (!upstreams.has(f)) bad(source, `upstreams.${name}.fallbacks[${i}]`, `"${f}" has no upstream here${didYouMean(f, upstreams.keys())}`);
      });
  }
  const presets = new Map<string, Preset>();
  if (top.presets !== undefined) {
    const p = object(source, 'presets', top.presets, Object.keys((top.presets as object) ?? {}));
    for (const [name, v] of Object.entries(p)) {
      const key = `presets.${name}`;
      if (!/^[A-Za-z0-9._-]+$/.test(name)) bad(source, key, 'a preset name takes letters, digits, ".", "_" and "-" only');
      const o = object(source, key, v, ['lambda', 'max_cost', 'min_accuracy', 'max_error', 'models']);
      const preset: Preset = {};
      if (o.lambda !== undefined) preset.lambda = num(source, `${key}.lambda`, o.lambda, 0, 1e12);
      if (o.max_cost !== undefined) preset.maxCost = num(source, `${key}.max_cost`, o.max_cost, 0, 1e12);
      if (o.min_accuracy !== undefined) preset.minAccuracy = num(source, `${key}.min_accuracy`, o.min_accuracy, 0, 1);
      if (o.max_error !== undefined) preset.maxError = num(source, `${key}.max_error`, o.max_error, 0, 1);
      const targets = ['lambda', 'max_cost', 'min_accuracy'].filter((k) => o[k] !== undefined);
      if (targets.length > 1) bad(source, key, `give one of lambda, max_cost, min_accuracy, not ${targets.join(' and ')}`);
      if (o.models !== undefined) {
        if (!Array.isArray(o.models) || o.models.length === 0) bad(source, `${key}.models`, 'expected a non-empty list of LLM names');
        preset.models = (o.models as unknown[]).map((m, i) => str(source, `${key}.models[${i}]`, m));
      }
      presets.set(name, preset);
    }
  }
  const retry = object(source, 'retry', top.retry ?? {}, ['attempts', 'per_llm', 'backoff_ms', 'max_backoff_ms']);
  const breaker = object(source, 'breaker', top.breaker ?? {}, ['failures', 'cooldown_ms']);
  const limits = object(source, 'limits', top.limits ?? {}, ['body_bytes', 'prompt_chars', 'prompts_per_request', 'upstream_error_bytes']);
  const tokens = object(source, 'tokens', top.tokens ?? {}, ['admin_env']);
  let ood: GatewayConfig['ood'] = { quantile: 0.99, fallback: 'prior' };
  if (top.ood === false) ood = false;
  else if (top.ood !== undefined) {
    const o = object(source, 'ood', top.ood, ['quantile', 'fallback']);
    ood = {
      quantile: o.quantile === undefined ? 0.99 : num(source, 'ood.quantile', o.quantile, 0.5, 1),
      fallback: o.fallback === undefined ? 'prior' : str(source, 'ood.fallback', o.fallback),
    };
  }
  const explore = top.explore === undefined ? 0 : num(source, 'explore', top.explore, 0, 1);
  let sticky: GatewayConfig['sticky'] = { margin: 0.02, maxSessions: 100_000, ttlMs: 3_600_000 };
  if (top.sticky === false) sticky = false;
  else if (top.sticky !== undefined) {
    const o = object(source, 'sticky', top.sticky, ['margin', 'max_sessions', 'ttl_ms']);
    sticky = {
      margin: o.margin === undefined ? 0.02 : num(source, 'sticky.margin', o.margin, 0, 1e12),
      maxSessions: o.max_sessions === undefined ? 100_000 : num(source, 'sticky.max_sessions', o.max_sessions, 1, 10_000_000, true),
      ttlMs: o.ttl_ms === undefined ? 3_600_000 : num(source, 'sticky.ttl_ms', o.ttl_ms, 1, 30 * 86_400_000, true),
    };
  }
  const keys = new Map<string, KeyConfig>();
  if (top.keys !== undefined) {
    const kk = object(source, 'keys', top.keys, Object.keys((top.keys as object) ?? {}));
    for (const [name, v] of Object.entries(kk)) {
      const key = `keys.${name}`;
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) bad(source, key, 'a key name takes 1-64 letters, digits, ".", "_" and "-"');
      const o = object(source, key, v, ['key_env', 'budget_usd_per_day', 'rpm', 'tpm', 'max_usd_per_day']);
      keys.set(name, {
        keyEnv: str(source, `${key}.key_env`, o.key_env),
        ...(o.budget_usd_per_day !== undefined ? { budgetUsdPerDay: num(source, `${key}.budget_usd_per_day`, o.budget_usd_per_day, 1e-9, 1e12) } : {}),
        ...(o.rpm !== undefined ? { rpm: num(source, `${key}.rpm`, o.rpm, 1, 1e9, true) } : {}),
        ...(o.tpm !== undefined ? { tpm: num(source, `${key}.tpm`, o.tpm, 1, 1e12, true) } : {}),
        ...(o.max_usd_per_day !== undefined ? { maxUsdPerDay: num(source, `${key}.max_usd_per_day`, o.max_usd_per_day, 0, 1e12) } : {}),
      });
    }
  }
  const opt = (o: Record<string, unknown>, k: string, where: string, min: number, max: number) => (o[k] === undefined ? undefined : num(source, `${where}.${k}`, o[k], min, max, true));
  // a remote embedder's endpoint and key are the operator's, never the router file's (src/embed/remote.ts)
  let embedder: GatewayConfig['embedder'];
  if (top.embedder !== undefined) {
    const o = object(source, 'embedder', top.embedder, ['url', 'key_env', 'trust_file_url']);
    embedder = {
      ...(o.url !== undefined ? { url: baseUrlOf(source, 'embedder.url', o.url) } : {}),
      ...(o.key_env !== undefined ? { keyEnv: str(source, 'embedder.key_env', o.key_env) } : {}),
      ...(o.trust_file_url !== undefined ? { trustFileUrl: bool(source, 'embedder.trust_file_url', o.trust_file_url) } : {}),
    };
    if (embedder.url && /\/\/[^/]*@/.test(embedder.url)) bad(source, 'embedder.url', 'put the API key in an environment variable (embedder.key_env), not in the URL');
  }
  return {
    ...(embedder ? { embedder } : {}),
    upstreams,
    presets,
    retry: {
      attempts: opt(retry, 'attempts', 'retry', 1, 16) ?? 3,
      ...(retry.per_llm !== undefined ? { perLlm: opt(retry, 'per_llm', 'retry', 1, 16) } : {}),
      backoffMs: retry.backoff_ms === undefined ? 100 : num(source, 'retry.backoff_ms', retry.backoff_ms, 0, 60_000),
      maxBackoffMs: retry.max_backoff_ms === undefined ? 2000 : num(source, 'retry.max_backoff_ms', retry.max_backoff_ms, 0, 600_000),
    },
    breaker: { failures: opt(breaker, 'failures', 'breaker', 1, 1_000_000) ?? 5, cooldownMs: opt(breaker, 'cooldown_ms', 'breaker', 1, 86_400_000) ?? 30_000 },
    limits: {
      bodyBytes: opt(limits, 'body_bytes', 'limits', 1024, 1 << 30),
      promptChars: opt(limits, 'prompt_chars', 'limits', 1, 1 << 28),
      promptsPerRequest: opt(limits, 'prompts_per_request', 'limits', 1, 1 << 20),
      upstreamErrorBytes: opt(limits, 'upstream_error_bytes', 'limits', 256, 1 << 24) ?? 65_536,
    },
    tokens: { adminEnv: tokens.admin_env === undefined ? undefined : str(source, 'tokens.admin_env', tokens.admin_env) },
    ood,
    explore,
    sticky,
    keys,
    batch: parseBatchConfig(top.batch, source),
    source,
  };
}

/** Reads and checks a YAML or JSON config file. */
export function loadConfig(file: string, defaults: Partial<Timeouts> = {}): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UnirouteError('NOT_FOUND', `cannot read config file ${file}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    // JSON is YAML; parse .json strictly so that a JSON typo is reported as JSON
    doc = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (e) {
    throw new UnirouteError('INVALID_ARGUMENT', `${file}: cannot parse (${(e as Error).message.split('\n')[0]})`);
  }
  return parseConfig(doc, file, defaults);
}

/**
 * What the config says about the pool, before serving: errors (a preset naming an LLM not in the pool, an
 * `api_key_env` that is not set) and warnings (an upstream for an LLM not in the pool, an LLM with no upstream).
 */
export function checkAgainstPool(cfg: GatewayConfig, pool: string[], env: NodeJS.ProcessEnv = process.env): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const inPool = new Set(pool);
  for (const [name, u] of cfg.upstreams) {
    if (!inPool.has(name)) warnings.push(`upstreams.${name}: "${name}" is not in the pool${didYouMean(name, pool)}; it is reachable only by its name, never routed to`);
    u.deployments.forEach((d, i) => {
      if (d.apiKeyEnv && !env[d.apiKeyEnv])
        errors.push(`upstreams.${name}${u.deployments.length > 1 ? `.deployments[${i}]` : ''}.api_key_env: the environment variable ${d.apiKeyEnv} is not set`);
    });
  }
  if (cfg.upstreams.size > 0) {
    const missing = pool.filter((n) => !cfg.upstreams.has(n));
    if (missing.length) warnings.push(`no upstream for ${missing.length} LLM(s) of the pool (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}): /v1/chat/completions never routes to them`);
  }
  for (const [name, p] of cfg.presets)
    for (const m of p.models ?? []) if (!inPool.has(m)) errors.push(`presets.${name}.models: "${m}" is not in the pool${didYouMean(m, pool)}`);
  for (const [name, k] of cfg.keys) if (!env[k.keyEnv]) errors.push(`keys.${name}.key_env: the environment variable ${k.keyEnv} is not set`);
  if (cfg.ood && !['prior', 'best-overall', 'route'].includes(cfg.ood.fallback) && !inPool.has(cfg.ood.fallback))
    errors.push(`ood.fallback: "${cfg.ood.fallback}" is not in the pool${didYouMean(cfg.ood.fallback, pool)} (or give prior, best-overall or route)`);
  return { errors, warnings };
}
