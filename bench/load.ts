/** What the HTTP benchmarks report of one autocannon run: throughput, latency percentiles, errors. */
import type autocannon from 'autocannon';

export function loadSummary(name: string, r: autocannon.Result, connections: number, seconds: number) {
  return {
    name,
    connections,
    seconds,
    req_per_s: r.requests.average,
    latency_ms: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    errors: r.errors + r.timeouts + r.non2xx,
    requests: r.requests.total,
  };
}
