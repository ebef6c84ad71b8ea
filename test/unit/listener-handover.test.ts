import assert from 'node:assert/strict';
import { test } from 'node:test';
import { handoverWarning, replacedTlsListeners } from '../../src/primary/listener-handover';

const a = { name: 'api', address: '0.0.0.0:443', tlsFingerprint: 'f1' };

test('a TLS listener is replaced only when its certificates change at the same address', () => {
  assert.deepEqual(replacedTlsListeners([a], [{ ...a, tlsFingerprint: 'f2' }]), ['api']);
  assert.deepEqual(replacedTlsListeners([a], [a]), [], 'same certificates');
  assert.deepEqual(replacedTlsListeners([a], [{ ...a, address: '0.0.0.0:8443', tlsFingerprint: 'f2' }]), [], 'a new address is a new listener, nothing closes under it');
  assert.deepEqual(replacedTlsListeners([], [a]), [], 'a new service');
  assert.deepEqual(replacedTlsListeners([a], [{ ...a, tlsFingerprint: undefined }]), [], 'TLS removed: a plain listener beside it');
});

test('the warning names the services and the setting only while tcp_migrate_req is 0', () => {
  const warning = handoverWarning(['api', 'fhir'], () => '0\n');
  assert.match(warning ?? '', /api, fhir/);
  assert.match(warning ?? '', /net\.ipv4\.tcp_migrate_req is 0/);
  assert.equal(handoverWarning(['api'], () => '1\n'), null);
  assert.equal(handoverWarning([], () => '0\n'), null, 'no listener replaced');
  assert.equal(
    handoverWarning(['api'], () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    }),
    null,
    'a kernel without the setting: nothing to advise',
  );
});
