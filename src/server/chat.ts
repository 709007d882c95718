/**
 * The gateway's routes (a fastify plugin): POST /v1/chat/completions (OpenAI), POST /v1/messages (Anthropic), and
 * the pass-through of /v1/responses, /v1/embeddings and /v1/completions to a named LLM.
 *
 * "model" picks how to decide: "uniroute" (the router's default operating point), "uniroute:lambda=X",
 * "uniroute/<preset>" (a preset of the config file; "best" = λ 0 and "default" exist without one), or the name of
 * an LLM with an upstream (sent there, no routing). A `uniroute` object in the body steers a routed request
 * ({models, lambda, tradeoff, max_cost, max_error, min_accuracy, risk}). The body is parsed once (fastify) for the
 * user text and forwarded with only "model" changed (or translated, when the client's API and the upstream's
 * differ); the answer is streamed through as it arrives. The upstream path itself is src/server/call.ts:
 * deployments, retries on twins with backoff, failover to the LLM's fallbacks, then to the router's next-best.
 */
import { randomUUID } from 'node:crypto';
import { bearerDigest, sameDigest, tokenDigest } from './tokens.js';
import { BudgetPacer } from './budget.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Router } from '../router/router.js';
import type { MicroBatcher, Policy } from './batcher.js';
import type { GatewayConfig, KeyConfig } from './config.js';
import { LlmUpstream, RequestSignal, SharedPools, type AttemptFailure } from './gateway.js';
import type { Metrics } from './metrics.js';
import { lambdaForTarget } from '../decide/operating.js';
import { UnirouteError, didYouMean } from '../errors.js';
import { answerCost, callLLM, errorIn, tracer, type LlmRequest, type RetryPolicy } from './call.js';
import type { KeyLimits, LimitCounters } from '../pool/counters.js';
import { SpanStatusCode, context as contextApi, trace as traceApi, type Span } from '@opentelemetry/api';

/** A preset resolved against the router: the policy and the allowed LLMs. */
export interface ResolvedPreset {
  policy: Omit<Policy, 'lambda'> & { lambda?: number };
  /** A cost or accuracy target, resolved on the current pool's operating curve at each request. */
  target?: { maxCost?: number; minAccuracy?: number };
  models?: string[];
  /** Human-readable: how the λ was found. */
  note: string;
}

/** The policy a request that names its LLM carries (never used to decide: such a request is not routed). */
const NAMED: Policy = Object.freeze({ lambda: 0 });

/** The live gateway state, swapped whole on a config reload. */
export interface Gateway {
  upstreams: Map<string, LlmUpstream>;
  presets: Map<string, ResolvedPreset>;
  retry: RetryPolicy;
  errorBytes: number;
  sticky: GatewayConfig['sticky'];
  /** Client keys: the sha256 of each key's value, by key name (empty = no client keys required). */
  keys: Map<string, { digest: Buffer; budgetUsdPerDay?: number; limits?: KeyLimits }>;
  /** Whether any upstream declares a context window (then each request's tokens are estimated). */
  windows: boolean;
  /** The config file it came from (for messages). */
  source: string;
  /** With feedback on: the share of routed requests decided by Thompson sampling. */
  explore: number;
  /** How many of the upstreams' breakers are not closed (shared with them). */
  tripped: { count: number };
  /** The policy of the last plain routed request (reused while its λ stays the same). */
  policy?: Policy;
  /** The pool's LLMs that have an upstream, for the pool snapshot's name list it was made from. */
  routable?: { names: readonly string[]; list: string[] };
  /** Requests using this state; a replaced state closes its upstream pools once the last one ends. */
  active: number;
  retired?: () => void;
}

/** Where conversations' LLMs are kept: this process (SessionStore) or the pool store, shared by replicas (Redis). */
export interface Sessions {
  get(key: string): string | undefined | Promise<string | undefined>;
  set(key: string, model: string): void | Promise<void>;
  configure(maxSessions: number, ttlMs: number): void;
}

/**
 * The LLM each conversation was last answered by, bounded (least recently used out first) and expiring after
 * `ttlMs` without a turn. In memory: one per server (replicas do not share it yet).
 */
export class SessionStore implements Sessions {
  private readonly map = new Map<string, { model: string; at: number }>();
  constructor(
    private maxSessions: number,
    private ttlMs: number,
  ) {}
  configure(maxSessions: number, ttlMs: number): void {
    this.maxSessions = maxSessions;
    this.ttlMs = ttlMs;
  }
  get size(): number {
    return this.map.size;
  }
  get(key: string, now = Date.now()): string | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (now - e.at > this.ttlMs) {
      this.map.delete(key);
      return undefined;
    }
    return e.model;
  }
  set(key: string, model: string, now = Date.now()): void {
    this.map.delete(key); // re-inserted last: the most recently used
    this.map.set(key, { model, at: now });
    while (this.map.size > this.maxSessions) this.map.delete(this.map.keys().next().value!);
  }
}

/** Builds the gateway state from a checked config; presets with a cost or accuracy target read the router's validation curve. */
export function buildGateway(cfg: GatewayConfig, router: Router): Gateway {
  const upstreams = new Map<string, LlmUpstream>();
  const tripped = { count: 0 };
  const pools = new SharedPools(); // one pool per origin (and size) for this config's deployments
  for (const [name, u] of cfg.upstreams) upstreams.set(name, new LlmUpstream(name, u, cfg.breaker, tripped, pools));
  const presets = new Map<string, ResolvedPreset>([
    ['best', { policy: { lambda: 0 }, note: 'lambda 0: the lowest predicted error' }],
    ['default', { policy: {}, note: "the router's default operating point" }],
  ]);
  const op = router.operatingPoint() ?? (router.info as { operatingPoint?: Parameters<typeof lambdaForTarget>[0] } | undefined)?.operatingPoint;
  for (const [name, p] of cfg.presets) {
    let lambda = p.lambda;
    let note = lambda !== undefined ? `lambda ${lambda}` : "the router's default operating point";
    if (p.maxCost !== undefined || p.minAccuracy !== undefined) {
      const r = lambdaForTarget(op, p);
      if (!r)
        throw new UnirouteError(
          'INVALID_ARGUMENT',
          `${cfg.source}: presets.${name}: ${p.maxCost !== undefined ? 'max_cost' : 'min_accuracy'} needs the validation curve a router fitted by this version stores; refit the router, or give "lambda"`,
        );
      lambda = r.lambda;
      note = `lambda ${r.lambda.toPrecision(4)} (validation: cost ${r.cost.toPrecision(4)}, accuracy ${r.accuracy.toFixed(4)}${r.met ? '' : '; the target is not met, this is the closest point'})`;
    }
    if (p.maxError !== undefined) note = `the cheapest LLM with predicted error <= ${p.maxError}`;
    const target = p.maxCost !== undefined ? { maxCost: p.maxCost } : p.minAccuracy !== undefined ? { minAccuracy: p.minAccuracy } : undefined;
    presets.set(name, { policy: { ...(lambda !== undefined ? { lambda } : {}), ...(p.maxError !== undefined ? { maxError: p.maxError } : {}) }, ...(target ? { target } : {}), models: p.models, note });
  }
  const keys = new Map<string, { digest: Buffer; budgetUsdPerDay?: number; limits?: KeyLimits }>();
  for (const [name, k] of cfg.keys) {
    const value = process.env[k.keyEnv];
    if (!value) throw new UnirouteError('INVALID_ARGUMENT', `${cfg.source}: keys.${name}.key_env: the environment variable ${k.keyEnv} is not set`);
    keys.set(name, { digest: tokenDigest(value), ...(k.budgetUsdPerDay !== undefined ? { budgetUsdPerDay: k.budgetUsdPerDay } : {}), ...(limitsOf(k) ? { limits: limitsOf(k) } : {}) });
  }
  const windows = [...cfg.upstreams.values()].some((u) => u.contextWindow !== undefined);
  return { upstreams, presets, retry: cfg.retry, errorBytes: cfg.limits.upstreamErrorBytes, sticky: cfg.sticky, keys, tripped, active: 0, windows, source: cfg.source, explore: cfg.explore ?? 0 };
}

function limitsOf(k: KeyConfig): KeyLimits | undefined {
  if (k.rpm === undefined && k.tpm === undefined && k.maxUsdPerDay === undefined) return undefined;
  return { ...(k.rpm !== undefined ? { rpm: k.rpm } : {}), ...(k.tpm !== undefined ? { tpm: k.tpm } : {}), ...(k.maxUsdPerDay !== undefined ? { maxUsdPerDay: k.maxUsdPerDay } : {}) };
}

/**
 * Closes a replaced state's upstream pools once no request uses it any more (a request picks its state when it
 * arrives and keeps it to the end, failover included): a reload drops no request and no connection.
 */
export async function closeGateway(g: Gateway): Promise<void> {
  if (g.active > 0) await new Promise<void>((r) => (g.retired = r));
  await Promise.all([...g.upstreams.values()].map((u) => u.close().catch(() => undefined)));
}

export interface ChatContext {
  router: Router;
  batcher: MicroBatcher;
  metrics: Metrics;
  gateway: () => Gateway;
  maxPromptChars: number;
  /** Log one decision line per answered request (the server's logger is on). */
  logDecisions: boolean;
  ood?: Policy['ood'];
  sessions: Sessions;
  /** Budget pacers by key name (kept across config reloads). */
  pacers: Map<string, BudgetPacer>;
  /** The length of a budget "day" in ms (tests shorten it). */
  budgetDayMs?: number;
  /** The pool version in force, when the pool is a store. */
  poolVersion?: () => number;
  /** Signs a decision id (for feedback), when the pool is a store. */
  decisionId?: (model: string, cluster: number, cell: number) => string;
  /** Per-key rate and spend counters (in the pool store when there is one). */
  limits: LimitCounters;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const SESSION_ID = /^[\x20-\x7e]{1,256}$/;

/** The digest of the client key a request presents: `Authorization: Bearer <key>`, or `x-api-key` (Anthropic clients). */
export function presentedDigest(headers: FastifyRequest['headers']): Buffer {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return bearerDigest(auth);
  const x = headers['x-api-key'];
  return tokenDigest(typeof x === 'string' ? x : '');
}

/** The name of the client key with this digest (every key compared, in constant time each), or undefined. */
export function keyOf(g: Gateway, digest: Buffer): string | undefined {
  let name: string | undefined;
  for (const [n, k] of g.keys) if (sameDigest(digest, k.digest)) name = n;
  return name;
}

/** The routing settings of a request's `uniroute` object. */
export interface Routing {
  models?: string[];
  lambda?: number;
  tradeoff?: number;
  maxCost?: number;
  maxError?: number;
  risk?: number;
}

const ROUTING_KEYS = ['models', 'lambda', 'tradeoff', 'max_cost', 'max_error', 'min_accuracy', 'risk'];

/**
 * Checks a `uniroute` object: every error names the field and says what it takes. min_accuracy a is the quality
 * floor max_error 1 - a (on one prompt they are the same target).
 */
export function parseRouting(v: unknown, known: ReadonlyMap<string, number>): Routing {
  const bad = (field: string, why: string): never => {
    throw new UnirouteError('INVALID_ARGUMENT', `uniroute${field ? `.${field}` : ''}: ${why}`);
  };
  if (!v || typeof v !== 'object' || Array.isArray(v)) return bad('', `expected an object such as {"lambda": 0.5} or {"models": ["a", "b"]}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!ROUTING_KEYS.includes(k)) bad(k, `unknown field${didYouMean(k, ROUTING_KEYS)}; the fields are ${ROUTING_KEYS.join(', ')}`);
  const num = (k: string, min: number, max: number) => {
    const x = o[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'number' || !Number.isFinite(x)) return bad(k, `expected a number, got ${JSON.stringify(x)}`);
    if (x < min || x > max) bad(k, `expected a number in [${min}, ${max === Infinity ? '∞' : max}], got ${x}`);
    return x;
  };
  const r: Routing = {};
  const lambda = num('lambda', 0, Infinity);
  const tradeoff = num('tradeoff', 0, 1);
  const maxCost = num('max_cost', 0, Infinity);
  const maxError = num('max_error', 0, 1);
  const minAccuracy = num('min_accuracy', 0, 1);
  const risk = num('risk', 0, 100);
  const given = (ks: string[]) => ks.filter((k) => o[k] !== undefined);
  if (given(['lambda', 'tradeoff', 'max_error', 'min_accuracy']).length > 1) bad('', `give one of lambda, tradeoff, max_error, min_accuracy, not ${given(['lambda', 'tradeoff', 'max_error', 'min_accuracy']).join(' and ')}`);
  if (lambda !== undefined) r.lambda = lambda;
  if (tradeoff !== undefined) r.tradeoff = tradeoff;
  if (maxCost !== undefined) r.maxCost = maxCost;
  if (maxError !== undefined) r.maxError = maxError;
  if (minAccuracy !== undefined) r.maxError = 1 - minAccuracy;
  if (risk !== undefined) r.risk = risk;
  if (o.models !== undefined) {
    if (!Array.isArray(o.models) || o.models.length === 0) bad('models', 'expected a non-empty list of LLM names');
    (o.models as unknown[]).forEach((m, i) => {
      if (typeof m !== 'string') bad(`models[${i}]`, `expected an LLM name, got ${JSON.stringify(m)}`);
      if (!known.has(m as string)) throw new UnirouteError('UNKNOWN_MODEL', `uniroute.models[${i}]: "${m}" is not in the pool${didYouMean(m as string, known.keys())}`);
    });
    r.models = o.models as string[];
  }
  return r;
}

/** A rough token count of a request (4 characters a token, 1,000 an image), for context windows. */
export function estimateTokens(body: Record<string, any>, api: 'chat' | 'messages' | 'passthrough'): number {
  if (api === 'passthrough') return Math.ceil(JSON.stringify(body.input ?? body.prompt ?? '').length / 4);
  let chars = 0;
  let images = 0;
  const add = (c: unknown): void => {
    if (typeof c === 'string') chars += c.length;
    else if (Array.isArray(c))
      for (const p of c) {
        if (!p || typeof p !== 'object') continue;
        if (typeof p.text === 'string') chars += p.text.length;
        else if (p.type === 'image_url' || p.type === 'image') images++;
        else if (p.type === 'tool_result') add(p.content);
        else if (p.type === 'tool_use') chars += JSON.stringify(p.input ?? {}).length;
      }
  };
  if (api === 'messages') add(typeof body.system === 'string' ? body.system : Array.isArray(body.system) ? body.system : '');
  if (Array.isArray(body.messages))
    for (const m of body.messages) {
      if (!m) continue;
      add(m.content);
      if (m.tool_calls) chars += JSON.stringify(m.tool_calls).length;
      chars += 16;
    }
  if (Array.isArray(body.tools)) chars += JSON.stringify(body.tools).length;
  return Math.ceil(chars / 4) + images * 1000;
}

const noConfig = (what: string) => `${what}: give it one in the gateway config (uniroute serve --config FILE, with upstreams.<llm>.base_url or deployments; see docs/gateway.md)`;

type Api = 'chat' | 'messages' | 'passthrough';
const spanNames: Partial<Record<string, string>> = { chat: 'uniroute /v1/chat/completions', messages: 'uniroute /v1/messages' };

export function chatRoutes(app: FastifyInstance, ctx: ChatContext): void {
  const { router, batcher, metrics } = ctx;
  /** Each LLM's metric children, found once (a label lookup joins its values on every call). */
  const perLlm = new Map<string, { decisions: { inc(): void }; ok: { inc(): void }; latency: { observe(v: number): void }; tokensIn: { observe(v: number): void }; tokensOut: { observe(v: number): void }; ttft: { observe(v: number): void }; spend: Map<string, { inc(v: number): void }> }>();
  const llmMetrics = (llm: string) => {
    let m = perLlm.get(llm);
    if (!m) {
      if (perLlm.size >= 4096) perLlm.clear(); // LLM names come from the config and the pool: bounded, but never unbounded here
      m = { decisions: metrics.decisionsOf(llm), ok: metrics.upstreamOf(llm, '200'), latency: metrics.upstreamLatencyOf(llm), tokensIn: metrics.tokensOf(llm, 'input'), tokensOut: metrics.tokensOf(llm, 'output'), ttft: metrics.ttftOf(llm), spend: new Map() };
      perLlm.set(llm, m);
    }
    return m;
  };

  /**
   * The policy of a plain routed request at λ: one object while λ stays the same (made anew for each request, it
   * cost a spread per request, and the batcher then groups a turn's requests by identity). Requests that change
   * it (sticky sessions, budgets, a uniroute object) make their own copy.
   */
  const routedPolicy = (g: Gateway, lambda: number): Policy => {
    const c = g.policy;
    if (c !== undefined && c.lambda === lambda) return c;
    const fresh: Policy = { lambda, explain: false, ood: ctx.ood, ...(g.explore > 0 && ctx.decisionId ? { explore: g.explore } : {}) };
    g.policy = fresh;
    return fresh;
  };

  /** One request through the gateway, in any of its APIs. */
  const serve = async (api: Api, path: string, req: FastifyRequest<{ Body: Record<string, any> }>, reply: FastifyReply) => {
    const t0 = performance.now();
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    reply.header('x-request-id', requestId);
    const capi = api === 'messages' ? 'anthropic' : 'openai';
    let hijacked = false;
    const fail = (status: number, message: string, code: string | null, headers?: Record<string, string | string[]>, param: string | null = null) => {
      const body = errorIn(capi, status, message, code, param);
      if (hijacked) {
        // the response was taken over for an answer that then could not be relayed: write it by hand
        if (!reply.raw.headersSent && !reply.raw.destroyed) {
          reply.raw.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId });
          reply.raw.end(body);
        }
        return;
      }
      for (const [k, v] of Object.entries(headers ?? {})) reply.header(k, v);
      return reply.status(status).type('application/json; charset=utf-8').send(body);
    };
    if (req.validationError) {
      const v = (req.validationError as any).validation?.[0];
      const where = v?.instancePath ? v.instancePath.slice(1).replace(/\//g, '.') : v?.params?.missingProperty;
      const msg = v?.keyword === 'required' ? `the field "${v.params.missingProperty}" is required` : `${where ?? 'body'} ${v?.message ?? req.validationError.message}`;
      return fail(400, msg, 'invalid_request', undefined, where ?? null);
    }
    const g = ctx.gateway();
    g.active++;
    // one listener: the request is over (for a reload's drain), and a client gone early aborts the upstream
    const signal = new RequestSignal();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) signal.abort(new Error('client closed'));
      if (--g.active === 0) g.retired?.();
    });
    const body = req.body;
    const modelName: string = body.model;

    // ---- who: a client key, its limits and budget ----
    let keyName: string | undefined;
    if (g.keys.size > 0) {
      keyName = keyOf(g, presentedDigest(req.headers));
      if (!keyName) return fail(401, 'a valid API key is required (Authorization: Bearer <key>, or x-api-key)', 'invalid_api_key');
    }
    const key = keyName ? g.keys.get(keyName) : undefined;
    if (key?.limits) {
      let a;
      try {
        a = await ctx.limits.admit(keyName!, key.limits);
      } catch (e) {
        // the counters' store is away: serve (a gateway that stops with its Redis is worse), and say so
        metrics.limitErrors.inc();
        req.log.warn({ request_id: requestId, err: (e as Error).message }, 'limit counters unavailable: request not counted');
      }
      if (a && !a.ok) {
        metrics.limited.inc({ key: keyName!, limit: a.limit });
        const used = a.limit === 'max_usd_per_day' ? `$${a.used.toFixed(4)} of $${a.max}` : `${a.used} of ${a.max}`;
        return fail(429, `key "${keyName}" is over its ${a.limit} limit (${used}); retry in ${a.retryAfterS} s`, a.limit === 'max_usd_per_day' ? 'budget_exceeded' : 'rate_limit_exceeded', { 'retry-after': String(a.retryAfterS) });
      }
    }
    let pacer: BudgetPacer | undefined;
    const budget = key?.budgetUsdPerDay;
    if (keyName && budget !== undefined) {
      pacer = ctx.pacers.get(keyName);
      if (!pacer) ctx.pacers.set(keyName, (pacer = new BudgetPacer(budget, ctx.budgetDayMs)));
      pacer.budgetPerDay = budget; // a reload may change it
    }

    // ---- how to decide ----
    let routed = false;
    let policy: Policy = NAMED; // replaced below for a routed request (a named one is never decided)
    let allowed: Set<string> | undefined;
    let maxCost: number | undefined;
    let routing: Routing | undefined;
    const lam = api === 'passthrough' ? null : /^uniroute(?::lambda=([0-9.eE+-]+))?$/.exec(modelName);
    const pre = api === 'passthrough' ? null : /^uniroute\/(.+)$/.exec(modelName);
    if (lam) {
      routed = true;
      const lambda = lam[1] !== undefined ? Number(lam[1]) : router.defaultLambda;
      if (!Number.isFinite(lambda) || lambda < 0) return fail(400, `invalid lambda in model "${modelName}"`, 'invalid_lambda');
      policy = routedPolicy(g, lambda);
    } else if (pre) {
      const p = g.presets.get(pre[1]);
      if (!p) return fail(404, `no preset "${pre[1]}"${didYouMean(pre[1], g.presets.keys())}; presets: ${[...g.presets.keys()].map((k) => `uniroute/${k}`).join(', ')}`, 'model_not_found');
      routed = true;
      // a preset with a cost or accuracy target is resolved on the current pool's curve (it follows the pool)
      const target = p.target ? lambdaForTarget(router.operatingPoint(), p.target) : null;
      policy = {
        lambda: target?.lambda ?? p.policy.lambda ?? router.defaultLambda,
        explain: false,
        ood: ctx.ood,
        ...(p.policy.maxError !== undefined ? { maxError: p.policy.maxError } : {}),
        ...(g.explore > 0 && ctx.decisionId ? { explore: g.explore } : {}),
      };
      if (p.models) allowed = new Set(p.models);
    } else if (!g.upstreams.has(modelName)) {
      if (router.has(modelName)) return fail(500, noConfig(`"${modelName}" has no upstream`), 'no_upstream', { 'x-should-retry': 'false' });
      const names = [...g.upstreams.keys()];
      return fail(404, `model "${modelName}" is ${api === 'passthrough' ? 'not an LLM with an upstream' : 'neither "uniroute", "uniroute/<preset>" nor an LLM with an upstream'}${didYouMean(modelName, names)}`, 'model_not_found');
    }
    let forward = body;
    if (body.uniroute !== undefined) {
      if (!routed) return fail(400, `the uniroute object steers routed requests (model "uniroute" or "uniroute/<preset>"); this request names the LLM "${modelName}"`, 'invalid_routing');
      try {
        routing = parseRouting(body.uniroute, router.snapshot().index);
      } catch (e) {
        const err = e as UnirouteError;
        return fail(err.httpStatus ?? 400, err.message, 'invalid_routing');
      }
      forward = { ...body };
      delete forward.uniroute;
      if (routing.models) allowed = allowed ? new Set(routing.models.filter((m) => allowed!.has(m))) : new Set(routing.models);
      if (allowed && allowed.size === 0) return fail(400, `uniroute.models and the preset's models have no LLM in common`, 'invalid_routing');
      maxCost = routing.maxCost;
      const target = routing.lambda !== undefined || routing.tradeoff !== undefined || routing.maxError !== undefined;
      if (routing.lambda !== undefined) policy = { ...policy, lambda: routing.lambda, maxError: undefined };
      if (routing.tradeoff !== undefined) policy = { ...policy, lambda: router.lambdaForTradeoff(routing.tradeoff), maxError: undefined };
      if (routing.maxError !== undefined) policy = { ...policy, maxError: routing.maxError };
      // a cost cap alone: the lowest predicted error among the LLMs that cost at most that
      if (maxCost !== undefined && !target) policy = { ...policy, lambda: 0, maxError: undefined };
      if (routing.risk !== undefined) policy = { ...policy, risk: routing.risk };
      if ('maxError' in policy && policy.maxError === undefined) delete policy.maxError; // an object of this request's (made above)
    }
    // a key over (or under) its budget: λ paced (not for λ = 0 or a quality floor, which say what they want)
    if (routed && pacer && policy.lambda > 0 && policy.maxError === undefined) {
      const m = pacer.multiplier();
      metrics.budgetMultiplier.set({ key: keyName! }, m);
      policy = { ...policy, lambda: policy.lambda * m };
    }
    let text = '';
    if (routed) {
      text = userText(body.messages);
      if (!text) return fail(400, 'the conversation has no user text to route on', 'empty_prompt');
      if (text.length > ctx.maxPromptChars) return fail(400, `the user text has ${text.length} characters; the limit is ${ctx.maxPromptChars}`, 'prompt_too_long');
    }
    const stream = body.stream === true;
    // context windows: the request's size in tokens, when some upstream declares a window
    const need = g.windows ? estimateTokens(body, api) : 0;
    let minWindow = 0; // raised past an LLM that said the request is too long for it
    const fits = (u: LlmUpstream) => u.cfg.contextWindow === undefined || (u.cfg.contextWindow >= need && u.cfg.contextWindow > minWindow);

    const span = tracer.startSpan(spanNames[api] ?? `uniroute ${path}`);
    const tracing = span.isRecording(); // false unless an OpenTelemetry SDK is registered: then nothing more is built
    if (tracing) span.setAttributes({ 'uniroute.api': api, 'uniroute.path': path, 'uniroute.routed': routed, 'uniroute.request_id': requestId });

    // ---- choose ----
    /** What the router said about a target (for the response headers). */
    interface Decision {
      cluster: number;
      predicted: number;
      ood: boolean;
      explored: boolean;
      cell: number;
    }
    const decisions = new Map<string, Decision>();
    let stickyOutcome: 'kept' | 'switched' | 'new' | undefined;
    let sessionKey: string | undefined;
    if (routed && g.sticky) {
      const h = req.headers['x-session-id'];
      const user = api === 'messages' ? body.metadata?.user_id : body.user;
      const sid = typeof h === 'string' && SESSION_ID.test(h) ? h : typeof user === 'string' && SESSION_ID.test(user) ? `user:${user}` : undefined;
      if (sid) {
        sessionKey = `${modelName}\u0000${sid}`;
        policy = { ...policy, explain: true }; // the session's LLM is compared by its predicted error
      }
    }
    const eligible = (n: string, tried: ReadonlySet<string> | undefined, now: number, costs?: { index: ReadonlyMap<string, number>; cost: Float32Array }) => {
      const u = g.upstreams.get(n);
      if (u === undefined || tried?.has(n) || !u.allows(now) || (allowed && !allowed.has(n))) return false;
      if (g.windows && !fits(u)) return false;
      if (maxCost !== undefined && costs) {
        const j = costs.index.get(n);
        if (j === undefined || !(costs.cost[j] <= maxCost)) return false;
      }
      return true;
    };
    const candidatesFor = (tried: ReadonlySet<string> | undefined): string[] => {
      const snap = router.snapshot();
      const pool = snap.names;
      if ((!tried || tried.size === 0) && !allowed && g.tripped.count === 0 && maxCost === undefined && !g.windows) {
        // the common case (first attempt, no subset, every breaker closed): made once per pool
        if (g.routable?.names !== pool) g.routable = { names: pool, list: pool.filter((n) => g.upstreams.has(n)) };
        return g.routable.list;
      }
      const now = Date.now();
      return pool.filter((n) => eligible(n, tried, now, snap));
    };
    /** Why no LLM can take the request (no upstream at all, too long, too expensive, or cooling down). */
    const nobody = () => {
      const snap = router.snapshot();
      const inScope = snap.names.filter((n) => !allowed || allowed.has(n));
      const withUp = inScope.filter((n) => g.upstreams.has(n));
      if (withUp.length === 0)
        return fail(500, noConfig(allowed ? `none of the allowed LLMs (${[...allowed].slice(0, 5).join(', ')}) has an upstream` : 'no LLM in the pool has an upstream'), 'no_upstream', { 'x-should-retry': 'false' });
      if (g.windows && withUp.every((n) => !fits(g.upstreams.get(n)!))) {
        const largest = Math.max(...withUp.map((n) => g.upstreams.get(n)!.cfg.contextWindow ?? 0));
        return fail(400, `the request has about ${need} tokens; no ${allowed ? 'allowed ' : ''}LLM's context window takes it (the largest is ${largest})`, 'context_length_exceeded');
      }
      if (maxCost !== undefined && withUp.every((n) => !(snap.cost[snap.index.get(n)!] <= maxCost!))) {
        const cheapest = Math.min(...withUp.map((n) => snap.cost[snap.index.get(n)!]));
        return fail(400, `uniroute.max_cost: no ${allowed ? 'allowed ' : ''}LLM with an upstream costs at most ${maxCost} per query (the cheapest costs ${cheapest})`, 'invalid_routing');
      }
      let wait = Infinity;
      for (const n of withUp) wait = Math.min(wait, g.upstreams.get(n)!.cooldownLeft());
      return fail(503, 'every upstream that could answer is cooling down after repeated failures (circuit breakers open)', 'upstreams_unavailable', { 'retry-after': String(Math.max(1, Math.ceil((Number.isFinite(wait) ? wait : 1000) / 1000))) });
    };
    /** The router's choice among the candidates. */
    const decide = async (candidates: string[], first: boolean): Promise<string> => {
      const dspan = tracing ? tracer.startSpan('uniroute.decide', undefined, traceContext(span)) : undefined;
      const slice = await batcher.route([text], policy, candidates.length === router.snapshot().names.length ? undefined : candidates);
      const row = slice.offset;
      const b = slice.batch;
      const c = b.choice[row];
      let target = b.models[c];
      const d: Decision = { cluster: b.cluster[row], predicted: b.chosenError[row], ood: b.ood[row] === 1, explored: b.explored.length > 0 && b.explored[row] === 1, cell: router.cells ? b.cellOf[row] : -1 };
      if (sessionKey && first) {
        // a shared store that cannot answer: route as for a new conversation
        const prev = await Promise.resolve(ctx.sessions.get(sessionKey)).catch(() => undefined);
        const jp = prev === undefined ? -1 : b.models.indexOf(prev);
        if (prev === undefined) stickyOutcome = 'new';
        else if (prev === target) stickyOutcome = 'kept';
        else if (jp >= 0 && candidates.includes(prev) && b.predictedError.length) {
          const m = b.models.length;
          const score = (j: number) => b.predictedError[row * m + j] + b.lambda * b.costs[j];
          if (g.sticky && score(jp) - score(c) <= g.sticky.margin) {
            target = prev;
            d.predicted = b.predictedError[row * m + jp];
            stickyOutcome = 'kept';
          } else stickyOutcome = 'switched';
        } else stickyOutcome = 'switched'; // its LLM left the pool, lost its upstream, or is cooling down
        metrics.sticky.inc({ outcome: stickyOutcome });
      }
      decisions.set(target, d);
      llmMetrics(target).decisions.inc();
      if (d.ood) metrics.ood.inc({ route: path });
      if (dspan) {
        dspan.setAttributes({ 'uniroute.llm': target, 'uniroute.cluster': d.cluster, 'uniroute.ood': d.ood, 'uniroute.predicted_error': d.predicted, 'uniroute.lambda': b.lambda, 'uniroute.candidates': candidates.length });
        dspan.end();
      }
      return target;
    };

    let first: string;
    if (routed) {
      const candidates = candidatesFor(undefined);
      if (candidates.length === 0) {
        span.end();
        return nobody();
      }
      try {
        first = await decide(candidates, true);
      } catch (e) {
        span.end();
        if (e instanceof UnirouteError && e.code === 'OVERLOADED') return fail(503, e.message, 'overloaded', { 'retry-after': '1' });
        throw e;
      }
    } else {
      first = modelName;
      const up = g.upstreams.get(modelName)!;
      if (g.windows && !fits(up)) {
        // too long for it: its fallbacks with a window that takes it, else a clear 400
        const now = Date.now();
        const fb = up.cfg.fallbacks.find((f) => eligible(f, undefined, now));
        if (!fb) {
          span.end();
          return fail(400, `the request has about ${need} tokens; "${modelName}"'s context window is ${up.cfg.contextWindow}${up.cfg.fallbacks.length ? ', and none of its fallbacks takes it' : ''}`, 'context_length_exceeded');
        }
        first = fb;
      }
    }

    // ---- send: deployments, retries, fallbacks, the router's next-best ----
    const pending: string[] = [];
    const next = async (tried: ReadonlySet<string>, failed: string, f: AttemptFailure): Promise<string | undefined> => {
      const failedUp = g.upstreams.get(failed);
      if (f.contextLength) minWindow = Math.max(minWindow, failedUp?.cfg.contextWindow ?? need);
      const now = Date.now();
      pending.unshift(...(failedUp?.cfg.fallbacks ?? []).filter((n) => !tried.has(n) && !pending.includes(n)));
      const snap = router.snapshot();
      while (pending.length) {
        const n = pending.shift()!;
        if (eligible(n, tried, now, routed ? snap : undefined) && (!f.contextLength || fits(g.upstreams.get(n)!))) {
          metrics.failovers.inc({ from: failed });
          return n;
        }
      }
      if (!routed) return undefined;
      const candidates = candidatesFor(tried);
      if (candidates.length === 0) return undefined;
      metrics.failovers.inc({ from: failed });
      return decide(candidates, false);
    };
    const echo = routing ? JSON.stringify(body.uniroute).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : undefined;
    let anthropicHeaders: Record<string, string> | undefined;
    if (api === 'messages') {
      anthropicHeaders = {};
      const v = req.headers['anthropic-version'];
      const beta = req.headers['anthropic-beta'];
      if (typeof v === 'string') anthropicHeaders['anthropic-version'] = v;
      if (typeof beta === 'string') anthropicHeaders['anthropic-beta'] = beta;
    }
    const request: LlmRequest = { api, path: api === 'passthrough' ? path.slice(3) : undefined, body: forward, stream, requestId, signal, anthropicHeaders };
    const out = await callLLM(request, {
      upstreams: g.upstreams,
      retry: g.retry,
      errorBytes: g.errorBytes,
      first,
      next,
      span: tracing ? span : undefined,
      onAttempt: (a) => {
        if (a.outcome === 'ok' && a.status === 200) {
          const m = llmMetrics(a.llm);
          m.ok.inc();
          m.latency.observe(a.ms / 1000);
          return;
        }
        metrics.upstreamOf(a.llm, a.outcome === 'ok' ? String(a.status) : a.outcome.startsWith('upstream_') ? a.outcome.slice(9) : a.outcome === 'client_closed' ? a.outcome : String(a.status)).inc();
        if (a.outcome === 'ok') metrics.upstreamLatencyOf(a.llm).observe(a.ms / 1000);
      },
      // a 2xx answer: the client's headers go out with the upstream's, and its body is relayed as it comes
      client: (llm, attempts, headers) => {
        headers['x-request-id'] = requestId;
        headers['x-uniroute-model'] = llm;
        headers['x-uniroute-attempts'] = String(attempts);
        if (ctx.poolVersion) headers['x-uniroute-pool-version'] = String(ctx.poolVersion());
        const d = decisions.get(llm);
        if (d) {
          headers['x-uniroute-cluster'] = String(d.cluster);
          if (Number.isFinite(d.predicted)) headers['x-uniroute-predicted-error'] = d.predicted.toFixed(5);
          if (d.ood) headers['x-uniroute-ood'] = 'true';
          if (d.explored) headers['x-uniroute-explored'] = 'true';
          if (!echo) headers['x-uniroute-lambda'] = lambdaText(policy.lambda);
          if (stickyOutcome) headers['x-uniroute-sticky'] = stickyOutcome;
          if (ctx.decisionId) headers['x-uniroute-decision-id'] = ctx.decisionId(llm, d.cluster, d.cell);
        }
        if (echo) {
          headers['x-uniroute-routing'] = echo;
          headers['x-uniroute-lambda'] = lambdaText(policy.lambda);
        }
        reply.hijack(); // the response is written by the relay, not by fastify (its onResponse hook still runs)
        hijacked = true;
        return reply.raw;
      },
    });
    if (out.ok) {
      // ---- the answer is on its way through ----
      const target = out.llm;
      if (sessionKey) void Promise.resolve(ctx.sessions.set(sessionKey, target)).catch(() => undefined);
      out.done.then(
        ({ usage, firstByteAt }) => {
          const up = g.upstreams.get(target);
          const snap = router.snapshot();
          const estimate = snap.cost[snap.index.get(target) ?? -1];
          const { cost, fromUsage } = answerCost(up?.cfg.price, usage, estimate);
          const lm = llmMetrics(target);
          if (cost !== undefined) {
            const k = keyName ?? '-';
            let sp = lm.spend.get(k);
            if (!sp) lm.spend.set(k, (sp = metrics.spendOf(target, k)));
            sp.inc(cost);
            pacer?.record(cost);
          }
          if (usage.input !== undefined) lm.tokensIn.observe(usage.input);
          if (usage.output !== undefined) lm.tokensOut.observe(usage.output);
          if (stream && firstByteAt > 0) lm.ttft.observe((firstByteAt - t0) / 1000);
          if (key?.limits) ctx.limits.record(keyName!, (usage.input ?? 0) + (usage.output ?? 0), cost ?? 0).catch(() => metrics.limitErrors.inc());
          if (tracing) {
            span.setAttributes({ 'uniroute.llm': target, 'uniroute.attempts': out.attempts, 'uniroute.outcome': 'ok', ...(usage.input !== undefined ? { 'gen_ai.usage.input_tokens': usage.input } : {}), ...(usage.output !== undefined ? { 'gen_ai.usage.output_tokens': usage.output } : {}) });
            span.end();
          }
          if (ctx.logDecisions) {
            const d = decisions.get(target);
            req.log.info(
              {
                request_id: requestId,
                decision: { model: target, routed, cluster: d?.cluster ?? -1, ood: d?.ood ?? false, predicted_error: d && Number.isFinite(d.predicted) ? d.predicted : null, cost: cost ?? null, cost_from: fromUsage ? 'usage' : 'estimate', input_tokens: usage.input ?? null, output_tokens: usage.output ?? null, attempts: out.attempts, latency_ms: Math.round(performance.now() - t0) },
              },
              'chat completion',
            );
          }
        },
        (e: any) => {
          if (tracing) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: 'stream cut' });
            span.end();
          }
          if (signal.aborted) {
            metrics.upstreamOf(target, 'client_closed').inc(); // the client left mid-answer: the upstream request was aborted
            return;
          }
          const code = e?.code === 'UND_ERR_BODY_TIMEOUT' ? 'upstream_idle_timeout' : 'upstream_body_error';
          metrics.upstreamOf(target, code === 'upstream_idle_timeout' ? 'idle_timeout' : 'body_error').inc();
          req.log.warn({ request_id: requestId, model: target, code }, 'upstream stream broke after bytes were sent');
        },
      );
      return;
    }
    if (tracing) {
      span.setAttributes({ 'uniroute.attempts': out.attempts, 'uniroute.outcome': out.failure.code });
      span.setStatus({ code: SpanStatusCode.ERROR, message: out.failure.message });
    }
    span.end();
    if (signal.aborted) {
      // nobody to answer: end this request here, or fastify would wait for an answer (and a close for it)
      if (!hijacked) reply.hijack();
      reply.raw.destroy();
      return;
    }
    // ---- every attempt failed before a byte went out ----
    const f = out.failure;
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(f.headers ?? {})) if (k !== 'x-request-id') headers[k] = v;
    headers['x-uniroute-attempts'] = String(out.attempts);
    headers['x-uniroute-model'] = out.tried[out.tried.length - 1] ?? '';
    if (f.code === 'no_upstream') headers['x-should-retry'] = 'false';
    req.log.warn({ request_id: requestId, tried: out.tried, attempts: out.attempts, code: f.code, status: f.status }, 'request failed');
    return fail(f.status, f.code === 'no_upstream' ? noConfig(f.message) : f.message, f.code, headers);
  };

  const validation = { attachValidation: true };
  const chatSchema = {
    body: {
      type: 'object',
      required: ['model', 'messages'],
      properties: { model: { type: 'string', minLength: 1, maxLength: 256 }, messages: { type: 'array', minItems: 1 }, stream: { type: 'boolean' } },
    },
  };
  app.post<{ Body: Record<string, any> }>('/v1/chat/completions', { schema: chatSchema, ...validation }, (req, reply) => serve('chat', '/v1/chat/completions', req, reply));
  app.post<{ Body: Record<string, any> }>(
    '/v1/messages',
    {
      schema: {
        body: {
          type: 'object',
          required: ['model', 'messages'],
          properties: { model: { type: 'string', minLength: 1, maxLength: 256 }, messages: { type: 'array', minItems: 1 }, stream: { type: 'boolean' }, max_tokens: { type: 'integer', minimum: 1 } },
        },
      },
      ...validation,
    },
    (req, reply) => serve('messages', '/v1/messages', req, reply),
  );
  // Anthropic's token count (Claude Code asks before long requests): the gateway's estimate, the one it checks
  // context windows with (4 characters a token, 1,000 an image)
  app.post<{ Body: Record<string, any> }>(
    '/v1/messages/count_tokens',
    { schema: { body: { type: 'object', required: ['model', 'messages'], properties: { model: { type: 'string', minLength: 1 }, messages: { type: 'array' } } } } },
    async (req, reply) => {
      const g = ctx.gateway();
      if (g.keys.size > 0 && keyOf(g, presentedDigest(req.headers)) === undefined)
        return reply.status(401).type('application/json; charset=utf-8').send(errorIn('anthropic', 401, 'a valid API key is required (x-api-key, or Authorization: Bearer <key>)', 'invalid_api_key'));
      return { input_tokens: estimateTokens(req.body, 'messages') };
    },
  );
  for (const p of ['/v1/responses', '/v1/embeddings', '/v1/completions'])
    app.post<{ Body: Record<string, any> }>(
      p,
      { schema: { body: { type: 'object', required: ['model'], properties: { model: { type: 'string', minLength: 1, maxLength: 256 }, stream: { type: 'boolean' } } } }, ...validation },
      (req, reply) => serve('passthrough', p, req, reply),
    );
}

/** The context holding a span (for its children). */
function traceContext(span: Span) {
  return traceApi.setSpan(contextApi.active(), span);
}

/** λ as the response header writes it: the last one formatted is kept (most requests share the default λ). */
let lastLambda = Number.NaN;
let lastLambdaText = '';
function lambdaText(l: number): string {
  if (l !== lastLambda) {
    lastLambda = l;
    lastLambdaText = String(l);
  }
  return lastLambdaText;
}

/** The text to route on: the user messages' text content, joined (OpenAI and Anthropic messages alike). */
export function userText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  const parts: string[] = [];
  for (const m of messages) {
    if (!m || m.role !== 'user') continue;
    if (typeof m.content === 'string') parts.push(m.content);
    else if (Array.isArray(m.content)) for (const p of m.content) if (p && p.type === 'text' && typeof p.text === 'string') parts.push(p.text);
  }
  return parts.join('\n').trim();
}
