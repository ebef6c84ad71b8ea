import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addSparse, LatencyBook, LatencyRecorder, newHistogram, sparseCounts } from '../../src/observe/latency';

test('sparse bucket counts carry a histogram across threads without loss at its precision', () => {
  const source = newHistogram();
  for (let v = 1; v <= 100_000; v += 7) source.recordValue(v);
  source.recordValue(3_000_000);
  const counts = sparseCounts(source);
  assert.ok(counts.length < 2 * 2000, `${counts.length / 2} non-zero buckets`);
  const copy = newHistogram();
  addSparse(copy, counts);
  assert.equal(copy.totalCount, source.totalCount);
  for (const p of [0, 50, 90, 99, 99.9, 100]) assert.equal(copy.getValueAtPercentile(p), source.getValueAtPercentile(p), `p${p}`);
});

test('the latency book merges intervals of several threads and forgets those older than 60 s', () => {
  const book = new LatencyBook();
  const fast = newHistogram();
  for (let i = 0; i < 99; i++) fast.recordValue(1000); // 1 ms
  const slow = newHistogram();
  slow.recordValue(500_000); // 500 ms
  book.add({ 7: sparseCounts(fast) }, 1_000_000);
  book.add({ 7: sparseCounts(slow) }, 1_000_500);
  const both = book.recent([7], 1_001_000)!;
  assert.equal(both.count, 100);
  assert.ok(Math.abs(both.p50 - 1) <= 0.01, `p50 ${both.p50} ms (2 significant digits)`);
  assert.ok(both.p999 >= 495 && both.p999 <= 505, `p99.9 ${both.p999} ms`);
  // 61 s later only what was added since counts in the window; the cumulative keeps everything.
  book.add({ 7: sparseCounts(fast) }, 1_062_000);
  assert.equal(book.recent([7], 1_062_000)!.count, 99);
  assert.equal(book.buckets([7])!.count, 199);
  assert.equal(book.recent([8], 1_062_000), null);
});

test('a thread’s latency recorder puts every value in the bucket hdr-histogram gives it', () => {
  const values: number[] = [];
  for (let k = 0; k < 31; k++) for (const d of [-1, 0, 1]) if (2 ** k + d >= 1 && 2 ** k + d < 2 ** 31) values.push(2 ** k + d);
  for (let v = 1; v < 70_000; v += 13) values.push(v);
  let x = 12345;
  for (let i = 0; i < 20_000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    values.push(1 + (x % 2 ** 31));
  }
  const recorder = new LatencyRecorder();
  const reference = newHistogram();
  for (const v of values) {
    recorder.record(v);
    reference.recordValue(v);
  }
  assert.equal(recorder.totalCount, values.length);
  assert.deepEqual(recorder.takeSparse(), sparseCounts(reference));
  assert.equal(recorder.totalCount, 0);
  assert.deepEqual(recorder.takeSparse(), [], 'taking the counts starts a new interval');
});
