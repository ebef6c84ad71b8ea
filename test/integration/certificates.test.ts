/**
 * The certificate store from the command line (issue 14): `carelb cert import` of PKCS#12
 * files (modern, and legacy RC2/3DES as Windows exports them) then served by carelb over TLS
 * by name and by SNI with the chain it built; the refusals (mismatched key, weak RSA key,
 * expired certificate) that write nothing; `carelb cert csr` then import of the signed
 * certificate; `carelb check` on certificate references. Real CLI processes, real openssl,
 * real TLS sockets on loopback.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as tls from 'node:tls';
import { stringify } from 'yaml';
import { importCertificate } from '../../src/certs/importer';
import { checkConfigFiles } from '../../src/config/config-files';
import { createLogger } from '../../src/observe/log';
import { runCarelb } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { configFrom, spawnCli, tempDir } from '../helpers/carelb';
import { exportPfx, leafExt, makeChain, selfSignedRsa, sign } from '../helpers/cert-chain';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';

async function cli(t: TestContext, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnCli(t, args);
  const code = await child.exited;
  return { code, stdout: child.stdout.join(''), stderr: child.stderr.join('') };
}

/** Connects with TLS, verifying against `ca` for `servername`; resolves with the served chain and an answer to GET /. */
function fetchOverTls(port: number, servername: string, ca: string): Promise<{ fingerprint: string; chain: string[]; status: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: readFileSync(ca) }, () => {
      const chain: string[] = [];
      let cert = socket.getPeerCertificate(true);
      while (cert && !chain.includes(cert.fingerprint256)) {
        chain.push(cert.fingerprint256);
        cert = cert.issuerCertificate;
      }
      socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('end', () => resolve({ fingerprint: chain[0], chain, status: text.split('\r\n')[0] }));
    });
    socket.on('error', reject);
  });
}

const fingerprint = (pem: string) => new X509Certificate(readFileSync(pem)).fingerprint256;

test('a modern and a legacy (RC2/3DES) PFX are imported and served by name and by SNI with their intermediates, roots dropped', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const modern = makeChain(dir, 'modern');
  const legacy = makeChain(dir, 'legacy', ['DNS:legacy.example.org']);
  const passwordFile = join(dir, 'pfx.pass');
  writeFileSync(passwordFile, 'Hospital-2026!\n');

  const first = await cli(t, ['cert', 'import', exportPfx(dir, modern, 'modern.pfx', 'Hospital-2026!', false), '--password-file', passwordFile, '--name', 'api', '--store', store]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /subject: +CN=modern\.example\.org/);
  assert.match(first.stdout, /SANs: +DNS:localhost, IP Address:127\.0\.0\.1/);
  assert.match(first.stdout, /issuer: +CN=modern test intermediate/);
  assert.match(first.stdout, /not after: +\d{4}-\d\d-\d\dT.*\(\d+ days left\)/);
  assert.ok(first.stdout.includes(fingerprint(modern.leaf)), first.stdout);
  assert.match(first.stdout, /root dropped: CN=modern test root/);

  const second = await cli(t, ['cert', 'import', exportPfx(dir, legacy, 'legacy.pfx', 'Hospital-2026!', true), '--password-file', passwordFile, '--name', 'fhir', '--store', store]);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /legacy RC2\/3DES PKCS#12/, 'the legacy provider was needed and used');

  for (const name of ['api', 'fhir']) {
    assert.equal(statSync(join(store, `${name}.pem`)).mode & 0o777, 0o640);
    assert.equal(statSync(join(store, `${name}.key`)).mode & 0o777, 0o600);
    const blocks = readFileSync(join(store, `${name}.pem`), 'utf8').match(/BEGIN CERTIFICATE/g) ?? [];
    assert.equal(blocks.length, 2, `${name}.pem holds the leaf and the intermediate, not the root`);
  }
  assert.deepEqual(readdirSync(store).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');

  const backend = await startBackend('b1');
  t.after(() => backend.close());
  const port = await freePort();
  const config = configFrom({
    workers: 1,
    pin_workers: false,
    tls_store: store,
    virtual_services: [
      { name: 'api', listen: `127.0.0.1:${port}`, tls: { certificate: 'api', sni: [{ hostname: 'legacy.example.org', certificate: 'fhir' }] }, servers: [{ name: 'b1', address: backend.address }] },
    ],
  });
  const running = await runCarelb(config, { log: createLogger('warn') });
  t.after(() => running.stop());

  // Verified against the root only: the intermediate must come from carelb (the chain it built).
  const byName = await fetchOverTls(port, 'localhost', modern.root);
  assert.equal(byName.fingerprint, fingerprint(modern.leaf));
  assert.equal(byName.chain[1], fingerprint(modern.intermediate));
  assert.equal(byName.status, 'HTTP/1.1 200 OK');
  const bySni = await fetchOverTls(port, 'legacy.example.org', legacy.root);
  assert.equal(bySni.fingerprint, fingerprint(legacy.leaf));
  assert.equal(bySni.status, 'HTTP/1.1 200 OK');
});

test('a key that does not match, an RSA 1024 key and an expired certificate are refused and nothing is written', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const chain = makeChain(dir, 'm');
  const other = makeChain(dir, 'o');

  const mismatched = await cli(t, ['cert', 'import', chain.leaf, '--key', other.leafKey, '--name', 'mismatch', '--store', store]);
  assert.equal(mismatched.code, 1);
  assert.match(mismatched.stderr, /refused: the private key does not match any of the certificates/);

  const weak = selfSignedRsa(dir, 'weak', 1024);
  const weakRun = await cli(t, ['cert', 'import', weak.cert, '--key', weak.key, '--name', 'weak', '--store', store]);
  assert.equal(weakRun.code, 1);
  assert.match(weakRun.stderr, /refused: the RSA key has 1024 bits; at least 2048 are required/);

  const ca = makeCa(dir);
  const expired = makeCert(dir, ca, 'expired', { cn: 'localhost', expired: true });
  const expiredRun = await cli(t, ['cert', 'import', expired.cert, '--key', expired.key, '--name', 'old', '--store', store]);
  assert.equal(expiredRun.code, 1);
  assert.match(expiredRun.stderr, /refused: the certificate expired on /);

  const wrongPassword = join(dir, 'wrong.pass');
  writeFileSync(wrongPassword, 'not-it\n');
  const pfxRun = await cli(t, ['cert', 'import', exportPfx(dir, chain, 'm.pfx', 'right', false), '--password-file', wrongPassword, '--name', 'pfx', '--store', store]);
  assert.equal(pfxRun.code, 1);
  assert.match(pfxRun.stderr, /refused: wrong PFX password/);

  assert.ok(!existsSync(store) || readdirSync(store).length === 0, `nothing written: ${existsSync(store) ? readdirSync(store).join(', ') : ''}`);
});

test('cert csr makes a key and a CSR; the CA-signed certificate imported without a key is paired with the stored key', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const backend = await startBackend('b1');
  t.after(() => backend.close());
  const configPath = join(dir, 'carelb.yaml');
  const document = (certificate: string, sniCert?: string) => ({
    tls_store: store,
    virtual_services: [
      {
        name: 'api',
        listen: '127.0.0.1:18443',
        tls: { certificate, ...(sniCert ? { sni: [{ hostname: 'other.example.org', certificate: sniCert }] } : {}) },
        servers: [{ name: 'b1', address: backend.address }],
      },
    ],
  });
  writeFileSync(configPath, stringify(document('ehr')));

  // -c: the store comes from the config's tls_store.
  const made = await cli(t, ['cert', 'csr', '--name', 'ehr', '--cn', 'fhir.example.org', '--san', 'fhir.example.org', '--san', '*.api.example.org', '--key-type', 'rsa2048', '-c', configPath]);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(statSync(join(store, 'ehr.key')).mode & 0o777, 0o600);
  const keyBefore = readFileSync(join(store, 'ehr.key'), 'utf8');
  const csrText = readFileSync(join(store, 'ehr.csr'), 'utf8');
  assert.match(csrText, /BEGIN CERTIFICATE REQUEST/);
  // A second csr for the same name would replace a key that may be serving: refused.
  const again = await cli(t, ['cert', 'csr', '--name', 'ehr', '--cn', 'x.example.org', '--san', 'x.example.org', '--store', store]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /exists: choose a new name/);

  const ca = makeCa(dir, 'hospital-ca');
  const signed = join(dir, 'ehr-signed.pem');
  sign(dir, join(store, 'ehr.csr'), ca, signed, leafExt(['DNS:fhir.example.org', 'DNS:*.api.example.org']));
  const imported = await cli(t, ['cert', 'import', signed, '--name', 'ehr', '-c', configPath]);
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /paired with the key from cert csr/);
  assert.match(imported.stdout, /key: +RSA 2048/);
  assert.equal(readFileSync(join(store, 'ehr.key'), 'utf8').includes('PRIVATE KEY'), true);
  assert.notEqual(readFileSync(join(store, 'ehr.pem'), 'utf8'), '');
  assert.ok(new X509Certificate(readFileSync(join(store, 'ehr.pem'))).checkPrivateKey(require('node:crypto').createPrivateKey(keyBefore)), 'the stored key is the CSR key');

  const checked = await cli(t, ['check', '-c', configPath]);
  assert.equal(checked.code, 0, checked.stderr);
  assert.doesNotMatch(checked.stderr, /not covered/);

  // An SNI name the certificate does not cover is a warning; a name not in the store is an error naming the key.
  writeFileSync(configPath, stringify(document('ehr', 'ehr')));
  const uncovered = await cli(t, ['check', '-c', configPath]);
  assert.equal(uncovered.code, 0, uncovered.stderr);
  assert.match(uncovered.stderr, /warning: virtual_services\[0\]\.tls\.sni\[0\]\.hostname: SNI hostname "other\.example\.org" is not covered/);
  writeFileSync(configPath, stringify(document('nope')));
  const missing = await cli(t, ['check', '-c', configPath]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /virtual_services\[0\]\.tls\.certificate: stored certificate "nope" cannot be used: cannot read certificate .*nope\.pem: ENOENT \(missing\)/);
});

test('cert verbs parse strictly: an unknown option or a missing name exits 2 with the usage', async (t) => {
  const unknown = await cli(t, ['cert', 'import', 'x.pem', '--name', 'a', '--pasword-file', 'p']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown option --pasword-file[\s\S]*usage: carelb cert/);
  const noName = await cli(t, ['cert', 'csr', '--cn', 'a.example.org']);
  assert.equal(noName.code, 2);
  assert.match(noName.stderr, /--name NAME is required/);
  const badType = await cli(t, ['cert', 'csr', '--name', 'a', '--cn', 'a.example.org', '--key-type', 'rsa1024']);
  assert.equal(badType.code, 2);
});

test('check warns for SNI names and a redirect_https host the SANs do not cover; a named listen host and one-label wildcard matches pass', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const chain = makeChain(dir, 'wild', ['DNS:*.example.org', 'DNS:api.example.net']);
  await importCertificate({ store, name: 'wild', data: Buffer.concat([readFileSync(chain.leaf), readFileSync(chain.intermediate), readFileSync(chain.leafKey)]) });
  const config = configFrom({
    tls_store: store,
    virtual_services: [
      {
        name: 'api',
        listen: 'api.example.net:443',
        tls: {
          certificate: 'wild',
          sni: [
            { hostname: 'fhir.example.org', certificate: 'wild' },
            { hostname: 'a.fhir.example.org', certificate: 'wild' },
            { hostname: 'example.org', certificate: 'wild' },
          ],
        },
        servers: [{ name: 's', address: '127.0.0.1:8080' }],
      },
      { name: 'redirect', listen: 'portal.example.com:80', redirect_https: true, https_port: 443 },
    ],
  });
  const report = checkConfigFiles(config);
  assert.deepEqual(report.errors, []);
  const uncovered = report.warnings.filter((w) => /not covered/.test(w)).map((w) => w.split(':')[0]);
  assert.deepEqual(uncovered, ['virtual_services[0].tls.sni[1].hostname', 'virtual_services[0].tls.sni[2].hostname', 'virtual_services[1].redirect_https']);
});
