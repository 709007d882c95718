/**
 * The HTTP server. buildApp() sets up what the route plugins share (the router, the micro-batcher, metrics, the
 * pool store, decision ids, the gateway config) and registers them: /v1/route (route.ts), the pool, admin and
 * feedback (pool-routes.ts), the OpenAI-compatible proxy (chat.ts), health and metrics (health.ts). It is separate
 * from listen() so that tests can inject().
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { UnirouteError } from '../errors.js';
import type { Router } from '../router/router.js';
import { MicroBatcher } from './batcher.js';
import { createMetrics } from './metrics.js';
import { SessionStore, buildGateway, chatRoutes, closeGateway, keyOf, presentedDigest, type Sessions } from './chat.js';
import { MemoryCounters } from '../pool/counters.js';
import { sameDigest, tokenDigest } from './tokens.js';
import { parseConfig, type GatewayConfig } from './config.js';
import { routeRoutes } from './route.js';
import { poolRoutes } from './pool-routes.js';
import { healthRoutes } from './health.js';
import { errorBody, type ServerContext } from './context.js';
import { redactCredentials } from '../redact.js';

/** The log's view of a request: its URL with any credential in the query redacted (no headers). */
const logSerializers = {
  req: (req: { method?: string; url?: string; hostname?: string; ip?: string; socket?: { remotePort?: number } }) => ({
    method: req.method,
    url: redactCredentials(String(req.url ?? '')),
    hostname: req.hostname,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  }),
};

/** Errors of the HTTP parser (a malformed request, headers too large, a timeout), in the documented shape. */
function clientError(err: Error & { code?: string }, socket: import('node:net').Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'HEADERS_TOO_LARGE', 'the request headers exceed the server\'s limit']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'REQUEST_TIMEOUT', 'the request did not arrive in time']
        : [400, 'BAD_REQUEST', 'the request is not valid HTTP'];
  const body = JSON.stringify(errorBody(code, message));
  if (socket.writable)
    socket.write(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
  socket.destroy(err);
}
import type { LivePool } from '../pool/live.js';
import { DecisionSigner } from '../pool/feedback.js';
import { batchRoutes, type BatchServerOptions } from './batch-routes.js';

export interface ServerOptions {
  router: Router;
  /** Where pool changes are saved (atomically); without it (and without `pool`) the admin endpoints are read-only. */
  routerPath?: string;
  /** The pool store the router is bound to (src/pool): changes go there, other processes' changes come from it. */
  pool?: LivePool;
  /** How often to look for other processes' pool changes, in ms (default 250). */
  poolPollMs?: number;
  /** Signs decision ids (src/pool/feedback.ts); with a pool and no signer, a random one (ids hold for this process only). */
  feedbackSigner?: DecisionSigner;
  /** Bearer token for POST /v1/feedback; unset = feedback disabled. */
  feedbackToken?: string;
  /** Decay an LLM's older evidence with this half-life (ms) as feedback arrives; default none. */
  feedbackHalfLifeMs?: number;
  /** The length of a budget "day" in ms (default 24 h; tests shorten it). */
  budgetDayMs?: number;
  /** Decisions older than this (ms) take no feedback (default 7 days). */
  feedbackMaxAgeMs?: number;
  /** Bearer token for the admin endpoints; unset = admin endpoints disabled. */
  adminToken?: string;
  /** The gateway's config (upstreams, presets, retry, breaker, limits): src/server/config.ts. */
  config?: GatewayConfig;
  batchWindowMs?: number;
  maxBatchPrompts?: number;
  /** Most prompts queued for the engine; beyond, requests get 503 with Retry-After (default 65,536). */
  maxPendingPrompts?: number;
  bodyLimitBytes?: number;
  maxPromptChars?: number;
  maxPromptsPerRequest?: number;
  maxOutcomes?: number;
  logger?: boolean;
  /** The Batch API (/v1/files, /v1/batches; src/server/batch-routes.ts): on when given. */
  batch?: BatchServerOptions;
}


export async function buildApp(opts: ServerOptions): Promise<FastifyInstance> {
  const router = opts.router;
  const maxPromptChars = opts.maxPromptChars ?? 100_000;
  const maxPrompts = opts.maxPromptsPerRequest ?? 1024;
  const maxOutcomes = opts.maxOutcomes ?? 100_000;
  const metrics = createMetrics();
  const live = opts.pool;
  let storeDown: string | undefined;
  const poolVersionJson = () => (live ? `"pool_version":${live.version},` : '');
  const poolChanged = () => {
    metrics.poolSize.set(router.size);
    if (live) metrics.poolVersion.set(live.version);
  };
  if (live) metrics.poolVersion.set(live.version);
  // decision ids (for feedback) when the pool is a store
  const signer = live ? (opts.feedbackSigner ?? DecisionSigner.random()) : undefined;
  const modelTag = live ? live.modelHash.slice(0, 16) : '';
  const decisionId = (model: string, k: number, cell: number) => signer!.sign({ h: modelTag, k, c: cell, m: model });
  const oodDefault = opts.config ? opts.config.ood : undefined;
  metrics.poolSize.set(router.size);
  const batcher = new MicroBatcher(() => router, {
    // 0: the requests of one event-loop turn. Under load a turn already holds ~20 of them (as many as a 1 ms window
    // gathered), and nobody is held back: on the proxy bench 0 ms cost ~9 us less of the event loop per request.
    windowMs: opts.batchWindowMs ?? 0,
    maxBatch: opts.maxBatchPrompts ?? 512,
    maxPending: opts.maxPendingPrompts,
    onBatch: (n) => metrics.batchSize.observe(n),
  });

  const app = Fastify({
    // credentials in a request's query (?token=, ?key=, …) never reach the log
    logger: opts.logger ? { serializers: logSerializers } : false,
    bodyLimit: opts.bodyLimitBytes ?? 4 * 1024 * 1024,
    // a request that still arrives while closing (on a kept-alive connection) is answered, and its connection ended
    // (the onResponse hook below); fastify's own 503 body is not the documented shape
    return503OnClosing: false,
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } },
    // errors found before a route runs, in the documented shape too
    frameworkErrors: (err, req, reply) => {
      const e = err as Error & { code?: string };
      const why = e.code === 'FST_ERR_BAD_URL' ? `the path ${redactCredentials(req.url).slice(0, 200)} is not valid percent-encoding` : e.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : e.message;
      (reply as unknown as import('fastify').FastifyReply).status(400).send(errorBody('INVALID_ARGUMENT', why));
    },
    clientErrorHandler: clientError,
  });

  // Closing waits for requests in flight, and closes idle keep-alive connections; a connection that was opened but
  // never sent a byte is neither, and would hold the close for the 60 s header timeout: close those too.
  const sockets = new Set<import('node:net').Socket>();
  app.server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  // A keep-alive connection whose request was in flight at close is idle once it is answered: end it then.
  let closing = false;
  // An answer whose headers are not sent yet says `connection: close` (node's http does it for a response whose
  // shouldKeepAlive is false, and ends the socket after it); found through the socket's current response, so that
  // no per-request hook is needed (an onSend hook showed in the proxy's profile).
  app.addHook('preClose', async () => {
    closing = true;
    for (const s of sockets) {
      if (s.bytesRead === 0) s.destroy();
      const res = (s as unknown as { _httpMessage?: import('node:http').ServerResponse })._httpMessage;
      if (res && !res.headersSent) res.shouldKeepAlive = false;
    }
  });

  app.removeContentTypeParser('text/plain'); // JSON only: anything else is a 415

  // ---- errors: one shape everywhere ---------------------------------------------------------------------------
  app.setErrorHandler((err: any, req, reply) => {
    if (err instanceof UnirouteError) {
      if (err.code === 'OVERLOADED') reply.header('retry-after', '1');
      return reply.status(err.httpStatus).send(errorBody(err.code, err.message));
    }
    if (err.validation) return reply.status(400).send(errorBody('INVALID_ARGUMENT', `${err.validationContext ?? 'body'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? err.message}`));
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send(errorBody('PAYLOAD_TOO_LARGE', `request body exceeds ${app.initialConfig.bodyLimit} bytes`));
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply.status(415).send(errorBody('UNSUPPORTED_MEDIA_TYPE', 'send application/json'));
    if (err.statusCode && err.statusCode < 500) return reply.status(err.statusCode).send(errorBody('INVALID_ARGUMENT', err.message));
    req.log.error(err);
    return reply.status(500).send(errorBody('INTERNAL', 'internal error'));
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.slice(0, 300)}`)));

  // ---- metrics per request (a callback hook: cheaper per request than an async one) ----------------------------
  // each (route, method)'s children found once, then by status (the label join per request showed in the profile)
  const perRoute = new Map<string, Map<string, { latency: { observe(v: number): void }; byStatus: Map<number, { inc(): void }> }>>();
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unknown';
    let methods = perRoute.get(route);
    if (!methods) {
      if (perRoute.size >= 256) perRoute.clear(); // routes are the registered ones and 'unknown': never many
      perRoute.set(route, (methods = new Map()));
    }
    let m = methods.get(req.method);
    if (!m) {
      if (methods.size >= 32) methods.clear();
      methods.set(req.method, (m = { latency: metrics.latencyOf(route), byStatus: new Map() }));
    }
    const status = reply.statusCode;
    let c = m.byStatus.get(status);
    if (!c) m.byStatus.set(status, (c = metrics.requestsOf(route, req.method, String(status))));
    c.inc();
    m.latency.observe(reply.elapsedTime / 1000);
    if (closing) req.raw.socket?.end(); // answered during a close: end its keep-alive connection
    done();
  });

  const checkPrompt = (p: string, where: string) => {
    if (!/\S/.test(p)) throw new UnirouteError('EMPTY_TEXT', `${where} is empty`);
    if (p.length > maxPromptChars) throw new UnirouteError('INVALID_ARGUMENT', `${where} has ${p.length} characters; the limit is ${maxPromptChars}`);
  };
  // ---- OpenAI-compatible proxy (src/server/chat.ts) ------------------------------------------------------------
  let gateway = buildGateway(opts.config ?? parseConfig({}), router);
  const sticky0 = gateway.sticky || { maxSessions: 100_000, ttlMs: 3_600_000 };
  // sticky sessions: in the pool store when it is shared by replicas (Redis), else in this process
  // (capped there as here: at most sticky.max_sessions live sessions, keys of a bounded size)
  const shared = live?.store as { sessionGet?: (k: string) => Promise<string | undefined>; sessionSet?: (k: string, m: string, ttl: number, max: number) => Promise<void> } | undefined;
  let sessionTtl = sticky0.ttlMs;
  let sessionMax = sticky0.maxSessions;
  const sessions: Sessions =
    shared?.sessionGet && shared.sessionSet
      ? {
          get: (k) => shared.sessionGet!(k),
          set: (k, m) => shared.sessionSet!(k, m, sessionTtl, sessionMax),
          configure: (max, ttl) => {
            sessionTtl = ttl;
            sessionMax = max;
          },
        }
      : new SessionStore(sticky0.maxSessions, sticky0.ttlMs);
  // per-key rate and spend counters: in the pool store (Redis: shared by the replicas), else in this process
  const limits = live?.store.counters?.() ?? new MemoryCounters();
  chatRoutes(app, { router, batcher, metrics, gateway: () => gateway, maxPromptChars, logDecisions: !!opts.logger, ood: oodDefault, sessions, ...(signer ? { decisionId } : {}), ...(live ? { poolVersion: () => live.version } : {}), pacers: new Map(), budgetDayMs: opts.budgetDayMs, limits });
  // with client keys, the read routes (/v1/route, /v1/models, /metrics) want a key too, or the admin token
  const adminDigest = opts.adminToken ? tokenDigest(opts.adminToken) : undefined;
  const clientAuth = async (req: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const g = gateway;
    if (g.keys.size === 0) return;
    const d = presentedDigest(req.headers);
    if (keyOf(g, d) !== undefined || (adminDigest && sameDigest(d, adminDigest))) return;
    return reply.status(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHORIZED', 'this gateway has client keys: send one (Authorization: Bearer <key>, or x-api-key), or the admin token'));
  };
  /** Swaps in a new config (SIGHUP): new requests use it; those in flight finish on the old upstream pools. */
  app.decorate('reloadGateway', async (cfg: GatewayConfig) => {
    const next = buildGateway(cfg, router); // throws on a bad preset: the old config stays
    const old = gateway;
    gateway = next;
    if (next.sticky) sessions.configure(next.sticky.maxSessions, next.sticky.ttlMs);
    await closeGateway(old);
  });
  app.addHook('onClose', async () => closeGateway(gateway));

  const ctx: ServerContext = {
    opts,
    router,
    metrics,
    batcher,
    live,
    signer,
    modelTag,
    decisionId,
    oodDefault,
    maxPrompts,
    maxOutcomes,
    checkPrompt,
    poolChanged,
    poolVersionJson,
    gateway: () => gateway,
    clientAuth,
    storeDown: () => storeDown,
    setStoreDown: (why) => {
      storeDown = why;
    },
  };
  routeRoutes(app, ctx);
  poolRoutes(app, ctx);
  healthRoutes(app, ctx);
  if (opts.batch) batchRoutes(app, ctx, { config: opts.config?.batch, ...opts.batch });

  return app;
}

export { userText } from './chat.js';
