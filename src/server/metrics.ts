/** Prometheus metrics; every name starts with uniroute_. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { native } from '../engine/native.js';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'uniroute_process_' });
  const m = {
    registry,
    requests: new Counter({ name: 'uniroute_http_requests_total', help: 'HTTP requests', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    latency: new Histogram({
      name: 'uniroute_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'uniroute_engine_batch_size',
      help: 'prompts per native routing batch',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [registry],
    }),
    decisions: new Counter({ name: 'uniroute_decisions_total', help: 'routing decisions per LLM', labelNames: ['model'], registers: [registry] }),
    ood: new Counter({ name: 'uniroute_ood_total', help: 'prompts beyond the out-of-distribution distance threshold (routed to the fallback)', labelNames: ['route'], registers: [registry] }),
    sticky: new Counter({ name: 'uniroute_sticky_total', help: 'routed turns of a conversation: its LLM kept, switched for a better one, or a new conversation', labelNames: ['outcome'], registers: [registry] }),
    // read from the engine at scrape time: calls a failing accelerator backend handed to the CPU
    backendFallbacks: new Gauge({
      name: 'uniroute_backend_fallbacks_total',
      help: 'engine calls that a failing backend (CUDA) handed to the CPU; the backend is disabled after a sticky error',
      registers: [registry],
      collect() {
        this.set(native().backendInfo().fallbacks ?? 0);
      },
    }),
    poolVersion: new Gauge({ name: 'uniroute_pool_version', help: 'the version of the pool this server routes on', registers: [registry] }),
    storeLatency: new Histogram({ name: 'uniroute_pool_store_duration_seconds', help: 'pool store operations', labelNames: ['op'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [registry] }),
    storeErrors: new Counter({ name: 'uniroute_pool_store_errors_total', help: 'failed pool store operations', labelNames: ['op'], registers: [registry] }),
    feedback: new Counter({ name: 'uniroute_feedback_total', help: 'production outcomes received, per LLM and result (counted, or the error code)', labelNames: ['model', 'result'], registers: [registry] }),
    budgetMultiplier: new Gauge({ name: 'uniroute_budget_lambda_multiplier', help: 'the factor on lambda that keeps a client key near its daily budget', labelNames: ['key'], registers: [registry] }),
    poolSize: new Gauge({ name: 'uniroute_pool_size', help: 'LLMs in the pool', registers: [registry] }),
    upstream: new Counter({ name: 'uniroute_upstream_requests_total', help: 'proxied requests per LLM and status', labelNames: ['model', 'status'], registers: [registry] }),
    failovers: new Counter({ name: 'uniroute_failovers_total', help: 'chat requests sent on to the next-best LLM after their upstream failed', labelNames: ['from'], registers: [registry] }),
    spend: new Counter({ name: 'uniroute_spend_usd_total', help: 'cost of the answered chat requests (the LLM cost per query), per LLM and client key ("-" without keys)', labelNames: ['model', 'key'], registers: [registry] }),
    breakerOpen: new Gauge({ name: 'uniroute_upstream_breaker_open', help: '1 while the upstream circuit breaker is open or half-open', labelNames: ['model'], registers: [registry] }),
    upstreamLatency: new Histogram({
      name: 'uniroute_upstream_duration_seconds',
      help: 'time to the upstream response headers',
      labelNames: ['model'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
  return {
    ...m,
    /** Cached children (label values in the order of labelNames). */
    requestsOf: cachedChildren(m.requests),
    latencyOf: cachedChildren(m.latency),
    decisionsOf: cachedChildren(m.decisions),
    upstreamOf: cachedChildren(m.upstream),
    upstreamLatencyOf: cachedChildren(m.upstreamLatency),
    spendOf: cachedChildren(m.spend),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

/**
 * A labelled child per label tuple, cached: prom-client hashes a label object on every inc()/observe(), which
 * showed in the proxy's profile; a cached child skips that. Bounded like the label sets themselves (per LLM,
 * route and status).
 */
export function cachedChildren<C>(metric: { labels: (...v: string[]) => C }, max = 4096): (...values: string[]) => C {
  const cache = new Map<string, C>();
  return (...values: string[]) => {
    const key = values.join('\u0000');
    let c = cache.get(key);
    if (!c) {
      if (cache.size >= max) cache.clear();
      cache.set(key, (c = metric.labels(...values)));
    }
    return c;
  };
}
