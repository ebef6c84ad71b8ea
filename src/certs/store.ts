/**
 * The certificate store (issue 14): a directory holding NAME.pem (leaf and intermediates,
 * 0640) and NAME.key (unencrypted, 0600), plus NAME.csr from `carelb cert csr`. Files are
 * written through an exclusive temporary file and a rename (ha/atomic-write.ts), so a reload
 * reads an old file or a new one, never half of one. When root writes them, they are handed
 * to the store directory's owner (the installer makes it the carelb service user), so the
 * service can read its keys and nobody else can. Primary or CLI only.
 */
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../ha/atomic-write';
import { loadConfigFile } from '../config/load';
import { DEFAULT_TLS_STORE, NAME_PATTERN, NAME_RULE, storeFiles } from '../config/schema';

export const CERT_MODE = 0o640;
export const KEY_MODE = 0o600;

/** A certificate name is its file name too: the config's name rule keeps it out of other directories. */
export function nameProblem(name: string | undefined): string | null {
  if (name === undefined || name === '') return 'a certificate name is required (--name NAME)';
  return NAME_PATTERN.test(name) ? null : `certificate name "${name}" ${NAME_RULE}`;
}

export function storePaths(store: string, name: string): { cert: string; key: string; csr: string } {
  return { ...storeFiles(store, name), csr: join(store, `${name}.csr`) };
}

/**
 * Which store a command uses: --store, else `tls_store` of the config given with -c, else
 * /etc/carelb/tls. Throws with the config's errors when -c names an invalid config.
 */
export function resolveStore(store: string | undefined, configFile: string | undefined): string {
  if (store !== undefined) return resolve(store);
  if (configFile !== undefined) {
    const loaded = loadConfigFile(configFile);
    if (!loaded.ok) throw new Error(`${configFile}: invalid config, cannot tell its tls_store:\n  ${loaded.errors.join('\n  ')}`);
    return loaded.config.tls_store;
  }
  return DEFAULT_TLS_STORE;
}

/** Creates the store directory (0750) when missing. */
export function ensureStore(store: string): void {
  if (!existsSync(store)) mkdirSync(store, { recursive: true, mode: 0o750 });
  if (!statSync(store).isDirectory()) throw new Error(`certificate store ${store} is not a directory`);
}

/** Writes one store file atomically with `mode`; under root, owned by the store directory's owner. */
export function writeStoreFile(store: string, path: string, content: string | Buffer, mode: number): void {
  writeFileAtomic(path, content, mode);
  if (process.getuid?.() === 0) {
    const owner = statSync(store);
    chownSync(path, owner.uid, owner.gid);
  }
}

/** Names of the certificates in the store (every NAME.pem with a valid name), sorted. */
export function storedNames(store: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(store);
  } catch {
    return [];
  }
  return entries
    .filter((file) => file.endsWith('.pem'))
    .map((file) => file.slice(0, -4))
    .filter((name) => NAME_PATTERN.test(name))
    .sort();
}

/** The stored key of `name`, or null when there is none. */
export function readStoredKey(store: string, name: string): string | null {
  try {
    return readFileSync(storePaths(store, name).key, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
