/**
 * The admin bearer token: read from `admin.token_file`, generated there (32 random bytes as
 * hex, mode 0600) when the file does not exist, and compared in constant time. Called by the
 * primary at admin server start and by `carelb ctl` (read only).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface LoadedToken {
  token: string;
  /** True when this call created the file. */
  generated: boolean;
  /** Set when the file is readable by group or others (it should be 0600). */
  warning?: string;
}

/** Reads a token file: the first line, trimmed. Throws with a readable message when it cannot. */
export function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new Error(`cannot read the admin token file ${path} (${code})`);
  }
  const token = text.split('\n')[0].trim();
  if (token.length < 16) throw new Error(`the admin token file ${path} holds no usable token (want at least 16 characters)`);
  return token;
}

/**
 * Returns the token in `path`, creating the file (and its parent directory, mode 0700) when it
 * does not exist. The file is opened with O_EXCL so two starting processes never both write it.
 */
export function loadOrCreateToken(path: string): LoadedToken {
  let generated = false;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
    generated = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new Error(`cannot create the admin token file ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
  }
  const token = readToken(path);
  const mode = statSync(path).mode & 0o777;
  const warning = mode & 0o077 ? `the admin token file ${path} has mode 0${mode.toString(8)}; it should be 0600` : undefined;
  return { token, generated, warning };
}

/** Compares a presented token with the expected one in time independent of where they differ (or their lengths). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or null. RFC 6750 §2.1; the scheme is case-insensitive. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : null;
}
