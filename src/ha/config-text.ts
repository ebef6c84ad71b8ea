/**
 * Node-local blocks (issue 13): `ha:` (node_name, priority, peer, tokens differ between the two
 * nodes), `admin:` (this node's listener, tokens and certificate) and `access_log:` (where this
 * node writes) describe one node; everything else in the config is shared by the pair. Config
 * sync therefore carries the whole text but the receiver keeps its own local blocks, spliced in
 * at the sender's place, drops those the sender has and it has not, and never takes the
 * sender's. Drift is judged on the *shared hash*: sha256 of the text without its local blocks.
 * Two nodes whose files differ only in those blocks have the same shared hash; their
 * whole-file `config_hash` differs. Pure functions on text, no I/O.
 */
import { createHash } from 'node:crypto';
import { isMap, isScalar, parseDocument } from 'yaml';

export interface HaBlock {
  /** Offset of the first character of the `ha:` line. */
  start: number;
  /** Offset just past the block's last line (its newline included when there is one). */
  end: number;
  text: string;
}

export type HaBlockResult = { ok: true; block: HaBlock | null } | { ok: false; error: string };

/** The top-level keys that never travel with a sync and are never replaced by the sender's. */
export const LOCAL_KEYS = ['ha', 'admin', 'access_log'] as const;
export type LocalKey = (typeof LOCAL_KEYS)[number];

/** The top-level keys, or why there are none to find. */
function topLevelKeys(text: string): string[] | string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return `not valid YAML: ${doc.errors[0].message.split('\n')[0]}`;
  if (doc.contents === null) return [];
  if (!isMap(doc.contents)) return 'not a YAML mapping';
  return doc.contents.items.map((pair) => (isScalar(pair.key) ? String(pair.key.value) : ''));
}

/**
 * Finds the top-level `key:` block: its key line at column 0 and every following line that is
 * indented or blank, up to the last indented one (comments at column 0 after it belong to what
 * follows). Checked by parsing: the text without the block must have no such key and keep every
 * other key. Returns block null when the config has no such key.
 */
export function findBlock(text: string, key: LocalKey): HaBlockResult {
  const keys = topLevelKeys(text);
  if (typeof keys === 'string') return { ok: false, error: keys };
  if (!keys.includes(key)) return { ok: true, block: null };
  const keyLine = new RegExp(`^(${key}|"${key}"|'${key}')[ \\t]*:`);
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  let offset = 0;
  let first = -1;
  const starts: number[] = [];
  for (let i = 0; i < lines.length; i++) {
    starts.push(offset);
    if (first === -1 && keyLine.test(lines[i])) first = i;
    offset += lines[i].length;
  }
  if (first === -1) return { ok: false, error: `the ${key}: key must start a line at column 0` };
  let last = first;
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i];
    if (/^[ \t]*\r?\n?$/.test(line)) continue;
    if (/^[ \t]/.test(line)) {
      last = i;
      continue;
    }
    break;
  }
  const start = starts[first];
  const end = starts[last] + lines[last].length;
  const block: HaBlock = { start, end, text: text.slice(start, end) };
  const rest = topLevelKeys(text.slice(0, start) + text.slice(end));
  if (typeof rest === 'string' || rest.includes(key) || rest.length !== keys.length - 1) {
    return { ok: false, error: `cannot tell where the ${key}: section ends; write it in block style, indented under ${key}:` };
  }
  return { ok: true, block };
}

/** The top-level `ha:` block (see findBlock). */
export function findHaBlock(text: string): HaBlockResult {
  return findBlock(text, 'ha');
}

/** The text the two nodes share: the config without its local blocks (unchanged when one cannot be told). */
export function sharedText(text: string): string {
  let shared = text;
  for (const key of LOCAL_KEYS) {
    const found = findBlock(shared, key);
    if (!found.ok) return text;
    if (found.block) shared = shared.slice(0, found.block.start) + shared.slice(found.block.end);
  }
  return shared;
}

/** sha256 (hex) of the shared text: equal on both nodes when they are in sync. */
export function sharedHash(text: string): string {
  return createHash('sha256').update(sharedText(text)).digest('hex');
}

export function textHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The received config with this node's own `ha:` block in place of the sender's (at the same
 * position, so the shared text stays identical). Without an `ha:` block in the received text the
 * local one is appended. `localBlock` null: the received text is used as it is.
 */
export function spliceHaBlock(received: string, localBlock: string | null): { ok: true; text: string } | { ok: false; error: string } {
  const found = findHaBlock(received);
  if (!found.ok) return found;
  if (localBlock === null) return { ok: true, text: received };
  const block = localBlock.endsWith('\n') ? localBlock : `${localBlock}\n`;
  if (!found.block) return { ok: true, text: received.length === 0 || received.endsWith('\n') ? received + block : `${received}\n${block}` };
  return { ok: true, text: received.slice(0, found.block.start) + block + received.slice(found.block.end) };
}

/** `block` at the place of `found` in `text`, or appended when `found` is null; `block` null removes. */
function place(text: string, found: HaBlock | null, block: string | null): string {
  const line = block === null ? '' : block.endsWith('\n') ? block : `${block}\n`;
  if (found) return text.slice(0, found.start) + line + text.slice(found.end);
  if (line === '') return text;
  return text.length === 0 || text.endsWith('\n') ? text + line : `${text}\n${line}`;
}

/**
 * The received config with this node's local blocks (from `localText`, its own file) in place
 * of the sender's: each kept at the sender's position, appended when the sender has none, and
 * the sender's removed where this node has none. The shared text stays byte for byte.
 */
export function spliceLocalBlocks(received: string, localText: string): { ok: true; text: string } | { ok: false; error: string } {
  let text = received;
  for (const key of LOCAL_KEYS) {
    const mine = findBlock(localText, key);
    if (!mine.ok) return { ok: false, error: `this node's config: ${mine.error}` };
    const theirs = findBlock(text, key);
    if (!theirs.ok) return theirs;
    text = place(text, theirs.block, mine.block?.text ?? null);
  }
  return { ok: true, text };
}
