/** When a failed data-plane thread is started again (primary/restart-backoff.ts): pure. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RESTART_POLICY, restartDelay } from '../../src/primary/restart-backoff';

test('a thread that dies after serving stably is replaced at once; dying again soon backs off', () => {
  assert.equal(restartDelay(1, true), 0);
  assert.equal(restartDelay(2, true), 200);
  assert.equal(restartDelay(3, true), 400);
});

test('a thread that fails to start waits 100 ms, doubling up to 10 s', () => {
  const delays = Array.from({ length: 10 }, (_, i) => restartDelay(i + 1, false));
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
  assert.equal(restartDelay(5000, false), RESTART_POLICY.maxMs, 'no overflow after a long outage');
});
