/**
 * The file check of every path a config names (config/config-files.ts), on real files in a
 * temp directory: reasons, the fallback body's bytes, and the backend TLS fingerprints that
 * tell a reload a file was rotated in place.
 */
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkConfigFiles, FALLBACK_BODY_MAX_BYTES } from '../../src/config/config-files';
import { configFrom, tempDir } from '../helpers/carelb';
import { makeCa } from '../helpers/certs';

const service = (extra: Record<string, unknown>) => ({ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }, { name: 'b', address: '127.0.0.1:3' }], ...extra });

test('the fallback body is read once by the check, up to the documented limit', (t) => {
  const dir = tempDir(t);
  const page = join(dir, 'sorry.html');
  writeFileSync(page, '<p>under maintenance</p>');
  const ok = checkConfigFiles(configFrom({ virtual_services: [service({ fallback: { body_file: page } })] }));
  assert.deepEqual(ok.errors, []);
  assert.equal(ok.fallbackBodies[0]?.toString(), '<p>under maintenance</p>');
  writeFileSync(page, Buffer.alloc(FALLBACK_BODY_MAX_BYTES));
  assert.deepEqual(checkConfigFiles(configFrom({ virtual_services: [service({ fallback: { body_file: page } })] })).errors, [], 'exactly the limit is fine');
});

test('a peer token file not provisioned yet is a warning; a short token is an error', (t) => {
  const dir = tempDir(t);
  const ha = (file: string) => ({ node_name: 'lb1', interface: 'lo', virtual_router_id: 51, peer: '127.0.0.1', peer_token_file: file, vips: [{ address: '127.0.0.250/32' }] });
  const absent = checkConfigFiles(configFrom({ virtual_services: [service({})], ha: ha(join(dir, 'none')) }));
  assert.deepEqual(absent.errors, []);
  assert.match(absent.warnings.join('\n'), /ha\.peer_token_file: cannot read token file .*none: ENOENT \(missing\)/);
  writeFileSync(join(dir, 'short'), 'abc\n');
  const short = checkConfigFiles(configFrom({ virtual_services: [service({})], ha: ha(join(dir, 'short')) }));
  assert.match(short.errors.join('\n'), /ha\.peer_token_file: token file .*short holds no usable token/);
});

test('a backend CA rewritten in place changes the fingerprint of every server that uses it, and only theirs', (t) => {
  const dir = tempDir(t);
  const one = makeCa(dir, 'ca-one');
  const two = makeCa(dir, 'ca-two');
  const live = join(dir, 'live-ca.pem');
  copyFileSync(one.cert, live);
  const config = configFrom({
    virtual_services: [
      service({
        backend_tls: { ca: live, servername: 'localhost' },
        servers: [
          { name: 'a', address: '127.0.0.1:2' },
          { name: 'b', address: '127.0.0.1:3', backend_tls: { ca: two.cert, servername: 'localhost' } },
        ],
      }),
      { name: 'plain', listen: '127.0.0.1:4', servers: [{ name: 'c', address: '127.0.0.1:5' }] },
    ],
  });
  const before = checkConfigFiles(config);
  assert.deepEqual(before.errors, []);
  assert.equal(typeof before.backendFingerprints[0][0], 'string');
  assert.deepEqual(before.backendFingerprints[1], [undefined], 'no bridging, no fingerprint');
  assert.deepEqual(checkConfigFiles(config).backendFingerprints, before.backendFingerprints, 'same files, same fingerprints');
  copyFileSync(two.cert, live);
  const after = checkConfigFiles(config);
  assert.notEqual(after.backendFingerprints[0][0], before.backendFingerprints[0][0]);
  assert.equal(after.backendFingerprints[0][1], before.backendFingerprints[0][1], "server b's own backend_tls did not change");
});
