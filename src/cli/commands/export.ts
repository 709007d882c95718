/** `uniroute export`: write a router file whose pool is the store's (the distributable form of a live pool). */
import { type Command } from 'commander';
import { type CliContext, checkOutputFile, loadWithPool } from '../shared.js';

export function registerExport(program: Command, { quiet }: CliContext): void {
  program
    .command('export')
    .description('write a router file whose pool is the store\'s (the distributable form of a live pool)')
    .requiredOption('--router <file>', 'the router file the pool belongs to (its fitted model)')
    .requiredOption('--pool <url>', 'the pool store: sqlite:PATH, redis://HOST:PORT/DB or memory:')
    .requiredOption('--out <file>', 'the router file to write (.gz to gzip it)')
    .action(async (o) => {
      checkOutputFile(o.out, '--out');
      const { router, live } = await loadWithPool(o.router, o.pool, 'cli', { readOnly: true });
      await live!.close();
      await router.save(o.out);
      if (!quiet()) process.stderr.write(`exported ${router.size} LLMs (pool version ${live!.version} of ${live!.store.description}) -> ${o.out}\n`);
    });
}
