/**
 * The gateway's config file (`uniroute serve --config uniroute.yaml`, YAML or JSON): upstreams, routing presets
 * (model aliases "uniroute/<name>"), retry, circuit breaker, default timeouts and limits. Every value is checked
 * here and every error names its key (`upstreams.gpt-4o.timeouts.idle_ms: ...`). Stable keys:
 *
 *   upstreams:
 *     <llm>: { base_url, api_key_env, model, max_connections: 64,
 *              timeouts: { connect_ms: 5000, headers_ms: 30000, idle_ms: 30000 } }
 *   presets:                  # "model": "uniroute/<name>"
 *     cheap: { lambda: 0.5 }  # or max_cost, min_accuracy, max_error, models: [...]
 *   retry: { attempts: 3 }
 *   breaker: { failures: 5, cooldown_ms: 30000 }
 *   timeouts: { connect_ms, headers_ms, idle_ms }      # the default for every upstream
 *   limits: { body_bytes, prompt_chars, prompts_per_request, upstream_error_bytes }
 *   tokens: { admin_env: UNIROUTE_ADMIN_TOKEN }
 *   sticky: { margin: 0.02, max_sessions: 100000, ttl_ms: 3600000 }   # sticky: false = off
 *   keys: { team-a: { key_env: TEAM_A_KEY, budget_usd_per_day: 20 } }  # client keys; spend and budgets per key
 *   ood: { quantile: 0.99, fallback: best-overall }   # or an LLM's name, or route (flag only); ood: false = off
 *
 * The older `--upstreams` file ({"upstreams": {...}}) is a config file with only that key, so it keeps working.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { UnirouteError, didYouMean } from '../errors.js';

export interface Timeouts {
  connectMs: number;
  headersMs: number;
  idleMs: number;
}

export interface UpstreamConfig {
  /** Base URL up to and including the API version, e.g. https://api.openai.com/v1 (no trailing slash). */
  baseUrl: string;
  apiKeyEnv?: string;
  /** The model name sent upstream. */
  model: string;
  maxConnections: number;
  timeouts: Timeouts;
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
  retry: { attempts: number };
  breaker: { failures: number; cooldownMs: number };
  limits: { bodyBytes?: number; promptChars?: number; promptsPerRequest?: number; upstreamErrorBytes: number };
  tokens: { adminEnv?: string };
  /** Out-of-distribution prompts: the distance quantile beyond which a prompt is OOD, and where it goes ('best-overall', an LLM, 'route'); false: off. */
  ood: { quantile: number; fallback: string } | false;
  /**
   * Client API keys of the proxy (`keys: {<name>: {key_env, budget_usd_per_day?}}`): when any is set, a chat
   * request must present one (Authorization: Bearer), spend is counted per key, and a key with a budget has its λ
   * paced online so that its spend tracks the budget.
   */
  keys: Map<string, { keyEnv: string; budgetUsdPerDay?: number }>;
  /** Sticky conversations: keep a session's LLM unless another scores better by more than `margin`. */
  sticky: { margin: number; maxSessions: number; ttlMs: number } | false;
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

/** Checks a parsed config document; `defaults` are the CLI's flags, overridden by the file. */
export function parseConfig(doc: unknown, source = 'config', defaults: Partial<Timeouts> = {}): GatewayConfig {
  const top = object(source, '', doc ?? {}, ['upstreams', 'presets', 'retry', 'breaker', 'timeouts', 'limits', 'tokens', 'ood', 'sticky', 'keys']);
  const base = timeouts(source, 'timeouts', top.timeouts, { ...DEFAULT_TIMEOUTS, ...defaults });
  const upstreams = new Map<string, UpstreamConfig>();
  if (top.upstreams !== undefined) {
    const u = object(source, 'upstreams', top.upstreams, Object.keys((top.upstreams as object) ?? {}));
    for (const [name, v] of Object.entries(u)) {
      const key = `upstreams.${name}`;
      const o = object(source, key, v, ['base_url', 'api_key_env', 'model', 'max_connections', 'timeouts']);
      const baseUrl = str(source, `${key}.base_url`, o.base_url);
      let url: URL;
      try {
        url = new URL(baseUrl);
      } catch {
        return bad(source, `${key}.base_url`, 'not a valid URL');
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') bad(source, `${key}.base_url`, `expected http:// or https://, got ${url.protocol}`);
      if (url.search || url.hash) bad(source, `${key}.base_url`, 'must not have a query or fragment');
      upstreams.set(name, {
        baseUrl: baseUrl.replace(/\/+$/, ''),
        apiKeyEnv: o.api_key_env === undefined ? undefined : str(source, `${key}.api_key_env`, o.api_key_env),
        model: o.model === undefined ? name : str(source, `${key}.model`, o.model),
        maxConnections: o.max_connections === undefined ? 64 : num(source, `${key}.max_connections`, o.max_connections, 1, 100_000, true),
        timeouts: timeouts(source, `${key}.timeouts`, o.timeouts, base),
      });
    }
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
  const retry = object(source, 'retry', top.retry ?? {}, ['attempts']);
  const breaker = object(source, 'breaker', top.breaker ?? {}, ['failures', 'cooldown_ms']);
  const limits = object(source, 'limits', top.limits ?? {}, ['body_bytes', 'prompt_chars', 'prompts_per_request', 'upstream_error_bytes']);
  const tokens = object(source, 'tokens', top.tokens ?? {}, ['admin_env']);
  let ood: GatewayConfig['ood'] = { quantile: 0.99, fallback: 'best-overall' };
  if (top.ood === false) ood = false;
  else if (top.ood !== undefined) {
    const o = object(source, 'ood', top.ood, ['quantile', 'fallback']);
    ood = {
      quantile: o.quantile === undefined ? 0.99 : num(source, 'ood.quantile', o.quantile, 0.5, 1),
      fallback: o.fallback === undefined ? 'best-overall' : str(source, 'ood.fallback', o.fallback),
    };
  }
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
  const keys = new Map<string, { keyEnv: string; budgetUsdPerDay?: number }>();
  if (top.keys !== undefined) {
    const kk = object(source, 'keys', top.keys, Object.keys((top.keys as object) ?? {}));
    for (const [name, v] of Object.entries(kk)) {
      const key = `keys.${name}`;
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) bad(source, key, 'a key name takes 1-64 letters, digits, ".", "_" and "-"');
      const o = object(source, key, v, ['key_env', 'budget_usd_per_day']);
      keys.set(name, {
        keyEnv: str(source, `${key}.key_env`, o.key_env),
        ...(o.budget_usd_per_day !== undefined ? { budgetUsdPerDay: num(source, `${key}.budget_usd_per_day`, o.budget_usd_per_day, 1e-9, 1e12) } : {}),
      });
    }
  }
  const opt = (o: Record<string, unknown>, k: string, where: string, min: number, max: number) => (o[k] === undefined ? undefined : num(source, `${where}.${k}`, o[k], min, max, true));
  return {
    upstreams,
    presets,
    retry: { attempts: opt(retry, 'attempts', 'retry', 1, 16) ?? 3 },
    breaker: { failures: opt(breaker, 'failures', 'breaker', 1, 1_000_000) ?? 5, cooldownMs: opt(breaker, 'cooldown_ms', 'breaker', 1, 86_400_000) ?? 30_000 },
    limits: {
      bodyBytes: opt(limits, 'body_bytes', 'limits', 1024, 1 << 30),
      promptChars: opt(limits, 'prompt_chars', 'limits', 1, 1 << 28),
      promptsPerRequest: opt(limits, 'prompts_per_request', 'limits', 1, 1 << 20),
      upstreamErrorBytes: opt(limits, 'upstream_error_bytes', 'limits', 256, 1 << 24) ?? 65_536,
    },
    tokens: { adminEnv: tokens.admin_env === undefined ? undefined : str(source, 'tokens.admin_env', tokens.admin_env) },
    ood,
    sticky,
    keys,
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
    if (u.apiKeyEnv && !env[u.apiKeyEnv]) errors.push(`upstreams.${name}.api_key_env: the environment variable ${u.apiKeyEnv} is not set`);
  }
  if (cfg.upstreams.size > 0) {
    const missing = pool.filter((n) => !cfg.upstreams.has(n));
    if (missing.length) warnings.push(`no upstream for ${missing.length} LLM(s) of the pool (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}): /v1/chat/completions never routes to them`);
  }
  for (const [name, p] of cfg.presets)
    for (const m of p.models ?? []) if (!inPool.has(m)) errors.push(`presets.${name}.models: "${m}" is not in the pool${didYouMean(m, pool)}`);
  for (const [name, k] of cfg.keys) if (!env[k.keyEnv]) errors.push(`keys.${name}.key_env: the environment variable ${k.keyEnv} is not set`);
  if (cfg.ood && cfg.ood.fallback !== 'best-overall' && cfg.ood.fallback !== 'route' && !inPool.has(cfg.ood.fallback))
    errors.push(`ood.fallback: "${cfg.ood.fallback}" is not in the pool${didYouMean(cfg.ood.fallback, pool)} (or give best-overall or route)`);
  return { errors, warnings };
}
