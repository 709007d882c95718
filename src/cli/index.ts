/** The `uniroute` command: the program, its global options, and the exit status. Each command is a module of ./commands. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { UnirouteError } from '../errors.js';
import { setBackend, setThreads } from '../engine/native.js';
import { UsageError, intArg, type CliContext } from './shared.js';
import { registerFit } from './commands/fit.js';
import { registerAddModel } from './commands/add-model.js';
import { registerRemoveModel } from './commands/remove-model.js';
import { registerExport } from './commands/export.js';
import { registerImport } from './commands/import.js';
import { registerFeedback } from './commands/feedback.js';
import { registerModels } from './commands/models.js';
import { registerSuggestLabels } from './commands/suggest-labels.js';
import { registerRoute } from './commands/route.js';
import { registerEval } from './commands/eval.js';
import { registerServe } from './commands/serve.js';
import { registerInfo } from './commands/info.js';
import { registerMigrate } from './commands/migrate.js';
import { registerBatch } from './commands/batch.js';
import { registerWorker } from './commands/worker.js';

/** The package's version, from its package.json (found upward from this file, in src/ or in dist/src/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'uniroute' && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export function buildProgram(io: { stdout: NodeJS.WritableStream } = { stdout: process.stdout }): Command {
  const program = new Command('uniroute')
    .description('Route each prompt to the cheapest LLM likely to answer it well; onboard unseen LLMs from a few hundred validation outcomes.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--threads <n>', 'native worker threads (0 = all cores)', intArg('--threads'), 0)
    .option('-q, --quiet', 'no progress on stderr')
    .addOption(new Option('--backend <b>', 'engine backend (or UNIROUTE_BACKEND); cuda fails with the reason when no GPU is usable').choices(['auto', 'cpu', 'cuda']))
    .showHelpAfterError('(run with --help for usage)')
    .hook('preAction', (cmd) => {
      const t = cmd.opts().threads;
      if (t) setThreads(t);
      const b = cmd.opts().backend;
      if (b) setBackend(b);
    });
  const ctx: CliContext = { io, quiet: () => !!program.opts().quiet };
  registerFit(program, ctx);
  registerAddModel(program, ctx);
  registerRemoveModel(program, ctx);
  registerExport(program, ctx);
  registerImport(program, ctx);
  registerFeedback(program, ctx);
  registerModels(program, ctx);
  registerSuggestLabels(program, ctx);
  registerRoute(program, ctx);
  registerEval(program, ctx);
  registerServe(program, ctx);
  registerInfo(program, ctx);
  registerMigrate(program, ctx);
  registerBatch(program, ctx);
  registerWorker(program, ctx);
  // required options say so in --help (commander does not mark them)
  for (const c of program.commands) for (const opt of c.options) if (opt.mandatory) opt.description = `${opt.description} (required)`;
  return program;
}

/** Runs the CLI; resolves to the exit status. Errors print one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // every command, not only the root: a subcommand's parse error must come back here (exit status 2), not exit 1
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // a bad value found by an action (commander printed those it found while parsing)
    if (err instanceof InvalidArgumentError && !(err as { printed?: boolean }).printed) {
      process.stderr.write(`uniroute: INVALID_ARGUMENT: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UnirouteError) {
      process.stderr.write(`uniroute: ${err.code}: ${err.message}\n`);
      return err instanceof UsageError ? 2 : 1;
    }
    process.stderr.write(`uniroute: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
