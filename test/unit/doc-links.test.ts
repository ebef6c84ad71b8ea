/**
 * The README and docs/ read without a dead link: every relative link resolves to a file or
 * directory inside the repository, and every #anchor to a heading of the markdown file it
 * points at (GitHub's heading ids). Links to other sites are not fetched.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { ERRORS } from '../../src/errors';

const REPO = resolve(__dirname, '..', '..', '..');
const DOCS = ['README.md', ...readdirSync(join(REPO, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`), 'deploy/monitoring/README.md'];

/** The text outside fenced code blocks and inline code spans (links there are examples, not links). */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2. */
export function slugs(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const match of withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const text = match[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    ids.add(count === 0 ? base : `${base}-${count}`);
  }
  return ids;
}

function links(markdown: string): string[] {
  return [...prose(markdown).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
}

test('the heading ids are GitHub\'s', () => {
  const ids = slugs('# carelb\n## Operations: admin API, dashboard, metrics, logs, ctl\n### keepalived 2.2.7 cannot check the file\n## High availability (keepalived pair)\n## Limits\n## Limits\n```sh\n# not a heading\n```\n');
  assert.deepEqual([...ids], ['carelb', 'operations-admin-api-dashboard-metrics-logs-ctl', 'keepalived-227-cannot-check-the-file', 'high-availability-keepalived-pair', 'limits', 'limits-1']);
});

test('every relative link and #anchor in README.md and docs/*.md resolves inside the repository', () => {
  const dead: string[] = [];
  let checked = 0;
  for (const doc of DOCS) {
    const file = join(REPO, doc);
    const text = readFileSync(file, 'utf8');
    for (const target of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:: other sites, not fetched
      checked++;
      const [pathPart, anchor] = target.split('#', 2) as [string, string | undefined];
      const resolved = pathPart === '' ? file : resolve(dirname(file), decodeURIComponent(pathPart));
      const inside = relative(REPO, resolved);
      if (inside.startsWith('..') || resolve(REPO, inside) !== resolved) {
        dead.push(`${doc}: ${target} points outside the repository`);
        continue;
      }
      if (!existsSync(resolved)) {
        dead.push(`${doc}: ${target} does not exist`);
        continue;
      }
      if (anchor !== undefined && resolved.endsWith('.md') && !slugs(readFileSync(resolved, 'utf8')).has(anchor)) {
        dead.push(`${doc}: ${target} names no heading of ${relative(REPO, resolved)}`);
      }
    }
  }
  assert.ok(checked > 20, `${checked} links checked`);
  assert.deepEqual(dead, []);
});

test('README.md and docs/ name nothing outside the repository', () => {
  for (const doc of DOCS) {
    const text = readFileSync(join(REPO, doc), 'utf8');
    assert.doesNotMatch(text, /\.\.\/shared\/|\/work\/|UWS-NOTES/, `${doc} names a file outside the repository`);
  }
});

test('every error code of src/errors.ts is documented in docs/errors.md or docs/limits.md', () => {
  const documented = readFileSync(join(REPO, 'docs/errors.md'), 'utf8') + readFileSync(join(REPO, 'docs/limits.md'), 'utf8');
  for (const error of Object.values(ERRORS)) assert.match(documented, new RegExp(`\`${error.code}\``), error.code);
});
