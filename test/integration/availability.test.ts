/**
 * Availability end to end: active checks take a failing server out of rotation and bring it
 * back, passive detection, fallback, slow start, source-address persistence.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startBackend, type TestBackend } from '../helpers/backend';
import { eventually, startInProcess, tempDir, type InProcess } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

/** A backend whose /health and normal answers can be switched between healthy and failing. */
async function switchable(t: TestContext, name: string) {
  const state = { healthy: true, status5xx: false };
  const backend = await startBackend(name, (req, res) => {
    if (req.url === '/health') res.writeHead(state.healthy ? 200 : 500).end(state.healthy ? 'OK' : 'down');
    else if (state.status5xx) res.writeHead(500, { 'x-served-by': name }).end('error');
    else res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name }).end(JSON.stringify({ server: name }));
  });
  t.after(() => backend.close());
  return { backend, state };
}

async function lbFor(t: TestContext, backends: TestBackend[], extra: Record<string, unknown>): Promise<InProcess & { port: number }> {
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 2,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, balance: 'roundrobin', servers: backends.map((b) => ({ name: b.name, address: b.address })), ...extra }],
  });
  return { ...lb, port };
}

const servedBy = async (port: number) => {
  const reply = await request(port);
  return reply.status === 200 ? String(reply.headers['x-served-by']) : `status ${reply.status}`;
};

test('a server that starts failing its health check is taken out within fall x interval, and back after rise x interval', async (t) => {
  const a = await switchable(t, 'a');
  const b = await switchable(t, 'b');
  const lb = await lbFor(t, [a.backend, b.backend], { health_check: { interval: '100ms', timeout: '500ms', rise: 2, fall: 3, expect_body: 'OK' } });
  a.state.healthy = false;
  const failedAt = Date.now();
  await eventually(() => lb.status()[0].servers[0].health === 'down', 3000, 'a to go down');
  t.diagnostic(`down after ${Date.now() - failedAt} ms (fall x interval = 300 ms)`);
  const check = lb.running.admin.lastCheck('api', 'a');
  assert.equal(check?.result, 'fail');
  assert.equal(check?.reason, 'HTTP 500');
  const served = await Promise.all(Array.from({ length: 20 }, () => servedBy(lb.port)));
  assert.deepEqual(new Set(served), new Set(['b']), 'no request reaches the down server');
  a.state.healthy = true;
  await eventually(() => lb.status()[0].servers[0].health === 'up', 3000, 'a to come back');
  const after = await Promise.all(Array.from({ length: 20 }, () => servedBy(lb.port)));
  assert.ok(after.includes('a'));
});

test('passive detection marks a server down after consecutive 5xx at once, and active checks bring it back', async (t) => {
  const a = await switchable(t, 'a');
  const b = await switchable(t, 'b');
  // Slow active checks: only the passive side can explain a quick mark-down.
  const lb = await lbFor(t, [a.backend, b.backend], { health_check: { interval: '1s', rise: 1 }, passive: { consecutive_5xx: 3 } });
  a.state.status5xx = true;
  for (let i = 0; i < 12 && lb.status()[0].servers[0].health === 'up'; i++) await request(lb.port);
  assert.equal(lb.status()[0].servers[0].health, 'down');
  const served = await Promise.all(Array.from({ length: 10 }, () => servedBy(lb.port)));
  assert.deepEqual(new Set(served), new Set(['b']));
  a.state.status5xx = false;
  await eventually(() => lb.status()[0].servers[0].health === 'up', 5000, 'active check to bring a back');
});

test('passive detection counts connection failures too', async (t) => {
  const a = await switchable(t, 'a');
  const dead = `127.0.0.1:${await freePort()}`;
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${port}`,
        balance: 'roundrobin',
        health_check: { type: 'tcp', interval: '5s' },
        passive: { consecutive_failures: 2 },
        servers: [
          { name: 'dead', address: dead },
          { name: 'a', address: a.backend.address },
        ],
      },
    ],
  });
  for (let i = 0; i < 6; i++) assert.equal((await request(port)).status, 200, 'connect failures are retried on the other server');
  assert.equal(lb.status()[0].servers[0].health, 'down');
});

test('with no server up, fallback answers locally with status, body file and Retry-After', async (t) => {
  const dir = tempDir(t);
  const page = join(dir, 'maintenance.json');
  writeFileSync(page, '{"issue":[{"severity":"error","code":"transient","diagnostics":"EHR API under maintenance"}]}');
  const a = await switchable(t, 'a');
  const lb = await lbFor(t, [a.backend], {
    health_check: { interval: '100ms', fall: 1 },
    fallback: { status: 503, body_file: page, content_type: 'application/fhir+json', retry_after: '120s' },
  });
  a.state.healthy = false;
  await eventually(() => lb.status()[0].servers[0].health === 'down', 3000, 'a down');
  const reply = await request(lb.port);
  assert.equal(reply.status, 503);
  assert.equal(reply.headers['retry-after'], '120');
  assert.equal(reply.headers['content-type'], 'application/fhir+json');
  assert.match(reply.body.toString(), /under maintenance/);
  assert.equal(a.backend.seen.filter((r) => r.url !== '/health').length, 0);
});

test('with no server up, requests go to the fallback server', async (t) => {
  const a = await switchable(t, 'a');
  const spare = await switchable(t, 'spare');
  const lb = await lbFor(t, [a.backend], { health_check: { interval: '100ms', fall: 1 }, fallback: { server: spare.backend.address } });
  assert.equal(await servedBy(lb.port), 'a');
  a.state.healthy = false;
  await eventually(() => lb.status()[0].servers[0].health === 'down', 3000, 'a down');
  assert.equal(await servedBy(lb.port), 'spare');
});

test('slow start ramps a recovered server from a low weight to its full weight', async (t) => {
  const a = await switchable(t, 'a');
  const b = await switchable(t, 'b');
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${port}`,
        health_check: { interval: '50ms', rise: 1, fall: 1 },
        slow_start: '2s',
        servers: [
          { name: 'a', address: a.backend.address, weight: 100 },
          { name: 'b', address: b.backend.address, weight: 100 },
        ],
      },
    ],
  });
  a.state.healthy = false;
  await eventually(() => lb.status()[0].servers[0].health === 'down', 3000, 'a down');
  a.state.healthy = true;
  await eventually(() => lb.status()[0].servers[0].health === 'up', 3000, 'a up');
  const weights: number[] = [lb.status()[0].servers[0].weight];
  await eventually(
    () => {
      const weight = lb.status()[0].servers[0].weight;
      if (weight !== weights[weights.length - 1]) weights.push(weight);
      return weight === 100;
    },
    5000,
    'full weight',
  );
  t.diagnostic(`weights seen: ${weights.join(' → ')}`);
  assert.ok(weights[0] <= 20, `starts low (${weights[0]})`);
  assert.ok(weights.length >= 4, 'ramps in steps');
  for (let i = 1; i < weights.length; i++) assert.ok(weights[i] > weights[i - 1]);
});

test('source_ip persistence keeps a client on one server; when it goes down the client moves, and comes back', async (t) => {
  const servers = await Promise.all(['a', 'b', 'c'].map((name) => switchable(t, name)));
  const lb = await lbFor(
    t,
    servers.map((s) => s.backend),
    { persistence: 'source_ip', health_check: { interval: '50ms', rise: 1, fall: 1 } },
  );
  const first = await servedBy(lb.port);
  const again = await Promise.all(Array.from({ length: 20 }, () => servedBy(lb.port)));
  assert.deepEqual(new Set(again), new Set([first]));
  const mine = servers.find((s) => s.backend.name === first)!;
  mine.state.healthy = false;
  const index = servers.indexOf(mine);
  await eventually(() => lb.status()[0].servers[index].health === 'down', 3000, 'server down');
  const moved = await servedBy(lb.port);
  assert.notEqual(moved, first);
  assert.deepEqual(new Set(await Promise.all(Array.from({ length: 10 }, () => servedBy(lb.port)))), new Set([moved]));
  mine.state.healthy = true;
  await eventually(() => lb.status()[0].servers[index].health === 'up', 3000, 'server up');
  assert.equal(await servedBy(lb.port), first);
});

test('halt closes the idle server connections; drain keeps them', async (t) => {
  const a = await switchable(t, 'a');
  const b = await switchable(t, 'b');
  const lb = await lbFor(t, [a.backend, b.backend], {});
  await Promise.all(Array.from({ length: 10 }, () => request(lb.port)));
  const openTo = (backend: TestBackend) => new Promise<number>((resolve) => backend.server.getConnections((_e, n) => resolve(n)));
  assert.ok((await openTo(a.backend)) > 0);
  lb.running.admin.setAdminState('api', 'a', 'drain');
  assert.ok((await openTo(a.backend)) > 0);
  lb.running.admin.setAdminState('api', 'a', 'halt');
  // Halt closes the idle connections within one sweep of the thread (100 ms); poll the server's count.
  const deadline = Date.now() + 3000;
  while ((await openTo(a.backend)) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(await openTo(a.backend), 0);
});
