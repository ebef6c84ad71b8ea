/**
 * Log rotation without copytruncate: logrotate renames the file, then sends SIGUSR1, and
 * carelb reopens its log files at their paths (deploy/logrotate/carelb). Checked on a real
 * carelb process for the access log, and in-process for the audit log (`carelb start` writes
 * the audit log to stdout; only an embedding passes it a file).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startBackend } from '../helpers/backend';
import { startChild, tempDir, waitForLog } from '../helpers/carelb';
import { startWithAdmin } from '../helpers/admin-context';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

const REPO = join(__dirname, '..', '..', '..');

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/** `promise`, or a rejection after `ms` (a missed signal fails the test instead of hanging it). */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function pathsIn(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line).path as string);
}

/** carelb as a process with `workers` threads, its access log in a temp dir, in front of one backend. */
async function carelbWithAccessLog(t: TestContext, workers: number) {
  const api = await startBackend('api');
  t.after(() => api.close());
  const dir = tempDir(t);
  const log = join(dir, 'access.log');
  const port = await freePort();
  const child = await startChild(t, {
    workers,
    pin_workers: false,
    shutdown_grace: '2s',
    access_log: { path: log },
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] }],
  });
  return { dir, log, port, child };
}


test('SIGUSR1 reopens the access log: after a rename, new lines go to the new file and no line is lost', async (t) => {
  const { dir, log, port, child } = await carelbWithAccessLog(t, 2);

  const before = Array.from({ length: 20 }, (_, i) => `/fhir/Patient/before-${i}`);
  const after = Array.from({ length: 20 }, (_, i) => `/fhir/Patient/after-${i}`);
  for (const path of before) assert.equal((await request(port, { path })).status, 200);

  // What logrotate does without copytruncate: rename, then signal (postrotate).
  renameSync(log, `${log}.1`);
  const reopened = within(10_000, waitForLog(child, 'signal received: log files reopened'), 'carelb to log the reopen');
  child.process.kill('SIGUSR1');
  assert.deepEqual((await reopened).files, [log]);

  for (const path of after) assert.equal((await request(port, { path })).status, 200);
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0, 'carelb still stops cleanly');

  const rotated = pathsIn(`${log}.1`);
  const fresh = pathsIn(log);
  assert.ok(existsSync(log), 'carelb created a new file at the old path');
  // Every request has exactly one line, in one file or the other.
  assert.deepEqual([...rotated, ...fresh].sort(), [...before, ...after].sort());
  // Requests made after the signal are all in the new file. (A line of an earlier request may
  // be in the new file too: threads send their lines to the primary in batches, and a batch
  // that arrives after the signal is written to the new file. Moved, not lost.)
  for (const path of after) assert.ok(fresh.includes(path), `${path} is in the new file`);
});

test('reopening the logs moves the audit log to a new file at its path, no line lost', async (t) => {
  const lb = await startWithAdmin(t, { backends: ['b1'] });
  const audit = join(lb.dir, 'logs', 'audit.log');
  assert.equal((await lb.call('POST', '/api/servers/api/b1/drain')).status, 200);
  renameSync(audit, `${audit}.1`);
  assert.deepEqual(lb.running.reopenLogs(), [audit]);
  assert.equal((await lb.call('POST', '/api/servers/api/b1/online')).status, 200);
  await lb.running.stop();

  const lines = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as { action: string });
  const all = [...lines(`${audit}.1`), ...lines(audit)].map((entry) => entry.action);
  assert.deepEqual(all.filter((a) => a === 'drain' || a === 'online').sort(), ['drain', 'online']);
  // The audit log writes each line as it comes: the split is exact.
  assert.deepEqual(lines(`${audit}.1`).map((entry) => entry.action), ['drain']);
  assert.deepEqual(lines(audit).map((entry) => entry.action), ['online']);
});

test('logrotate with the shipped deploy/logrotate/carelb rotates a running carelb\'s access log without losing a line', async (t) => {
  if (!has('logrotate')) return t.skip('logrotate is not installed');
  const { dir, log, port, child } = await carelbWithAccessLog(t, 1);
  const before = Array.from({ length: 10 }, (_, i) => `/fhir/Patient/before-${i}`);
  const after = Array.from({ length: 10 }, (_, i) => `/fhir/Patient/after-${i}`);
  for (const path of before) assert.equal((await request(port, { path })).status, 200);
  // The shipped file with this test's paths, users and PID (no systemd here); the rename, the
  // postrotate script's test of the PID and its kill are the shipped ones.
  const shipped = readFileSync(join(REPO, 'deploy/logrotate/carelb'), 'utf8');
  const config = join(dir, 'logrotate.conf');
  const script = shipped
    .replace('/var/log/carelb/*.log', join(dir, '*.log'))
    .replace('su carelb carelb', 'su root root')
    .replace('create 0640 carelb carelb', 'create 0640 root root')
    // The access log may still be empty on disk (lines are written 4 KB at a time).
    .replace('notifempty', 'ifempty')
    .replace(/pid=\$\(systemctl show [^\n]*/, `pid=${child.process.pid}`);
  assert.notEqual(script, shipped);
  assert.match(script, new RegExp(`pid=${child.process.pid}\n`), 'the MainPID lookup was replaced');
  writeFileSync(config, script);
  const reopened = within(10_000, waitForLog(child, 'signal received: log files reopened'), 'carelb to log the reopen');
  const rotate = spawnSync('logrotate', ['-f', '-s', join(dir, 'state'), config], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(rotate.status, 0, rotate.stderr);
  await reopened;
  for (const path of after) assert.equal((await request(port, { path })).status, 200);
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
  const rotated = pathsIn(`${log}.1`);
  const fresh = pathsIn(log);
  assert.deepEqual([...rotated, ...fresh].sort(), [...before, ...after].sort());
  for (const path of after) assert.ok(fresh.includes(path), `${path} is in the new file`);
});
