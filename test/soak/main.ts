/**
 * `npm run soak -- [--minutes N | --seconds N] [--concurrency N] [--only I,J --repeat N]`
 *
 * The chaos soak of issue 11: carelb as a child process with 2 threads in front of real
 * local servers, under a seeded, replayable mix of requests and chaos. The seed comes from
 * CARELB_SOAK_SEED (printed at start; a fresh one when unset). Prints the report; exits 0 on
 * pass, 1 on fail.
 */
import { randomInt } from 'node:crypto';
import { seedFrom } from './prng';
import { runSoak } from './run';

const USAGE = `usage: npm run soak -- [--minutes N | --seconds N] [--concurrency N] [--only I,J,... [--repeat N]]
  --only replays those requests of the schedule (one at a time, or --concurrency N at once)
  CARELB_SOAK_SEED=0x1234abcd   replay a run (or a request, with --only)`;

function parse(argv: string[]) {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i === -1 ? undefined : argv[i + 1];
  };
  const number = (name: string, fallback: number): number => {
    const text = value(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} wants a positive number, got ${JSON.stringify(text)}`);
    return n;
  };
  for (const arg of argv) if (arg.startsWith('--') && !['--minutes', '--seconds', '--concurrency', '--only', '--repeat', '--help'].includes(arg)) throw new Error(`unknown option ${arg}`);
  const only = value('--only');
  const seconds = value('--seconds') !== undefined ? number('--seconds', 120) : number('--minutes', 2) * 60;
  return {
    help: argv.includes('--help'),
    durationMs: Math.round(seconds * 1000),
    concurrency: Math.round(number('--concurrency', 24)),
    // A replay (--only) runs its requests one after another unless told otherwise.
    onlyConcurrency: Math.round(number('--concurrency', 1)),
    only: only === undefined ? null : only.split(',').map((s) => Number(s.trim())),
    repeat: Math.round(number('--repeat', 1)),
    replayArgs: argv.join(' ') || '--minutes 2',
  };
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args.only && args.only.some((i) => !Number.isInteger(i) || i < 0)) {
    process.stderr.write(`--only wants request indices, e.g. --only 12,40\n`);
    return 2;
  }
  // Interrupted: exit, so the 'exit' hook kills the carelb child by its PID.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const seed = seedFrom(process.env.CARELB_SOAK_SEED, () => randomInt(0, 2 ** 32 - 1));
  const outcome = await runSoak({ seed, ...args, budget: 5_000_000, log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`\n${outcome.report}\n`);
  return outcome.pass ? 0 : 1;
}

// `npm test` hands every file under dist/test/ to the test runner, this one included: there
// it must not start a soak (the 60 s version is test/integration/soak.test.ts).
if (process.env.NODE_TEST_CONTEXT === undefined) void main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`soak: ${(error as Error).stack}\n`);
    process.exitCode = 1;
  },
);
