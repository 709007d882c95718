/** Prometheus metrics; every name starts with uniroute_. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'uniroute_process_' });
  return {
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
    poolSize: new Gauge({ name: 'uniroute_pool_size', help: 'LLMs in the pool', registers: [registry] }),
    upstream: new Counter({ name: 'uniroute_upstream_requests_total', help: 'proxied requests per LLM and status', labelNames: ['model', 'status'], registers: [registry] }),
    upstreamLatency: new Histogram({
      name: 'uniroute_upstream_duration_seconds',
      help: 'time to the upstream response headers',
      labelNames: ['model'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
