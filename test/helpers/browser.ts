/**
 * Debian's chromium, headless, driven by playwright-core, for the dashboard tests. The profile
 * lives in its own temporary directory, removed only after the browser has closed: node:test
 * runs `after` hooks in the order they were registered, so a profile inside a test's tempDir
 * would be deleted while chromium still writes to it (ENOTEMPTY).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function openBrowser(t: TestContext, options: { viewport?: { width: number; height: number } } = {}): Promise<{ context: BrowserContext; page: Page }> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'carelb-chromium-'));
  let context: BrowserContext | undefined;
  t.after(async () => {
    await context?.close();
    rmSync(profile, { recursive: true, force: true });
  });
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, ...(options.viewport ? { viewport: options.viewport } : {}) });
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}

/** What a page did that a dashboard test asserts on: errors it logged, and every URL it requested. */
export interface PageWatch {
  problems: string[];
  requested: string[];
}

/** Records page errors, console errors and requested URLs from now on. */
export function watchPage(page: Page): PageWatch {
  const watch: PageWatch = { problems: [], requested: [] };
  page.on('pageerror', (error) => watch.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') watch.problems.push(`console: ${message.text()}`);
  });
  page.on('request', (req) => watch.requested.push(req.url()));
  return watch;
}
