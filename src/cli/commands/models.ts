/** `uniroute models`: list the LLMs in the pool. */
import { type Command } from 'commander';
import { type CliContext, operatingPointText, POOL_HELP, loadWithPool, writeLine } from '../shared.js';

export function registerModels(program: Command, { io }: CliContext): void {
  program
    .command('models')
    .description('list the LLMs in the pool')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--json', 'one JSON object per LLM, with its error vector')
    .option('--pool <url>', POOL_HELP)
    .action(async (o) => {
      const { router, live } = await loadWithPool(o.router, o.pool);
      if (live) {
        if (!o.json) await writeLine(process.stderr, `pool ${live.store.description}, version ${live.version}, model ${live.modelHash.slice(0, 12)}\n`);
        await live.close();
      }
      if (!o.json) {
        await writeLine(process.stderr, operatingPointText(router) + '\n');
        if (router.size > 0) {
          const t1 = router.tradeoffScale();
          await writeLine(
            process.stderr,
            `--tradeoff t maps onto lambda = ${t1.toPrecision(3)} x 10^(-4 (1 - t)) for this pool: t = 0 the lowest predicted error, ` +
              `t = 0.5 lambda ${router.lambdaForTradeoff(0.5).toPrecision(3)}, t = 1 lambda ${t1.toPrecision(3)} (the cheapest LLM wins in every cluster)\n`,
          );
        }
      }
      for (const m of router.models()) {
        const line = o.json
          ? JSON.stringify(m)
          : `${m.name.padEnd(40)} cost/query ${m.costPerQuery.toExponential(3)}  overall error ${m.overallError.toFixed(3)}  outcomes ${String(m.outcomes).padStart(5)}  coverage ${(100 * m.coverage).toFixed(0).padStart(3)} %`;
        await writeLine(io.stdout, line + '\n');
      }
    });
}
