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
  app.get('/healthz', { schema: { response: { 200: healthResponseSchema } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { response: { 200: readyResponseSchema, 503: readyResponseSchema } } }, async (req, reply) => {
    if (router.size === 0) return reply.status(503).send({ status: 'not ready', reason: 'the pool is empty' });
    const storeDown = ctx.storeDown();
    if (storeDown !== undefined) return { status: 'degraded', reason: `the pool store is unavailable (${storeDown}); routing on pool version ${live!.version}`, models: router.size, clusters: router.k, pool_version: live!.version };
    return { status: 'ready', models: router.size, clusters: router.k, ...(live ? { pool_version: live.version, pool_store: live.store.description } : {}) };
  });
  app.get('/metrics', { onRequest: ctx.clientAuth }, async (req, reply) => {
    breakerGauge();
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

}
