#!/usr/bin/env -S node --no-concurrent-recompilation
// --no-concurrent-recompilation: Node 20 can deadlock at exit (nodejs/node#54918) when a background optimizing
// compile waits for a garbage collection that the exiting main thread never runs: `uniroute models --json | head -1`
// hung in about 1 run in 11 (the EPIPE exit lands mid-work). Optimizing on the main thread costs nothing measurable
// here (route, 200,000 prompts: 1.31-1.40 s either way).
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
