/**
 * The history sampler (src/primary/history-sampler.ts) with an injected clock and hand-made
 * snapshots: rates over the time really elapsed, the first sample unknown rather than zero,
 * percentiles only from the latency intervals of that second, a reused slot forgotten.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HistorySampler } from '../../src/primary/history-sampler';
import { LatencyBook, newHistogram, sparseCounts } from '../../src/observe/latency';
import type { Config } from '../../src/config/schema';
import type { ServiceStatus } from '../../src/primary/status';
import type { SlotPlan } from '../../src/state/plan';

const VS_SLOT = 3;
const SERVER_SLOT = 7;

function snapshot(requests: number, e5xx: number, clb: number, active: number): ServiceStatus[] {
  const counters = { requests, responses_1xx: 0, responses_2xx: requests - e5xx, responses_3xx: 0, responses_4xx: 0, responses_5xx: e5xx };
  return [
    {
      name: 'api',
      listen: '127.0.0.1:1',
      balance: 'leastconn',
      counters: { ...counters, client_aborts: 0, bytes_in: 0, bytes_out: 0 },
      errors: { NO_SERVER: clb },
      servers: [{ name: 'b1', address: '127.0.0.1:2', weight: 1, health: 'up', admin: 'online', active, counters: { ...counters, failures: clb, retries: 0, connect_failures: 0, bytes_in: 0, bytes_out: 0 } }],
    },
  ];
}

function intervalOf(millis: number[]): number[] {
  const histogram = newHistogram();
  for (const ms of millis) histogram.recordValue(ms * 1000);
  const counts = sparseCounts(histogram);
  histogram.destroy();
  return counts;
}

test('samples rates per second of elapsed time, p50/p99 of that second, and forgets a reused slot', (t) => {
  let now = 0;
  let status = snapshot(0, 0, 0, 0);
  const latency = new LatencyBook();
  const config = { virtual_services: [{ name: 'api', servers: [{ name: 'b1' }] }] } as unknown as Config;
  const plan: SlotPlan = { vs: [{ slot: VS_SLOT, servers: [SERVER_SLOT] }] };
  const sampler = new HistorySampler({ config: () => config, plan: () => plan, status: () => status, latency, now: () => now });
  // stop() also frees the scratch histogram.
  t.after(() => sampler.stop());

  now = 1000;
  sampler.tick();
  status = snapshot(10, 2, 1, 3);
  latency.add({ [SERVER_SLOT]: intervalOf([...Array(98).fill(1), 100, 100]) }, 1500);
  now = 2000;
  sampler.tick();
  // A late timer: 2 s passed, 20 more requests are 10 per second, not 20.
  status = snapshot(30, 2, 1, 0);
  now = 4000;
  sampler.tick();

  const view = sampler.view(900);
  assert.deepEqual(view.time, [1000, 2000, 4000]);
  assert.equal(view.window_s, 3);
  const vs = view.virtual_services[0];
  const server = vs.servers[0];
  assert.deepEqual(vs.series!.rps, [null, 10, 10], 'the first sample has no rate: nothing to compare with');
  assert.deepEqual(vs.series!.e5xx, [null, 2, 0]);
  assert.deepEqual(vs.series!.eclb, [null, 1, 0]);
  assert.deepEqual(server.series!.in_flight, [0, 3, 0]);
  assert.deepEqual(server.series!.eclb, [null, 1, 0], "a server's carelb errors are its failures");
  // Exact to the histograms' 2 significant digits.
  assert.ok(Math.abs(server.series!.p50[1]! - 1) <= 0.01, `p50 ${server.series!.p50[1]}`);
  assert.ok(Math.abs(server.series!.p99[1]! - 100) <= 1, `p99 ${server.series!.p99[1]}`);
  assert.deepEqual(server.series!.p99.filter((_v, i) => i !== 1), [null, null], 'no latency where no interval arrived');
  assert.deepEqual(vs.series!.p99[1], server.series!.p99[1], "the service's percentiles merge its servers' histograms");
  assert.deepEqual(sampler.view(1).time, [4000]);

  sampler.forget([], [SERVER_SLOT]);
  assert.deepEqual(sampler.view(900).virtual_services[0].servers[0].series!.rps, [null, null, null]);
});
