/**
 * The files a config refers to, for config sync (issue 8): certificates, keys, CA bundles,
 * passphrase files, fallback bodies and cookie secrets (issue 14) travel with the config to the peer; nothing else does.
 * Node-specific files (the tokens, the peer's token, the VRRP secret, admin.tls) are never
 * synced: each node keeps its own. The receiver writes every file with a fixed mode by kind
 * (issue 13), never the sender's. Pure functions, no I/O.
 */
import { isAbsolute, normalize } from 'node:path';
import type { BackendTlsConfig, Config } from '../config/schema';

export type ReferencedKind = 'certificate' | 'key' | 'passphrase' | 'ca' | 'body';

export interface ReferencedFile {
  path: string;
  kind: ReferencedKind;
  /** Where the config names it, e.g. `virtual_services[0].tls.key`. */
  where: string;
}

const SECRET_KINDS: ReadonlySet<ReferencedKind> = new Set(['key', 'passphrase']);

/** The mode a synced file gets: 0600 for keys and passphrases, 0640 for the rest (readable by the group, e.g. a monitoring agent). */
export function syncedFileMode(kind: ReferencedKind): number {
  return SECRET_KINDS.has(kind) ? 0o600 : 0o640;
}

/**
 * Every file the config's virtual services read (TLS material and fallback bodies), with the
 * key of its first mention. A file named twice keeps the more secret kind (a PEM holding both
 * certificate and key is a key).
 */
export function referencedFiles(config: Config): ReferencedFile[] {
  const found = new Map<string, ReferencedFile>();
  const add = (path: string | undefined, kind: ReferencedKind, where: string) => {
    if (path === undefined) return;
    const known = found.get(path);
    if (!known) found.set(path, { path, kind, where });
    else if (SECRET_KINDS.has(kind) && !SECRET_KINDS.has(known.kind)) known.kind = kind;
  };
  const backend = (tls: BackendTlsConfig | undefined, base: string) => {
    if (!tls) return;
    add(tls.ca, 'ca', `${base}.ca`);
    add(tls.cert, 'certificate', `${base}.cert`);
    add(tls.key, 'key', `${base}.key`);
  };
  config.virtual_services.forEach((vs, v) => {
    const base = `virtual_services[${v}]`;
    if (vs.tls) {
      add(vs.tls.cert, 'certificate', `${base}.tls.cert`);
      add(vs.tls.key, 'key', `${base}.tls.key`);
      add(vs.tls.passphrase_file, 'passphrase', `${base}.tls.passphrase_file`);
      vs.tls.sni.forEach((entry, i) => {
        add(entry.cert, 'certificate', `${base}.tls.sni[${i}].cert`);
        add(entry.key, 'key', `${base}.tls.sni[${i}].key`);
        add(entry.passphrase_file, 'passphrase', `${base}.tls.sni[${i}].passphrase_file`);
      });
    }
    backend(vs.backend_tls, `${base}.backend_tls`);
    vs.servers.forEach((server, s) => backend(server.backend_tls, `${base}.servers[${s}].backend_tls`));
    if (vs.fallback && 'body_file' in vs.fallback) add(vs.fallback.body_file, 'body', `${base}.fallback.body_file`);
    // Both nodes must hold the same cookie secret, or a failover would move every persistent client.
    add(vs.cookie?.secret_file, 'passphrase', `${base}.cookie.secret_file`);
  });
  return [...found.values()];
}

/**
 * Why a path may not be written by a sync, or null when it may: it must be absolute, already
 * normalized (no `.`/`..` segments, no doubled or trailing slashes) and contain no NUL.
 */
export function unsafePathReason(path: string): string | null {
  if (typeof path !== 'string' || path.length === 0) return 'is empty';
  if (path.includes('\0')) return 'contains a NUL byte';
  if (!isAbsolute(path)) return 'is not an absolute path';
  if (path.split('/').some((part) => part === '..' || part === '.')) return 'contains a "." or ".." segment';
  if (normalize(path) !== path || path.endsWith('/')) return 'is not a normalized path';
  return null;
}

/** Returns the same config with every referenced file path replaced through `map` (paths not in it unchanged). */
export function withFilePaths(config: Config, map: ReadonlyMap<string, string>): Config {
  const swap = (path: string | undefined) => (path === undefined ? undefined : (map.get(path) ?? path));
  const backend = (tls: BackendTlsConfig | undefined) => (tls ? { ...tls, ca: swap(tls.ca), cert: swap(tls.cert), key: swap(tls.key) } : undefined);
  return {
    ...config,
    virtual_services: config.virtual_services.map((vs) => ({
      ...vs,
      tls: vs.tls
        ? {
            ...vs.tls,
            cert: swap(vs.tls.cert)!,
            key: swap(vs.tls.key)!,
            passphrase_file: swap(vs.tls.passphrase_file),
            sni: vs.tls.sni.map((entry) => ({ ...entry, cert: swap(entry.cert)!, key: swap(entry.key)!, passphrase_file: swap(entry.passphrase_file) })),
          }
        : undefined,
      backend_tls: backend(vs.backend_tls),
      servers: vs.servers.map((server) => ({ ...server, backend_tls: backend(server.backend_tls) })),
      fallback: vs.fallback && 'body_file' in vs.fallback ? { ...vs.fallback, body_file: swap(vs.fallback.body_file) } : vs.fallback,
      cookie: vs.cookie ? { ...vs.cookie, secret_file: swap(vs.cookie.secret_file) } : vs.cookie,
    })),
  } as Config;
}
