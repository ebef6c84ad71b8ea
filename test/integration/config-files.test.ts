/**
 * Every file a config names is checked by the primary, in `check`, `start` and reload, with
 * the key path and the reason (issue 11, point 4); a data-plane thread that cannot start is
 * retried with backoff, never in a hot loop, and a first start that cannot complete fails.
 * carelb runs as a real child process; every child and temp file is cleaned up.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { adminCall } from '../helpers/admin-context';
import { startBackend, type TestBackend } from '../helpers/backend';
import { CLI, spawnCli, startChild, tempDir, waitForLog, type Child } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

function runCli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
}

async function backend(t: TestContext, name = 'api'): Promise<TestBackend> {
  const api = await startBackend(name);
  t.after(() => api.close());
  return api;
}

/** Resolves with the first JSON log line of the child that `match` accepts (rejects if it exits first). */
function waitForLine(child: Child, match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return waitForLines(child, 1, match).then((lines) => lines[0]);
}

/** Resolves with the first `count` JSON log lines of the child that `match` accepts. */
function waitForLines(child: Child, count: number, match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const scan = () => {
      const found: Record<string, unknown>[] = [];
      for (const line of child.stdout.join('').split('\n')) {
        if (!line.startsWith('{') || !line.endsWith('}')) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (match(entry)) found.push(entry);
      }
      if (found.length < count) return;
      child.process.stdout!.off('data', scan);
      resolve(found.slice(0, count));
    };
    child.process.stdout!.on('data', scan);
    scan();
    void child.exited.then((code) => reject(new Error(`carelb exited (${code}) first: ${child.stderr.join('')}`)));
  });
}

/** The child's exit code, or 'still running' when it has not exited `ms` after it was asked to start. */
function exitOrHang(child: Child, ms: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), ms)));
  return Promise.race([child.exited, hang]).finally(() => clearTimeout(timer));
}

function serviceWith(port: number, api: TestBackend, extra: Record<string, unknown> = {}) {
  return { name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'a', address: api.address }], ...extra };
}

test('carelb check names the key and the reason for every unusable file the config names', (t) => {
  const dir = tempDir(t);
  const certs = makeCa(dir);
  const localhost = makeCert(dir, certs, 'localhost', { cn: 'localhost' });
  const aDirectory = join(dir, 'a-directory');
  mkdirSync(aDirectory);
  const huge = join(dir, 'huge.html');
  writeFileSync(huge, Buffer.alloc(1024 * 1024 + 1, 'x'));
  const fifo = join(dir, 'a-fifo');
  execFileSync('mkfifo', [fifo]);
  const missing = join(dir, 'missing');
  const check = (document: Record<string, unknown>) => {
    const path = join(dir, `c${Math.random()}.yaml`);
    writeFileSync(path, stringify(document));
    return runCli(['check', '-c', path]);
  };
  const vs = (extra: Record<string, unknown>) => ({ virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }], ...extra }] });
  const cases: [Record<string, unknown>, RegExp][] = [
    [vs({ fallback: { body_file: missing } }), /virtual_services\[0\]\.fallback\.body_file: cannot read fallback body file .*missing: ENOENT \(missing\)/],
    [vs({ fallback: { body_file: aDirectory } }), /virtual_services\[0\]\.fallback\.body_file: .*a-directory is a directory, not a file/],
    [vs({ fallback: { body_file: huge } }), /virtual_services\[0\]\.fallback\.body_file: .*huge\.html is too large \(1048577 bytes, at most 1048576\)/],
    // A FIFO would block a reader forever: refused unread.
    [vs({ fallback: { body_file: fifo } }), /virtual_services\[0\]\.fallback\.body_file: .*a-fifo is not a regular file/],
    [vs({ tls: { ...localhost, passphrase_file: aDirectory } }), /virtual_services\[0\]\.tls\.passphrase_file: .*a-directory is a directory, not a file/],
    [vs({ backend_tls: { ca: missing } }), /virtual_services\[0\]\.backend_tls\.ca: cannot read CA bundle .*missing: ENOENT \(missing\)/],
    [vs({ servers: [{ name: 'a', address: '127.0.0.1:2', backend_tls: { cert: aDirectory, key: localhost.key } }] }), /virtual_services\[0\]\.servers\[0\]\.backend_tls\.cert: .*a-directory is a directory, not a file/],
    [{ ...vs({}), admin: { token_file: aDirectory } }, /admin\.token_file: .*a-directory is a directory, not a file/],
    [{ ...vs({}), access_log: { path: aDirectory } }, /access_log\.path: .*a-directory is a directory, not a file/],
  ];
  for (const [document, message] of cases) {
    const result = check(document);
    assert.equal(result.status, 1, `${JSON.stringify(document)}\n${result.stdout}${result.stderr}`);
    assert.match(result.stderr, message);
  }
  // A token file that does not exist yet is generated at start: not an error.
  const fresh = check({ ...vs({}), admin: { token_file: join(dir, 'new', 'admin.token') } });
  assert.equal(fresh.status, 0, fresh.stderr);
});

test('carelb start with a missing fallback.body_file exits 1 naming the key instead of hanging', async (t) => {
  const api = await backend(t);
  const dir = tempDir(t);
  const port = await freePort();
  const path = join(dir, 'carelb.yaml');
  writeFileSync(path, stringify({ workers: 1, pin_workers: false, virtual_services: [serviceWith(port, api, { fallback: { body_file: join(dir, 'sorry.html') } })] }));
  const child = spawnCli(t, ['start', '-c', path]);
  assert.equal(await exitOrHang(child, 15_000), 1, child.stdout.join('').slice(0, 2000));
  assert.match(child.stderr.join(''), /virtual_services\[0\]\.fallback\.body_file: cannot read fallback body file .*sorry\.html: ENOENT \(missing\)/);
  assert.doesNotMatch(child.stdout.join(''), /thread died/, 'no thread was started');
});

test('a reload naming a missing fallback.body_file is refused and the running config keeps serving', async (t) => {
  const api = await backend(t);
  const dir = tempDir(t);
  const port = await freePort();
  const body = join(dir, 'sorry.html');
  writeFileSync(body, 'EHR API under maintenance\n');
  const path = join(dir, 'carelb.yaml');
  const document = (bodyFile: string) => ({ workers: 2, pin_workers: false, virtual_services: [serviceWith(port, api, { fallback: { body_file: bodyFile } })] });
  writeFileSync(path, stringify(document(body)));
  const child = await startChild(t, null, {}, path);
  writeFileSync(path, stringify(document(join(dir, 'gone.html'))));
  child.process.kill('SIGHUP');
  const outcome = await waitForLine(child, (e) => e.msg === 'config reloaded' || String(e.msg).startsWith('reload refused'));
  assert.match(String(outcome.msg), /^reload refused/);
  assert.match(JSON.stringify(outcome.errors), /virtual_services\[0\]\.fallback\.body_file: cannot read fallback body file .*gone\.html: ENOENT \(missing\)/);
  for (let i = 0; i < 4; i++) assert.equal((await request(port)).status, 200);
  assert.doesNotMatch(child.stdout.join(''), /thread died|failed to start/);
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});

test('carelb start exits 1 with the reason when its admin API cannot start, instead of hanging', async (t) => {
  const api = await backend(t);
  const dir = tempDir(t);
  const port = await freePort();
  // The admin address is the backend's own port: in use.
  const path = join(dir, 'carelb.yaml');
  writeFileSync(path, stringify({ workers: 1, pin_workers: false, admin: { listen: api.address, token_file: join(dir, 'admin.token') }, virtual_services: [serviceWith(port, api)] }));
  const child = spawnCli(t, ['start', '-c', path]);
  assert.equal(await exitOrHang(child, 15_000), 1, child.stdout.join('').slice(0, 2000));
  assert.match(child.stderr.join(''), /EADDRINUSE/);
});

test('a thread that cannot start again after a crash is retried with growing delays, logged and counted each time, and serves once it can', async (t) => {
  const api = await backend(t);
  const dir = tempDir(t);
  const ca = makeCa(dir);
  const localhost = makeCert(dir, ca, 'localhost', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const [plainPort, tlsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const path = join(dir, 'carelb.yaml');
  writeFileSync(
    path,
    stringify({
      workers: 2,
      pin_workers: false,
      admin: { listen: `127.0.0.1:${adminPort}`, token_file: join(dir, 'admin.token') },
      virtual_services: [
        { name: 'plain', listen: `127.0.0.1:${plainPort}`, servers: [{ name: 'a', address: api.address }] },
        { name: 'secure', listen: `127.0.0.1:${tlsPort}`, tls: localhost, servers: [{ name: 'a', address: api.address }] },
      ],
    }),
  );
  const child = await startChild(t, null, { CARELB_FAULT_INJECTION: '1' }, path);
  await waitForLog(child, 'admin API and dashboard listening');
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  // The certificate goes away under the running carelb; then thread 0 crashes: its
  // replacement cannot build its TLS listener until the file is back.
  renameSync(localhost.cert, `${localhost.cert}.away`);
  child.process.kill('SIGUSR2');
  const isFailure = (e: Record<string, unknown>) => e.slot === 0 && e.level === 50 && /thread (died|failed to start)/.test(String(e.msg));
  const failures = await waitForLines(child, 4, isFailure);
  // The other thread serves all along.
  for (let i = 0; i < 4; i++) assert.equal((await request(plainPort)).status, 200);
  const delays = failures.map((e) => e.retry_in_ms);
  assert.deepEqual(delays, [0, 200, 400, 800], 'first replacement at once, then backoff doubling');
  assert.deepEqual(failures.map((e) => e.attempt), [1, 2, 3, 4]);
  for (const e of failures.slice(1)) {
    assert.equal(e.msg, 'data-plane thread failed to start; retrying');
    assert.match(String(e.err), /tls\.cert: cannot read certificate .*localhost\.pem: ENOENT \(missing\)/, 'the reason names the key and the file');
  }
  for (let i = 1; i < failures.length; i++) {
    const gap = Date.parse(String(failures[i].time)) - Date.parse(String(failures[i - 1].time));
    assert.ok(gap >= Number(failures[i - 1].retry_in_ms), `attempt ${i + 1} came ${gap} ms after the previous one`);
  }
  const restarts = (await adminCall(adminPort, 'GET', '/api/status', token)).json.thread_restarts;
  assert.ok(restarts >= 4, `thread_restarts ${restarts}`);
  renameSync(`${localhost.cert}.away`, localhost.cert);
  await waitForLine(child, (e) => e.msg === 'replacement thread is serving' && e.slot === 0);
  // Both threads serve TLS again (new connections each, spread by the kernel).
  for (let i = 0; i < 6; i++) {
    const status = await new Promise<number>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: tlsPort, ca: readFileSync(ca.cert), servername: 'localhost', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      }).on('error', reject);
    });
    assert.equal(status, 200);
  }
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
  assert.doesNotMatch(child.stderr.join(''), /uv_loop_close|Assertion/);
});
