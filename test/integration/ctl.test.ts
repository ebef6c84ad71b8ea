/**
 * `carelb ctl` against a running carelb (in-process, with its admin server): status, state
 * changes, reload, and the messages an operator gets when carelb is not running or the token
 * is wrong. Mostly runCtl in-process; the standalone entry is spawned for exit codes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { runCtl } from '../../src/ctl/ctl';
import { startWithAdmin } from '../helpers/admin-context';
import { tempDir } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

const MAIN = join(__dirname, '..', '..', 'src', 'ctl', 'main.js');

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

async function ctl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await runCtl(args, out, err);
  return { code, out: out.text, err: err.text };
}

function spawnCtl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr });
    });
  });
}

test('ctl status -c FILE prints a readable table of every server, and --json the /api/status document', async (t) => {
  const lb = await startWithAdmin(t);
  for (let i = 0; i < 3; i++) assert.equal((await request(lb.port)).status, 200);

  const table = await ctl(['status', '-c', lb.configPath]);
  assert.equal(table.err, '');
  assert.equal(table.code, 0);
  const lines = table.out.split('\n');
  assert.match(lines[0], /^carelb \d+\.\d+\.\d+, up \d+s, 2 threads, config [0-9a-f]{12}, 0 thread restarts$/);
  assert.match(table.out, new RegExp(`^api  127\\.0\\.0\\.1:${lb.port}  http  roundrobin  requests 3  in flight 0  errors none$`, 'm'));
  assert.match(table.out, /^ {2}SERVER +ADDRESS +HEALTH +ADMIN +WEIGHT +ACTIVE +REQUESTS +ERRORS +P50 MS +P99 MS +LAST CHECK$/m);
  for (const backend of lb.backends) {
    assert.match(table.out, new RegExp(`^  ${backend.name} +${backend.address.replace(/\./g, '\\.')} +up +online +1 +0 +${backend.seen.length} +0 +- +- +-$`, 'm'));
  }

  const json = await ctl(['status', '--json', '-c', lb.configPath]);
  assert.equal(json.code, 0);
  const document = JSON.parse(json.out);
  assert.equal(document.virtual_services[0].requests, 3);
  assert.deepEqual(Object.keys(document), Object.keys((await lb.call('GET', '/api/status')).json));
});

test('ctl drain|halt|online VS/SERVER changes the state the API reports; flags override the config', async (t) => {
  const lb = await startWithAdmin(t);
  const drain = await ctl(['drain', 'api/b1', '--admin', `127.0.0.1:${lb.adminPort}`, '--token-file', lb.admin.tokenFile]);
  assert.deepEqual(drain, { code: 0, out: 'api/b1: drain (health up, 0 in flight)\n', err: '' });
  assert.equal((await lb.call('GET', '/api/status')).json.virtual_services[0].servers[0].admin, 'drain');

  const halt = await ctl(['halt', 'api/b2', '-c', lb.configPath]);
  assert.equal(halt.out, 'api/b2: halt (health up, 0 in flight)\n');
  const online = await ctl(['online', 'api/b1', '-c', lb.configPath]);
  assert.equal(online.out, 'api/b1: online (health up, 0 in flight)\n');
  const servers = (await lb.call('GET', '/api/status')).json.virtual_services[0].servers;
  assert.deepEqual(servers.map((s: { admin: string }) => s.admin), ['online', 'halt']);
  assert.deepEqual(
    (await lb.auditWhen((lines) => lines.length >= 3)).map((line) => [line.action, line.target]),
    [
      ['drain', 'api/b1'],
      ['halt', 'api/b2'],
      ['online', 'api/b1'],
    ],
  );

  // --admin wins over the config's admin.listen.
  const elsewhere = await freePort();
  const redirected = await ctl(['status', '-c', lb.configPath, '--admin', `127.0.0.1:${elsewhere}`]);
  assert.equal(redirected.code, 1);
  assert.match(redirected.err, new RegExp(`not running at 127\\.0\\.0\\.1:${elsewhere}`));
});

test('ctl names unknown servers and virtual services with the API\'s 404 message and rejects malformed arguments', async (t) => {
  const lb = await startWithAdmin(t);
  assert.deepEqual(await ctl(['drain', 'api/nope', '-c', lb.configPath]), { code: 1, out: '', err: 'carelb ctl: no server "nope" in virtual service "api"\n' });
  assert.deepEqual(await ctl(['drain', 'web/b1', '-c', lb.configPath]), { code: 1, out: '', err: 'carelb ctl: no virtual service "web"\n' });
  // Command-line mistakes exit 2 with the usage (issue 13).
  const operand = await ctl(['drain', 'b1', '-c', lb.configPath]);
  assert.equal(operand.code, 2);
  assert.match(operand.err, /^carelb ctl: drain needs VS\/SERVER, e.g. carelb ctl drain api\/server1\n\nusage: carelb ctl/);
  const unknown = await ctl(['restart', '-c', lb.configPath]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /^carelb ctl: unknown command "restart"\n\nusage: carelb ctl/);
  const option = await ctl(['status', '--verbose']);
  assert.equal(option.code, 2);
  assert.match(option.err, /^carelb ctl: unknown option --verbose\n\nusage: carelb ctl/);
  const usage = await ctl([]);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /^carelb ctl: a command is required\n\nusage: carelb ctl <command>/);
  assert.equal((await ctl(['help'])).code, 0);
});

test('ctl reload reports the new config hash, or the validation errors with exit 1 when the file is invalid', async (t) => {
  const lb = await startWithAdmin(t);
  const ok = await ctl(['reload', '-c', lb.configPath]);
  assert.equal(ok.code, 0);
  const hash = (await lb.call('GET', '/api/status')).json.config_hash as string;
  assert.equal(ok.out, `reloaded: config ${hash.slice(0, 12)} is running\n`);

  // The file ctl read its admin address from stays valid; the one carelb reloads does not.
  const ctlConfig = join(tempDir(t), 'ctl.yaml');
  writeFileSync(ctlConfig, stringify(lb.document));
  writeFileSync(lb.configPath, stringify({ ...lb.document, workers: 'many' }));
  const refused = await ctl(['reload', '-c', ctlConfig]);
  assert.equal(refused.code, 1);
  assert.equal(refused.out, '');
  assert.match(refused.err, /^reload refused, the running config is unchanged:\n {2}workers: /);
  assert.equal((await lb.call('GET', '/api/status')).json.config_hash, hash);
});

test('ctl says when the admin token is refused or unreadable, and when carelb is not running (exit 1)', async (t) => {
  const lb = await startWithAdmin(t);
  const dir = tempDir(t);
  const wrong = join(dir, 'wrong.token');
  writeFileSync(wrong, `${'0'.repeat(64)}\n`, { mode: 0o600 });
  const refused = await spawnCtl(['status', '--admin', `127.0.0.1:${lb.adminPort}`, '--token-file', wrong]);
  assert.deepEqual(refused, { code: 1, out: '', err: 'carelb ctl: the admin token was refused (401): check --token-file (or admin.token_file in the config)\n' });
  const audited = await lb.auditWhen((lines) => lines.some((line) => line.action === 'unauthorized'), 'the refusal in the audit log');
  assert.deepEqual(audited.filter((line) => line.action === 'unauthorized').map((line) => [line.count, line.result]), [[1, 'wrong token']]);

  const missing = join(dir, 'missing.token');
  assert.deepEqual(await ctl(['status', '--admin', `127.0.0.1:${lb.adminPort}`, '--token-file', missing]), {
    code: 1,
    out: '',
    err: `carelb ctl: cannot read the admin token file ${missing} (ENOENT): run as a user who can read it, or pass --token-file\n`,
  });

  const port = await freePort();
  const notRunning = await spawnCtl(['status', '--admin', `127.0.0.1:${port}`, '--token-file', lb.admin.tokenFile]);
  assert.deepEqual(notRunning, { code: 1, out: '', err: `carelb ctl: carelb is not running at 127.0.0.1:${port} (connection refused)\n` });

  const ok = await spawnCtl(['status', '-c', lb.configPath]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^carelb /);
});

test('without an admin key in the config, ctl uses 127.0.0.1:9900 and /etc/carelb/admin.token', { skip: existsSync('/etc/carelb/admin.token') ? 'this machine has /etc/carelb/admin.token' : false }, async (t) => {
  const config = join(tempDir(t), 'carelb.yaml');
  writeFileSync(config, stringify({ virtual_services: [{ name: 'api', listen: '127.0.0.1:8080', servers: [{ name: 's1', address: '127.0.0.1:9000' }] }] }));
  const result = await ctl(['status', '-c', config]);
  assert.equal(result.code, 1);
  assert.match(result.err, /^carelb ctl: cannot read the admin token file \/etc\/carelb\/admin\.token \(ENOENT\)/);
});
