/** `uniroute import`: make the router file's pool the store's pool, in one change (every LLM checked first). */
import { type Command } from 'commander';
import { type CliContext, intArg, loadRouter, loadWithPool, cliUser } from '../shared.js';

export function registerImport(program: Command, { quiet }: CliContext): void {
  program
    .command('import')
    .description('make the router file\'s pool the store\'s pool, in one change (every LLM checked first)')
    .requiredOption('--router <file>', 'the router file whose pool to import')
    .requiredOption('--pool <url>', 'the pool store: sqlite:PATH, redis://HOST:PORT/DB or memory:')
    .option('--if-version <n>', 'only if the store\'s pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      const file = await loadRouter(o.router);
      const entries = file.poolEntries();
      const { live } = await loadWithPool(o.router, o.pool, 'cli', { change: 'import' });
      try {
        const v = await live!.importPool(entries, { ifVersion: o.ifVersion, by: cliUser() });
        if (!quiet()) process.stderr.write(`imported ${entries.length} LLMs from ${o.router} into ${live!.store.description} (pool version ${v})\n`);
      } finally {
        await live!.close();
      }
    });
}
