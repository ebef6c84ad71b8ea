/**
 * Zero-downtime reload and operator states, on real sockets with carelb in-process (and one
 * SIGHUP test with carelb as a process).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import { startBackend, type TestBackend } from '../helpers/backend';
import { eventually, startChild, writeConfig } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

function documentFor(port: number, servers: TestBackend[], extra: Record<string, unknown> = {}) {
  return {
    workers: 2,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, balance: 'roundrobin', servers: servers.map((b) => ({ name: b.name, address: b.address })), ...extra }],
  };
}

async function startFromFile(t: TestContext, document: unknown): Promise<{ running: Running; path: string; write(doc: unknown): void }> {
  const path = writeConfig(t, document);
  const text = stringify(document);
  const loaded = loadConfigText(text, path);
  assert.ok(loaded.ok);
  const running = await runCarelb(loaded.config, { configPath: path, configText: text, log: createLogger('warn') });
  t.after(() => running.stop());
  return { running, path, write: (doc) => writeFileSync(path, stringify(doc)) };
}

async function backends(t: TestContext, names: string[]): Promise<TestBackend[]> {
  const list = await Promise.all(names.map((name) => startBackend(name)));
  t.after(() => Promise.all(list.map((b) => b.close())));
  return list;
}

test('under continuous load, 10 reloads that add and remove servers fail no request', async (t) => {
  const pool = await backends(t, ['b1', 'b2', 'b3', 'b4']);
  const port = await freePort();
  const lb = await startFromFile(t, documentFor(port, pool.slice(0, 2)));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.after(() => agent.destroy());
  const counts = { ok: 0, failed: 0 };
  let running = true;
  const lanes = Array.from({ length: 16 }, async () => {
    while (running) {
      try {
        const reply = await request(port, { agent });
        if (reply.status === 200) counts.ok++;
        else counts.failed++;
      } catch {
        counts.failed++;
      }
    }
  });
  const sets = [[0, 1, 2], [1, 2], [2, 3], [0, 3], [0, 1, 2, 3], [3], [1], [0, 2], [1, 3], [0, 1]];
  for (const set of sets) {
    const before = counts.ok;
    lb.write(documentFor(port, set.map((i) => pool[i])));
    const result = await lb.running.reload('test');
    assert.deepEqual(result.ok, true, JSON.stringify(result));
    // Let traffic flow on the new config before the next reload.
    await eventually(() => counts.ok >= before + 100, 10_000, 'traffic after reload');
  }
  running = false;
  await Promise.all(lanes);
  t.diagnostic(`requests during 10 reloads: ${counts.ok} succeeded, ${counts.failed} failed`);
  assert.equal(counts.failed, 0);
  // Every removed server stopped getting requests; the last set is b1 + b2.
  const status = lb.running.status()[0];
  assert.deepEqual(status.servers.map((s) => s.name), ['b1', 'b2']);
  await eventually(() => lb.running.status()[0].servers.every((s) => s.active === 0), 5000, 'in-flight back to 0');
});

test('an invalid config on reload is refused with every error and the running config keeps serving', async (t) => {
  const [b1] = await backends(t, ['b1']);
  const port = await freePort();
  const lb = await startFromFile(t, documentFor(port, [b1]));
  const hashBefore = lb.running.admin.configHash();
  writeFileSync(lb.path, 'workers: 2\nvirtual_services:\n  - name: api\n    listen: nowhere\n    servers: []\n    colour: blue\n');
  const result = await lb.running.reload('test');
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.errors.some((e) => e.startsWith('virtual_services[0].listen:')));
  assert.ok(!result.ok && result.errors.includes('virtual_services[0].colour: unknown key'));
  assert.equal(lb.running.admin.configHash(), hashBefore);
  assert.equal((await request(port)).status, 200);
});

test('a reload keeps the listener and open client connections of an unchanged virtual service', async (t) => {
  const [b1, b2] = await backends(t, ['b1', 'b2']);
  const port = await freePort();
  const lb = await startFromFile(t, documentFor(port, [b1]));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const first = await request(port, { agent });
  const socketsBefore = Object.values(agent.freeSockets).flat();
  lb.write(documentFor(port, [b2]));
  assert.equal((await lb.running.reload('test')).ok, true);
  const second = await request(port, { agent });
  assert.equal(JSON.parse(first.body.toString()).server, 'b1');
  assert.equal(JSON.parse(second.body.toString()).server, 'b2');
  assert.equal(Object.values(agent.freeSockets).flat()[0], socketsBefore[0], 'same client connection');
});

test('a reload can move a virtual service to a new port and add another one', async (t) => {
  const [b1] = await backends(t, ['b1']);
  const [oldPort, newPort, extraPort] = [await freePort(), await freePort(), await freePort()];
  const lb = await startFromFile(t, documentFor(oldPort, [b1]));
  const moved = documentFor(newPort, [b1]);
  moved.virtual_services.push({ ...documentFor(extraPort, [b1]).virtual_services[0], name: 'fhir' });
  lb.write(moved);
  assert.equal((await lb.running.reload('test')).ok, true);
  assert.equal((await request(newPort)).status, 200);
  assert.equal((await request(extraPort)).status, 200);
  await assert.rejects(request(oldPort), /ECONNREFUSED/);
});

test('drain and halt take a server out of rotation, online brings it back, and states survive a reload', async (t) => {
  const [b1, b2] = await backends(t, ['b1', 'b2']);
  const port = await freePort();
  const lb = await startFromFile(t, documentFor(port, [b1, b2]));
  for (const state of ['drain', 'halt'] as const) {
    const server = lb.running.admin.setAdminState('api', 'b1', state);
    assert.equal(server?.admin, state);
    b1.seen.length = 0;
    for (let i = 0; i < 10; i++) assert.equal((await request(port)).status, 200);
    assert.equal(b1.seen.length, 0, `${state}: no new request to b1`);
  }
  lb.write(documentFor(port, [b1, b2], { timeouts: { server: '30s' } }));
  assert.equal((await lb.running.reload('test')).ok, true);
  assert.equal(lb.running.status()[0].servers[0].admin, 'halt');
  lb.running.admin.setAdminState('api', 'b1', 'online');
  b1.seen.length = 0;
  for (let i = 0; i < 10; i++) await request(port);
  assert.ok(b1.seen.length >= 2, `b1 is back in rotation (${b1.seen.length} of 10)`);
  assert.equal(lb.running.admin.setAdminState('api', 'nope', 'drain'), null);
});

test('a drained server finishes the requests it already has', async (t) => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const slow = await startBackend('slow', (_req, res) => void gate.then(() => res.end('finished')));
  t.after(() => slow.close());
  const port = await freePort();
  const lb = await startFromFile(t, documentFor(port, [slow]));
  const pending = request(port);
  await eventually(() => slow.seen.length === 1, 5000, 'request to reach the server');
  lb.running.admin.setAdminState('api', 'slow', 'drain');
  assert.equal((await request(port)).status, 503, 'no new requests while drained');
  release();
  const reply = await pending;
  assert.equal(reply.status, 200);
  assert.equal(reply.body.toString(), 'finished');
});

test('SIGHUP re-reads the config file', async (t) => {
  const [b1, b2] = await backends(t, ['b1', 'b2']);
  const port = await freePort();
  const path = writeConfig(t, documentFor(port, [b1]));
  const child = await startChild(t, null, {}, path);
  assert.equal(JSON.parse((await request(port)).body.toString()).server, 'b1');
  writeFileSync(path, stringify(documentFor(port, [b2])));
  child.process.kill('SIGHUP');
  await eventually(() => child.stdout.join('').includes('config reloaded'), 10_000, 'reload log');
  assert.equal(JSON.parse((await request(port)).body.toString()).server, 'b2');
});
