#!/usr/bin/env node
// The native engine from source: `npm run build:native`, and `npm install` / `npm ci` in a clone (the `prepare`
// step, with --all). An installed package loads its prebuilt addon instead and runs no script. CUDA is compiled only
// for the GPUs found, or those UNIROUTE_CUDA_ARCHS names (CMakeLists.txt). `npm pack` / `npm publish` skip the
// native build: `prepack` makes the prebuilt addon.
//
// --all (prepare) also compiles, at the same time as the engine, the TypeScript and better-sqlite3: a devDependency
// here (the sqlite pool tests; an optional peer of the package), whose install script compiles SQLite from source
// where no prebuilt binary can be fetched, a minute of one core. npm would run that script alone, before prepare,
// so package.json's allowScripts keeps it from npm and it runs here instead, beside the rest, with make -j2: on two
// cores the install's builds then overlap instead of queueing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const all = args[0] === '--all';
const cmakeArgs = all ? args.slice(1) : args;

/** Runs a command; resolves to its exit status, after a line naming what failed. */
const run = (what, command, argv, opts = {}) =>
  new Promise((resolve) =>
    spawn(command, argv, { stdio: 'inherit', ...opts })
      .on('error', (e) => {
        console.error(`uniroute: ${what} could not start: ${e.message}`);
        resolve(1);
      })
      .on('exit', (code, signal) => {
        const status = code ?? (signal ? 1 : 0);
        if (status !== 0) console.error(`uniroute: ${what} failed`);
        resolve(status);
      }),
  );

const jobs = [];
const command = process.env.npm_command;
if (command === 'pack' || command === 'publish') console.log(`uniroute: npm ${command}: no source build (prepack makes the prebuilt addon)`);
else
  jobs.push(
    run('the native build (it needs cmake >= 3.18 and a C++17 compiler: apt-get install cmake g++; then `npm run build:native`)', process.execPath, [
      require.resolve('cmake-js/bin/cmake-js'),
      'compile',
      '--out',
      'build',
      ...cmakeArgs,
    ]),
  );
if (all) {
  jobs.push(run('the TypeScript build', process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json']));
  const sqlite = join(root, 'node_modules', 'better-sqlite3');
  const loads = () =>
    spawnSync(process.execPath, ['-e', "new (require('better-sqlite3'))(':memory:').close()"], { cwd: root, stdio: 'ignore' }).status === 0;
  if (existsSync(join(sqlite, 'package.json')) && !loads()) {
    // its own install script (a prebuilt binary, else node-gyp), as npm would run it: npm's PATH holds node-gyp
    const script = JSON.parse(readFileSync(join(sqlite, 'package.json'), 'utf8')).scripts?.install;
    if (script) jobs.push(run(`better-sqlite3's build (${script})`, 'sh', ['-c', script], { cwd: sqlite, env: { ...process.env, JOBS: '2' } }));
  }
}
const statuses = await Promise.all(jobs);
process.exit(statuses.find((s) => s !== 0) ?? 0);
