/**
 * The dashboard with a read token (issue 13): it shows the services and servers but none of the
 * drain, halt and online buttons (the API would refuse them with 403), and says why; signed in
 * again with an operate token the buttons are there. Debian's chromium, headless, driven by
 * playwright-core, against a real carelb; skipped only where /usr/bin/chromium is absent.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CHROMIUM, openBrowser } from '../helpers/browser';
import { startWithAdmin } from '../helpers/admin-context';


test('a read token sees the servers without action buttons; an operate token gets them', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)` }, async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ admin: { tokens: [{ file: join(dir, 'secrets', 'read.token'), role: 'read' }] } }) });
  const read = readFileSync(join(lb.dir, 'secrets', 'read.token'), 'utf8').trim();
  const { page } = await openBrowser(t);
  page.setDefaultTimeout(15_000);
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });

  // Signed in through a link with the read token in its fragment (as `carelb demo` prints one).
  await page.goto(`http://127.0.0.1:${lb.adminPort}/#token=${read}`);
  const b1 = page.locator('tr[data-server="api/b1"][data-admin="online"]');
  await b1.waitFor();
  assert.equal(page.url(), `http://127.0.0.1:${lb.adminPort}/`, 'the token left the address bar');
  await page.locator('#access', { hasText: 'read-only' }).waitFor();
  assert.equal(await page.locator('button[data-action]:visible').count(), 0, 'no drain, halt or online button for a read token');
  assert.equal(await page.getByRole('button', { name: 'Drain b1 in api' }).count(), 0);
  // Looking includes the history: the chart and the event list are there for a read token.
  await page.locator('[data-chart="api"] canvas').first().waitFor();
  await page.locator('#events-panel').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#demo').isHidden(), true, 'no demo controls outside the demo');

  await page.getByRole('button', { name: 'Forget token' }).click();
  await page.getByLabel('Admin token').fill(lb.token);
  await page.getByRole('button', { name: 'Show the dashboard' }).click();
  await page.getByRole('button', { name: 'Drain b1 in api' }).waitFor();
  assert.equal(await page.locator('button[data-action]:visible').count(), 6, 'three buttons per server');
  assert.equal(await page.locator('#access').isHidden(), true);
  assert.deepEqual(problems, []);
});
