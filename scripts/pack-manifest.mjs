#!/usr/bin/env node
// The package.json that goes into the tarball has no install-time script. `prepare` builds a clone from source
// (`npm install` / `npm ci` there); npm never runs it for a tarball or registry install, but it lists it among the
// "install scripts not yet covered by allowScripts" of a tarball install, asking the user to approve a script that
// would not run. So `prepack` takes it out (`strip`, the original kept in package.json.prepack) and `postpack`
// puts the original back (`restore`). A pack that died in between is repaired by the next strip or restore.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const manifest = join(root, 'package.json');
const original = join(root, 'package.json.prepack');
const INSTALL_TIME = ['preinstall', 'install', 'postinstall', 'prepare'];

const mode = process.argv[2];
if (existsSync(original)) renameSync(original, manifest); // the original, back in place
if (mode === 'strip') {
  const text = readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  for (const s of INSTALL_TIME) delete pkg.scripts?.[s];
  writeFileSync(original, text);
  writeFileSync(manifest, JSON.stringify(pkg, null, 2) + '\n');
  console.log(`uniroute: packing package.json without its install-time scripts (${INSTALL_TIME.join(', ')})`);
} else if (mode !== 'restore') {
  console.error('usage: pack-manifest.mjs strip|restore');
  process.exit(2);
}
