/**
 * The latency book (src/observe/latency.ts) fed with synthetic histograms: known values are
 * recorded into each thread's hdr histograms through ThreadObserver, exactly as exchanges do
 * (µs, per server slot), flushed as the compressed batches threads send, and merged by the
 * primary's LatencyBook. No sockets, no timers that matter, an injected clock: every
 * percentile is exact to the histogram's precision (2 significant digits).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as hdr from 'hdr-histogram-js';
import { ThreadObserver, type ObserveBatch } from '../../src/dataplane/observe';
import { HISTOGRAM_OPTIONS, LatencyBook } from '../../src/observe/latency';

const MS = 1000; // histograms hold microseconds

/** What a thread sends for one interval, whatever its encoding. */
type IntervalBatch = NonNullable<ObserveBatch['latency']>;

/** One thread's interval: records `values` (µs) per slot and returns the batch the thread would send. */
function threadInterval(values: Record<number, [micros: number, times: number][]>): IntervalBatch {
  const sent: IntervalBatch[] = [];
  const observer = new ThreadObserver((batch) => batch.latency && sent.push(batch.latency));
  for (const [slot, entries] of Object.entries(values)) {
    const histogram = observer.histogramFor(Number(slot));
    for (const [micros, times] of entries) for (let i = 0; i < times; i++) histogram.record(micros);
  }
  observer.close(); // flushes what is pending, as a thread does at shutdown
  assert.equal(sent.length, 1, 'one batch per interval');
  return sent[0];
}

/** The value (ms) hdr reports for `micros` at HISTOGRAM_OPTIONS: the top of its bucket. */
function reported(micros: number): number {
  const histogram = hdr.build({ ...HISTOGRAM_OPTIONS });
  histogram.recordValue(micros);
  const value = histogram.getValueAtPercentile(100);
  histogram.destroy();
  return Math.round(value) / 1000;
}

/** Asserts `actual` (ms) is what the histogram reports for `expectedMs`, and within its 1 % precision. */
function assertMs(actual: number, expectedMs: number, what: string): void {
  assert.equal(actual, reported(expectedMs * MS), `${what}: ${actual} ms for ${expectedMs} ms`);
  assert.ok(actual >= expectedMs && actual < expectedMs * 1.01, `${what}: ${actual} ms is not ${expectedMs} ms to 2 significant digits`);
}

test('percentiles merge the intervals of several threads per server, and a service merges its servers', () => {
  const book = new LatencyBook();
  // Server slot 3 on two threads: 900 requests at 20 ms and 100 at 120 ms in all. Slot 5: 1000 at 1 ms.
  book.add(threadInterval({ 3: [[20 * MS, 450], [120 * MS, 50]], 5: [[1 * MS, 1000]] }), 10_000);
  book.add(threadInterval({ 3: [[20 * MS, 450], [120 * MS, 50]] }), 10_000);
  const server = book.recent([3], 10_000)!;
  assert.equal(server.count, 1000);
  assertMs(server.p50, 20, 'p50');
  assertMs(server.p90, 20, 'p90 (the 900th of 1000)');
  assertMs(server.p99, 120, 'p99');
  assertMs(server.p999, 120, 'p99.9');
  const service = book.recent([3, 5], 10_000)!;
  assert.equal(service.count, 2000);
  assertMs(service.p50, 1, 'service p50 (the 1000th of 2000)');
  assertMs(service.p90, 20, 'service p90 (the 1800th)');
  assertMs(service.p99, 120, 'service p99 (the 1980th)');
  assert.equal(book.recent([7], 10_000), null, 'a slot without data');
});

test('the recent window holds the last 60 s of intervals, the cumulative histogram everything since start', () => {
  const book = new LatencyBook();
  book.add(threadInterval({ 3: [[20 * MS, 10]] }), 0);
  book.add(threadInterval({ 3: [[120 * MS, 10]] }), 30_000);
  const both = book.recent([3], 30_000)!;
  assert.equal(both.count, 20);
  assertMs(both.p50, 20, 'p50 of both intervals');
  // 61 s after the first interval only the second is recent.
  const later = book.recent([3], 61_000)!;
  assert.equal(later.count, 10);
  assertMs(later.p50, 120, 'p50 of the second interval alone');
  assert.equal(book.recent([3], 90_001), null, 'nothing recent 60 s after the last interval');
  const cumulative = book.buckets([3])!;
  assert.equal(cumulative.count, 20, 'metrics keep every interval');
});

test('metric buckets are cumulative, end at the total count, and sum the seconds', () => {
  const book = new LatencyBook();
  book.add(threadInterval({ 3: [[20 * MS, 900], [120 * MS, 100]] }), 0);
  const buckets = book.buckets([3])!;
  assert.equal(buckets.count, 1000);
  for (let i = 1; i < buckets.counts.length; i++) assert.ok(buckets.counts[i] >= buckets.counts[i - 1], `bucket ${buckets.bounds[i]} s`);
  const at = (bound: number) => buckets.counts[buckets.bounds.indexOf(bound)];
  assert.equal(at(0.01), 0, 'nothing at or below 10 ms');
  assert.equal(at(0.25), 1000, 'everything at or below 250 ms');
  assert.equal(at(10), 1000);
  // 900 × 20 ms + 100 × 120 ms = 30 s, to the histogram's precision.
  assert.ok(buckets.sum >= 30 && buckets.sum < 30 * 1.01, `sum ${buckets.sum} s`);
});

test('metric buckets count exactly the requests at or below each bound', () => {
  const book = new LatencyBook();
  book.add(threadInterval({ 3: [[20 * MS, 900], [120 * MS, 100]] }), 0);
  const buckets = book.buckets([3])!;
  assert.deepEqual(
    buckets.bounds.map((bound, i) => [bound, buckets.counts[i]]),
    buckets.bounds.map((bound) => [bound, bound < 0.02 ? 0 : bound < 0.12 ? 900 : 1000]),
  );
});

test('a slot that left the config is forgotten', () => {
  const book = new LatencyBook();
  book.add(threadInterval({ 3: [[5 * MS, 10]], 4: [[7 * MS, 10]] }), 0);
  book.forget(3);
  assert.equal(book.recent([3], 0), null);
  assert.equal(book.buckets([3]), null);
  assert.equal(book.recent([3, 4], 0)!.count, 10);
});
