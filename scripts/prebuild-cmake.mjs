#!/usr/bin/env node
// Stands in for node-gyp under prebuildify (scripts/prebuild.mjs): a clean CMake build of the CPU addon with
// portable flags into build-prebuild/, copied to build/Release/uniroute.node where prebuildify takes it. The
// node-gyp arguments prebuildify passes (--target, --devdir, --release …) do not apply to a Node-API build.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-prebuild');
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const r = spawnSync(
  process.execPath,
  [cmakeJs, 'rebuild', '--directory', root, '--out', out, '--target', 'uniroute', '--CDUNIROUTE_NATIVE_ARCH=OFF', '--CDUNIROUTE_CUDA=OFF', '--CDUNIROUTE_TESTS=OFF'],
  { stdio: 'inherit', cwd: root },
);
if (r.status !== 0) process.exit(r.status ?? 1);
mkdirSync(join(root, 'build', 'Release'), { recursive: true });
copyFileSync(join(out, 'Release', 'uniroute.node'), join(root, 'build', 'Release', 'uniroute.node'));
