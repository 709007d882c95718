/**
 * `uniroute migrate`: rewrite a router file written by an older uniroute (without `sha256_all`, the checksum of
 * its header and manifest) in the current format, after checking every value in it as any load does.
 */
import { readFile } from 'node:fs/promises';
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { Router } from '../../router/router.js';
import { decodeArtifact } from '../../router/artifact.js';
import { type CliContext, checkOutputFile } from '../shared.js';

export function registerMigrate(program: Command, { quiet }: CliContext): void {
  program
    .command('migrate')
    .description('rewrite a router file of an older uniroute (no sha256_all checksum) in the current format, after checking every value in it; only for a file you trust')
    .requiredOption('--router <file>', 'the router file to migrate')
    .option('--out <file>', 'write the migrated router here instead of in place (.gz to gzip it)')
    .action(async (o) => {
      const out: string = o.out ?? o.router;
      checkOutputFile(out, o.out ? '--out' : '--router');
      let buf: Buffer;
      try {
        buf = await readFile(o.router);
      } catch (e) {
        throw new UnirouteError('NOT_FOUND', `cannot read router file ${o.router}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const { legacy } = decodeArtifact(buf, o.router, { allowLegacy: true });
      // every value checked, as on any load; the embedder's endpoint is not contacted
      const router = Router.fromArtifact(buf, o.router, undefined, { allowLegacy: true, embedder: {} });
      await router.save(out, { gzip: out.endsWith('.gz') || (o.out === undefined && buf[0] === 0x1f && buf[1] === 0x8b) });
      if (!quiet())
        process.stderr.write(
          legacy
            ? `migrated ${o.router} -> ${out}: every value checked (${router.size} LLMs, ${router.k} clusters), written with the current checksums (model hash ${router.modelHash().slice(0, 12)}, unchanged)\n`
            : `${o.router} was already in the current format; checked and rewritten -> ${out}\n`,
        );
    });
}
