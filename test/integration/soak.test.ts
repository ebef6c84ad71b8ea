/**
 * The chaos soak of issue 11, 60 s of it, inside `npm test`: carelb as a child process with 2
 * threads under the seeded mix of requests, chaos, reloads and drains (test/soak/). The
 * report is printed as a diagnostic whatever the verdict; a failure names each finding and
 * the command that replays it. CARELB_SOAK_SEED picks the seed (a fresh one otherwise).
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { test } from 'node:test';
import { seedFrom, seedText } from '../soak/prng';
import { runSoak } from '../soak/run';

const SECONDS = 60;

test(`a ${SECONDS} s chaos soak ends every request sensibly, keeps carelb's invariants and threads, and leaves nothing in flight`, { timeout: (SECONDS + 90) * 1000 }, async (t) => {
  const seed = seedFrom(process.env.CARELB_SOAK_SEED, () => randomInt(0, 2 ** 32 - 1));
  t.diagnostic(`seed ${seedText(seed)}`);
  const outcome = await runSoak({
    seed,
    durationMs: SECONDS * 1000,
    // Fewer clients than the standalone soak: the suite shares the machine with everything else.
    concurrency: 16,
    only: null,
    repeat: 1,
    onlyConcurrency: 1,
    budget: 1_000_000,
    log: () => {},
    replayArgs: `--seconds ${SECONDS} --concurrency 16`,
  });
  for (const line of outcome.report.split('\n')) t.diagnostic(line);
  const summary = outcome.findings.slice(0, 5).map((f) => `${f.kind}: ${f.text.slice(0, 400)}`).join('\n');
  assert.ok(outcome.pass, `soak failed with ${outcome.findings.length} findings (seed ${seedText(seed)}; full report in the diagnostics):\n${summary}`);
});
