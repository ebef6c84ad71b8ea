/**
 * Latency statistics and the access log, end to end through real threads.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBackend } from '../helpers/backend';
import { eventually, startInProcess, tempDir } from '../helpers/carelb';
import { request, requestMany } from '../helpers/client';
import { freePort } from '../helpers/ports';

test('latency percentiles from a server with known delays land in the right range', async (t) => {
  // 90 % of requests take ~20 ms, 10 % ~120 ms.
  let n = 0;
  const api = await startBackend('api', (_req, res) => setTimeout(() => res.end('ok'), n++ % 10 === 9 ? 120 : 20));
  t.after(() => api.close());
  const port = await freePort();
  const lb = await startInProcess(t, { workers: 2, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] }] });
  const replies = await requestMany(200, 10, () => request(port));
  assert.ok(replies.every((r) => r.status === 200));
  await eventually(() => (lb.running.admin.latency('api', 'api')?.count ?? 0) >= 200, 5000, 'latency batches to reach the primary');
  const latency = lb.running.admin.latency('api', 'api')!;
  t.diagnostic(`p50 ${latency.p50} ms, p90 ${latency.p90} ms, p99 ${latency.p99} ms`);
  assert.ok(latency.p50 >= 19 && latency.p50 < 60, `p50 ${latency.p50}`);
  assert.ok(latency.p99 >= 115 && latency.p99 < 250, `p99 ${latency.p99}`);
  assert.deepEqual(lb.running.admin.latency('api', null)?.count, latency.count, 'the service merges its servers');
  // Histogram buckets for /metrics: cumulative, monotonic, and split where the delays are.
  const buckets = lb.running.admin.latencyBuckets('api', null)!;
  assert.equal(buckets.count, latency.count);
  for (let i = 1; i < buckets.counts.length; i++) assert.ok(buckets.counts[i] >= buckets.counts[i - 1]);
  const at = (bound: number) => buckets.counts[buckets.bounds.indexOf(bound)];
  assert.equal(at(0.01), 0, 'nothing under 10 ms');
  assert.ok(at(0.1) >= buckets.count * 0.85 && at(0.1) < buckets.count, `≤100 ms: ${at(0.1)} of ${buckets.count}`);
  assert.equal(at(0.5), buckets.count);
  assert.ok(buckets.sum > buckets.count * 0.02, 'sum in seconds');
});

test('the access log has one JSON line per request, without the query string unless log_query is on', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const dir = tempDir(t);
  for (const logQuery of [false, true]) {
    const path = join(dir, `access-${logQuery}.log`);
    const port = await freePort();
    const lb = await startInProcess(t, {
      workers: 2,
      pin_workers: false,
      access_log: { path },
      log_query: logQuery,
      virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] }],
    });
    await request(port, { path: '/fhir/r4/Patient?identifier=MRN123456' });
    await request(port, { method: 'POST', path: '/fhir/r4/Observation', body: 'x'.repeat(42), headers: { 'content-length': 42 } });
    await lb.stop();
    const lines = readFileSync(path, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines.length, 2);
    const [get, post] = lines.sort((a, b) => a.method.localeCompare(b.method));
    assert.equal(get.path, logQuery ? '/fhir/r4/Patient?identifier=MRN123456' : '/fhir/r4/Patient');
    assert.equal(get.status, 200);
    assert.equal(get.vs, 'api');
    assert.equal(get.server, 'api');
    assert.equal(get.client, '127.0.0.1');
    assert.equal(post.bytes_in, 42);
    assert.ok(post.bytes_out > 0);
    assert.ok(post.duration_ms >= post.upstream_ms);
    assert.equal(post.error, null);
    if (!logQuery) assert.doesNotMatch(readFileSync(path, 'utf8'), /MRN123456/);
  }
});
