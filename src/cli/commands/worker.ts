/**
 * `uniroute worker --pool redis://…`: a process that only runs batch lines: it takes chunks from the fleet's
 * BullMQ queue (or, on a sqlite: pool, jobs from the SQLite file), decides them with the router bound to the pool,
 * and sends them through the upstreams of its gateway config. Start as many as you like, on any machine that
 * reaches the Redis and the upstreams.
 */
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { type CliContext, intArg, loadWithPool } from '../shared.js';

export function registerWorker(program: Command, { quiet }: CliContext): void {
  program
    .command('worker')
    .description('run Batch API lines (no HTTP): takes chunks of lines from the pool store\'s queue (redis://: BullMQ, shared by every replica) and sends them to the LLMs the router picks')
    .requiredOption('--pool <url>', 'the pool store the servers use: redis://HOST:PORT/DB[?prefix=P] (or sqlite:PATH on one machine)')
    .option('--router <file>', 'router file (default: the built-in router); its pool is replaced by the store\'s')
    .option('--config <file>', 'gateway config (upstreams, presets, retry, breaker, batch: share, concurrency, lock_ms...)')
    .option('--batch-dir <dir>', 'the batch folder (uploads; give workers the servers\' folder when they plan jobs)')
    .option('--concurrency <n>', 'most lines in flight in this process (default batch.concurrency)', intArg('--concurrency', 1))
    .action(async (o) => {
      const { loadConfig, parseConfig, checkAgainstPool } = await import('../../server/config.js');
      const { buildGateway, closeGateway } = await import('../../server/chat.js');
      const { BatchService } = await import('../../batch/service.js');
      const { processName } = await import('../../batch/runner.js');
      if (!/^(rediss?:\/\/|sqlite:)/.test(o.pool)) throw new UnirouteError('INVALID_ARGUMENT', `--pool ${o.pool.replace(/\/\/[^@/]*@/, '//[redacted]@')}: a worker needs the servers' store: redis://HOST:PORT/DB or sqlite:PATH`);
      const { router, live } = await loadWithPool(o.router, o.pool, 'worker');
      const config = o.config ? loadConfig(o.config) : parseConfig({}, 'defaults');
      const { errors, warnings } = checkAgainstPool(config, router.snapshot().names);
      for (const w of warnings) if (!quiet()) process.stderr.write(`warning: ${config.source}: ${w}\n`);
      if (errors.length) throw new UnirouteError('INVALID_ARGUMENT', `${config.source}:\n  ${errors.join('\n  ')}`);
      const gateway = buildGateway(config, router);
      const cfg = { ...config.batch, ...(o.batchDir ? { dir: o.batchDir } : {}), ...(o.concurrency ? { concurrency: o.concurrency } : {}) };
      const name = processName('worker').replace(/[^A-Za-z0-9._]/g, '');
      const service = BatchService.open({
        pool: o.pool,
        cfg,
        role: 'worker',
        log: (m) => !quiet() && process.stderr.write(`${m}\n`),
        engine: { router, gateway: () => gateway, ood: config.ood, maxPromptChars: config.limits.promptChars ?? 100_000, cfg, worker: name },
      });
      service.start();
      // follow the pool's changes (other processes' admin writes and feedback)
      const poll = setInterval(() => void live!.refresh().catch(() => undefined), 1000);
      if (!quiet()) process.stderr.write(`uniroute worker ${name} on ${service.description} (${router.size} LLMs, ${config.upstreams.size} upstreams, ${cfg.concurrency} lines in flight at most)\n`);
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          if (!quiet()) process.stderr.write(`${sig}: finishing the lines in flight\n`);
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      clearInterval(poll);
      await service.close();
      await closeGateway(gateway);
      await live?.store.close();
    });
}
