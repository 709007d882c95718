#!/usr/bin/env node
// `prepack`: the prebuilt linux-x64 CPU addon for the package, made with prebuildify (Node-API, so one file serves
// every Node >= 20) and written to prebuilds/<platform>-<arch>/, where node-gyp-build finds it. It is built by CMake
// with portable flags (UNIROUTE_NATIVE_ARCH=OFF: never -march=native, since the package runs on other CPUs) and
// without CUDA, in build-prebuild/ (scripts/prebuild-cmake.mjs), so the source build in build/ is left as it was.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuildify = createRequire(import.meta.url)('prebuildify');
// prebuildify takes the addon from build/Release: the source build's addon is put aside meanwhile
const devAddon = join(root, 'build', 'Release', 'uniroute.node');
const aside = join(root, 'build', 'Release', 'uniroute.node.source-build');
if (existsSync(devAddon)) renameSync(devAddon, aside);
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
prebuildify(
  { cwd: root, napi: true, strip: true, tagLibc: true, nodeGyp: join(root, 'scripts', 'prebuild-cmake.mjs') },
  (err) => {
    if (existsSync(aside)) renameSync(aside, devAddon);
    if (err) {
      console.error(`uniroute: the prebuilt addon could not be made: ${err.message}`);
      process.exit(1);
    }
    console.log(`uniroute: prebuilt addon in ${join('prebuilds', `${process.platform}-${process.arch}`)}`);
  },
);
