import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { SlotAllocator } from '../../src/primary/slots';

function config(services: Record<string, string[]>): Config {
  const result = validateConfig({
    virtual_services: Object.entries(services).map(([name, servers], i) => ({
      name,
      listen: `127.0.0.1:${8000 + i}`,
      servers: servers.map((s, j) => ({ name: s, address: `127.0.0.1:${9000 + j}` })),
    })),
  });
  assert.ok(result.ok);
  return result.config;
}

test('servers keep their slots across plans while they stay in the config', () => {
  const slots = new SlotAllocator(4, 8);
  const first = slots.plan(config({ api: ['a', 'b'], fhir: ['c'] }));
  assert.ok(!('error' in first));
  assert.deepEqual(first.plan.vs, [
    { slot: 0, servers: [0, 1] },
    { slot: 1, servers: [2] },
  ]);
  assert.deepEqual(first.freshServers, [0, 1, 2]);
  const second = slots.plan(config({ fhir: ['c', 'd'], api: ['b'] }));
  assert.ok(!('error' in second));
  assert.deepEqual(second.plan.vs, [
    { slot: 1, servers: [2, 3] },
    { slot: 0, servers: [1] },
  ]);
  assert.deepEqual(second.freshServers, [3], 'only the new server gets a fresh slot');
});

test('a removed server slot is reused only after the never-used ones', () => {
  const slots = new SlotAllocator(2, 3);
  slots.plan(config({ api: ['a', 'b'] }));
  const next = slots.plan(config({ api: ['b', 'c', 'd'] }));
  assert.ok(!('error' in next));
  assert.deepEqual(next.plan.vs[0].servers, [1, 2, 0]);
});

test('a config that needs more slots than carelb started with is refused', () => {
  const slots = new SlotAllocator(1, 2);
  slots.plan(config({ api: ['a'] }));
  const tooMany = slots.plan(config({ api: ['a', 'b', 'c'] }));
  assert.ok('error' in tooMany);
  assert.match(tooMany.error, /more than 2 servers: restart carelb/);
});
