/** What the HTTP benchmarks share: their server children, and the summary of one autocannon run. */
import { fork, type ChildProcess } from 'node:child_process';
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

/**
 * Forks a benchmark script as a server child (`script --child ...args`) and resolves once it sends {url}: each
 * server under load runs in its own process, apart from the load generator.
 */
export async function startChild(script: string, args: string[], execArgv: string[] = []): Promise<{ proc: ChildProcess; url: string }> {
  const proc = fork(script, ['--child', ...args], { stdio: 'inherit', execArgv: [...process.execArgv, ...execArgv] });
  const url: string = await new Promise((res, rej) => {
    proc.once('message', (m: any) => res(m.url));
    proc.once('exit', (c) => rej(new Error(`${args[0]} server exited with ${c}`)));
  });
  return { proc, url };
}
