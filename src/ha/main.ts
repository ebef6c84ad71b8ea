#!/usr/bin/env node
/** Standalone entry of `carelb ha` (`node dist/src/ha/main.js render -c FILE`); cli.ts calls runHa the same way. */
import { runHa } from './command';

runHa(process.argv.slice(2), process.stdout, process.stderr).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`carelb ha: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
