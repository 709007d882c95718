/** `uniroute info`: show the engine (backend, CUDA, threads) and the router. */
import { type Command } from 'commander';
import { addonPath, backendInfo, getThreads } from '../../engine/native.js';
import { defaultRouterPath } from '../../defaults.js';
import { type CliContext, accessFrom, operatingPointText, loadRouter, writeLine } from '../shared.js';

export function registerInfo(program: Command, { io }: CliContext): void {
  program
    .command('info')
    .description('show the engine (backend, CUDA, threads) and the router')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1); without this or --embedder-url, no prompt is sent anywhere')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or put the key in UNIROUTE_EMBEDDER_KEY); a key variable named in a router file is never used")
    .option('--json', 'as JSON')
    .action(async (o) => {
      const b = backendInfo();
      const info: Record<string, unknown> = { backend: b.backend, cuda: b.cuda, isa: b.isa, threads: getThreads(), node: process.version, addon: addonPath() };
      let summary: string[] = ['router     none (the built-in router is missing)'];
      try {
        const router = await loadRouter(o.router, accessFrom(o));
        info.router = {
          path: o.router ?? defaultRouterPath(),
          embedder: router.embedderSpec,
          ...(router.remote ? { embedderEndpoint: router.remote.notes.endpoint, embedderKey: router.remote.notes.key, embedderAllowed: !router.remote.refused } : {}),
          clusters: router.k,
          clusterMap: router.map ? 'learned-map' : 'kmeans',
          models: router.size,
          priorStrength: router.priorStrength,
          defaultLambda: router.defaultLambda,
          evidenceCells: router.cells?.count ?? null,
          difficulty: router.prior?.difficulty ? { slope: router.prior.difficulty.slope } : null,
          fit: router.info,
        };
        summary = [
          `router     ${o.router ?? defaultRouterPath()}`,
          `embedder   ${router.embedderSpec.kind}, ${router.dim} dimensions${'model' in router.embedderSpec ? ` (model ${router.embedderSpec.model}; the file names ${router.embedderSpec.baseUrl})` : ''}`,
          ...(router.remote ? [`endpoint   ${router.remote.notes.endpoint}`, `key        ${router.remote.notes.key}`] : []),
          `clusters   ${router.k} (${router.map ? 'learned map' : 'k-means'}), ${router.cells ? `${router.cells.count} evidence cells` : 'evidence by cluster'}, prior strength ${router.priorStrength}` +
            (router.prior?.difficulty ? `, difficulty slope ${router.prior.difficulty.slope.toFixed(2)}` : ''),
          `pool       ${router.size} LLMs (uniroute models lists them)`,
          `operating  ${operatingPointText(router)}`,
        ];
      } catch (e) {
        if (o.router) throw e;
        info.router = null; // no built-in router: the engine report still stands
      }
      if (o.json) {
        await writeLine(io.stdout, JSON.stringify(info) + '\n');
        return;
      }
      const cuda = b.cuda.available ? `${b.cuda.device?.name} (usable)` : b.cuda.compiled ? `compiled, not usable: ${b.cuda.reason}` : 'not compiled';
      await writeLine(io.stdout, [`engine     ${b.backend}, ${getThreads()} threads, Node ${process.version}`, `addon      ${addonPath()}`, `cpu isa    ${b.isa.active}${b.isa.forced ? ' (forced by UNIROUTE_ISA)' : ''}; this CPU runs ${b.isa.supported.join(', ')}`, `cuda       ${cuda}`, ...summary, '(--json for everything)'].join('\n') + '\n');
    });
}
