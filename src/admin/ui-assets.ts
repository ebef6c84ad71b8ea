/**
 * The dashboard's files (issue 15): src/admin/ui/ (HTML, CSS, ES modules) and uPlot's bundle,
 * copied next to this module by `npm run build` (scripts/copy-ui.js). Read once when the admin
 * server starts and served from memory, by exact name only: a request can never name a path
 * outside this set. No CDN, nothing inline, so the page's Content-Security-Policy allows only
 * 'self' for scripts and styles.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

export interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** Nothing but this origin's own files; fetches to this origin; no framing, no forms, no base tag. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

/** Where the build puts the files: dist/src/admin/ui. */
export const UI_DIR = join(__dirname, 'ui');

/**
 * URL path → file, for every file of `dir` and its `vendor/` folder: `/` is index.html, the
 * others are under `/ui/`. Throws with the directory when index.html is missing (a build that
 * skipped the copy step).
 */
export function loadAssets(dir = UI_DIR): Map<string, Asset> {
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`the dashboard files are missing from ${dir}: build with \`npm run build\``);
  const assets = new Map<string, Asset>();
  const add = (urlPath: string, file: string) => {
    const type = TYPES[extname(file)];
    if (!type) return;
    const body = readFileSync(file);
    assets.set(urlPath, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  };
  for (const name of readdirSync(dir)) {
    const file = join(dir, name);
    if (name === 'vendor' && statSync(file).isDirectory()) {
      for (const vendored of readdirSync(file)) add(`/ui/vendor/${vendored}`, join(file, vendored));
    } else if (name === 'index.html') {
      add('/', file);
    } else {
      add(`/ui/${name}`, file);
    }
  }
  return assets;
}
