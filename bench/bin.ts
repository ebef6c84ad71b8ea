/**
 * Where the anchor proxies' binaries are. Debian puts them in /usr/sbin, which is not on every
 * user's PATH; an environment variable (HAPROXY_BIN, NGINX_BIN) picks another build, e.g. a
 * newer HAProxy to compare against.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The binary's path, or undefined when not installed (or the override does not exist). */
export function findBinary(name: 'haproxy' | 'nginx'): string | undefined {
  const override = process.env[`${name.toUpperCase()}_BIN`];
  if (override !== undefined && override !== '') return executable(override) ? override : undefined;
  const dirs = ['/usr/sbin', '/usr/local/sbin', ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)];
  for (const dir of dirs) {
    const file = path.join(dir, name);
    if (executable(file)) return file;
  }
  return undefined;
}

/** Why the binary cannot be used, for the skip note. */
export function missingReason(name: 'haproxy' | 'nginx'): string {
  const override = process.env[`${name.toUpperCase()}_BIN`];
  return override ? `${name.toUpperCase()}_BIN=${override} is not an executable file` : `${name} not found in /usr/sbin, /usr/local/sbin or PATH`;
}
