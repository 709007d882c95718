#!/usr/bin/env node
import { main } from '../dist/src/cli/index.js';

// A closed pipe (`uniroute models | head`) ends the command quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err && err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`uniroute: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
