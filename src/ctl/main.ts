#!/usr/bin/env node
/** Standalone entry of `carelb ctl` (`node dist/src/ctl/main.js status`); cli.ts calls runCtl the same way. */
import { runCtl } from './ctl';

runCtl(process.argv.slice(2), process.stdout, process.stderr).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`carelb ctl: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
