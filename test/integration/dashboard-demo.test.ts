/**
 * The first hour with carelb (issue 15), in Debian's chromium driven by playwright-core:
 * `carelb demo --traffic` as a child process, its printed dashboard link opened as a newcomer
 * would. The token in the link's fragment is taken and removed from the address bar, the
 * charts draw points from the traffic, a server made sick from the dashboard is taken down by
 * its health check (an event in the list) and brought back. A screenshot is written to the
 * test's temp dir (and copied to /tmp/carelb-dashboard.png to attach to the issue). Skipped
 * only where /usr/bin/chromium is absent (.ci/run installs it).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CHROMIUM, openBrowser, watchPage } from '../helpers/browser';
import { eventually, spawnCli } from '../helpers/carelb';
import { freePort } from '../helpers/ports';

const LINK = /http:\/\/127\.0\.0\.1:(\d+)\/#token=([0-9a-f]{64})/;

test('the demo link opens the dashboard signed in; traffic draws the charts; a sick server goes down and comes back as events', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install -y chromium)` }, async (t) => {
  // The state dir goes only after the demo has exited (hooks run in registration order).
  const state = mkdtempSync(join(tmpdir(), 'carelb-demo-'));
  const [plain, offload, bridge, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child = spawnCli(t, ['demo', '--traffic'], {
    CARELB_STATE_DIR: state,
    CARELB_DEMO_PORT: String(plain),
    CARELB_DEMO_OFFLOAD_PORT: String(offload),
    CARELB_DEMO_BRIDGE_PORT: String(bridge),
    CARELB_DEMO_ADMIN_PORT: String(admin),
  });
  t.after(async () => {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGTERM');
    await child.exited;
    rmSync(state, { recursive: true, force: true });
  });
  await eventually(() => LINK.test(child.stdout.join('')), 60_000, 'the dashboard link on stdout');
  const [link, port, token] = LINK.exec(child.stdout.join(''))!;
  assert.equal(Number(port), admin);

  const { page } = await openBrowser(t, { viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(30_000);
  const { problems, requested } = watchPage(page);

  await page.goto(link);
  // Signed in from the fragment: no prompt, the token kept for the tab and gone from the address bar.
  await page.locator('tr[data-server="ehr-api/ehr-api-1"]').waitFor();
  assert.equal(await page.locator('#login').isHidden(), true);
  assert.equal(page.url(), `http://127.0.0.1:${admin}/`);
  assert.equal(await page.evaluate("sessionStorage.getItem('carelb.admin.token')"), token);

  // The traffic draws points: seconds with requests in the chart's data and the series' blue in its canvas.
  await page.locator('[data-chart="ehr-api"]').waitFor();
  await page.waitForFunction(() => {
    const { document } = globalThis as unknown as { document: { querySelector(s: string): { getAttribute(n: string): string | null } | null } };
    return Number(document.querySelector('[data-chart="ehr-api"]')?.getAttribute('data-points')) >= 3;
  });
  const blue = await page.evaluate(() => {
    type Canvas = { width: number; height: number; getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
    const { document } = globalThis as unknown as { document: { querySelector(s: string): Canvas | null } };
    const canvas = document.querySelector('[data-chart="ehr-api"] canvas')!;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] < 60 && data[i + 1] > 60 && data[i + 1] < 120 && data[i + 2] > 170 && data[i + 3] > 200) n++;
    return n;
  });
  assert.ok(blue > 20, `the requests/s line is drawn (${blue} pixels of its color)`);
  assert.ok((await page.locator('[data-sparks="ehr-api/ehr-api-1"] canvas').count()) >= 4, 'a row of sparklines per server');

  // Sick from the dashboard: the health check takes ehr-api-1 down, an event says so; well again, it comes back.
  await page.getByRole('button', { name: 'Make ehr-api-1 sick' }).click();
  await page.locator('tr[data-server="ehr-api/ehr-api-1"][data-health="down"]').waitFor();
  const down = page.locator('#events tr[data-kind="health"][data-to="down"]', { hasText: 'ehr-api/ehr-api-1' }).first();
  await down.waitFor();
  assert.match(await down.innerText(), /health: up → down/);
  assert.match(await down.innerText(), /HTTP 503/);
  await page.getByRole('button', { name: 'Make ehr-api-1 well' }).click();
  await page.locator('tr[data-server="ehr-api/ehr-api-1"][data-health="up"]').waitFor();
  await page.locator('#events tr[data-kind="health"][data-to="up"]', { hasText: 'ehr-api/ehr-api-1' }).first().waitFor();
  // One more poll so the chart has drawn the marks of both transitions.
  const polled = await page.locator('#conn').innerText();
  await page.waitForFunction((before) => (globalThis as unknown as { document: { getElementById(id: string): { textContent: string } } }).document.getElementById('conn').textContent !== before, polled);

  const screenshot = join(state, 'dashboard.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  assert.ok(statSync(screenshot).size > 10_000, 'a screenshot was written');
  copyFileSync(screenshot, '/tmp/carelb-dashboard.png');

  const origin = `http://127.0.0.1:${admin}/`;
  assert.deepEqual(requested.filter((url) => !url.startsWith(origin)), [], 'nothing loaded from elsewhere (uPlot included)');
  assert.ok(requested.some((url) => url.endsWith('/ui/vendor/uPlot.iife.min.js')));
  // The sick server's 503s are answers to the demo traffic, not the page's; the page itself logged nothing.
  assert.deepEqual(problems, []);
});
