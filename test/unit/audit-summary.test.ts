/**
 * Refused admin requests summarised per source and window (issue 13), without sockets: an
 * injected clock and timer, so windows open and close exactly when the test says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuditEntry } from '../../src/admin/audit';
import { OTHER_SOURCES, RefusalSummary } from '../../src/admin/audit-summary';

function harness(options: { maxKeys?: number; maxTargets?: number } = {}) {
  let now = Date.parse('2026-01-01T00:00:00.000Z');
  const emitted: AuditEntry[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const summary = new RefusalSummary((entry) => emitted.push(entry), {
    windowMs: 1000,
    ...options,
    now: () => now,
    setTimer: (fn, ms) => timers.push({ fn, ms }) - 1,
    clearTimer: (index) => (timers[index as number] = { fn: () => {}, ms: 0 }),
  });
  return { summary, emitted, timers, advance: (ms: number) => (now += ms), fire: () => timers.splice(0).forEach((timer) => timer.fn()) };
}

test('refusals in one window become one entry per source with its count, window, results and targets', () => {
  const h = harness();
  for (let i = 0; i < 5000; i++) h.summary.record({ action: 'unauthorized', source: '10.0.0.9', target: i % 2 ? 'GET /api/status' : 'POST /api/reload', result: i % 3 ? 'wrong token' : 'no token' });
  h.summary.record({ action: 'unauthorized', source: '10.0.0.7', target: 'GET /metrics', result: 'no token' });
  assert.equal(h.emitted.length, 0, 'nothing is written while the window is open');
  assert.equal(h.timers.length, 1, 'one timer per window, not per refusal');
  assert.equal(h.timers[0].ms, 1000);
  h.advance(1000);
  h.fire();
  assert.equal(h.emitted.length, 2);
  const [flood, single] = h.emitted;
  assert.deepEqual(flood, {
    source: '10.0.0.9',
    action: 'unauthorized',
    target: 'POST /api/reload',
    result: 'no token',
    count: 5000,
    window: { start: '2026-01-01T00:00:00.000Z', end: '2026-01-01T00:00:01.000Z' },
    results: { 'no token': 1667, 'wrong token': 3333 },
    targets: { 'POST /api/reload': 2500, 'GET /api/status': 2500 },
  });
  assert.equal(single.count, 1);
  assert.equal(single.target, 'GET /metrics');
  // The next refusal opens a new window.
  h.summary.record({ action: 'forbidden', source: '10.0.0.9', target: 'POST /api/reload', result: 'read token', role: 'read' });
  h.advance(250);
  h.summary.flush();
  assert.deepEqual(h.emitted[2].window, { start: '2026-01-01T00:00:01.000Z', end: '2026-01-01T00:00:01.250Z' });
  assert.equal(h.emitted[2].role, 'read');
  h.summary.flush();
  assert.equal(h.emitted.length, 3, 'an empty window writes nothing');
});

test('memory stays bounded: sources past maxKeys are counted together, targets past maxTargets as "(other)"', () => {
  const h = harness({ maxKeys: 3, maxTargets: 2 });
  for (let i = 0; i < 100; i++) h.summary.record({ action: 'unauthorized', source: `2001:db8::${i}`, target: `GET /api/x${i % 5}`, result: 'wrong token' });
  h.fire();
  assert.deepEqual(
    h.emitted.map((e) => [e.source, e.count]),
    [
      ['2001:db8::0', 1],
      ['2001:db8::1', 1],
      ['2001:db8::2', 1],
      [OTHER_SOURCES, 97],
    ],
  );
  assert.deepEqual(h.emitted[3].targets, { 'GET /api/x3': 20, 'GET /api/x4': 20, '(other)': 57 });
});
