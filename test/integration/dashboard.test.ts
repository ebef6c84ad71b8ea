/**
 * The dashboard end to end in Debian's chromium (headless, driven by playwright-core) against
 * a real carelb and its admin server: token prompt, live tables, drain with confirmation, and
 * the state the API then reports. Skipped only where /usr/bin/chromium is absent (.ci/run
 * installs it).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CHROMIUM, openBrowser, watchPage } from '../helpers/browser';
import { startWithAdmin, type AdminHarness } from '../helpers/admin-context';
import { request } from '../helpers/client';


async function adminStateOf(lb: AdminHarness, server: string): Promise<string> {
  const status = await lb.call('GET', '/api/status');
  return status.json.virtual_services[0].servers.find((s: { name: string }) => s.name === server).admin;
}

test('the dashboard asks for the token, shows the servers live, and a confirmed drain click changes the state /api/status reports', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)` }, async (t) => {
  const lb = await startWithAdmin(t);
  for (let i = 0; i < 4; i++) assert.equal((await request(lb.port)).status, 200);

  const { page } = await openBrowser(t);
  page.setDefaultTimeout(15_000);
  const { problems, requested } = watchPage(page);
  let documentLoads = 0;
  page.on('domcontentloaded', () => documentLoads++);

  await page.goto(`http://127.0.0.1:${lb.adminPort}/`);
  await page.locator('#login').waitFor({ state: 'visible' });

  // A wrong token is refused with a message and the prompt stays.
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Show the dashboard' }).click();
  await page.locator('#login-msg', { hasText: 'refused' }).waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('carelb.admin.token')"), null);

  await page.getByLabel('Admin token').fill(lb.token);
  await page.getByRole('button', { name: 'Show the dashboard' }).click();
  await page.locator('#login').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate("sessionStorage.getItem('carelb.admin.token')"), lb.token);

  const b1 = page.locator('tr[data-server="api/b1"]');
  const b2 = page.locator('tr[data-server="api/b2"]');
  await b1.waitFor();
  await b2.waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Virtual service api' }).count(), 1);
  const b1Text = await b1.innerText();
  assert.match(b1Text, /\bb1\b/);
  assert.match(b1Text, new RegExp(lb.backends[0].address.replace(/\./g, '\\.')));
  assert.match(b1Text, /\bup\b/);
  assert.match(b1Text, /\bonline\b/);
  assert.equal(await b1.getAttribute('data-admin'), 'online');

  // Live refresh: requests/s appears once two polls were seen, without a page reload.
  const stopTraffic = { stop: false };
  const traffic = (async () => {
    while (!stopTraffic.stop) {
      try {
        await request(lb.port);
      } catch {
        return;
      }
    }
  })();
  t.after(async () => {
    stopTraffic.stop = true;
    await traffic;
  });
  // The requests/s cell (6th td: address, health, admin, weight, in flight, requests/s) turns from a dash into a rate.
  await page.waitForFunction((selector) => {
    const { document } = globalThis as unknown as { document: { querySelector(s: string): { textContent: string | null } | null } };
    return Number.parseFloat(document.querySelector(selector)?.textContent ?? '') > 0;
  }, 'tr[data-server="api/b1"] td:nth-of-type(6)');
  stopTraffic.stop = true;
  await traffic;

  // Cancel leaves the server as it was.
  await page.getByRole('button', { name: 'Halt b1 in api' }).click();
  await page.locator('dialog#confirm').waitFor({ state: 'visible' });
  await page.locator('#confirm-cancel').click();
  await page.locator('dialog#confirm').waitFor({ state: 'hidden' });
  assert.equal(await adminStateOf(lb, 'b1'), 'online');

  // Drain, confirmed in the dialog.
  await page.getByRole('button', { name: 'Drain b1 in api' }).click();
  const dialog = page.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.innerText(), /Drain b1 in virtual service api: stops sending new requests/);
  await page.locator('#confirm-ok').click();
  await page.locator('tr[data-server="api/b1"][data-admin="drain"]').waitFor();
  assert.equal(await adminStateOf(lb, 'b1'), 'drain');
  assert.equal(await adminStateOf(lb, 'b2'), 'online');
  assert.equal(await page.getByRole('button', { name: 'Drain b1 in api' }).isDisabled(), true);
  await page.locator('#notice', { hasText: 'api/b1 is now drain' }).waitFor();

  // Escape after an earlier confirmation must not repeat it.
  await page.getByRole('button', { name: 'Halt b1 in api' }).click();
  await dialog.waitFor({ state: 'visible' });
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await adminStateOf(lb, 'b1'), 'drain');

  const screenshot = join(lb.dir, 'dashboard.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  assert.ok(statSync(screenshot).size > 1000, 'a screenshot was written');
  if (process.env.CARELB_TEST_ARTIFACTS) {
    mkdirSync(process.env.CARELB_TEST_ARTIFACTS, { recursive: true });
    copyFileSync(screenshot, join(process.env.CARELB_TEST_ARTIFACTS, 'dashboard.png'));
  }

  // The token is kept for the session: a reload shows the tables without asking again.
  await page.reload();
  await page.locator('tr[data-server="api/b1"][data-admin="drain"]').waitFor();
  assert.equal(await page.locator('#login').isHidden(), true);

  assert.equal(documentLoads, 2, 'the page refreshed its data without reloading (only the explicit reload)');
  const origin = `http://127.0.0.1:${lb.adminPort}/`;
  assert.deepEqual(requested.filter((url) => !url.startsWith(origin)), [], 'no request left the admin server');
  // The one 401 is the wrong token typed on purpose above; Chromium logs every failed fetch.
  assert.deepEqual(problems, ['console: Failed to load resource: the server responded with a status of 401 (Unauthorized)']);
  const audit = (await lb.auditWhen((lines) => lines.some((line) => line.action === 'drain'))).filter((line) => line.action === 'drain');
  assert.deepEqual(audit.map((line) => [line.target, line.result]), [['api/b1', 'ok']]);
});
