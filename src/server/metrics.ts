/** Prometheus metrics; every name starts with uniroute_. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { native } from '../engine/native.js';
import { FastCounter, FastHistogram } from './fastmetrics.js';

export function createMetrics() {
  const registry = new Registry();
  // Node's own metrics are named process_* and nodejs_* already: one prefix, uniroute_process_cpu_seconds_total
  collectDefaultMetrics({ register: registry, prefix: 'uniroute_' });
  const m = {
    registry,
    // the per-request ones are FastCounter/FastHistogram (plain numbers, read at scrape time)
    requests: new FastCounter('uniroute_http_requests_total', 'HTTP requests', ['route', 'method', 'status'], registry),
    latency: new FastHistogram('uniroute_http_request_duration_seconds', 'HTTP request latency', ['route'], [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registry),
    batchSize: new FastHistogram('uniroute_engine_batch_size', 'prompts per native routing batch', [], [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registry),
    decisions: new FastCounter('uniroute_decisions_total', 'routing decisions per LLM', ['model'], registry),
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
    upstream: new FastCounter('uniroute_upstream_requests_total', 'proxied requests per LLM and status', ['model', 'status'], registry),
    failovers: new Counter({ name: 'uniroute_failovers_total', help: 'chat requests sent on to the next-best LLM after their upstream failed', labelNames: ['from'], registers: [registry] }),
    spend: new FastCounter('uniroute_spend_usd_total', 'spend of the answered requests (the usage the upstream reported x the LLM\'s price; else its estimated cost per query), per LLM and client key ("-" without keys)', ['model', 'key'], registry),
    breakerOpen: new Gauge({ name: 'uniroute_upstream_breaker_open', help: '1 while a deployment\'s circuit breaker is open or half-open', labelNames: ['model', 'deployment'], registers: [registry] }),
    ttft: new FastHistogram('uniroute_time_to_first_token_seconds', 'streamed answers: time from the request to the first byte of the answer\'s body', ['model'], [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64], registry),
    tokens: new FastHistogram('uniroute_answer_tokens', 'tokens per answer as the upstream reported them, input (prompt) and output', ['model', 'kind'], [16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576], registry),
    limited: new Counter({ name: 'uniroute_limit_rejections_total', help: 'requests refused (429) by a client key\'s rpm, tpm or max_usd_per_day', labelNames: ['key', 'limit'], registers: [registry] }),
    limitErrors: new Counter({ name: 'uniroute_limit_store_errors_total', help: 'limit counter operations that failed (the store was away; the request was served uncounted)', registers: [registry] }),
    upstreamLatency: new FastHistogram('uniroute_upstream_duration_seconds', 'time to the upstream response headers', ['model'], [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registry),
  };
  return {
    ...m,
    /** The child for these label values (in the order of labelNames), found in the metric's own map. */
    requestsOf: m.requests.labels.bind(m.requests),
    latencyOf: m.latency.labels.bind(m.latency),
    decisionsOf: m.decisions.labels.bind(m.decisions),
    upstreamOf: m.upstream.labels.bind(m.upstream),
    upstreamLatencyOf: m.upstreamLatency.labels.bind(m.upstreamLatency),
    spendOf: m.spend.labels.bind(m.spend),
    ttftOf: m.ttft.labels.bind(m.ttft),
    tokensOf: m.tokens.labels.bind(m.tokens),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
