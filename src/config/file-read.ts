/**
 * Reading a file a config names, with a reason an operator can act on: missing, not
 * readable, a directory, not a regular file, too large. The file is stat'ed before it is
 * opened, so a FIFO or a device named by mistake is refused instead of blocking the reader
 * forever. Primary only (check, start, reload); never on the request path.
 */
import { readFileSync, statSync } from 'node:fs';

export type FileRead = { ok: true; bytes: Buffer } | { ok: false; absent: boolean; reason: string };

/** errno codes worth a word of explanation next to them. */
const EXPLAINED: Record<string, string> = {
  ENOENT: 'missing',
  EACCES: 'not readable by this user',
  EPERM: 'not readable by this user',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'a directory, not a file',
  ELOOP: 'too many symbolic links',
};

/** `ENOENT (missing)`, or the bare code (or message) when it needs no explanation. */
export function errnoReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (!code) return String(error);
  return EXPLAINED[code] ? `${code} (${EXPLAINED[code]})` : code;
}

/**
 * Reads `file` whole. `label` names what it is ("fallback body file"); reasons come out as
 * `cannot read <label> <file>: ENOENT (missing)`, `<file> is a directory, not a file`, etc.
 * `absent` is true only when the file does not exist (callers for which that is fine).
 */
export function readNamedFile(file: string, label: string, maxBytes = Infinity): FileRead {
  let size: number;
  try {
    const stat = statSync(file);
    if (stat.isDirectory()) return { ok: false, absent: false, reason: `${label} ${file} is a directory, not a file` };
    if (!stat.isFile()) return { ok: false, absent: false, reason: `${label} ${file} is not a regular file` };
    size = stat.size;
  } catch (error) {
    const absent = (error as NodeJS.ErrnoException).code === 'ENOENT';
    return { ok: false, absent, reason: `cannot read ${label} ${file}: ${errnoReason(error)}` };
  }
  if (size > maxBytes) return { ok: false, absent: false, reason: `${label} ${file} is too large (${size} bytes, at most ${maxBytes})` };
  try {
    const bytes = readFileSync(file);
    // It may have grown between stat and read.
    if (bytes.length > maxBytes) return { ok: false, absent: false, reason: `${label} ${file} is too large (${bytes.length} bytes, at most ${maxBytes})` };
    return { ok: true, bytes };
  } catch (error) {
    return { ok: false, absent: false, reason: `cannot read ${label} ${file}: ${errnoReason(error)}` };
  }
}
