/**
 * carelb as a process: the CLI (check, start), refusing the uWS fallback, SIGTERM with
 * requests in flight, a crashed thread replaced while traffic continues, pinning.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'node:test';
import { startBackend } from '../helpers/backend';
import { CLI, spawnCli, startChild, until, waitForLog, writeConfig } from '../helpers/carelb';
import { request } from '../helpers/client';
import { gate } from '../helpers/gate';
import { freePort } from '../helpers/ports';

/** Whether a TCP connect to `port` is refused (true) or accepted (false, closed at once). */
function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
}

test('carelb check accepts a valid config and rejects a bad one listing every error as path: reason', (t) => {
  const good = writeConfig(t, { virtual_services: [{ name: 'api', listen: '127.0.0.1:8080', servers: [{ name: 'a', address: '127.0.0.1:9000' }] }] });
  const ok = runCli(['check', '-c', good]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /OK/);
  const bad = writeConfig(t, {
    workers: 'many',
    virtual_services: [{ name: 'api', listen: '127.0.0.1:8080', balanse: 'leastconn', servers: [{ name: 'a', address: 'nowhere', weight: -1 }] }],
  });
  const failed = runCli(['check', '-c', bad]);
  assert.equal(failed.status, 1);
  for (const line of ['workers:', 'virtual_services[0].balanse: unknown key', 'virtual_services[0].servers[0].address:', 'virtual_services[0].servers[0].weight:']) {
    assert.ok(failed.stderr.includes(line), `missing ${line} in\n${failed.stderr}`);
  }
  const missing = runCli(['check', '-c', '/nonexistent/carelb.yaml']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read config: ENOENT/);
});

test('carelb start refuses an invalid config with the same errors', (t) => {
  const bad = writeConfig(t, { virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2', wieght: 1 }] }] });
  const result = runCli(['start', '-c', bad]);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /virtual_services\[0\]\.servers\[0\]\.wieght: unknown key/);
});

test('carelb start refuses to run on the pure-JS uWS fallback', (t) => {
  const config = writeConfig(t, { virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }] }] });
  const result = runCli(['start', '-c', config], { UWS_USE_FALLBACK: '1' });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /native uWebSockets\.js binding did not load/);
});

test('carelb start exits 1 with a clear message when its port is taken', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  // The backend's own port is in use (not by a SO_REUSEPORT socket).
  const config = writeConfig(t, { workers: 1, pin_workers: false, virtual_services: [{ name: 'api', listen: api.address, servers: [{ name: 'a', address: api.address }] }] });
  const child = spawnCli(t, ['start', '-c', config]);
  assert.equal(await child.exited, 1);
  assert.match(child.stderr.join(''), /virtual service api: cannot listen on 127\.0\.0\.1:\d+/);
});

test('SIGTERM lets in-flight requests finish, then every thread closes and carelb exits 0', async (t) => {
  // The server holds its answers until carelb has stopped accepting: the requests are in
  // flight during the shutdown by construction, not because 700 ms outlasted it.
  const server = gate(() => 'done');
  t.after(() => server.open());
  const slow = await startBackend('slow', server.handler);
  t.after(() => slow.close());
  const port = await freePort();
  const child = await startChild(t, { workers: 2, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'slow', address: slow.address }] }] });
  const inFlight = Array.from({ length: 6 }, () => request(port));
  await server.arrivals(6);
  child.process.kill('SIGTERM');
  await waitForLog(child, 'stopping: no new connections, finishing in-flight requests');
  // Both threads have closed their listeners (a bare TCP connect, no request sent).
  await until(() => connectRefused(port).then((refused) => refused || undefined), 10_000, 'the listeners to close');
  assert.equal(server.held, 6, 'all six still in flight when carelb stopped accepting');
  assert.equal(child.process.exitCode, null, 'carelb waits for them');
  server.open();
  const replies = await Promise.all(inFlight);
  assert.deepEqual(
    replies.map((r) => [r.status, r.body.toString()]),
    Array.from({ length: 6 }, () => [200, 'done']),
  );
  assert.equal(await child.exited, 0);
  const log = child.stdout.join('');
  assert.match(log, /"msg":"stopped"/);
  assert.doesNotMatch(child.stderr.join(''), /uv_loop_close|Assertion/);
  // Nothing listens any more.
  await assert.rejects(request(port), /ECONNREFUSED/);
});

test('a crashed data-plane thread is replaced while requests keep succeeding on the others', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const port = await freePort();
  const child = await startChild(
    t,
    { workers: 2, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'a', address: api.address }] }] },
    { CARELB_FAULT_INJECTION: '1' },
  );
  const agent = new http.Agent({ keepAlive: false });
  t.after(() => agent.destroy());
  let failures = 0;
  let successes = 0;
  let stop = false;
  // Continuous load: new connection per request so both threads keep getting work.
  const load = (async () => {
    while (!stop) {
      try {
        const reply = await request(port, { agent });
        if (reply.status === 200) successes++;
        else failures++;
      } catch {
        failures++;
      }
    }
  })();
  while (successes < 50) await new Promise((resolve) => setImmediate(resolve));
  const replaced = waitForLog({ ...child }, 'replacement thread is serving');
  child.process.kill('SIGUSR2');
  await replaced;
  const atReplacement = successes;
  while (successes < atReplacement + 100) await new Promise((resolve) => setImmediate(resolve));
  stop = true;
  await load;
  // The crashed thread can only fail the requests it held at that moment.
  assert.ok(failures <= 2, `${failures} failed requests`);
  assert.match(child.stdout.join(''), /data-plane thread died; replacing it/);
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});

test('pin_workers pins each data-plane thread to its own CPU', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const port = await freePort();
  const child = await startChild(t, { workers: 2, pin_workers: true, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'a', address: api.address }] }] }, { CARELB_LOG_LEVEL: 'debug' });
  await waitForLog(child, 'thread pinned');
  const pid = child.process.pid!;
  // Wait for both pin log lines, then read each pinned thread's affinity from the kernel.
  while ((child.stdout.join('').match(/thread pinned/g) ?? []).length < 2) await new Promise((resolve) => child.process.stdout!.once('data', resolve));
  const pinned = child.stdout
    .join('')
    .split('\n')
    .filter((line) => line.includes('thread pinned'))
    .map((line) => JSON.parse(line) as { tid: number; cpu: number });
  assert.deepEqual(pinned.map((p) => p.cpu).sort(), [0, 1]);
  for (const { tid, cpu } of pinned) {
    const affinity = execFileSync('taskset', ['-p', '-c', String(tid)], { encoding: 'utf8' });
    assert.match(affinity, new RegExp(`current affinity list: ${cpu}\\s*$`), `thread ${tid} of ${pid}`);
  }
});
