/**
 * The pool over HTTP (a fastify plugin): GET /v1/models, the admin writes (POST /v1/models, DELETE
 * /v1/models/:name; to the pool store with If-Match, or saved to the router file), label suggestions, production
 * feedback (POST /v1/feedback), and the watch on the store for other processes' changes.
 */
import { bearerDigest, sameDigest, tokenDigest } from './tokens.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { UnirouteError } from '../errors.js';
import { errorBody, type ServerContext } from './context.js';
import { reportedOutcome } from '../pool/feedback.js';
import { modelsResponseSchema } from './schemas.js';
import { claimRouterFile, fileStamp } from '../pool/file-lock.js';

export function poolRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { opts, router, metrics, live, signer, modelTag, maxPrompts, maxOutcomes, checkPrompt, poolChanged } = ctx;
  // ---- the pool -------------------------------------------------------------------------------------------------
  // the pool's LLMs, then what else a request's "model" may say: the routing aliases and presets, and LLMs that
  // have an upstream but are not in the pool (reachable by name only)
  app.get('/v1/models', { onRequest: ctx.clientAuth, schema: { response: { 200: modelsResponseSchema } } }, async (req, reply) => {
    if (live) reply.header('etag', `"${live.version}"`);
    const g = ctx.gateway();
    const pool = router.models();
    const inPool = new Set(pool.map((m) => m.name));
    const op = router.fixedLambda === undefined ? router.operatingPoint() : undefined;
    const operating = op
      ? { lambda: op.lambda, fixed: false, expected_cost: op.expectedCost, expected_accuracy: op.expectedAccuracy, cost_at_zero: op.costAtZero, accuracy_at_zero: op.accuracyAtZero, prompts: op.prompts }
      : { lambda: router.defaultLambda, fixed: true };
    return {
      object: 'list',
      ...(live ? { pool_version: live.version } : {}),
      operating_point: operating,
      data: [
        ...pool.map((m) => ({
          id: m.name,
          object: 'model',
          created: 0,
          owned_by: 'uniroute',
          kind: 'llm',
          cost_per_query: m.costPerQuery,
          overall_error: m.overallError,
          outcomes: m.outcomes,
          coverage: m.coverage,
          upstream: g.upstreams.has(m.name),
        })),
        { id: 'uniroute', object: 'model', created: 0, owned_by: 'uniroute', kind: 'alias', description: `routed at the pool's default operating point, now lambda ${router.defaultLambda.toPrecision(4)} (also uniroute:lambda=X)` },
        ...[...g.presets].map(([name, p]) => ({ id: `uniroute/${name}`, object: 'model', created: 0, owned_by: 'uniroute', kind: 'alias', description: `routed: ${p.note}${p.models ? ` among ${p.models.join(', ')}` : ''}` })),
        ...[...g.upstreams.keys()].filter((n) => !inPool.has(n)).map((n) => ({ id: n, object: 'model', created: 0, owned_by: 'uniroute', kind: 'upstream', description: 'not in the pool: sent there by name only, never routed to', upstream: true })),
      ],
    };
  });

  const adminDigest = opts.adminToken ? tokenDigest(opts.adminToken) : undefined;
  /** The admin token, for the expensive read-only endpoints too (label suggestions). */
  const adminToken = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!adminDigest)
      return reply.status(403).send(errorBody('ADMIN_DISABLED', 'admin endpoints are disabled: start the server with UNIROUTE_ADMIN_TOKEN set'));
    if (!sameDigest(bearerDigest(req.headers.authorization), adminDigest))
      return reply.status(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHORIZED', 'a valid admin bearer token is required'));
  };
  const admin = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = await adminToken(req, reply);
    if (refused || reply.sent) return refused;
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
  // One writer for the router file (src/pool/file-lock.ts): a server that saves admin changes to it claims it, so
  // that a CLI write to it is refused instead of silently lost; and it never saves over a file that another process
  // changed since it read it.
  const fileMode = !!opts.routerPath && !live && !!adminDigest;
  const claim = fileMode ? claimRouterFile(opts.routerPath!) : undefined;
  if (claim) {
    app.addHook('onListen', async () => {
      const a = app.addresses()[0] as unknown;
      if (a && typeof a === 'object') {
        const { family, address, port } = a as import('node:net').AddressInfo;
        claim.setUrl(`http://${family === 'IPv6' ? `[${address}]` : address}:${port}`);
      }
    });
    app.addHook('onClose', async () => claim.release());
  }
  let stamp = fileMode ? fileStamp(opts.routerPath!) : undefined;
  const persist = async (undo: () => void) => {
    try {
      if (stamp !== undefined && fileStamp(opts.routerPath!) !== stamp)
        throw new UnirouteError(
          'VERSION_CONFLICT',
          `${opts.routerPath} was changed on disk by another process since this server read it: this change is not applied, so as not to overwrite that one. Restart the server to load the file, or keep the pool in a store (--pool sqlite:${opts.routerPath}.pool.db) that the server and the CLI both change`,
        );
      await router.save(opts.routerPath!);
      stamp = fileStamp(opts.routerPath!);
    } catch (e) {
      undo();
      if (e instanceof UnirouteError && e.code === 'VERSION_CONFLICT') throw e;
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
            ? { warning: `its outcomes cover clusters holding ${(100 * info.coverage).toFixed(0)} % of the prompts; elsewhere its predicted error comes from the prior, with a wide interval (route with risk to keep it where it has shown itself)` }
            : {}),
        };
      });
    },
  );

  // which prompts to label next for an LLM (in the pool or new): read-only, but it embeds and routes every candidate,
  // so it is an admin endpoint, bounded (16 x --max-prompts candidates, the body limit), worked in chunks that yield
  // to the event loop, and one runs at a time: another is refused (503 OVERLOADED, Retry-After) before its body is
  // read, so a flood of them costs the server next to nothing
  let suggesting: FastifyRequest | undefined;
  const suggestSlot = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = await adminToken(req, reply);
    if (refused || reply.sent) return refused;
    if (suggesting) return reply.status(503).header('retry-after', '1').header('connection', 'close').send(errorBody('OVERLOADED', 'a label suggestion is already running: one runs at a time; retry in a second'));
    suggesting = req;
  };
  const freeSlot = (req: FastifyRequest) => {
    if (suggesting === req) suggesting = undefined;
  };
  app.post<{ Params: { name: string }; Body: { prompts: string[]; budget: number; cost_per_query?: number; lambda?: number; seed?: number; order?: 'shuffle' | 'given' } }>(
    '/v1/models/:name/suggest',
    {
      onRequest: suggestSlot,
      onResponse: async (req) => freeSlot(req),
      onRequestAbort: async (req) => freeSlot(req),
      schema: {
        body: {
          type: 'object',
          required: ['prompts', 'budget'],
          additionalProperties: false,
          properties: {
            prompts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: maxPrompts * 16 },
            budget: { type: 'integer', minimum: 1, maximum: 10_000 },
            cost_per_query: { type: 'number', minimum: 0 },
            lambda: { type: 'number', minimum: 0 },
            seed: { type: 'integer', minimum: 0 },
            order: { type: 'string', enum: ['shuffle', 'given'] },
          },
        },
      },
    },
    async (req) => {
      const b = req.body;
      b.prompts.forEach((t, i) => checkPrompt(t, `\`prompts[${i}]\``));
      try {
        const picks = await router.suggestLabels(b.prompts, { budget: b.budget, model: req.params.name, costPerQuery: b.cost_per_query, lambda: b.lambda, seed: b.seed, order: b.order });
        return { model: req.params.name, suggestions: picks.map((p) => ({ index: p.index, cluster: p.cluster, reason: p.reason })) };
      } finally {
        freeSlot(req);
      }
    },
  );

  // an LLM's name may hold a slash ("org/model"): sent as it is or encoded (%2F), the rest of the path is the name
  app.delete<{ Params: { '*': string } }>('/v1/models/*', { onRequest: admin }, async (req, reply) => {
    const ifVersion = ifMatch(req);
    return serial(async () => {
      let name: string;
      try {
        name = decodeURIComponent(req.params['*']);
      } catch {
        throw new UnirouteError('INVALID_ARGUMENT', `the LLM name in ${req.url} is not valid percent-encoding`);
      }
      if (name === '') throw new UnirouteError('INVALID_ARGUMENT', 'DELETE /v1/models/<name>: the name is missing');
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

  const feedbackDigest = opts.feedbackToken ? tokenDigest(opts.feedbackToken) : undefined;
  // ---- feedback: production outcomes move Ψ ----------------------------------------------------------------------
  app.post<{ Body: { decision_id: string; correct?: number; score?: number; model?: string } }>(
    '/v1/feedback',
    {
      onRequest: async (req, reply) => {
        if (!opts.feedbackToken || !live)
          return reply.status(403).send(errorBody('FEEDBACK_DISABLED', 'feedback is disabled: start the server with --pool and UNIROUTE_FEEDBACK_TOKEN set'));
        if (!sameDigest(bearerDigest(req.headers.authorization), feedbackDigest!)) return reply.status(401).header('www-authenticate', 'Bearer').send(errorBody('UNAUTHORIZED', 'a valid feedback bearer token is required'));
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
      const o = reportedOutcome(req.body, signer!, modelTag, opts.feedbackMaxAgeMs);
      const model = o.model;
      try {
        const version = await serial(() => timed('feedback', () => live!.feedback({ ...o, halfLifeMs: opts.feedbackHalfLifeMs })));
        metrics.feedback.inc({ model, result: 'counted' });
        poolChanged();
        return { counted: true, model, cluster: o.cluster, error: o.error, pool_version: version };
      } catch (e) {
        metrics.feedback.inc({ model: router.has(model) ? model : 'unknown', result: e instanceof UnirouteError ? e.code : 'error' });
        throw e;
      }
    },
  );

  // ---- the live pool: other processes' changes arrive by polling the store's version ------------------------------
  if (live) {
    let failing = false;
    live.onEpochChange = (from, to, version) =>
      app.log.warn({ store: live.store.description, from, to, version }, 'the pool store holds another pool than before (it came back empty and was seeded again, or it is another store): took its pool');
    const poll = setInterval(() => {
      const t0 = performance.now();
      serial(() => live.refresh())
        .then((changed) => {
          metrics.storeLatency.observe({ op: 'poll' }, (performance.now() - t0) / 1000);
          if (changed) poolChanged();
          if (failing) app.log.warn({ store: live.store.description }, 'pool store reachable again');
          failing = false;
          ctx.setStoreDown(undefined);
        })
        .catch((e) => {
          metrics.storeErrors.inc({ op: 'poll' });
          if (!failing) app.log.error({ store: live.store.description, err: (e as Error).message }, 'pool store unavailable: routing on the last pool');
          failing = true;
          ctx.setStoreDown((e as Error).message);
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

}
