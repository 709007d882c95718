/**
 * A local redis-server on a free loopback port, for the benchmarks and the tests (never the product): started
 * here, ready when it accepts connections, stopped by its pid. null when redis-server is not installed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';

export interface LocalRedis {
  url: string;
  port: number;
  /** The redis-server's process id (tests pause it with SIGSTOP). */
  pid: number;
  stop: () => Promise<void>;
}

export async function startLocalRedis(opts: { dir?: string; port?: number } = {}): Promise<LocalRedis | null> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return null;
  let port = opts.port;
  if (!port) {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
  }
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', ''];
  // with a folder: an append-only file synced on every write, so that a restart finds the data
  if (opts.dir) args.push('--dir', opts.dir, '--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  const proc = spawn('redis-server', args, { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port!, '127.0.0.1', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGCONT'); // a paused one (a test's SIGSTOP) too
      proc.kill('SIGKILL');
      await done;
    },
  };
}
