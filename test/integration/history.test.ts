/**
 * The primary's history (issue 15) through the admin API: 1 s samples per virtual service and
 * server from real traffic through carelb, the window parameter checked, and the transitions
 * list fed by a health check taking a server down and by an admin action.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startWithAdmin } from '../helpers/admin-context';
import { until } from '../helpers/carelb';
import { request } from '../helpers/client';

const present = (values: (number | null)[]) => values.filter((v): v is number => v !== null);

test('GET /api/history has per-second requests/s, p50/p99 and in-flight per virtual service and server after traffic', async (t) => {
  const lb = await startWithAdmin(t);
  // Requests spread over a few seconds, each awaited: several samples see traffic.
  const until3s = Date.now() + 3000;
  let sent = 0;
  while (Date.now() < until3s && sent < 3000) {
    assert.equal((await request(lb.port)).status, 200);
    sent++;
  }
  const history = await until(async () => {
    const reply = await lb.call('GET', '/api/history?window=1m');
    assert.equal(reply.status, 200, reply.text);
    const rps = present(reply.json.virtual_services[0].series?.rps ?? []);
    return rps.filter((v) => v > 0).length >= 2 ? reply.json : undefined;
  }, 10_000, 'two samples with traffic');
  assert.equal(history.interval_s, 1);
  assert.ok(history.window_s <= 60);
  assert.equal(history.time.length, history.virtual_services[0].series.rps.length);
  const times: number[] = history.time;
  assert.ok(times.every((time, i) => i === 0 || time > times[i - 1]), 'sample times increase');
  const vs = history.virtual_services[0];
  assert.equal(vs.name, 'api');
  assert.ok(present(vs.series.p99).some((v) => v > 0), 'p99 from the merged histograms');
  assert.deepEqual(present(vs.series.e5xx).filter((v) => v > 0), [], 'no 5xx was answered');
  const total = present(vs.series.rps).reduce((a, b) => a + b, 0);
  assert.ok(total > 0 && total <= sent * 1.5, `requests/s summed over the samples (${total}) match the requests sent (${sent})`);
  assert.deepEqual(vs.servers.map((s: { name: string }) => s.name), ['b1', 'b2']);
  for (const server of vs.servers) assert.ok(present(server.series.rps).some((v) => v > 0), `${server.name} has traffic (round robin)`);
  assert.ok(present(vs.series.in_flight).every((v) => v >= 0));
  assert.deepEqual(history.events, []);

  // The window is checked: a bad one is the client's error, named.
  for (const bad of ['16m', '0s', 'abc', '15', '1h', '901s']) {
    const reply = await lb.call('GET', `/api/history?window=${bad}`);
    assert.equal(reply.status, 400, bad);
    assert.match(reply.json.error, /window/);
  }
  assert.equal((await lb.call('GET', '/api/history?windw=5m')).status, 400);
  assert.equal((await lb.call('GET', '/api/history?window=900s')).status, 200);
  assert.equal((await lb.call('GET', '/api/history', null)).status, 401);
  assert.equal((await lb.call('POST', '/api/history')).status, 405);
  // Outside the demo there is no demo route at all, and the status says nothing of it.
  assert.equal((await lb.call('GET', '/api/demo')).status, 404);
  assert.equal((await lb.call('POST', '/api/demo/traffic/start')).status, 404);
  assert.equal('demo' in (await lb.call('GET', '/api/status')).json, false);
});

test('a server taken down by its health check and a drain appear in /api/events with time, server, from, to and reason', async (t) => {
  const lb = await startWithAdmin(t, { service: { health_check: { interval: '100ms', timeout: '200ms', fall: 2, rise: 2 } } });
  assert.equal((await lb.call('POST', '/api/servers/api/b2/drain')).status, 200);
  await lb.backends[0].close();
  const events = await until(async () => {
    const reply = await lb.call('GET', '/api/events');
    assert.equal(reply.status, 200);
    return reply.json.events.some((e: { kind: string }) => e.kind === 'health') ? reply.json.events : undefined;
  }, 10_000, 'the health transition');
  const [drain, down] = events;
  assert.deepEqual({ ...drain, time: undefined, reason: undefined }, { time: undefined, reason: undefined, vs: 'api', server: 'b2', kind: 'admin', from: 'online', to: 'drain' });
  assert.match(drain.reason, /^admin API from 127\.0\.0\.1$/);
  assert.deepEqual({ vs: down.vs, server: down.server, kind: down.kind, from: down.from, to: down.to }, { vs: 'api', server: 'b1', kind: 'health', from: 'up', to: 'down' });
  assert.match(down.reason, /refused|ECONNREFUSED/i);
  assert.ok(Date.parse(drain.time) <= Date.parse(down.time));
  // The same list travels with the history, for the charts' marks.
  assert.deepEqual((await lb.call('GET', '/api/history?window=30s')).json.events.slice(0, 2), events.slice(0, 2));
});
