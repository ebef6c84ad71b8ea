/**
 * The history ring (src/observe/history.ts) and the transition list on their own: fixed
 * memory, oldest-first windows, wrap-around, gaps as null, a reused slot's past forgotten.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BYTES_PER_ENTITY, HistoryRing, type Sample } from '../../src/observe/history';
import { TransitionLog } from '../../src/observe/transitions';
import { parseWindow } from '../../src/admin/history-api';

const sample = (rps: number, p99 = NaN): Sample => ({ rps, e4xx: 0, e5xx: 0, eclb: 0, p50: NaN, p99, in_flight: 1 });

test('the ring returns the newest samples oldest first, wraps at its capacity, and gives null for gaps', () => {
  const ring = new HistoryRing(4);
  for (let i = 1; i <= 6; i++) {
    ring.begin(i * 1000);
    ring.put('a', sample(i, i === 6 ? 2.5 : NaN));
    if (i >= 5) ring.put('b', sample(10 * i));
    ring.commit();
  }
  assert.deepEqual(ring.timesOf(10), [3000, 4000, 5000, 6000]);
  assert.deepEqual(ring.seriesOf('a', 10)!.rps, [3, 4, 5, 6]);
  assert.deepEqual(ring.seriesOf('a', 2)!.p99, [null, 2.5]);
  assert.deepEqual(ring.seriesOf('b', 4)!.rps, [null, null, 50, 60], 'an entity that appeared late has gaps before');
  assert.equal(ring.seriesOf('c', 4), null);
  ring.begin(7000);
  ring.put('a', sample(7));
  ring.commit();
  assert.deepEqual(ring.seriesOf('b', 4)!.rps, [null, 50, 60, null], 'an entity missing from a sample has a gap there');
  ring.clear('b');
  assert.deepEqual(ring.seriesOf('b', 4)!.rps, [null, null, null, null]);
  assert.equal(ring.size, 2);
});

test('one entity takes 7 series × 900 samples × 4 bytes', () => {
  assert.equal(BYTES_PER_ENTITY, 25_200);
});

test('the transition list keeps the newest 50, oldest first', () => {
  const log = new TransitionLog();
  for (let i = 0; i < 60; i++) log.add({ time: i, vs: 'v', server: 's', kind: 'health', from: 'up', to: 'down', reason: String(i) });
  const list = log.list();
  assert.equal(list.length, 50);
  assert.equal(list[0].reason, '10');
  assert.equal(list[49].reason, '59');
});

test('?window= takes seconds or minutes up to 15 minutes', () => {
  assert.equal(parseWindow(null), 900);
  assert.equal(parseWindow('15m'), 900);
  assert.equal(parseWindow('30s'), 30);
  for (const bad of ['16m', '0m', '-1s', '1h', '', ' 5m', '5 m', '1e3s']) assert.equal(typeof parseWindow(bad), 'string', bad);
});
