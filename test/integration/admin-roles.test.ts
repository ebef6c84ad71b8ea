/**
 * Roles on the admin API (issue 13): `read` tokens see status and metrics, `operate` tokens
 * (admin.token_file, or admin.tokens with role operate) also drain, halt, set online and
 * reload, and the HA sync token (ha.sync_token_file) is accepted on /api/ha/* only. A valid
 * token used beyond its role gets 403 and is audited. Real carelb, real sockets.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { runCtl } from '../../src/ctl/ctl';
import { createLogger } from '../../src/observe/log';
import { runCarelb } from '../../src/primary/run';
import { startWithAdmin } from '../helpers/admin-context';
import { tempDir } from '../helpers/carelb';
import { freePort } from '../helpers/ports';

const haBlock = (dir: string) => ({
  node_name: 'lb1',
  interface: 'lo',
  virtual_router_id: 51,
  peer: '127.0.0.1',
  sync_token_file: join(dir, 'secrets', 'sync.token'),
  vips: [{ address: '127.0.0.250/32' }],
});

const token = (path: string) => readFileSync(path, 'utf8').trim();

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

test('a read token sees status and metrics; its POSTs get 403, change nothing and are audited', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ admin: { tokens: [{ file: join(dir, 'secrets', 'read.token'), role: 'read' }] } }) });
  const read = token(join(lb.dir, 'secrets', 'read.token'));
  assert.match(read, /^[0-9a-f]{64}$/, 'a missing read token file is generated like the admin token');
  assert.notEqual(read, lb.token);

  const status = await lb.call('GET', '/api/status', read);
  assert.equal(status.status, 200, status.text);
  assert.equal(status.json.role, 'read', 'the status says which role the token has (the dashboard uses it)');
  assert.equal((await lb.call('GET', '/api/status')).json.role, 'operate', 'admin.token_file is an operate token');
  assert.equal((await lb.call('GET', '/metrics', read)).status, 200);

  for (const path of ['/api/servers/api/b1/drain', '/api/servers/api/b1/halt', '/api/reload']) {
    const refused = await lb.call('POST', path, read);
    assert.equal(refused.status, 403, `POST ${path}: ${refused.text}`);
    assert.match(refused.json.error, /read/);
  }
  assert.equal((await lb.call('GET', '/api/status')).json.virtual_services[0].servers[0].admin, 'online', 'nothing changed');
  const lines = await lb.auditWhen((all) => all.filter((l) => l.action === 'forbidden').reduce((n, l) => n + Number(l.count ?? 1), 0) >= 3, 'three forbidden lines');
  const forbidden = lines.filter((l) => l.action === 'forbidden');
  assert.ok(forbidden.every((l) => l.source === '127.0.0.1' && l.role === 'read'), JSON.stringify(forbidden));
  assert.ok(forbidden.some((l) => l.target === 'POST /api/servers/api/b1/drain'), JSON.stringify(forbidden));
  assert.ok(JSON.stringify(lines).indexOf(read) === -1, 'no token in the audit log');

  // The operator token still operates.
  assert.equal((await lb.call('POST', '/api/servers/api/b1/drain')).json.admin, 'drain');
  // ctl with a read token: status works, drain names the refusal.
  const readFile = join(lb.dir, 'secrets', 'read.token');
  const out = new Capture();
  const err = new Capture();
  assert.equal(await runCtl(['status', '--admin', `127.0.0.1:${lb.adminPort}`, '--token-file', readFile], out, err), 0, err.text);
  const denied = new Capture();
  assert.equal(await runCtl(['online', 'api/b1', '--admin', `127.0.0.1:${lb.adminPort}`, '--token-file', readFile], new Capture(), denied), 1);
  assert.match(denied.text, /403.*read/);
});

test('the sync token works on /api/ha/* only; the operator and read tokens get 403 there', async (t) => {
  const lb = await startWithAdmin(t, {
    extra: (dir) => ({ admin: { tokens: [{ file: join(dir, 'secrets', 'read.token'), role: 'read' }] }, ha: haBlock(dir) }),
  });
  const sync = token(join(lb.dir, 'secrets', 'sync.token'));
  const read = token(join(lb.dir, 'secrets', 'read.token'));
  assert.match(sync, /^[0-9a-f]{64}$/, 'a missing sync token file is generated');

  const peer = await lb.call('GET', '/api/ha/peer', sync);
  assert.equal(peer.status, 200, peer.text);
  assert.equal(peer.json.node, 'lb1');

  for (const [method, path] of [
    ['POST', '/api/servers/api/b1/drain'],
    ['POST', '/api/reload'],
    ['GET', '/api/status'],
    ['GET', '/metrics'],
  ]) {
    const refused = await lb.call(method, path, sync);
    assert.equal(refused.status, 403, `the sync token on ${method} ${path}: ${refused.text}`);
  }
  assert.equal((await lb.call('GET', '/api/status')).json.virtual_services[0].servers[0].admin, 'online', 'the sync token drained nothing');

  for (const [who, presented] of [
    ['operate', lb.token],
    ['read', read],
  ]) {
    const push = await lb.call('POST', '/api/ha/config', presented);
    assert.equal(push.status, 403, `the ${who} token on POST /api/ha/config: ${push.text}`);
    assert.match(push.json.error, /sync/);
    assert.equal((await lb.call('GET', '/api/ha/peer', presented)).status, 403, `the ${who} token on GET /api/ha/peer`);
  }
  await lb.auditWhen((all) => all.some((l) => l.action === 'forbidden' && l.role === 'operate' && l.target === 'POST /api/ha/config'), 'the refused push in the audit log');
  // A wrong token is still a 401, whatever the path.
  assert.equal((await lb.call('POST', '/api/ha/config', 'f'.repeat(64))).status, 401);
});

test('without ha.sync_token_file no token is accepted on /api/ha/*', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ ha: { ...haBlock(dir), sync_token_file: undefined } }) });
  const refused = await lb.call('GET', '/api/ha/peer');
  assert.equal(refused.status, 403);
  assert.match(refused.json.error, /ha\.sync_token_file/);
});

test('one token, one role: the same token in two files stops the start naming both keys', async (t) => {
  const dir = tempDir(t);
  const shared = 'c'.repeat(64);
  for (const name of ['admin.token', 'read.token', 'sync.token']) writeFileSync(join(dir, name), `${shared}\n`, { mode: 0o600 });
  const document = {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${await freePort()}`, servers: [{ name: 'a', address: '127.0.0.1:9' }] }],
    admin: { listen: `127.0.0.1:${await freePort()}`, token_file: join(dir, 'admin.token'), tokens: [{ file: join(dir, 'read.token'), role: 'read' }] },
  };
  const loaded = loadConfigText(stringify(document), 'test.yaml');
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('; '));
  await assert.rejects(
    async () => {
      const running = await runCarelb(loaded.config, { log: createLogger('silent'), auditLog: join(dir, 'audit.log') });
      t.after(() => running.stop());
    },
    /admin\.tokens\[0\]\.file.*admin\.token_file|admin\.token_file.*admin\.tokens\[0\]\.file/,
  );
});

test('token and secret files must be absolute paths; roles are read or operate', () => {
  const base = { virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }] }] };
  const ha = { node_name: 'lb1', interface: 'lo', virtual_router_id: 51, peer: '127.0.0.1', vips: [{ address: '127.0.0.250/32' }] };
  const cases: [unknown, string][] = [
    [{ ...base, admin: { token_file: 'admin.token' } }, 'admin.token_file: must be an absolute path'],
    [{ ...base, admin: { tokens: [{ file: 'secrets/read.token', role: 'read' }] } }, 'admin.tokens[0].file: must be an absolute path'],
    [{ ...base, admin: { tokens: [{ file: '/etc/carelb/x.token', role: 'sync' }] } }, 'admin.tokens[0].role:'],
    [{ ...base, admin: { tokens: [{ file: '/etc/carelb/x.token' }] } }, 'admin.tokens[0].role: is required'],
    [{ ...base, ha: { ...ha, sync_token_file: './sync.token' } }, 'ha.sync_token_file: must be an absolute path'],
    [{ ...base, ha: { ...ha, peer_token_file: 'peer.token' } }, 'ha.peer_token_file: must be an absolute path'],
    [{ ...base, ha: { ...ha, auth_secret_file: 'vrrp.secret' } }, 'ha.auth_secret_file: must be an absolute path'],
  ];
  for (const [document, error] of cases) {
    const loaded = loadConfigText(stringify(document), 'test.yaml');
    assert.equal(loaded.ok, false, `accepted: ${error}`);
    assert.ok(!loaded.ok && loaded.errors.some((e) => e.startsWith(error)), `${error}\n${!loaded.ok && loaded.errors.join('\n')}`);
  }
});
