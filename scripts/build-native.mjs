#!/usr/bin/env node
// The native engine from source, for `npm install` / `npm ci` in a clone (the `prepare` step; an installed
// package loads its prebuilt addon instead and runs no script). CUDA is compiled only for the GPUs found, or those
// UNIROUTE_CUDA_ARCHS names (CMakeLists.txt). `npm pack` / `npm publish` skip this: `prepack` makes the prebuilt
// addon (scripts/prebuild.mjs).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const command = process.env.npm_command;
if (command === 'pack' || command === 'publish') {
  console.log(`uniroute: npm ${command}: no source build (the prebuilt addon is made by prepack)`);
  process.exit(0);
}
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build', ...process.argv.slice(2)], { stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    'uniroute: the native build failed (it needs cmake >= 3.18 and a C++17 compiler: apt-get install cmake g++). ' +
      'Fix that and run `npm run build:native`.',
  );
  process.exit(r.status ?? 1);
}
