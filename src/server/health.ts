/** GET /healthz, /readyz and /metrics (a fastify plugin). */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from './context.js';
import { healthResponseSchema, readyResponseSchema } from './schemas.js';

export function healthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { router, live, metrics } = ctx;
  const breakerGauge = () => {
    metrics.breakerOpen.reset();
    for (const [name, u] of ctx.gateway().upstreams) for (const d of u.deployments) metrics.breakerOpen.set({ model: name, deployment: String(d.index) }, d.breaker.state() === 'closed' ? 0 : 1);
  };
  // ---- health and metrics ---------------------------------------------------------------------------------------
  // Scrapes and probes come every few seconds: with --log they write no line unless something goes wrong (a
  // request log at warn level: fastify logs a request's start and end at info, and a 5xx at error)
  const quiet = { logLevel: 'warn' as const };
  app.get('/healthz', { ...quiet, schema: { response: { 200: healthResponseSchema } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { ...quiet, schema: { response: { 200: readyResponseSchema, 503: readyResponseSchema } } }, async (req, reply) => {
    if (router.size === 0) return reply.status(503).send({ status: 'not ready', reason: 'the pool is empty' });
    const storeDown = ctx.storeDown();
    if (storeDown !== undefined) return { status: 'degraded', reason: `the pool store is unavailable (${storeDown}); routing on pool version ${live!.version}`, models: router.size, clusters: router.k, pool_version: live!.version };
    return { status: 'ready', models: router.size, clusters: router.k, ...(live ? { pool_version: live.version, pool_store: live.store.description } : {}) };
  });
  app.get('/metrics', { ...quiet, onRequest: ctx.clientAuth }, async (req, reply) => {
    breakerGauge();
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

}
