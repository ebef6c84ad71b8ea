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

// Percentiles, windows and buckets are checked exactly on synthetic histograms in
// test/unit/latency.test.ts; here only that real requests get recorded and reach the primary.
test('every proxied request leaves one latency sample that reaches the primary, per server and merged per service', async (t) => {
  const api = await startBackend('api', (_req, res) => setTimeout(() => res.end('ok'), 20));
  t.after(() => api.close());
  const port = await freePort();
  const lb = await startInProcess(t, { workers: 2, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] }] });
  const replies = await requestMany(100, 10, () => request(port));
  assert.ok(replies.every((r) => r.status === 200));
  // Threads send their histograms once a second: wait for the samples, not for a time.
  await eventually(() => (lb.running.admin.latency('api', 'api')?.count ?? 0) >= 100, 5000, 'latency batches to reach the primary');
  const latency = lb.running.admin.latency('api', 'api')!;
  assert.equal(latency.count, 100, 'one sample per request, none twice');
  assert.equal(lb.running.admin.latency('api', null)?.count, 100, 'the service merges its servers');
  const buckets = lb.running.admin.latencyBuckets('api', null)!;
  assert.equal(buckets.count, 100);
  // A floor, never a window: the server waits 20 ms before answering, so no request can have
  // taken less, however fast or slow the machine. Catches a unit slip (ms recorded as µs).
  assert.ok(latency.p50 >= 20, `p50 ${latency.p50} ms for a server that answers after 20 ms`);
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
