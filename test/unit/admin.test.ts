/**
 * Admin pieces without sockets: the token file (generation, mode, reuse), token comparison,
 * the Authorization header, and the metrics text escaping.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { escapeLabelValue } from '../../src/admin/metrics';
import { bearerToken, loadOrCreateToken, readToken, tokenMatches } from '../../src/admin/token';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-admin-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a missing token file is created with 32 random bytes as hex, mode 0600, in a new 0700 directory', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'etc', 'carelb', 'admin.token');
  const first = loadOrCreateToken(path);
  assert.equal(first.generated, true);
  assert.match(first.token, /^[0-9a-f]{64}$/);
  assert.equal(first.warning, undefined);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'etc', 'carelb')).mode & 0o777, 0o700);
  assert.equal(readFileSync(path, 'utf8'), `${first.token}\n`);

  const second = loadOrCreateToken(path);
  assert.equal(second.generated, false);
  assert.equal(second.token, first.token);
  assert.notEqual(loadOrCreateToken(join(dir, 'other.token')).token, first.token, 'tokens are random');
});

test('an existing token file is used as written (first line, trimmed) and a group-readable one gets a warning', (t) => {
  const path = join(tempDir(t), 'admin.token');
  writeFileSync(path, '  operator-chosen-token-0123456789  \nsecond line ignored\n', { mode: 0o644 });
  chmodSync(path, 0o644);
  const loaded = loadOrCreateToken(path);
  assert.equal(loaded.token, 'operator-chosen-token-0123456789');
  assert.equal(loaded.generated, false);
  assert.match(loaded.warning ?? '', /mode 0644; it should be 0600/);
});

test('an empty or too short token file is refused with its path, and an unreadable one names the reason', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'admin.token');
  writeFileSync(path, '\n', { mode: 0o600 });
  assert.throws(() => loadOrCreateToken(path), { message: `the admin token file ${path} holds no usable token (want at least 16 characters)` });
  writeFileSync(path, 'short\n');
  assert.throws(() => readToken(path), /no usable token/);
  assert.throws(() => readToken(join(dir, 'missing')), { message: `cannot read the admin token file ${join(dir, 'missing')} (ENOENT)` });
});

test('tokens compare equal only when identical, whatever their lengths', () => {
  const token = 'a'.repeat(64);
  assert.equal(tokenMatches(token, token), true);
  assert.equal(tokenMatches(`${token}a`, token), false);
  assert.equal(tokenMatches(token.slice(1), token), false);
  assert.equal(tokenMatches('', token), false);
  assert.equal(tokenMatches(`b${token.slice(1)}`, token), false);
});

test('the bearer token is taken from "Bearer <token>" with any case of the scheme, nothing else', () => {
  assert.equal(bearerToken('Bearer abc123'), 'abc123');
  assert.equal(bearerToken('bearer abc123'), 'abc123');
  assert.equal(bearerToken('BEARER   abc123 '), 'abc123');
  assert.equal(bearerToken(undefined), null);
  assert.equal(bearerToken(''), null);
  assert.equal(bearerToken('Bearer '), null);
  assert.equal(bearerToken('Basic YWRtaW46YWRtaW4='), null);
  assert.equal(bearerToken('Bearer a b'), null);
});

test('metric label values escape backslash, double quote and line feed, and nothing else', () => {
  assert.equal(escapeLabelValue('plain-name_1.2'), 'plain-name_1.2');
  assert.equal(escapeLabelValue('a\\b'), 'a\\\\b');
  assert.equal(escapeLabelValue('say "hi"'), 'say \\"hi\\"');
  assert.equal(escapeLabelValue('two\nlines'), 'two\\nlines');
  assert.equal(escapeLabelValue('tab\there'), 'tab\there');
});
