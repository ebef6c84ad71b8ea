/**
 * The `ha:` section is per node (node_name, priority, peer, peer_admin differ between the two
 * nodes); everything else in the config is shared by the pair. Config sync therefore carries
 * the whole text but the receiver keeps its own `ha:` block, spliced in at the same place, and
 * drift is judged on the *shared hash*: sha256 of the text without the `ha:` block. Two nodes
 * whose files differ only in their `ha:` blocks have the same shared hash; their whole-file
 * `config_hash` necessarily differs. Pure functions on text, no I/O.
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

/** The top-level keys, or why there are none to find. */
function topLevelKeys(text: string): string[] | string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return `not valid YAML: ${doc.errors[0].message.split('\n')[0]}`;
  if (doc.contents === null) return [];
  if (!isMap(doc.contents)) return 'not a YAML mapping';
  return doc.contents.items.map((pair) => (isScalar(pair.key) ? String(pair.key.value) : ''));
}

/**
 * Finds the top-level `ha:` block: its key line at column 0 and every following line that is
 * indented or blank, up to the last indented one (comments at column 0 after it belong to what
 * follows). Checked by parsing: the text without the block must have no `ha` key and keep every
 * other key. Returns block null when the config has no `ha:`.
 */
export function findHaBlock(text: string): HaBlockResult {
  const keys = topLevelKeys(text);
  if (typeof keys === 'string') return { ok: false, error: keys };
  if (!keys.includes('ha')) return { ok: true, block: null };
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  let offset = 0;
  let first = -1;
  const starts: number[] = [];
  for (let i = 0; i < lines.length; i++) {
    starts.push(offset);
    if (first === -1 && /^(ha|"ha"|'ha')[ \t]*:/.test(lines[i])) first = i;
    offset += lines[i].length;
  }
  if (first === -1) return { ok: false, error: 'the ha: key must start a line at column 0' };
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
  if (typeof rest === 'string' || rest.includes('ha') || rest.length !== keys.length - 1) {
    return { ok: false, error: 'cannot tell where the ha: section ends; write it in block style, indented under ha:' };
  }
  return { ok: true, block };
}

/** The text the two nodes share: the config without its `ha:` block. */
export function sharedText(text: string): string {
  const found = findHaBlock(text);
  if (!found.ok || !found.block) return text;
  return text.slice(0, found.block.start) + text.slice(found.block.end);
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
