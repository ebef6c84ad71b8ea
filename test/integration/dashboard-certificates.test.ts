/**
 * The dashboard's certificates panel (issue 14) in Debian's chromium (headless, driven by
 * playwright-core) against a real carelb started from a config file with a certificate store
 * and a TLS virtual service: the inventory with its expiry colours, a PFX made with openssl
 * uploaded through the form (a wrong password first: the API's reason is shown), the new
 * certificate assigned to the TLS service through the Assign dialog, and a real TLS connection
 * then getting the new certificate; an SNI assignment (a bad host name refused in the dialog,
 * the API's SAN warning shown) served for that name only. A read token sees the table without the upload form and
 * the Assign buttons. A screenshot of the panel is written to the test's temp dir and copied to
 * /tmp/carelb-certificates.png. Skipped only where /usr/bin/chromium is absent.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tls from 'node:tls';
import pino from 'pino';
import { stringify } from 'yaml';
import { importCertificate } from '../../src/certs/importer';
import { loadConfigText } from '../../src/config/load';
import { runCarelb } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { CHROMIUM, openBrowser, watchPage } from '../helpers/browser';
import { exportPfx, leafExt, makeChain, sign } from '../helpers/cert-chain';
import { freePort } from '../helpers/ports';

const fingerprint = (pem: string) => new X509Certificate(readFileSync(pem)).fingerprint256;

/** The fingerprint of the certificate a TLS handshake with `port` for `servername` presents, verified against `ca` (chain only when `anyName`). */
function servedFingerprint(port: number, ca: Buffer[], servername = 'localhost', anyName = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, ...(anyName ? { checkServerIdentity: () => undefined } : {}) }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('TLS handshake timed out')));
    socket.on('error', reject);
  });
}

test('the certificates panel lists the inventory with expiry colours; an operate token uploads a PFX and assigns it to a TLS service, which then serves it; a read token only sees the table', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)` }, async (t) => {
  // One hook undoes everything, newest first: carelb stops before its store and config are removed.
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  const dir = mkdtempSync(join(tmpdir(), 'carelb-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

  // The store: "first" (60 days, served by api), "soon" (20 days) and "urgent" (10 days), the
  // last two signed again from first's CSR by its intermediate.
  const store = join(dir, 'tls');
  const first = makeChain(dir, 'first');
  await importCertificate({ store, name: 'first', data: Buffer.concat([readFileSync(first.leaf), readFileSync(first.intermediate), readFileSync(first.leafKey)]) });
  for (const [name, days] of [['soon', 20], ['urgent', 10]] as const) {
    const leaf = join(dir, `${name}.pem`);
    sign(dir, join(dir, 'first-leaf.csr'), { cert: first.intermediate, key: first.intermediateKey }, leaf, leafExt(['DNS:localhost']), days);
    await importCertificate({ store, name, data: Buffer.concat([readFileSync(leaf), readFileSync(first.intermediate)]), keyPem: readFileSync(first.leafKey, 'utf8') });
  }

  const backend = await startBackend('b1');
  cleanups.push(() => backend.close());
  const port = await freePort();
  const adminPort = await freePort();
  const document = {
    workers: 2,
    pin_workers: false,
    shutdown_grace: '2s',
    tls_store: store,
    virtual_services: [
      { name: 'api', listen: `127.0.0.1:${port}`, tls: { certificate: 'first' }, servers: [{ name: 'b1', address: backend.address }] },
      { name: 'web', listen: `127.0.0.1:${await freePort()}`, servers: [{ name: 'b1', address: backend.address }] },
    ],
    admin: {
      listen: `127.0.0.1:${adminPort}`,
      token_file: join(dir, 'secrets', 'admin.token'),
      tokens: [{ file: join(dir, 'secrets', 'read.token'), role: 'read' }],
    },
  };
  const configPath = join(dir, 'carelb.yaml');
  const text = stringify(document);
  writeFileSync(configPath, text);
  const loaded = loadConfigText(text, configPath);
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const running = await runCarelb(loaded.config, { configPath, configText: text, log: pino({ level: 'silent' }), auditLog: join(dir, 'audit.log') });
  cleanups.push(() => running.stop());
  const operate = readFileSync(join(dir, 'secrets', 'admin.token'), 'utf8').trim();
  const read = readFileSync(join(dir, 'secrets', 'read.token'), 'utf8').trim();

  const second = makeChain(dir, 'second');
  const pfx = exportPfx(dir, second, 'second.pfx', 'Export-Pass-7', false);
  const ca = [readFileSync(first.root), readFileSync(second.root)];
  assert.equal(await servedFingerprint(port, ca), fingerprint(first.leaf), 'api serves first before the assignment');

  const { page } = await openBrowser(t, { viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(20_000);
  const { problems, requested } = watchPage(page);

  await page.goto(`http://127.0.0.1:${adminPort}/#token=${operate}`);
  await page.locator('#certs-panel').waitFor({ state: 'visible' });

  // The inventory: one row per stored certificate, days left coloured by expiry.
  const row = (name: string) => page.locator(`tr[data-cert="${name}"]`);
  await row('first').waitFor();
  const expiry = async (name: string) => ({
    level: await row(name).getAttribute('data-expiry'),
    days: Number(await row(name).getAttribute('data-days-left')),
    badge: await row(name).locator('.badge.expiry').getAttribute('class'),
    text: await row(name).locator('.badge.expiry').innerText(),
  });
  const firstExpiry = await expiry('first');
  assert.ok(firstExpiry.days >= 58 && firstExpiry.days <= 60, String(firstExpiry.days));
  assert.deepEqual([firstExpiry.level, firstExpiry.badge, firstExpiry.text], ['ok', 'badge expiry expiry-ok', `${firstExpiry.days} days`]);
  assert.deepEqual([(await expiry('soon')).level, (await expiry('soon')).badge], ['warn', 'badge expiry expiry-warn']);
  assert.deepEqual([(await expiry('urgent')).level, (await expiry('urgent')).badge], ['bad', 'badge expiry expiry-bad']);
  const firstText = await row('first').innerText();
  assert.match(firstText, /CN=first\.example\.org/);
  assert.match(firstText, /DNS:localhost, IP Address:127\.0\.0\.1/);
  assert.match(firstText, /CN=first test intermediate/);
  assert.equal(await row('first').locator('td.used-by').innerText(), 'api');
  assert.equal(await row('soon').locator('td.used-by').innerText(), 'not used');
  const fp = row('first').locator('code.fp');
  assert.equal(await fp.getAttribute('title'), fingerprint(first.leaf), 'the full fingerprint in the title');
  assert.ok((await fp.innerText()).length < fingerprint(first.leaf).length, 'shortened in the cell');
  assert.equal(await page.locator('button[data-assign]:visible').count(), 3, 'an Assign button per stored certificate');

  // Upload through the form: a wrong password first, answered with the API's reason.
  await page.getByLabel('Name', { exact: true }).fill('second');
  await page.getByLabel('File (PFX, P12 or PEM)').setInputFiles(pfx);
  await page.getByLabel('Password', { exact: true }).fill('not-the-password');
  await page.getByRole('button', { name: 'Upload' }).click();
  const result = page.locator('#cert-upload-result');
  await page.locator('#cert-upload-result.error').waitFor();
  assert.equal(await result.innerText(), 'Could not upload second: wrong PFX password (MAC verification failed)');
  assert.equal(await page.getByLabel('Password', { exact: true }).inputValue(), '', 'the password is not kept in the page');
  assert.equal(await row('second').count(), 0);

  await page.getByLabel('Password', { exact: true }).fill('Export-Pass-7');
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.locator('#cert-upload-result.done', { hasText: 'Stored second' }).waitFor();
  assert.match(await result.innerText(), new RegExp(`Stored second: CN=second\\.example\\.org, issued by CN=second test intermediate, .*SHA-256 ${fingerprint(second.leaf)}, 2 certificate\\(s\\) in the chain`));
  await row('second').waitFor();
  assert.equal(await row('second').locator('td.used-by').innerText(), 'not used');
  assert.equal(await row('second').locator('code.fp').getAttribute('title'), fingerprint(second.leaf));

  // Assign: the dialog offers the TLS service only; Escape changes nothing.
  const dialog = page.locator('dialog#assign');
  await page.getByRole('button', { name: 'Assign second' }).click();
  await dialog.waitFor({ state: 'visible' });
  assert.deepEqual(
    await page.locator('#assign-vs option').evaluateAll((options) => options.map((o) => [(o as unknown as { value: string }).value, (o as unknown as { disabled: boolean }).disabled])),
    [['api', false], ['web', true]],
  );
  assert.match(await dialog.innerText(), /Makes second the certificate of api \(tls\.certificate\) in the config file, then reloads carelb/);
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.match(readFileSync(configPath, 'utf8'), /certificate: first/, 'nothing changed after Escape');

  await page.getByRole('button', { name: 'Assign second' }).click();
  await dialog.waitFor({ state: 'visible' });
  await page.locator('#assign-vs').selectOption('api');
  await page.getByRole('button', { name: 'Assign second to api' }).click();
  await page.locator('#certs-notice.done', { hasText: 'second is assigned to api and carelb reloaded' }).waitFor();
  await page.locator('tr[data-cert="second"] td.used-by', { hasText: 'api' }).waitFor();
  await page.locator('tr[data-cert="first"] td.used-by', { hasText: 'not used' }).waitFor();
  assert.match(readFileSync(configPath, 'utf8'), /certificate: second/);
  // A real TLS client now gets the uploaded certificate from the service.
  assert.equal(await servedFingerprint(port, ca), fingerprint(second.leaf), 'api serves the uploaded certificate after the assignment');

  const screenshot = join(dir, 'certificates.png');
  await page.locator('#certs-panel').screenshot({ path: screenshot });
  assert.ok(statSync(screenshot).size > 10_000, 'a screenshot was written');
  copyFileSync(screenshot, '/tmp/carelb-certificates.png');

  // An SNI assignment: a bad host name keeps the dialog open; Enter in the field assigns; the
  // API's SAN coverage warning is shown (soon covers localhost only).
  await page.getByRole('button', { name: 'Assign soon' }).click();
  await dialog.waitFor({ state: 'visible' });
  const host = page.getByLabel('Host name for SNI (optional)');
  await host.fill('bad host!');
  await host.press('Enter');
  assert.equal(await dialog.isVisible(), true, 'an invalid host name is refused in the dialog');
  await host.fill('soon.example.org');
  assert.match(await dialog.innerText(), /Sets the certificate of api for clients asking for soon\.example\.org \(SNI\) to soon/);
  await host.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  const sniNotice = page.locator('#certs-notice.done', { hasText: 'soon is assigned to api for soon.example.org' });
  await sniNotice.waitFor();
  assert.match(await sniNotice.innerText(), /Warning: .*soon\.example\.org/);
  await page.locator('tr[data-cert="soon"] td.used-by', { hasText: 'api sni soon.example.org' }).waitFor();
  assert.equal(await servedFingerprint(port, ca, 'soon.example.org', true), fingerprint(join(dir, 'soon.pem')), 'the SNI name gets soon');
  assert.equal(await servedFingerprint(port, ca), fingerprint(second.leaf), 'other names still get second');

  // A read token: the same table, no upload form, no Assign button.
  await page.getByRole('button', { name: 'Forget token' }).click();
  await page.getByLabel('Admin token').fill(read);
  await page.getByRole('button', { name: 'Show the dashboard' }).click();
  await page.locator('#access', { hasText: 'read-only' }).waitFor();
  await page.locator('tr[data-cert="second"] td.used-by', { hasText: 'api' }).waitFor();
  assert.equal(await page.locator('#certs tbody tr').count(), 4);
  assert.equal(await row('urgent').locator('.badge.expiry-bad').count(), 1);
  assert.equal(await page.locator('#cert-upload').isHidden(), true, 'no upload form for a read token');
  assert.equal(await page.locator('#certs-actions-head').isHidden(), true);
  assert.equal(await page.locator('button[data-assign]:visible').count(), 0, 'no Assign button for a read token');
  assert.equal(await page.locator('#certs-notice').innerText(), '', 'nothing of the operate session is left');

  const origin = `http://127.0.0.1:${adminPort}/`;
  assert.deepEqual(requested.filter((url) => !url.startsWith(origin)), [], 'no request left the admin server');
  // The one failed request is the upload with the wrong password (Chromium logs every failed fetch).
  assert.deepEqual(problems, ['console: Failed to load resource: the server responded with a status of 400 (Bad Request)']);
});
