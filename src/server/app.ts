/**
 * The HTTP server: routing, the live LLM pool (admin, persisted atomically), an OpenAI-compatible proxy to the
 * chosen LLM, health and metrics. buildApp() is separate from listen() so that tests can inject().
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { UnirouteError, didYouMean } from '../errors.js';
import { embeddingsFromRows } from '../embed/embedder.js';
import { explainRow, type Router } from '../router/router.js';
import { MicroBatcher, type BatchSlice } from './batcher.js';
import { createMetrics } from './metrics.js';
import { SessionStore, buildGateway, chatRoutes, closeGateway, type Sessions } from './chat.js';
import { parseConfig, type GatewayConfig } from './config.js';
import type { LivePool } from '../pool/live.js';
import { DecisionSigner } from '../pool/feedback.js';

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
}

const errorBody = (code: string, message: string) => ({ error: { code, message } });

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
  const modelTag = live ? router.modelHash().slice(0, 16) : '';
  const decisionId = (model: string, k: number, cell: number) => signer!.sign({ h: modelTag, k, c: cell, m: model });
  const oodDefault = opts.config ? opts.config.ood : undefined;
  metrics.poolSize.set(router.size);
  const batcher = new MicroBatcher(() => router, {
    windowMs: opts.batchWindowMs ?? 1,
    maxBatch: opts.maxBatchPrompts ?? 512,
    maxPending: opts.maxPendingPrompts,
    onBatch: (n) => metrics.batchSize.observe(n),
  });

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimitBytes ?? 4 * 1024 * 1024,
    return503OnClosing: true,
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } },
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
  app.addHook('preClose', async () => {
    closing = true;
    for (const s of sockets) if (s.bytesRead === 0) s.destroy();
  });
  // (callback hooks: cheaper per request than async ones)
  app.addHook('onSend', (req, reply, payload, done) => {
    if (closing && !reply.raw.headersSent) reply.header('connection', 'close');
    done(null, payload);
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
  app.setNotFoundHandler((req, reply) => reply.status(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url}`)));

  // ---- metrics per request --------------------------------------------------------------------------------------
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.requestsOf(route, req.method, String(reply.statusCode)).inc();
    metrics.latencyOf(route).observe(reply.elapsedTime / 1000);
    if (closing) req.raw.socket?.end(); // answered during a close: end its keep-alive connection
    done();
  });

  const checkPrompt = (p: string, where: string) => {
    if (p.trim() === '') throw new UnirouteError('EMPTY_TEXT', `${where} is empty`);
    if (p.length > maxPromptChars) throw new UnirouteError('INVALID_ARGUMENT', `${where} has ${p.length} characters; the limit is ${maxPromptChars}`);
  };
  const checkLambda = (l: number | undefined) => {
    const lambda = l ?? router.defaultLambda;
    if (!Number.isFinite(lambda) || lambda < 0) throw new UnirouteError('INVALID_ARGUMENT', '`lambda` must be a finite number >= 0');
    return lambda;
  };
  const checkModels = (models: string[] | undefined) => {
    if (!models) return undefined;
    const known = router.snapshot().index;
    for (const m of models)
      if (!known.has(m)) throw new UnirouteError('UNKNOWN_MODEL', `\`models\` names "${m}", which is not in the pool${didYouMean(m, known.keys())}`);
    return models;
  };

  /** The chosen LLM of prompt i of a slice, counted in the decisions metric. */
  const chosen = (s: BatchSlice, i: number) => {
    const b = s.batch;
    const row = s.offset + i;
    const c = b.choice[row];
    metrics.decisionsOf(b.models[c]).inc();
    return { c, row, model: b.models[c], cluster: b.cluster[row], predictedError: b.chosenError[row] };
  };

  // Responses are written as JSON text. The candidates block of a nearest-centroid router without a difficulty
  // model depends only on the cluster (gamma = Psi[:, k]) and Ψ, so it is built once per cluster and Ψ and reused.
  const candidateCache = new WeakMap<Float32Array, Map<string, string>>();
  const quoted = new WeakMap<string[], string[]>();
  const names = (b: BatchSlice['batch']) => {
    let q = quoted.get(b.models);
    if (!q) quoted.set(b.models, (q = b.models.map((m) => JSON.stringify(m))));
    return q;
  };
  // the candidate fields are those of candidateRecord (src/router/decision.ts), written as text
  const candidatesJson = (b: BatchSlice['batch'], row: number, allowed?: Set<string>) => {
    const m = b.models.length;
    const q = names(b);
    const d = explainRow(b, row);
    let out = '{';
    let first = true;
    for (let j = 0; j < m; j++) {
      if (allowed && !allowed.has(b.models[j])) continue;
      const c = d.candidates[j];
      out += `${first ? '' : ','}${q[j]}:{"predicted_error":${c.predictedError},"cost":${c.cost},"outcomes":${c.outcomes},"evidence":${c.evidence},"interval":[${c.interval[0]},${c.interval[1]}]}`;
      first = false;
    }
    return out + '}';
  };
  const decisionJson = (s: BatchSlice, i: number, allowed?: Set<string>, allowedKey?: string) => {
    const b = s.batch;
    const { c, row, cluster: k, predictedError } = chosen(s, i);
    let cands: string;
    // with a learned map or a difficulty model the predicted errors differ per prompt: no per-cluster cache
    if (router.map || router.prior?.difficulty) cands = candidatesJson(b, row, allowed);
    else {
      // keyed by the batch's Ψ: one per pool snapshot and risk setting
      let cache = candidateCache.get(b.psi);
      if (!cache) candidateCache.set(b.psi, (cache = new Map()));
      const key = `${k}|${allowedKey ?? ''}`;
      const hit = cache.get(key);
      if (hit !== undefined) cands = hit;
      else {
        if (cache.size >= 4096) cache.clear(); // bounded: one entry per cluster and allowed set
        cache.set(key, (cands = candidatesJson(b, row, allowed)));
      }
    }
    const ood = b.ood[row] === 1;
    if (ood) metrics.ood.inc({ route: '/v1/route' });
    const id = signer ? `"decision_id":"${decisionId(b.models[c], k, router.cells ? b.cellOf[row] : -1)}",` : '';
    return `{${id}"model":${names(b)[c]},"cluster":${k},"distance":${b.distance[row]},"predicted_error":${predictedError},"cost":${b.costs[c]},"ood":${ood},"candidates":${cands}}`;
  };

  // ---- routing --------------------------------------------------------------------------------------------------
  app.post<{
    Body: { prompt?: string; prompts?: string[]; embedding?: number[]; embeddings?: number[][]; lambda?: number; models?: string[]; risk?: number; evidence?: 'prefer' | 'ignore'; max_error?: number; ood?: false | { quantile?: number; fallback?: string } };
  }>(
    '/v1/route',
    {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            prompt: { type: 'string' },
            prompts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: maxPrompts },
            // a router on your own embeddings takes vectors instead of texts
            embedding: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65536 },
            embeddings: { type: 'array', items: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65536 }, minItems: 1, maxItems: maxPrompts },
            lambda: { type: 'number', minimum: 0 },
            models: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 10_000 },
            risk: { type: 'number', minimum: 0, maximum: 100 },
            evidence: { type: 'string', enum: ['prefer', 'ignore'] },
            // a quality floor: the cheapest LLM whose predicted error is <= max_error (λ is then unused)
            max_error: { type: 'number', minimum: 0, maximum: 1 },
            // out-of-distribution handling for this request (default: the server's config)
            ood: {
              oneOf: [
                { const: false },
                { type: 'object', additionalProperties: false, properties: { quantile: { type: 'number', minimum: 0.5, maximum: 1 }, fallback: { type: 'string', minLength: 1, maxLength: 256 } } },
              ],
            },
          },
          oneOf: [{ required: ['prompt'] }, { required: ['prompts'] }, { required: ['embedding'] }, { required: ['embeddings'] }],
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const lambda = checkLambda(b.lambda);
      const models = checkModels(b.models);
      if (router.size === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty');
      if (b.max_error !== undefined && b.lambda !== undefined) throw new UnirouteError('INVALID_ARGUMENT', 'give `lambda` or `max_error`, not both');
      const policy = { lambda, risk: b.risk, evidence: b.evidence, ood: b.ood ?? oodDefault, ...(b.max_error !== undefined ? { maxError: b.max_error } : {}) };
      let slice: BatchSlice;
      let count: number;
      if (b.embedding !== undefined || b.embeddings !== undefined) {
        if (router.takesText) throw new UnirouteError('INVALID_ARGUMENT', 'this router embeds prompt texts itself: send "prompt" or "prompts"');
        const rows = b.embedding !== undefined ? [b.embedding] : b.embeddings!;
        const batch = await router.routeEmbeddings(embeddingsFromRows(rows, router.dim, b.embedding !== undefined ? 'embedding' : 'embeddings'), { ...policy, models });
        slice = { batch, offset: 0, count: rows.length };
        count = rows.length;
      } else {
        if (!router.takesText) throw new UnirouteError('INVALID_ARGUMENT', `this router takes your own ${router.dim}-d embeddings: send "embedding" or "embeddings"`);
        const texts = b.prompt !== undefined ? [b.prompt] : b.prompts!;
        texts.forEach((t, i) => checkPrompt(t, b.prompt !== undefined ? '`prompt`' : `\`prompts[${i}]\``));
        slice = await batcher.route(texts, policy, models);
        count = texts.length;
      }
      const allowed = models ? new Set(models) : undefined;
      const key = models ? [...allowed!].sort().join('\u0000') : undefined;
      let body = `{"lambda":${b.max_error !== undefined ? 0 : lambda},${b.max_error !== undefined ? `"max_error":${b.max_error},` : ''}${poolVersionJson()}"decisions":[`;
      for (let i = 0; i < count; i++) body += (i ? ',' : '') + decisionJson(slice, i, allowed, key);
      reply.type('application/json; charset=utf-8');
      return body + ']}';
    },
  );

  // ---- the pool -------------------------------------------------------------------------------------------------
  app.get('/v1/models', async (req, reply) => {
    if (live) reply.header('etag', `"${live.version}"`);
    return {
    object: 'list',
    ...(live ? { pool_version: live.version } : {}),
    data: router.models().map((m) => ({
      id: m.name,
      object: 'model',
      cost_per_query: m.costPerQuery,
      overall_error: m.overallError,
      outcomes: m.outcomes,
      coverage: m.coverage,
      upstream: gateway.upstreams.has(m.name),
    })),
    };
  });

  const admin = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!opts.adminToken)
      return reply.status(403).send(errorBody('ADMIN_DISABLED', 'admin endpoints are disabled: start the server with UNIROUTE_ADMIN_TOKEN set'));
    const h = req.headers.authorization ?? '';
    const given = Buffer.from(h.startsWith('Bearer ') ? h.slice(7) : '');
    const want = Buffer.from(opts.adminToken);
    if (given.length !== want.length || !timingSafeEqual(given, want))
      return reply.status(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHORIZED', 'a valid admin bearer token is required'));
    if (!opts.routerPath && !live)
      return reply.status(403).send(errorBody('READ_ONLY', 'the built-in router is read-only: start the server with --pool sqlite:FILE (or --router FILE) to change the pool'));
  };

  /** If-Match: <version> (quoted or not) on an admin write; a mismatch is 412. */
  const ifMatch = (req: FastifyRequest): number | undefined => {
    const h = req.headers['if-match'];
    if (h === undefined) return undefined;
    const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(String(h));
    if (!m) throw new UnirouteError('INVALID_ARGUMENT', `If-Match must be a pool version (a whole number), got ${JSON.stringify(String(h).slice(0, 40))}`);
    if (!live) throw new UnirouteError('INVALID_ARGUMENT', 'If-Match needs a pool store (--pool)');
    return Number(m[1]);
  };

  // Pool changes run one at a time. With a pool store each is written there in one transaction, then the router
  // takes the store's state; with a router file each is applied in memory, saved atomically, rolled back if the
  // save fails.
  const by = (req: FastifyRequest) => `admin@${req.ip}`;
  /** A store operation, timed and counted in the metrics. */
  const timed = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } catch (e) {
      if (e instanceof UnirouteError && e.code === 'STORE_UNAVAILABLE') metrics.storeErrors.inc({ op });
      throw e;
    } finally {
      metrics.storeLatency.observe({ op }, (performance.now() - t0) / 1000);
    }
  };
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn, fn);
    chain = next.catch(() => undefined);
    return next;
  };
  const persist = async (undo: () => void) => {
    try {
      await router.save(opts.routerPath!);
    } catch (e) {
      undo();
      throw new UnirouteError('INTERNAL', `could not save the pool to ${opts.routerPath}: ${(e as Error).message}; the change was rolled back`);
    } finally {
      metrics.poolSize.set(router.size);
    }
  };

  app.post<{ Body: { name: string; cost_per_query: number; outcomes: Array<{ text?: string; embedding?: number[]; correct: number }> } }>(
    '/v1/models',
    {
      onRequest: admin,
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'cost_per_query', 'outcomes'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 256 },
            cost_per_query: { type: 'number', minimum: 0 },
            outcomes: {
              type: 'array',
              minItems: 1,
              maxItems: maxOutcomes,
              items: {
                type: 'object',
                required: ['correct'],
                additionalProperties: false,
                properties: {
                  text: { type: 'string', minLength: 1 },
                  embedding: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65536 },
                  correct: { type: 'number', minimum: 0, maximum: 1 },
                },
              },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const { name, cost_per_query, outcomes } = req.body;
      outcomes.forEach((o, i) => {
        if (router.takesText) checkPrompt(o.text as string, `\`outcomes[${i}].text\``);
        else if (!o.embedding) throw new UnirouteError('INVALID_ARGUMENT', `\`outcomes[${i}].embedding\` is required: this router takes your own embeddings`);
      });
      const ifVersion = ifMatch(req);
      return serial(async () => {
        let info;
        if (live) {
          info = await timed('put', () => live.addModel(name, { costPerQuery: cost_per_query, outcomes }, { ifVersion, by: by(req) }));
          poolChanged();
          reply.header('etag', `"${info.version}"`);
        } else {
          info = await router.addModel(name, { costPerQuery: cost_per_query, outcomes });
          await persist(() => router.removeModel(name));
        }
        reply.status(201);
        return {
          ...(live ? { pool_version: live.version } : {}),
          id: info.name,
          cost_per_query: info.costPerQuery,
          outcomes: info.outcomes,
          overall_error: info.overallError,
          error_vector: info.errorVector,
          coverage: info.coverage,
          ...(info.coverage < 0.5
            ? { warning: `its outcomes cover clusters holding ${(100 * info.coverage).toFixed(0)} % of the prompts; elsewhere it competes only where no LLM with evidence is allowed` }
            : {}),
        };
      });
    },
  );

  // which prompts to label next for an LLM (in the pool or new): read-only, like /v1/route
  app.post<{ Params: { name: string }; Body: { prompts: string[]; budget: number; cost_per_query?: number; lambda?: number; seed?: number } }>(
    '/v1/models/:name/suggest',
    {
      schema: {
        body: {
          type: 'object',
          required: ['prompts', 'budget'],
          additionalProperties: false,
          properties: {
            prompts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: maxPrompts * 16 },
            budget: { type: 'integer', minimum: 1, maximum: 100_000 },
            cost_per_query: { type: 'number', minimum: 0 },
            lambda: { type: 'number', minimum: 0 },
            seed: { type: 'integer', minimum: 0 },
          },
        },
      },
    },
    async (req) => {
      const b = req.body;
      b.prompts.forEach((t, i) => checkPrompt(t, `\`prompts[${i}]\``));
      const picks = await router.suggestLabels(b.prompts, { budget: b.budget, model: req.params.name, costPerQuery: b.cost_per_query, lambda: b.lambda, seed: b.seed });
      return { model: req.params.name, suggestions: picks.map((p) => ({ index: p.index, cluster: p.cluster, reason: p.reason })) };
    },
  );

  app.delete<{ Params: { name: string } }>('/v1/models/:name', { onRequest: admin }, async (req, reply) => {
    const ifVersion = ifMatch(req);
    return serial(async () => {
      const name = req.params.name;
      if (live) {
        if (!router.has(name)) router.exportModel(name); // UNKNOWN_MODEL with a did-you-mean
        const version = await timed('remove', () => live.removeModel(name, { ifVersion, by: by(req) }));
        poolChanged();
        reply.header('etag', `"${version}"`);
        return { id: name, deleted: true, pool_version: version };
      }
      const entry = router.exportModel(name);
      router.removeModel(name);
      await persist(() => router.importModel(entry));
      return { id: name, deleted: true };
    });
  });

  // ---- feedback: production outcomes move Ψ ----------------------------------------------------------------------
  app.post<{ Body: { decision_id: string; correct?: number; score?: number; model?: string } }>(
    '/v1/feedback',
    {
      onRequest: async (req, reply) => {
        if (!opts.feedbackToken || !live)
          return reply.status(403).send(errorBody('FEEDBACK_DISABLED', 'feedback is disabled: start the server with --pool and UNIROUTE_FEEDBACK_TOKEN set'));
        const h = req.headers.authorization ?? '';
        const given = createHash('sha256').update(h.startsWith('Bearer ') ? h.slice(7) : '').digest();
        const want = createHash('sha256').update(opts.feedbackToken).digest();
        if (!timingSafeEqual(given, want)) return reply.status(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHORIZED', 'a valid feedback bearer token is required'));
      },
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['decision_id'],
          properties: {
            decision_id: { type: 'string', minLength: 1, maxLength: 1024 },
            correct: { type: 'integer', enum: [0, 1] },
            score: { type: 'number', minimum: 0, maximum: 1 },
            model: { type: 'string', minLength: 1, maxLength: 256 },
          },
          oneOf: [{ required: ['correct'] }, { required: ['score'] }],
        },
      },
    },
    async (req) => {
      const b = req.body;
      const d = signer!.verify(b.decision_id);
      if (d.h !== modelTag) throw new UnirouteError('ARTIFACT_MISMATCH', 'this decision was made with another fitted model: its cluster means nothing here');
      const maxAge = opts.feedbackMaxAgeMs ?? 7 * 86_400_000;
      if (Date.now() - d.t > maxAge) throw new UnirouteError('INVALID_ARGUMENT', `this decision is older than ${Math.round(maxAge / 3_600_000)} h: feedback on it is no longer taken`);
      const model = b.model ?? d.m;
      const error = 1 - (b.correct ?? b.score!);
      try {
        const version = await serial(() =>
          timed('feedback', () => live!.feedback({ model, cluster: d.k, cell: d.c, error, id: `${b.decision_id.split('.')[1]}|${model}`, decidedAt: d.t, halfLifeMs: opts.feedbackHalfLifeMs })),
        );
        metrics.feedback.inc({ model, result: 'counted' });
        poolChanged();
        return { counted: true, model, cluster: d.k, error, pool_version: version };
      } catch (e) {
        metrics.feedback.inc({ model: router.has(model) ? model : 'unknown', result: e instanceof UnirouteError ? e.code : 'error' });
        throw e;
      }
    },
  );

  // ---- the live pool: other processes' changes arrive by polling the store's version ------------------------------
  if (live) {
    let failing = false;
    const poll = setInterval(() => {
      const t0 = performance.now();
      serial(() => live.refresh())
        .then((changed) => {
          metrics.storeLatency.observe({ op: 'poll' }, (performance.now() - t0) / 1000);
          if (changed) poolChanged();
          if (failing) app.log.warn({ store: live.store.description }, 'pool store reachable again');
          failing = false;
          storeDown = undefined;
        })
        .catch((e) => {
          metrics.storeErrors.inc({ op: 'poll' });
          if (!failing) app.log.error({ store: live.store.description, err: (e as Error).message }, 'pool store unavailable: routing on the last pool');
          failing = true;
          storeDown = (e as Error).message;
        });
    }, opts.poolPollMs ?? 250);
    poll.unref();
    // told at once where the store can tell (Redis pub/sub); the poll above still catches what a message missed
    const unwatch = live.store.watch?.((v) => {
      if (v > live.version) serial(() => live.refresh()).then((changed) => changed && poolChanged(), () => undefined);
    });
    app.addHook('onClose', async () => {
      unwatch?.();
      clearInterval(poll);
      await chain.catch(() => undefined);
      await live.close();
    });
  }

  // ---- OpenAI-compatible proxy (src/server/chat.ts) ------------------------------------------------------------
  let gateway = buildGateway(opts.config ?? parseConfig({}), router);
  const sticky0 = gateway.sticky || { maxSessions: 100_000, ttlMs: 3_600_000 };
  // sticky sessions: in the pool store when it is shared by replicas (Redis), else in this process
  const shared = live?.store as { sessionGet?: (k: string) => Promise<string | undefined>; sessionSet?: (k: string, m: string, ttl: number) => Promise<void> } | undefined;
  let sessionTtl = sticky0.ttlMs;
  const sessions: Sessions =
    shared?.sessionGet && shared.sessionSet
      ? {
          get: (k) => shared.sessionGet!(k),
          set: (k, m) => shared.sessionSet!(k, m, sessionTtl),
          configure: (_max, ttl) => {
            sessionTtl = ttl;
          },
        }
      : new SessionStore(sticky0.maxSessions, sticky0.ttlMs);
  chatRoutes(app, { router, batcher, metrics, gateway: () => gateway, maxPromptChars, logDecisions: !!opts.logger, ood: oodDefault, sessions, ...(signer ? { decisionId } : {}), ...(live ? { poolVersion: () => live.version } : {}), pacers: new Map(), budgetDayMs: opts.budgetDayMs });
  /** Swaps in a new config (SIGHUP): new requests use it; those in flight finish on the old upstream pools. */
  app.decorate('reloadGateway', async (cfg: GatewayConfig) => {
    const next = buildGateway(cfg, router); // throws on a bad preset: the old config stays
    const old = gateway;
    gateway = next;
    if (next.sticky) sessions.configure(next.sticky.maxSessions, next.sticky.ttlMs);
    await closeGateway(old);
  });
  app.addHook('onClose', async () => closeGateway(gateway));
  const breakerGauge = () => {
    for (const [name, u] of gateway.upstreams) metrics.breakerOpen.set({ model: name }, u.breaker.state() === 'closed' ? 0 : 1);
  };

  // ---- health and metrics ---------------------------------------------------------------------------------------
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (req, reply) => {
    if (router.size === 0) return reply.status(503).send({ status: 'not ready', reason: 'the pool is empty' });
    if (storeDown !== undefined) return { status: 'degraded', reason: `the pool store is unavailable (${storeDown}); routing on pool version ${live!.version}`, models: router.size, clusters: router.k, pool_version: live!.version };
    return { status: 'ready', models: router.size, clusters: router.k, ...(live ? { pool_version: live.version, pool_store: live.store.description } : {}) };
  });
  app.get('/metrics', async (req, reply) => {
    breakerGauge();
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  return app;
}

export { userText } from './chat.js';
