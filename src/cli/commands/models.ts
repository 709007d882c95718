/** `uniroute models`: list the LLMs in the pool. */
import { type Command } from 'commander';
import { type CliContext, operatingPointText, POOL_HELP, loadWithPool, table, writeLine } from '../shared.js';

export function registerModels(program: Command, { io }: CliContext): void {
  program
    .command('models')
    .description('list the LLMs in the pool')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--json', 'one JSON object per LLM, with its error vector')
    .option('--pool <url>', POOL_HELP)
    .action(async (o) => {
      const { router, live } = await loadWithPool(o.router, o.pool, 'cli', { readOnly: true });
      await live?.close();
      if (o.json) {
        for (const m of router.models()) await writeLine(io.stdout, JSON.stringify(m) + '\n');
        return;
      }
      // everything on stdout (a pipe or a file keeps the operating point with the table)
      const head = [
        ...(live ? [`pool       ${live.store.description}, version ${live.version}, model ${live.modelHash.slice(0, 12)}`] : []),
        `operating  ${operatingPointText(router)}`,
      ];
      if (router.size > 0) {
        const t1 = router.tradeoffScale();
        head.push(
          `tradeoff   --tradeoff t maps onto lambda = ${t1.toPrecision(3)} x 10^(-4 (1 - t)) for this pool: t = 0 the lowest predicted error, ` +
            `t = 0.5 lambda ${router.lambdaForTradeoff(0.5).toPrecision(3)}, t = 1 lambda ${t1.toPrecision(3)} (the cheapest LLM wins in every cluster)`,
        );
      }
      const rows = router
        .models()
        .map((m) => [m.name, m.costPerQuery.toExponential(3), m.overallError.toFixed(3), String(m.outcomes), `${(100 * m.coverage).toFixed(0)} %`]);
      await writeLine(io.stdout, [...head, '', table(['LLM', 'cost/query', 'overall error', 'outcomes', 'coverage'], rows), '(--json for everything)'].join('\n') + '\n');
    });
}
