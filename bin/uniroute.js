#!/usr/bin/env node
import { main } from '../dist/src/cli/index.js';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`uniroute: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
