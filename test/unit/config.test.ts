import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText, validateConfig } from '../../src/config/load';
import { parseDuration, parseSize } from '../../src/config/units';

const minimal = `
virtual_services:
  - name: api
    listen: 0.0.0.0:8080
    servers:
      - { name: api1, address: 10.0.0.11:80 }
`;

test('a minimal config gets every default with its unit converted', () => {
  const result = loadConfigText(minimal, 'x.yaml');
  assert.ok(result.ok);
  const vs = result.config.virtual_services[0];
  assert.equal(result.config.workers, 'auto');
  assert.equal(result.config.pin_workers, true);
  assert.equal(result.config.shutdown_grace, 10_000);
  assert.equal(vs.balance, 'leastconn');
  assert.deepEqual(vs.timeouts, { connect: 5000, server: 60_000, upstream_idle: 4000, client_body_idle: 30_000, queue: 5000 });
  assert.deepEqual(vs.limits, { header_bytes: 16 * 1024, header_count: 40, url_bytes: 8 * 1024, max_body: 0 });
  assert.deepEqual(vs.listen, { host: '0.0.0.0', port: 8080 });
  assert.equal(vs.servers[0].weight, 1);
  assert.ok(Object.isFrozen(result.config.virtual_services[0].servers[0]));
});

test('unknown keys are errors that name their full path', () => {
  const result = validateConfig({
    workerz: 2,
    virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2', wieght: 3 }] }],
  });
  assert.ok(!result.ok);
  assert.ok(result.errors.includes('workerz: unknown key'), result.errors.join('\n'));
  assert.ok(result.errors.includes('virtual_services[0].servers[0].wieght: unknown key'), result.errors.join('\n'));
});

test('every error is reported at once, each as path: reason', () => {
  const result = validateConfig({
    workers: 0,
    virtual_services: [
      {
        name: 'api',
        listen: 'nowhere',
        balance: 'random',
        timeouts: { connect: 'soon' },
        servers: [
          { name: 'a', address: '127.0.0.1:70000', weight: 300 },
        ],
      },
    ],
  });
  assert.ok(!result.ok);
  const text = result.errors.join('\n');
  for (const path of [
    'workers:',
    'virtual_services[0].listen: "nowhere" is not host:port',
    'virtual_services[0].balance:',
    'virtual_services[0].timeouts.connect: "soon" is not a duration',
    'virtual_services[0].servers[0].address: port 70000 is out of range',
    'virtual_services[0].servers[0].weight:',
  ]) {
    assert.ok(text.includes(path), `missing "${path}" in:\n${text}`);
  }
});

test('duplicate server names are errors (reported once the rest of the service is valid)', () => {
  const result = validateConfig({
    virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }, { name: 'a', address: '127.0.0.1:3' }] }],
  });
  assert.ok(!result.ok);
  assert.deepEqual(result.errors, ['virtual_services[0].servers[1].name: duplicate server name "a"']);
});

test('missing required keys say so', () => {
  const result = validateConfig({ virtual_services: [{ name: 'api' }] });
  assert.ok(!result.ok);
  assert.ok(result.errors.includes('virtual_services[0].listen: is required'), result.errors.join('\n'));
  const empty = validateConfig({ virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [] }] });
  assert.ok(!empty.ok);
  assert.deepEqual(empty.errors, ['virtual_services[0].servers: needs at least one server']);
  const redirect = validateConfig({ virtual_services: [{ name: 'web', listen: '127.0.0.1:1', redirect_https: true }] });
  assert.ok(redirect.ok, 'a redirect-only service needs no servers');
});

test('two virtual services cannot share a listen address', () => {
  const result = validateConfig({
    virtual_services: [
      { name: 'a', listen: '127.0.0.1:8080', servers: [{ name: 's', address: '127.0.0.1:1' }] },
      { name: 'b', listen: '127.0.0.1:8080', servers: [{ name: 's', address: '127.0.0.1:1' }] },
    ],
  });
  assert.ok(!result.ok);
  assert.match(result.errors.join('\n'), /virtual_services\[1\]\.listen: 127\.0\.0\.1:8080 is already used/);
});

test('IPv6 listen addresses use brackets', () => {
  const result = validateConfig({ virtual_services: [{ name: 'a', listen: '[::]:8443', servers: [{ name: 's', address: '[::1]:80' }] }] });
  assert.ok(result.ok);
  assert.deepEqual(result.config.virtual_services[0].listen, { host: '::', port: 8443 });
});

test('broken YAML is reported with the file name', () => {
  const result = loadConfigText('virtual_services: [\n  {', 'broken.yaml');
  assert.ok(!result.ok);
  assert.match(result.errors[0], /^broken\.yaml: not valid YAML/);
});

test('durations and sizes parse with their units', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('5'), undefined);
  assert.equal(parseDuration('5 parsecs'), undefined);
  assert.equal(parseSize('16k'), 16 * 1024);
  assert.equal(parseSize('1MiB'), 1024 * 1024);
  assert.equal(parseSize('x'), undefined);
});
