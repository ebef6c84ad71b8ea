/** Which health check applies to a server: defaults, then the virtual service's keys, then the server's. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { resolveHealthCheck } from '../../src/health/check-config';

function config(vs: Record<string, unknown>): Config {
  const result = validateConfig({ virtual_services: [{ name: 'api', listen: '127.0.0.1:8000', ...vs }] });
  assert.ok(result.ok, result.ok ? '' : result.errors.join('; '));
  return result.config;
}

test('a virtual service without health_check has no active checks', () => {
  const c = config({ servers: [{ name: 'a', address: '127.0.0.1:9000' }] });
  assert.equal(resolveHealthCheck(c.virtual_services[0], c.virtual_services[0].servers[0]), null);
});

test('an empty health_check gets every default', () => {
  const c = config({ health_check: {}, servers: [{ name: 'a', address: '127.0.0.1:9000' }] });
  assert.deepEqual(resolveHealthCheck(c.virtual_services[0], c.virtual_services[0].servers[0]), {
    type: 'http',
    method: 'GET',
    path: '/health',
    expect_status: [[200, 399]],
    interval: 2000,
    timeout: 1000,
    rise: 2,
    fall: 3,
  });
});

test("a server's health_check keys override the virtual service's, which override the defaults", () => {
  const c = config({
    health_check: { path: '/ready', interval: '5s', expect_status: [200, '300-302'], expect_body: 'OK', fall: 2 },
    servers: [
      { name: 'a', address: '127.0.0.1:9000' },
      { name: 'b', address: '127.0.0.1:9001', health_check: { type: 'tcp', interval: '500ms' } },
    ],
  });
  const [vs] = c.virtual_services;
  const a = resolveHealthCheck(vs, vs.servers[0])!;
  assert.equal(a.type, 'http');
  assert.equal(a.path, '/ready');
  assert.equal(a.interval, 5000);
  assert.deepEqual(a.expect_status, [
    [200, 200],
    [300, 302],
  ]);
  assert.equal(a.expect_body, 'OK');
  assert.equal(a.fall, 2);
  assert.equal(a.rise, 2);
  const b = resolveHealthCheck(vs, vs.servers[1])!;
  assert.equal(b.type, 'tcp');
  assert.equal(b.interval, 500);
  assert.equal(b.path, '/ready', 'keys the server does not set still come from the virtual service');
});
