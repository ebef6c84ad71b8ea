/**
 * The sync root (issue 13): a config sync writes only under the directory of the receiver's
 * config file, resolved with realpath; `..`, symbolic links at any level and absolute paths
 * outside it are refused, and so is every file of the node's own (tokens, the VRRP state
 * directory). Files get fixed modes, temporary files are exclusive and randomly named. A
 * refused sync names the key and the reason and writes nothing. Real receiver in this process.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runHa } from '../../src/ha/command';
import { checkSyncPath, syncRootOf } from '../../src/ha/sync-root';
import { freePort } from '../helpers/ports';
import { b64, haBlock, pem, startReceiver, type Receiver } from './receiver';

const RELEASE = '/var/lib/carelb/ha/release';

/** A virtual service whose fallback body is `bodyFile`: the simplest way for a config to name a file. */
const withBody = (b: Receiver, bodyFile: string) => b.shared(`    fallback: { status: 503, body_file: ${bodyFile} }\n`);

/** What exists at `path` now (never follows a link), to compare before and after. */
function stateOf(path: string): string {
  try {
    const stat = lstatSync(path);
    return stat.isFile() ? `file:${readFileSync(path, 'utf8')}` : stat.isSymbolicLink() ? 'link' : 'dir';
  } catch {
    return 'absent';
  }
}

test('a sync naming a path outside the sync root, a ".." path, a symlinked directory, a symlink, or the VRRP release file is refused and writes nothing', async (t) => {
  const b = await startReceiver(t);
  const outsideDir = join(tmpdir(), `carelb-outside-${randomBytes(6).toString('hex')}`);
  mkdirSync(outsideDir);
  t.after(() => rmSync(outsideDir, { recursive: true, force: true }));
  const outside = join(tmpdir(), `carelb-outside-${randomBytes(6).toString('hex')}`);
  t.after(() => rmSync(outside, { force: true }));
  symlinkSync(outsideDir, join(b.dir, 'linked'));
  writeFileSync(join(outsideDir, 'victim.txt'), 'victim\n');
  symlinkSync(join(outsideDir, 'victim.txt'), join(b.dir, 'body-link.txt'));
  const before = readFileSync(b.configPath, 'utf8');
  const hash = b.hash();
  const releaseBefore = stateOf(RELEASE);

  const cases: { what: string; path: string; reason: RegExp; watch: string }[] = [
    { what: 'an absolute path outside the root', path: outside, reason: /is outside the sync root/, watch: outside },
    { what: 'a ".." path', path: `${b.dir}/etc/../x`, reason: /"\.\." segment/, watch: join(b.dir, 'x') },
    { what: 'a symlinked directory', path: `${b.dir}/linked/body.txt`, reason: /symbolic link/, watch: join(outsideDir, 'body.txt') },
    { what: 'a symlink', path: `${b.dir}/body-link.txt`, reason: /symbolic link/, watch: join(outsideDir, 'victim.txt') },
    { what: 'the VRRP release file', path: RELEASE, reason: /is outside the sync root/, watch: RELEASE },
    { what: "this node's own release file", path: join(b.stateDir, 'release'), reason: /this node's own/, watch: join(b.stateDir, 'release') },
    { what: "this node's own token file", path: b.adminTokenFile, reason: /this node's own/, watch: b.adminTokenFile },
  ];
  for (const c of cases) {
    const watched = stateOf(c.watch);
    const answer = await b.call('POST', '/api/ha/config', { config_text: b.senderText(withBody(b, c.path)), files: [{ path: c.path, mode: 0o644, content_base64: b64('0\n') }] });
    assert.equal(answer.status, 400, `${c.what}: ${JSON.stringify(answer.json)}`);
    const errors: string[] = answer.json.errors;
    assert.ok(
      errors.some((e) => e.startsWith('virtual_services[0].fallback.body_file: ') && c.reason.test(e)),
      `${c.what}: the error names the key and the reason: ${JSON.stringify(errors)}`,
    );
    assert.equal(stateOf(c.watch), watched, `${c.what}: ${c.watch} changed`);
  }
  // A file the config names but nobody sends is refused too when it lies outside the root:
  // a synced config must not make this node serve /etc/hostname as its fallback body.
  const named = await b.call('POST', '/api/ha/config', { config_text: b.senderText(withBody(b, '/etc/hostname')), files: [] });
  assert.equal(named.status, 400, JSON.stringify(named.json));
  assert.match(named.json.errors.join('\n'), /virtual_services\[0\]\.fallback\.body_file: \/etc\/hostname is outside the sync root/);

  assert.equal(readFileSync(b.configPath, 'utf8'), before, 'the config is unchanged');
  assert.equal(b.hash(), hash, 'still running the previous config');
  assert.equal(stateOf(RELEASE), releaseBefore, `${RELEASE} untouched`);
  assert.equal(readFileSync(join(outsideDir, 'victim.txt'), 'utf8'), 'victim\n');
  assert.deepEqual(readdirSync(outsideDir).sort(), ['victim.txt'], 'nothing created through the symlinked directory');
});

test('synced files get fixed modes whatever the sender says: 0640 for certificates and bodies, 0600 for keys; directories 0750', async (t) => {
  const b = await startReceiver(t);
  const generated = pem(join(b.dir, 'generated'), 'api');
  const target = join(b.dir, 'etc', 'tls');
  const body = join(b.dir, 'etc', 'maintenance.html');
  const shared = b.shared(
    `    fallback: { status: 503, body_file: ${body} }\n  - name: api-tls\n    listen: 127.0.0.1:${await freePort()}\n    tls: { cert: ${target}/api.pem, key: ${target}/api.key }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`,
  );
  const answer = await b.call('POST', '/api/ha/config', {
    config_text: b.senderText(shared),
    files: [
      { path: `${target}/api.pem`, mode: 0o666, content_base64: b64(generated.certText) },
      { path: `${target}/api.key`, mode: 0o644, content_base64: b64(generated.keyText) },
      { path: body, mode: 0o777, content_base64: b64('<p>maintenance</p>\n') },
    ],
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  assert.equal(statSync(`${target}/api.pem`).mode & 0o7777, 0o640);
  assert.equal(statSync(`${target}/api.key`).mode & 0o7777, 0o600);
  assert.equal(statSync(body).mode & 0o7777, 0o640);
  assert.equal(statSync(target).mode & 0o7777, 0o750);
  assert.equal(statSync(`${target}/api.key`).uid, process.getuid!(), "owned by the receiver's user");
  assert.deepEqual(readdirSync(target).sort(), ['api.key', 'api.pem'], 'no temporary file left behind');
});

test('temporary files are exclusive and randomly named: a link planted at a predictable name is never followed', async (t) => {
  const b = await startReceiver(t);
  const generated = pem(join(b.dir, 'generated'), 'api');
  const target = join(b.dir, 'etc', 'tls');
  mkdirSync(target, { recursive: true });
  const victim = join(b.dir, 'victim.txt');
  writeFileSync(victim, 'victim\n');
  // The name the previous code used for its temporary file (`.<name>.carelb-sync-<pid>`).
  symlinkSync(victim, join(target, `.api.pem.carelb-sync-${process.pid}`));
  symlinkSync(victim, join(target, `.api.key.carelb-sync-${process.pid}`));
  const shared = b.shared(`  - name: api-tls\n    listen: 127.0.0.1:${await freePort()}\n    tls: { cert: ${target}/api.pem, key: ${target}/api.key }\n    servers:\n      - { name: api1, address: 127.0.0.1:9 }\n`);
  const answer = await b.call('POST', '/api/ha/config', {
    config_text: b.senderText(shared),
    files: [
      { path: `${target}/api.pem`, mode: 0o644, content_base64: b64(generated.certText) },
      { path: `${target}/api.key`, mode: 0o600, content_base64: b64(generated.keyText) },
    ],
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  assert.equal(readFileSync(victim, 'utf8'), 'victim\n', 'the planted link was not written through');
  assert.equal(lstatSync(`${target}/api.pem`).isFile(), true, 'api.pem is a regular file, not the planted link');
  assert.equal(readFileSync(`${target}/api.key`, 'utf8'), generated.keyText);
});

test('the sender refuses to push a config naming files outside its own sync root, naming the key', async (t) => {
  const b = await startReceiver(t);
  const dirA = join(b.dir, 'node-a');
  mkdirSync(dirA);
  const outside = join(b.dir, 'elsewhere.html');
  writeFileSync(outside, 'x\n');
  const fileA = join(dirA, 'carelb.yaml');
  const haA = haBlock('lb1', 150, '10.0.0.3', `  peer_admin: 127.0.0.1:${b.adminPort}\n  peer_token_file: ${b.tokenFile}\n  allow_plaintext_sync: true\n`);
  writeFileSync(fileA, `${withBody(b, outside)}${haA}`);
  const before = readFileSync(b.configPath, 'utf8');
  let err = '';
  const sink = (into: (s: string) => void) => ({ write: (s: string) => (into(s), true) }) as unknown as NodeJS.WritableStream;
  const code = await runHa(['sync', '-c', fileA], sink(() => {}), sink((s) => (err += s)));
  assert.equal(code, 1, err);
  assert.match(err, new RegExp(`virtual_services\\[0\\]\\.fallback\\.body_file: ${outside.replace(/[./]/g, '\\$&')} is outside the sync root ${dirA.replace(/[./]/g, '\\$&')}`));
  assert.equal(readFileSync(b.configPath, 'utf8'), before, 'nothing was pushed');
  assert.equal(existsSync(join(b.dir, 'elsewhere.html.carelb')), false);
});

test('the root is resolved with realpath: a config reached through a linked directory accepts paths spelled either way, and nothing else', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-root-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const real = join(dir, 'real-etc');
  mkdirSync(join(real, 'tls'), { recursive: true });
  symlinkSync(real, join(dir, 'etc'));
  const root = syncRootOf(join(dir, 'etc', 'carelb.yaml'));
  assert.deepEqual(root, { lexical: join(dir, 'etc'), real });
  assert.deepEqual(checkSyncPath(root, join(dir, 'etc', 'tls', 'a.pem')), { ok: true, path: join(real, 'tls', 'a.pem') });
  assert.deepEqual(checkSyncPath(root, join(real, 'new', 'b.pem')), { ok: true, path: join(real, 'new', 'b.pem') }, 'missing directories are fine');
  const refusals: [string, RegExp][] = [
    [join(dir, 'elsewhere.pem'), /outside the sync root/],
    [real, /outside the sync root/],
    [`${real}/tls/../../x`, /"\." or "\.\." segment/],
    [`${real}//tls/a.pem`, /not a normalized path/],
    ['tls/a.pem', /not an absolute path/],
    [join(real, 'tls'), /not a regular file/],
  ];
  for (const [path, reason] of refusals) {
    const verdict = checkSyncPath(root, path);
    assert.equal(verdict.ok, false, path);
    assert.match(!verdict.ok ? verdict.reason : '', reason, path);
  }
  assert.throws(() => syncRootOf('/carelb.yaml'), /directory of its own/);
});
