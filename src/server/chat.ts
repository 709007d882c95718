/**
 * The OpenAI-compatible proxy (a fastify plugin): POST /v1/chat/completions.
 *
 * "model" picks how to decide: "uniroute" (the router's default operating point), "uniroute:lambda=X",
 * "uniroute/<preset>" (a preset of the config file; "best" = λ 0 and "default" exist without one), or the name of
 * an LLM with an upstream (sent there, no routing). The request body is parsed once (fastify) for the user text and
 * forwarded with only "model" changed; the upstream's answer is streamed through as it arrives, its headers with
 * it (less the hop-by-hop ones). When the chosen upstream fails before any byte went to the client (connect
 * error, 429, 5xx, header timeout), the request goes to the next-best LLM by the router's score, up to
 * `retry.attempts`; an upstream that keeps failing is skipped while its circuit breaker is open.
 */
import { randomUUID } from 'node:crypto';
import { bearerDigest, sameDigest, tokenDigest } from './tokens.js';
import { BudgetPacer } from './budget.js';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Router } from '../router/router.js';
import type { MicroBatcher, Policy } from './batcher.js';
import type { GatewayConfig } from './config.js';
import { RequestSignal, Upstream, type AttemptFailure } from './gateway.js';
import type { Metrics } from './metrics.js';
import { lambdaForTarget } from '../decide/operating.js';
import { UnirouteError } from '../errors.js';

/** A preset resolved against the router: the policy and the allowed LLMs. */
export interface ResolvedPreset {
  policy: Omit<Policy, 'lambda'> & { lambda?: number };
  models?: string[];
  /** Human-readable: how the λ was found. */
  note: string;
}

/** The live gateway state, swapped whole on a config reload. */
export interface Gateway {
  upstreams: Map<string, Upstream>;
  presets: Map<string, ResolvedPreset>;
  attempts: number;
  errorBytes: number;
  sticky: GatewayConfig['sticky'];
  /** Client keys: the sha256 of each key's value, by key name (empty = no client keys required). */
  keys: Map<string, { digest: Buffer; budgetUsdPerDay?: number }>;
  /** How many of the upstreams' breakers are not closed (shared with them). */
  tripped: { count: number };
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
  const upstreams = new Map<string, Upstream>();
  const tripped = { count: 0 };
  for (const [name, u] of cfg.upstreams) upstreams.set(name, new Upstream(name, u, cfg.breaker, tripped));
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
    presets.set(name, { policy: { ...(lambda !== undefined ? { lambda } : {}), ...(p.maxError !== undefined ? { maxError: p.maxError } : {}) }, models: p.models, note });
  }
  const keys = new Map<string, { digest: Buffer; budgetUsdPerDay?: number }>();
  for (const [name, k] of cfg.keys) {
    const value = process.env[k.keyEnv];
    if (!value) throw new UnirouteError('INVALID_ARGUMENT', `${cfg.source}: keys.${name}.key_env: the environment variable ${k.keyEnv} is not set`);
    keys.set(name, { digest: tokenDigest(value), ...(k.budgetUsdPerDay !== undefined ? { budgetUsdPerDay: k.budgetUsdPerDay } : {}) });
  }
  return { upstreams, presets, attempts: cfg.retry.attempts, errorBytes: cfg.limits.upstreamErrorBytes, sticky: cfg.sticky, keys, tripped, active: 0 };
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
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const SESSION_ID = /^[\x20-\x7e]{1,256}$/;

export function chatRoutes(app: FastifyInstance, ctx: ChatContext): void {
  const { router, batcher, metrics } = ctx;
  const oai = (reply: FastifyReply, status: number, message: string, type: string, code: string | null = null) =>
    reply.status(status).send({ error: { message, type, param: null, code } });

  app.post<{ Body: Record<string, any> }>(
    '/v1/chat/completions',
    {
      schema: {
        body: {
          type: 'object',
          required: ['model', 'messages'],
          properties: { model: { type: 'string', minLength: 1, maxLength: 256 }, messages: { type: 'array', minItems: 1 }, stream: { type: 'boolean' } },
        },
      },
      // request validation errors in OpenAI's shape
      attachValidation: true,
    },
    async (req, reply) => {
      const t0 = performance.now();
      const given = req.headers['x-request-id'];
      const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
      reply.header('x-request-id', requestId);
      if (req.validationError) {
        const v = (req.validationError as any).validation?.[0];
        const param = v?.instancePath ? v.instancePath.slice(1).replace(/\//g, '.') : (v?.params?.missingProperty ?? null);
        return reply.status(400).send({ error: { message: `body${v?.instancePath ?? ''} ${v?.message ?? req.validationError.message}`, type: 'invalid_request_error', param, code: 'invalid_request' } });
      }
      const g = ctx.gateway();
      g.active++;
      // one listener: the request is over (for a reload's drain), and a client gone early aborts the upstream
      const ac = new RequestSignal();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) ac.abort(new Error('client closed'));
        if (--g.active === 0) g.retired?.();
      });
      const body = req.body;
      const modelName: string = body.model;
      // client keys: when configured, one must be presented; spend and budgets are per key
      let keyName: string | undefined;
      if (g.keys.size > 0) {
        const given = bearerDigest(req.headers.authorization);
        for (const [name, k] of g.keys) if (sameDigest(given, k.digest)) keyName = name;
        if (!keyName) return reply.status(401).send({ error: { message: 'a valid API key is required (Authorization: Bearer <key>)', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
      }
      let pacer: BudgetPacer | undefined;
      const budget = keyName ? g.keys.get(keyName)!.budgetUsdPerDay : undefined;
      if (keyName && budget !== undefined) {
        pacer = ctx.pacers.get(keyName);
        if (!pacer) ctx.pacers.set(keyName, (pacer = new BudgetPacer(budget, ctx.budgetDayMs)));
        pacer.budgetPerDay = budget; // a reload may change it
      }

      // ---- how to decide ----
      let routed = false;
      let policy: Policy = { lambda: router.defaultLambda };
      let allowedBy: string[] | undefined;
      const lam = /^uniroute(?::lambda=([0-9.eE+-]+))?$/.exec(modelName);
      const pre = /^uniroute\/(.+)$/.exec(modelName);
      if (lam) {
        routed = true;
        const lambda = lam[1] !== undefined ? Number(lam[1]) : router.defaultLambda;
        if (!Number.isFinite(lambda) || lambda < 0) return oai(reply, 400, `invalid lambda in model "${modelName}"`, 'invalid_request_error', 'invalid_lambda');
        policy = { lambda, explain: false, ood: ctx.ood };
      } else if (pre) {
        const p = g.presets.get(pre[1]);
        if (!p) return oai(reply, 404, `no preset "${pre[1]}"; presets: ${[...g.presets.keys()].map((k) => `uniroute/${k}`).join(', ')}`, 'invalid_request_error', 'model_not_found');
        routed = true;
        policy = { lambda: p.policy.lambda ?? router.defaultLambda, explain: false, ood: ctx.ood, ...(p.policy.maxError !== undefined ? { maxError: p.policy.maxError } : {}) };
        allowedBy = p.models;
      } else if (!g.upstreams.has(modelName)) {
        return oai(reply, 404, `model "${modelName}" is neither "uniroute", "uniroute/<preset>" nor an LLM with an upstream`, 'invalid_request_error', 'model_not_found');
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
        if (!text) return oai(reply, 400, 'the conversation has no user text to route on', 'invalid_request_error', 'empty_prompt');
        if (text.length > ctx.maxPromptChars) return oai(reply, 400, `the user text has ${text.length} characters; the limit is ${ctx.maxPromptChars}`, 'invalid_request_error', 'prompt_too_long');
      }


      // a conversation keeps its LLM across turns (x-session-id, or the request's "user"), per model alias
      let sessionKey: string | undefined;
      if (routed && g.sticky) {
        const h = req.headers['x-session-id'];
        const sid = typeof h === 'string' && SESSION_ID.test(h) ? h : typeof body.user === 'string' && SESSION_ID.test(body.user) ? `user:${body.user}` : undefined;
        if (sid) {
          sessionKey = `${modelName}\u0000${sid}`;
          policy = { ...policy, explain: true }; // the session's LLM is compared by its predicted error
        }
      }
      let stickyOutcome: 'kept' | 'switched' | 'new' | undefined;
      const tried = new Set<string>();
      let last: AttemptFailure | undefined;
      const attempts = routed ? g.attempts : 1;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        // ---- choose ----
        let target: string;
        let cluster = -1;
        let predicted = NaN;
        let ood = false;
        let cell = -1;
        if (routed) {
          const pool = router.snapshot().names;
          let candidates: string[];
          if (tried.size === 0 && !allowedBy && g.tripped.count === 0) {
            // the common case (first attempt, no preset subset, every breaker closed): made once per pool
            if (g.routable?.names !== pool) g.routable = { names: pool, list: pool.filter((n) => g.upstreams.has(n)) };
            candidates = g.routable.list;
          } else {
            const now = Date.now();
            candidates = pool.filter((n) => {
              const u = g.upstreams.get(n);
              return u !== undefined && !tried.has(n) && u.breaker.allows(now) && (!allowedBy || allowedBy.includes(n));
            });
          }
          if (candidates.length === 0) {
            if (last) break;
            const anyUp = pool.some((n) => g.upstreams.has(n) && (!allowedBy || allowedBy.includes(n)));
            reply.header('retry-after', '1');
            return oai(reply, 503, anyUp ? 'every upstream that could answer is cooling down after repeated failures' : 'no LLM in the pool has an upstream', 'server_error', anyUp ? 'upstreams_unavailable' : 'no_upstream');
          }
          // every LLM of the pool allowed: no mask to build
          let slice;
          try {
            slice = await batcher.route([text], policy, candidates.length === pool.length ? undefined : candidates);
          } catch (e) {
            if (e instanceof UnirouteError && e.code === 'OVERLOADED') {
              reply.header('retry-after', '1');
              return oai(reply, 503, e.message, 'server_error', 'overloaded');
            }
            throw e;
          }
          const row = slice.offset;
          const c = slice.batch.choice[row];
          target = slice.batch.models[c];
          cluster = slice.batch.cluster[row];
          predicted = slice.batch.chosenError[row];
          ood = slice.batch.ood[row] === 1;
          cell = router.cells ? slice.batch.cellOf[row] : -1;
          if (sessionKey && g.sticky && attempt === 1) {
            // a shared store that cannot answer: route as for a new conversation
            const prev = await Promise.resolve(ctx.sessions.get(sessionKey)).catch(() => undefined);
            const b = slice.batch;
            const jp = prev === undefined ? -1 : b.models.indexOf(prev);
            if (prev === undefined) stickyOutcome = 'new';
            else if (prev === target) stickyOutcome = 'kept';
            else if (jp >= 0 && candidates.includes(prev) && b.predictedError.length) {
              const m = b.models.length;
              const score = (j: number) => b.predictedError[row * m + j] + b.lambda * b.costs[j];
              if (score(jp) - score(c) <= g.sticky.margin) {
                target = prev;
                predicted = b.predictedError[row * m + jp];
                stickyOutcome = 'kept';
              } else stickyOutcome = 'switched';
            } else stickyOutcome = 'switched'; // its LLM left the pool, lost its upstream, or is cooling down
            metrics.sticky.inc({ outcome: stickyOutcome });
          }
          metrics.decisionsOf(target).inc();
          if (ood) metrics.ood.inc({ route: '/v1/chat/completions' });
        } else target = modelName;
        tried.add(target);
        const up = g.upstreams.get(target)!;
        up.breaker.begin();
        const forward = JSON.stringify({ ...body, model: up.cfg.model });
        const h0 = performance.now();
        // a 2xx answer: the client's headers are written when the upstream's arrive, and its body relayed as it comes
        const open = (status: number, headers: Record<string, string | string[]>) => {
          headers['x-request-id'] = requestId;
          headers['x-uniroute-model'] = target;
          headers['x-uniroute-attempts'] = String(attempt);
          if (ctx.poolVersion) headers['x-uniroute-pool-version'] = String(ctx.poolVersion());
          if (cluster >= 0) {
            headers['x-uniroute-cluster'] = String(cluster);
            headers['x-uniroute-predicted-error'] = predicted.toFixed(5);
            if (ood) headers['x-uniroute-ood'] = 'true';
            if (stickyOutcome) headers['x-uniroute-sticky'] = stickyOutcome;
            if (ctx.decisionId) headers['x-uniroute-decision-id'] = ctx.decisionId(target, cluster, cell);
          }
          reply.raw.writeHead(status, headers); // throws on headers node refuses: then nothing went out, fastify still answers
          reply.hijack(); // the response is written here, not by fastify (its onResponse hook still runs)
          return reply.raw;
        };
        const res = await up.send(forward, requestId, ac, g.errorBytes, open);
        if (res.ok) {
          // ---- the answer is on its way through ----
          up.breaker.success();
          if (sessionKey) void Promise.resolve(ctx.sessions.set(sessionKey, target)).catch(() => undefined);
          metrics.upstreamLatencyOf(target).observe((performance.now() - h0) / 1000);
          metrics.upstreamOf(target, String(res.status)).inc();
          const snap = router.snapshot();
          const cost = snap.cost[snap.index.get(target) ?? -1];
          if (cost !== undefined && Number.isFinite(cost)) {
            metrics.spendOf(target, keyName ?? '-').inc(cost);
            pacer?.record(cost);
          }
          res.done.then(
            () => {
              if (ctx.logDecisions)
                req.log.info(
                  {
                    request_id: requestId,
                    decision: { model: target, routed, cluster, ood, predicted_error: Number.isFinite(predicted) ? predicted : null, cost: cost ?? null, attempts: attempt, latency_ms: Math.round(performance.now() - t0) },
                  },
                  'chat completion',
                );
            },
            (e: any) => {
              if (ac.aborted) {
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
        if (ac.aborted) {
          metrics.upstreamOf(target, 'client_closed').inc();
          // nobody to answer: end this request here, or fastify would wait for an answer (and a close for it)
          reply.hijack();
          reply.raw.destroy();
          return;
        }
        metrics.upstreamOf(target, res.failure.code.startsWith('upstream_') ? res.failure.code.slice(9) : String(res.failure.status)).inc();
        if (res.failure.retryable) up.breaker.failure();
        else up.breaker.success(); // it answered: a 4xx is about the request, not the upstream's health
        last = res.failure;
        if (!res.failure.retryable) break;
        if (attempt < attempts && routed) metrics.failovers.inc({ from: target });
      }
      // ---- every attempt failed before a byte went out ----
      const f = last!;
      for (const [k, v] of Object.entries(f.headers ?? {})) if (k !== 'x-request-id') reply.header(k, v);
      reply.header('x-uniroute-attempts', String(tried.size));
      reply.header('x-uniroute-model', [...tried].pop() ?? '');
      req.log.warn({ request_id: requestId, tried: [...tried], code: f.code, status: f.status }, 'chat completion failed');
      return oai(reply, f.status, f.message, f.status === 429 ? 'rate_limit_error' : f.status < 500 ? 'invalid_request_error' : 'upstream_error', f.code);
    },
  );
}

/** The text to route on: the user messages' text content, joined. */
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
