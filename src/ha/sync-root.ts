/**
 * The sync root (issue 13): the one directory a config sync may write under, the directory of
 * the receiving node's config file (e.g. /etc/carelb), resolved with realpath. A path is
 * accepted only when it is absolute, normalized (no `.` or `..`), lies under the root, and no
 * part of it below the root is a symbolic link (a link could point anywhere: the VRRP release
 * file, another service's config). The sender applies the same rule to its own root before it
 * pushes, so an operator learns of a misplaced file on the node where it can be moved.
 *
 * Called by the receiver (admin/sync.ts) and by `carelb ha sync` (ha/client.ts). Reads the file
 * system (realpath, lstat) and writes nothing.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { unsafePathReason } from './files';

export interface SyncRoot {
  /** The config file's directory as written (absolute, links not followed): paths may name it so. */
  lexical: string;
  /** The same directory with every link resolved: where files are written. */
  real: string;
}

export type PathVerdict = { ok: true; path: string } | { ok: false; reason: string };

/** The sync root of a config file; throws with a readable message when its directory cannot be resolved, or is `/`. */
export function syncRootOf(configPath: string): SyncRoot {
  const lexical = resolve(dirname(configPath));
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch (error) {
    throw new Error(`cannot resolve the sync root ${lexical} (the directory of ${configPath}): ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  if (real === '/') throw new Error(`the config file ${configPath} lies in /: config sync needs it in a directory of its own (e.g. /etc/carelb)`);
  return { lexical, real };
}

/** `path` relative to `base`, or null when it is not strictly under it. */
function below(base: string, path: string): string | null {
  return path.startsWith(`${base}/`) && path.length > base.length + 1 ? path.slice(base.length + 1) : null;
}

/**
 * The syntax part of the rule, without touching the file system: where under the real root
 * `path` lands, or why it may not be synced. The sender uses it alone.
 */
export function placeInRoot(root: SyncRoot, path: string): PathVerdict {
  const syntax = unsafePathReason(path);
  if (syntax) return { ok: false, reason: syntax };
  const relative = below(root.real, path) ?? below(root.lexical, path);
  if (relative === null) return { ok: false, reason: `is outside the sync root ${root.real} (the directory of the config file)` };
  return { ok: true, path: join(root.real, relative) };
}

/**
 * The whole rule for a file the receiver would write: placeInRoot, then every existing part
 * below the root checked with lstat (a directory, never a link; the file itself, when it
 * exists, a regular file). Parts that do not exist yet are fine: they will be created.
 */
export function checkSyncPath(root: SyncRoot, path: string): PathVerdict {
  const placed = placeInRoot(root, path);
  if (!placed.ok) return placed;
  const parts = placed.path.slice(root.real.length + 1).split('/');
  let current = root.real;
  for (let i = 0; i < parts.length; i++) {
    current = join(current, parts[i]);
    const last = i === parts.length - 1;
    let stat;
    try {
      stat = lstatSync(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return placed;
      return { ok: false, reason: `cannot be checked: ${current}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
    }
    if (stat.isSymbolicLink()) return { ok: false, reason: last ? 'is a symbolic link' : `goes through the symbolic link ${current}` };
    if (!last && !stat.isDirectory()) return { ok: false, reason: `goes through ${current}, which is not a directory` };
    if (last && !stat.isFile()) return { ok: false, reason: 'is not a regular file' };
  }
  return placed;
}

/** Whether `path` is `dir` or lies under it (plain string comparison of resolved paths). */
export function within(dir: string, path: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}
