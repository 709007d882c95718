#!/usr/bin/env node
// The native engine from source: `npm run build:native`, and `npm install` / `npm ci` in a clone (the `prepare`
// step, with --tsc: the TypeScript compiles at the same time, on the other core). An installed package loads its
// prebuilt addon instead and runs no script. CUDA is compiled only for the GPUs found, or those UNIROUTE_CUDA_ARCHS
// names (CMakeLists.txt). `npm pack` / `npm publish` skip the native build: `prepack` makes the prebuilt addon.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const withTsc = args[0] === '--tsc';
const cmakeArgs = withTsc ? args.slice(1) : args;

/** Runs node on a script; resolves to its exit status. */
const run = (script, argv) =>
  new Promise((resolve) => spawn(process.execPath, [script, ...argv], { stdio: 'inherit' }).on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));

const command = process.env.npm_command;
const jobs = [];
if (command === 'pack' || command === 'publish') console.log(`uniroute: npm ${command}: no source build (prepack makes the prebuilt addon)`);
else
  jobs.push(
    run(require.resolve('cmake-js/bin/cmake-js'), ['compile', '--out', 'build', ...cmakeArgs]).then((status) => {
      if (status !== 0)
        console.error(
          'uniroute: the native build failed (it needs cmake >= 3.18 and a C++17 compiler: apt-get install cmake g++). ' +
            'Fix that and run `npm run build:native`.',
        );
      return status;
    }),
  );
if (withTsc)
  jobs.push(
    run(require.resolve('typescript/bin/tsc'), ['-p', 'tsconfig.json']).then((status) => {
      if (status !== 0) console.error('uniroute: the TypeScript build failed');
      return status;
    }),
  );
const statuses = await Promise.all(jobs);
process.exit(statuses.find((s) => s !== 0) ?? 0);
