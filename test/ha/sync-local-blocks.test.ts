/**
 * Node-local blocks (issue 13): `ha:`, `admin:` and `access_log:` describe one node (its VRRP
 * identity, its admin listener, tokens and certificate, where it writes its access log). They
 * never travel with a sync and are never replaced by the sender's: the receiver keeps its own,
 * and drops any the sender has and it has not. The shared hash ignores all three.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { sharedHash } from '../../src/ha/config-text';
import { haBlock, startReceiver } from './receiver';

test('a sync carrying another admin: and access_log: keeps the receiver’s own blocks, in the file and in the running config', async (t) => {
  const b = await startReceiver(t, { tail: 'access_log: off\n' });
  const evil = join(b.dir, 'evil');
  const senderText = [
    b.shared('', 2),
    haBlock('lb1', 150, '10.0.0.3'),
    `admin:\n  listen: 0.0.0.0:9999\n  token_file: ${evil}.token\n  metrics_public: true\n`,
    `access_log: { path: ${evil}-access.log }\n`,
  ].join('');
  const answer = await b.call('POST', '/api/ha/config', { config_text: senderText, files: [] });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  const written = readFileSync(b.configPath, 'utf8');
  assert.equal(written, b.textFor(b.shared('', 2)), "the sender's shared part with the receiver's ha:, admin: and access_log:");
  assert.doesNotMatch(written, /evil|9999|metrics_public/);
  assert.equal(answer.json.shared_hash, sharedHash(senderText), 'the shared hash ignores the local blocks');
  const running = (await b.call('GET', '/api/ha/peer')).json;
  assert.equal(running.shared_hash, sharedHash(senderText));
  assert.equal(running.node, 'lb2');
});

test('local blocks the sender has and the receiver has not are dropped; the receiver’s own are kept when the sender has none', async (t) => {
  const b = await startReceiver(t);
  const withAccessLog = `${b.shared('', 3)}${haBlock('lb1', 150, '10.0.0.3')}access_log: stdout\n`;
  const first = await b.call('POST', '/api/ha/config', { config_text: withAccessLog, files: [] });
  assert.equal(first.status, 200, JSON.stringify(first.json));
  assert.equal(readFileSync(b.configPath, 'utf8'), b.textFor(b.shared('', 3)), 'no access_log: (the receiver has none), its admin: appended');

  const bare = b.shared('', 4);
  const second = await b.call('POST', '/api/ha/config', { config_text: bare, files: [] });
  assert.equal(second.status, 200, JSON.stringify(second.json));
  const written = readFileSync(b.configPath, 'utf8');
  assert.ok(written.startsWith(bare), written);
  assert.ok(written.includes(b.adminText) && written.includes('node_name: lb2'), 'the receiver kept its ha: and admin: blocks');
});
