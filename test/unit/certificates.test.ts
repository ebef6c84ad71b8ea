/**
 * Pure parts of the certificate store (issue 14): RFC 6125 name coverage, the config's
 * certificate references, and the YAML rewrite of an assignment.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assignCertificate, AssignRefused } from '../../src/certs/assign';
import { pemBlocks } from '../../src/certs/bundle';
import { validateConfig } from '../../src/config/load';
import { covered, dnsNames, sanCovers } from '../../src/config/san-coverage';

test('a wildcard SAN covers exactly one left-most label, case-insensitively (RFC 6125 §6.4.3)', () => {
  assert.ok(sanCovers('*.example.org', 'fhir.example.org'));
  assert.ok(sanCovers('*.Example.ORG', 'FHIR.example.org'));
  assert.ok(!sanCovers('*.example.org', 'example.org'), 'not the bare domain');
  assert.ok(!sanCovers('*.example.org', 'a.fhir.example.org'), 'not two labels');
  assert.ok(!sanCovers('f*.example.org', 'fhir.example.org'), 'no partial-label wildcards');
  assert.ok(sanCovers('fhir.example.org.', 'fhir.example.org'));
  assert.ok(sanCovers('*.example.org', '*.example.org'), 'an SNI wildcard is covered by the same wildcard');
  assert.ok(!sanCovers('a.example.org', '*.example.org'));
  assert.deepEqual(dnsNames('DNS:A.example.org, IP Address:127.0.0.1, DNS:*.b.org'), ['a.example.org', '*.b.org']);
  assert.ok(covered(['a.example.org', '*.b.org'], 'x.b.org'));
});

test('tls takes a stored certificate by name, resolved into the store; mixing it with cert/key is an error naming the key', () => {
  const base = (tls: unknown, extra: Record<string, unknown> = {}) =>
    validateConfig({ ...extra, virtual_services: [{ name: 'api', listen: '127.0.0.1:8443', tls, servers: [{ name: 's', address: '127.0.0.1:8080' }] }] });
  const stored = base({ certificate: 'api-2026', sni: [{ hostname: 'fhir.example.org', certificate: 'fhir' }] }, { tls_store: '/srv/tls' });
  assert.ok(stored.ok, stored.ok ? '' : stored.errors.join('; '));
  const tls = stored.config.virtual_services[0].tls!;
  assert.equal(tls.cert, '/srv/tls/api-2026.pem');
  assert.equal(tls.key, '/srv/tls/api-2026.key');
  assert.equal(tls.certificate, 'api-2026');
  assert.equal(tls.sni[0].cert, '/srv/tls/fhir.pem');
  const byDefault = base({ certificate: 'api' });
  assert.ok(byDefault.ok && byDefault.config.virtual_services[0].tls!.cert === '/etc/carelb/tls/api.pem');

  const both = base({ certificate: 'api', cert: '/a.pem', key: '/a.key' });
  assert.ok(!both.ok);
  assert.deepEqual(both.errors, ['virtual_services[0].tls.certificate: names a stored certificate: leave out cert and key']);
  const neither = base({ sni: [] });
  assert.ok(!neither.ok && neither.errors[0].startsWith('virtual_services[0].tls.cert: is required'), JSON.stringify(neither));
  const badName = base({ certificate: '../etc/passwd' });
  assert.ok(!badName.ok && badName.errors[0].startsWith('virtual_services[0].tls.certificate: must be 1-64'));
  const passphrase = base({ certificate: 'api', passphrase_file: '/p' });
  assert.ok(!passphrase.ok && passphrase.errors[0].startsWith('virtual_services[0].tls.passphrase_file:'));
  const relativeStore = base({ certificate: 'api' }, { tls_store: 'tls' });
  assert.ok(!relativeStore.ok && relativeStore.errors[0] === 'tls_store: must be an absolute path');
});

test('an assignment rewrites only the reference and keeps comments; SNI entries are replaced or appended', () => {
  const text = [
    '# production EHR API',
    'virtual_services:',
    '  - name: api # the FHIR front door',
    '    listen: 0.0.0.0:443',
    '    tls: { cert: /etc/carelb/old.pem, key: /etc/carelb/old.key, ciphers: "ECDHE-RSA-AES128-GCM-SHA256" }',
    '    servers: [{ name: s1, address: 10.0.0.1:8080 }]',
    '  - name: plain',
    '    listen: 0.0.0.0:80',
    '    redirect_https: true',
    '',
  ].join('\n');
  const main = assignCertificate(text, { certificate: 'api-2027', virtualService: 'api' });
  assert.match(main, /^# production EHR API/);
  assert.match(main, /# the FHIR front door/);
  assert.match(main, /tls: \{ ciphers: "ECDHE-RSA-AES128-GCM-SHA256", certificate: api-2027 \}/);
  const sni = assignCertificate(main, { certificate: 'fhir', virtualService: 'api', hostname: 'fhir.example.org' });
  assert.match(sni, /sni: \[ \{ hostname: fhir\.example\.org, certificate: fhir \} \]/);
  const replaced = assignCertificate(sni, { certificate: 'fhir-2', virtualService: 'api', hostname: 'FHIR.example.org' });
  assert.match(replaced, /sni: \[ \{ hostname: fhir\.example\.org, certificate: fhir-2 \} \]/);
  assert.throws(() => assignCertificate(text, { certificate: 'x', virtualService: 'plain' }), AssignRefused);
  assert.throws(() => assignCertificate(text, { certificate: 'x', virtualService: 'nope' }), /no virtual service "nope"/);
});

test('PEM blocks are split in any order; bag attributes, CSRs and comments are ignored', () => {
  const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
  const key = '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----';
  const csr = '-----BEGIN CERTIFICATE REQUEST-----\nMIIC\n-----END CERTIFICATE REQUEST-----';
  const blocks = pemBlocks(`Bag Attributes\n  localKeyID: 01\n${key}\nsubject=CN = x\n${cert}\n${csr}\n${cert}\n`);
  assert.equal(blocks.certificates.length, 2);
  assert.equal(blocks.keys.length, 1);
});
