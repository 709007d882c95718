/** `uniroute remove-model`: remove an LLM from the pool. */
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { type CliContext, checkOutputFile, intArg, POOL_HELP, loadWithPool, cliUser } from '../shared.js';

export function registerRemoveModel(program: Command, { quiet }: CliContext): void {
  program
    .command('remove-model')
    .description('remove an LLM from the pool')
    .option('--router <file>', 'router file to update')
    .requiredOption('--name <name>', 'the LLM to remove')
    .option('--out <file>', 'write the updated router here instead of in place')
    .option('--pool <url>', POOL_HELP)
    .option('--if-version <n>', 'with --pool: change only if the pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      if (!o.router && !o.out && !o.pool) throw new UnirouteError('INVALID_ARGUMENT', 'the built-in router is read-only: pass --pool URL, --router FILE or --out FILE');
      if (!o.pool) checkOutputFile(o.out ?? o.router, o.out ? '--out' : '--router');
      const { router, live } = await loadWithPool(o.router, o.pool, 'cli', { change: 'remove-model' });
      if (live) {
        try {
          if (!router.has(o.name)) router.removeModel(o.name); // UNKNOWN_MODEL, with a did-you-mean
          const v = await live.removeModel(o.name, { ifVersion: o.ifVersion, by: cliUser() });
          if (!quiet()) process.stderr.write(`removed "${o.name}"; ${router.size} LLMs left in ${live.store.description} (pool version ${v})\n`);
        } finally {
          await live.close();
        }
        return;
      }
      router.removeModel(o.name);
      await router.save(o.out ?? o.router);
      if (!quiet()) process.stderr.write(`removed "${o.name}"; ${router.size} LLMs left\n`);
    });
}
