/**
 * Config sync, receiver side (POST /api/ha/config, GET /api/ha/peer) and sender side (peerStatus,
 * pushConfig, `carelb ha sync`), against carelb running in this process with a real admin server
 * started with `configPath`, real backends and certificates generated now.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { HaConfig } from '../../src/config/schema';
import { peerStatus, pushConfig } from '../../src/ha/client';
import { runHa } from '../../src/ha/command';
import { sharedHash, textHash } from '../../src/ha/config-text';
import { eventually } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';
import { b64, haBlock, pem, startReceiver } from './receiver';

test('a valid sync writes the files and the config (with the receiver’s own ha: block) and reloads', async (t) => {
  const b = await startReceiver(t);
  const tlsPort = await freePort();
  const generated = pem(join(b.dir, 'generated'), 'api');
  const target = join(b.dir, 'etc', 'tls');
  const shared = b.shared(`  - name: api-tls\n    listen: 127.0.0.1:${tlsPort}\n    tls: { cert: ${target}/api.pem, key: ${target}/api.key }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`, 3);
  const sent = b.senderText(shared);
  const answer = await b.call('POST', '/api/ha/config', {
    config_text: sent,
    files: [
      { path: `${target}/api.pem`, mode: 0o644, content_base64: b64(generated.certText) },
      { path: `${target}/api.key`, mode: 0o600, content_base64: b64(generated.keyText) },
    ],
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  assert.equal(answer.json.ok, true);
  const written = readFileSync(b.configPath, 'utf8');
  assert.equal(written, b.textFor(shared), "the sender's config with the receiver's ha: block");
  assert.equal(answer.json.config_hash, textHash(written));
  assert.equal(b.hash(), textHash(written), 'reloaded');
  assert.equal(answer.json.shared_hash, sharedHash(sent), 'the same shared hash as the sender');
  assert.deepEqual(answer.json.files_written, [`${target}/api.pem`, `${target}/api.key`]);
  assert.equal(readFileSync(`${target}/api.key`, 'utf8'), generated.keyText);
  assert.equal(statSync(`${target}/api.key`).mode & 0o777, 0o600);
  assert.equal(statSync(`${target}/api.pem`).mode & 0o777, 0o640, 'fixed modes by kind, not the 0644 the sender sent');
  assert.equal(statSync(b.configPath).mode & 0o777, 0o640, 'the config keeps its mode');
  assert.ok(answer.json.warnings.some((w: string) => w.includes(`${target}/api.pem`) && /expires in/.test(w)), 'warnings name the real paths');

  const peer = await b.call('GET', '/api/ha/peer');
  assert.equal(peer.status, 200);
  assert.deepEqual({ ...peer.json, vrrp: undefined }, { node: 'lb2', config_hash: textHash(written), shared_hash: sharedHash(sent), config_file_changed: false, vrrp: undefined });
  // The audit log is written asynchronously: wait for the sync's line.
  const auditLines = () => (existsSync(join(b.dir, 'audit.log')) ? readFileSync(join(b.dir, 'audit.log'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
  await eventually(() => auditLines().some((e) => e.action === 'ha_sync'), 10_000, 'the sync in the audit log');
  const audit = auditLines();
  assert.deepEqual(
    audit.filter((e) => e.action === 'ha_sync').map((e) => [e.result, e.files]),
    [['ok', 2]],
  );
});

test('refused syncs change nothing: invalid YAML, schema errors, TLS files that do not match, unsafe or unreferenced paths', async (t) => {
  const b = await startReceiver(t);
  const before = readFileSync(b.configPath, 'utf8');
  const hash = b.hash();
  const target = join(b.dir, 'etc', 'tls');
  const good = pem(join(b.dir, 'g1'), 'api');
  const other = pem(join(b.dir, 'g2'), 'other');
  const tlsShared = b.shared(`  - name: api-tls\n    listen: 127.0.0.1:${await freePort()}\n    tls: { cert: ${target}/api.pem, key: ${target}/api.key }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`);
  const files = (key: string) => [
    { path: `${target}/api.pem`, mode: 0o644, content_base64: b64(good.certText) },
    { path: `${target}/api.key`, mode: 0o600, content_base64: b64(key) },
  ];

  const cases: [string, unknown, RegExp][] = [
    ['invalid YAML', { config_text: 'workers: [1\n', files: [] }, /^config_text: not valid YAML/],
    ['unknown key', { config_text: b.senderText(b.shared()) + 'typo: 1\n', files: [] }, /^typo: unknown key$/],
    ['key of another certificate', { config_text: b.senderText(tlsShared), files: files(other.keyText) }, new RegExp(`key ${target}/api.key does not match the certificate ${target}/api.pem`)],
    ['missing key file', { config_text: b.senderText(tlsShared), files: files(good.keyText).slice(0, 1) }, new RegExp(`cannot read key ${target}/api.key: ENOENT`)],
    ['a path the config does not name', { config_text: b.senderText(tlsShared), files: [...files(good.keyText), { path: '/etc/cron.d/x', mode: 0o644, content_base64: b64('x') }] }, /\/etc\/cron\.d\/x is not a certificate, key, CA, passphrase or body file of the config/],
    ['a ".." path', { config_text: b.senderText(tlsShared), files: [{ path: `${target}/../../x`, mode: 0o644, content_base64: '' }] }, /contains a "\." or "\.\." segment/],
    ['a relative path', { config_text: b.senderText(tlsShared), files: [{ path: 'tls/api.pem', mode: 0o644, content_base64: '' }] }, /is not an absolute path/],
    ['the token file named as a CA', { config_text: b.senderText(b.shared().replace('    servers:\n', `    backend_tls: { ca: ${b.tokenFile} }\n    servers:\n`)), files: [{ path: b.tokenFile, mode: 0o600, content_base64: b64('x') }] }, /is this node's own file and is never synced/],
    ['a setuid mode', { config_text: b.senderText(tlsShared), files: [{ path: `${target}/api.pem`, mode: 0o4755, content_base64: '' }] }, /mode: must be a permission mode/],
    ['an unknown body key', { config_text: b.senderText(b.shared()), files: [], restart: true }, /body\.restart: unknown key/],
  ];
  for (const [what, body, error] of cases) {
    const answer = await b.call('POST', '/api/ha/config', body);
    assert.equal(answer.status, 400, `${what}: ${JSON.stringify(answer.json)}`);
    assert.equal(answer.json.ok, false);
    assert.ok(answer.json.errors.some((e: string) => error.test(e)), `${what}: ${JSON.stringify(answer.json.errors)}`);
  }
  assert.equal(readFileSync(b.configPath, 'utf8'), before);
  assert.equal(b.hash(), hash);
  assert.equal(existsSync(target), false, 'no file written, no directory created');
  const sameNode = await b.call('POST', '/api/ha/config', { config_text: b.textFor(b.shared()), files: [] });
  assert.equal(sameNode.status, 409);
  assert.match(sameNode.json.errors[0], /comes from node "lb2", which is this node/);
  const unauthorized = await b.call('POST', '/api/ha/config', { config_text: 'x', files: [] }, 'wrong-token-0123456789');
  assert.equal(unauthorized.status, 401);
});

test('a config the reload refuses (workers changed) is rolled back: new files removed, old ones and the config restored', async (t) => {
  const b = await startReceiver(t);
  const before = readFileSync(b.configPath, 'utf8');
  const hash = b.hash();
  const target = join(b.dir, 'etc', 'tls');
  mkdirSync(target, { recursive: true });
  const old = pem(join(b.dir, 'old'), 'api');
  writeFileSync(`${target}/api.pem`, old.certText);
  const fresh = pem(join(b.dir, 'new'), 'api');
  const shared = b.shared(`  - name: api-tls\n    listen: 127.0.0.1:${await freePort()}\n    tls: { cert: ${target}/api.pem, key: ${target}/api.key }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`).replace('workers: 1', 'workers: 2');
  const answer = await b.call('POST', '/api/ha/config', {
    config_text: b.senderText(shared),
    files: [
      { path: `${target}/api.pem`, mode: 0o644, content_base64: b64(fresh.certText) },
      { path: `${target}/api.key`, mode: 0o600, content_base64: b64(fresh.keyText) },
    ],
  });
  assert.equal(answer.status, 400);
  assert.match(answer.json.errors[0], /needs a restart/);
  assert.equal(readFileSync(b.configPath, 'utf8'), before);
  assert.equal(readFileSync(`${target}/api.pem`, 'utf8'), old.certText, 'the previous certificate is back');
  assert.equal(existsSync(`${target}/api.key`), false, 'a file that did not exist is removed again');
  assert.equal(b.hash(), hash);
});

test('409 when the instance has no config file; 403 when the node has no ha: section (so no sync token)', async (t) => {
  const builtIn = await startReceiver(t, { withConfigPath: false });
  const noFile = await builtIn.call('POST', '/api/ha/config', { config_text: builtIn.senderText(builtIn.shared()), files: [] });
  assert.equal(noFile.status, 409);
  assert.match(noFile.json.errors[0], /built-in config/);
  const peer = await builtIn.call('GET', '/api/ha/peer');
  assert.equal(peer.json.shared_hash, null);
  assert.equal(peer.json.config_file_changed, false);

  const wrongMethod = await builtIn.call('GET', '/api/ha/config');
  assert.equal(wrongMethod.status, 405);

  // Without ha: there is no sync token (ha.sync_token_file): /api/ha/ is closed to every token.
  const notHa = await startReceiver(t, { withHa: false });
  const operate = readFileSync(notHa.adminTokenFile, 'utf8').trim();
  const refused = await notHa.call('POST', '/api/ha/config', { config_text: notHa.senderText(notHa.shared()), files: [] }, operate);
  assert.equal(refused.status, 403);
  assert.match(refused.json.error, /ha\.sync_token_file/);
});

test('GET /api/ha/peer: the VRRP state from the notify files, and a config file edited since it was loaded', async (t) => {
  const b = await startReceiver(t);
  assert.deepEqual((await b.call('GET', '/api/ha/peer')).json.vrrp, { state: 'unknown', instances: [] });
  writeFileSync(join(b.stateDir, 'carelb_1.json'), '{"time":"2026-01-01T00:00:00.000Z","node":"lb2","instance":"carelb_1","state":"BACKUP","vip":"10.0.0.100/24","priority":100}\n');
  const peer = await b.call('GET', '/api/ha/peer');
  assert.deepEqual(peer.json.vrrp, { state: 'BACKUP', instances: [{ instance: 'carelb_1', state: 'BACKUP', vip: '10.0.0.100/24', time: '2026-01-01T00:00:00.000Z', priority: 100 }] });
  writeFileSync(b.configPath, `${readFileSync(b.configPath, 'utf8')}# edited\n`);
  const edited = await b.call('GET', '/api/ha/peer');
  assert.equal(edited.json.config_file_changed, true);
  assert.equal(edited.json.shared_hash, null);
});

test('the sender: peerStatus and pushConfig against the peer, and `carelb ha sync` end to end', async (t) => {
  const b = await startReceiver(t);
  const ha = (tokenFile: string, port = b.adminPort): HaConfig =>
    ({ node_name: 'lb1', peer: '10.0.0.3', peer_admin: { host: '127.0.0.1', port }, peer_token_file: tokenFile, vips: [], advert_int: 1000 }) as unknown as HaConfig;
  const info = await peerStatus(ha(b.tokenFile));
  assert.ok(!('error' in info));
  assert.equal(info.node, 'lb2');
  const wrong = join(b.dir, 'wrong.token');
  writeFileSync(wrong, 'not-the-token-0123456789\n');
  assert.match(((await peerStatus(ha(wrong))) as { error: string }).error, /^HTTP 401/);
  const closed = await freePort();
  assert.match(((await peerStatus(ha(b.tokenFile, closed))) as { error: string }).error, /cannot reach the peer's admin API at 127\.0\.0\.1:\d+: ECONNREFUSED/);
  assert.match(((await peerStatus({ ...ha(b.tokenFile), peer_admin: undefined })) as { error: string }).error, /ha\.peer_admin is not set/);
  const refused = await pushConfig(ha(b.tokenFile), { config_text: 'workers: [', files: [] });
  assert.equal(refused.ok, false);

  // carelb ha sync -c A: A's file names the peer (this receiver) and its token file.
  const dirA = join(b.dir, 'node-a');
  mkdirSync(dirA);
  const passphrase = join(dirA, 'api.pass');
  const generated = makeCert(dirA, makeCa(dirA), 'api', { cn: 'api.example.test', passphrase: 'correct horse' });
  writeFileSync(passphrase, 'correct horse\n', { mode: 0o600 });
  const shared = b.shared(`  - name: api-tls\n    listen: 127.0.0.1:${await freePort()}\n    tls: { cert: ${generated.cert}, key: ${generated.key}, passphrase_file: ${passphrase} }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`);
  // Plain HTTP on loopback, accepted explicitly (ha-sync-transport.test.ts covers TLS).
  const haA = haBlock('lb1', 150, '10.0.0.3', `  peer_admin: 127.0.0.1:${b.adminPort}\n  peer_token_file: ${b.tokenFile}\n  allow_plaintext_sync: true\n`);
  const textA = `${shared}${haA}`;
  const fileA = join(dirA, 'carelb.yaml');
  writeFileSync(fileA, textA);
  const out: string[] = [];
  const err: string[] = [];
  const sink = (into: string[]) => ({ write: (s: string) => (into.push(s), true) }) as unknown as NodeJS.WritableStream;
  const code = await runHa(['sync', '-c', fileA], sink(out), sink(err));
  assert.equal(code, 0, err.join(''));
  assert.match(out.join(''), /config written and reloaded \(3 files\)/);
  assert.match(out.join(''), new RegExp(`shared_hash ${sharedHash(textA)} \\(same as this node: in sync\\)`));
  assert.equal((await b.call('GET', '/api/ha/peer')).json.shared_hash, sharedHash(textA));

  // A config that does not validate here is never pushed.
  writeFileSync(fileA, textA.replace(passphrase, join(dirA, 'missing.pass')));
  const bad: string[] = [];
  assert.equal(await runHa(['sync', '-c', fileA], sink(out), sink(bad)), 1);
  assert.match(bad.join(''), /not pushed, the config's files are invalid/);
});
