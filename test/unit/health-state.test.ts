/** The rise/fall state machine of active health checks (src/health/state.ts): pure, no sockets. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthState } from '../../src/health/state';

/** Feeds results ('P' pass, 'F' fail) and returns the transitions, one per result. */
function feed(state: HealthState, results: string, rise: number, fall: number): (string | null)[] {
  return [...results].map((r) => state.observe(r === 'P', rise, fall));
}

test('a server starts up so that a restart does not stop traffic to a healthy pool', () => {
  const state = new HealthState();
  assert.equal(state.up, true);
  assert.equal(state.consecutivePass, 0);
  assert.equal(state.consecutiveFail, 0);
});

test('an up server goes down on the fall-th consecutive failure, not before', () => {
  const state = new HealthState();
  assert.deepEqual(feed(state, 'FF', 2, 3), [null, null]);
  assert.equal(state.up, true);
  assert.deepEqual(feed(state, 'F', 2, 3), ['down']);
  assert.equal(state.up, false);
});

test('a pass between failures restarts the failure count', () => {
  const state = new HealthState();
  assert.deepEqual(feed(state, 'FFPFF', 2, 3), [null, null, null, null, null]);
  assert.equal(state.up, true);
  assert.deepEqual(feed(state, 'F', 2, 3), ['down']);
});

test('a down server comes back on the rise-th consecutive pass, not before', () => {
  const state = new HealthState();
  feed(state, 'F', 2, 1);
  assert.equal(state.up, false);
  assert.deepEqual(feed(state, 'PFP', 2, 1), [null, null, null]);
  assert.equal(state.up, false);
  assert.deepEqual(feed(state, 'P', 2, 1), ['up']);
  assert.equal(state.up, true);
});

test('further results in the same direction report no new transition', () => {
  const state = new HealthState();
  assert.deepEqual(feed(state, 'FFFF', 1, 2), [null, 'down', null, null]);
  assert.deepEqual(feed(state, 'PPP', 1, 2), ['up', null, null]);
});

test('a flapping server (pass and fail alternating, rise 2 fall 2) never changes state', () => {
  const up = new HealthState();
  assert.deepEqual(feed(up, 'FPFPFPFPFP', 2, 2), Array(10).fill(null));
  assert.equal(up.up, true);
  const down = new HealthState();
  feed(down, 'FF', 2, 2);
  assert.deepEqual(feed(down, 'PFPFPFPF', 2, 2), Array(8).fill(null));
  assert.equal(down.up, false);
});

test('rise 1 and fall 1 follow every single result', () => {
  const state = new HealthState();
  assert.deepEqual(feed(state, 'FPFP', 1, 1), ['down', 'up', 'down', 'up']);
});

test('a passive mark-down takes an up server down at once and needs rise fresh passes to come back', () => {
  const state = new HealthState();
  feed(state, 'PPPP', 3, 3);
  assert.equal(state.markDown(), 'down');
  assert.equal(state.up, false);
  assert.deepEqual(feed(state, 'PP', 3, 3), [null, null]);
  assert.deepEqual(feed(state, 'P', 3, 3), ['up']);
});

test('a passive mark-down of a down server reports no transition but restarts its pass count', () => {
  const state = new HealthState();
  feed(state, 'FP', 2, 1);
  assert.equal(state.consecutivePass, 1);
  assert.equal(state.markDown(), null);
  assert.equal(state.consecutivePass, 0);
  assert.deepEqual(feed(state, 'P', 2, 1), [null], 'the pass before the mark-down no longer counts');
  assert.deepEqual(feed(state, 'P', 2, 1), ['up']);
});
