#!/usr/bin/env node
// `npm test`: the native test program (ctest's binary) and vitest; prints one "N passed, N failed" line and
// exits non-zero when anything failed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;

const nativeTest = join('build', 'uniroute_native_test');
if (existsSync(nativeTest)) {
  const r = spawnSync(nativeTest, [], { encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const m = /(\d+) passed, (\d+) failed/.exec(r.stdout);
  if (m) {
    passed += Number(m[1]);
    failed += Number(m[2]);
  }
  if (r.status !== 0 && !(m && Number(m[2]) > 0)) failed += 1;
} else {
  console.log(`native test program ${nativeTest} not built; skipped`);
}

const out = join(mkdtempSync(join(tmpdir(), 'uniroute-test-')), 'vitest.json');
const v = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
if (existsSync(out)) {
  const j = JSON.parse(readFileSync(out, 'utf8'));
  passed += j.numPassedTests;
  failed += j.numFailedTests;
  skipped += j.numPendingTests + (j.numTodoTests ?? 0);
  if (v.status !== 0 && j.numFailedTests === 0) failed += 1; // a suite failed to load
} else {
  failed += 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
