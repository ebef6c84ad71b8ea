/**
 * The files of this node that a config sync never writes and a synced config may never name
 * (issue 13): the config file itself, every token file (admin.token_file, admin.tokens,
 * ha.sync_token_file, ha.peer_token_file), the VRRP secret, keepalived.conf, the admin API's
 * own certificate, key and CA, the audit log, and anything in the VRRP state directory (its
 * `release` flag makes keepalived drop this node's addresses). A name counts as its resolved
 * path and, when it exists, its realpath, so a second spelling of the same file is caught too.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/schema';
import { within } from './sync-root';

export interface OwnFiles {
  /** True when `path` (absolute) is one of this node's own files or lies in its state directory. */
  has(path: string): boolean;
}

function spellings(path: string): string[] {
  const absolute = resolve(path);
  try {
    return [absolute, realpathSync(absolute)];
  } catch {
    return [absolute];
  }
}

/** The node-specific files named by a config (its local blocks). */
function namedBy(config: Config): (string | undefined)[] {
  return [
    config.admin?.token_file,
    ...(config.admin?.tokens ?? []).map((entry) => entry.file),
    config.admin?.tls?.cert,
    config.admin?.tls?.key,
    config.admin?.tls?.ca,
    config.ha?.sync_token_file,
    config.ha?.peer_token_file,
    config.ha?.auth_secret_file,
    config.ha?.keepalived_conf,
  ];
}

/**
 * Collects this node's own files: the config file, what `configs` name (the running config and
 * the one about to be written), `extra` files (token files in use, the audit log) and every
 * path under `stateDir`.
 */
export function ownFiles(configPath: string, configs: Config[], extra: readonly (string | undefined)[], stateDir: string): OwnFiles {
  const files = new Set<string>();
  for (const path of [configPath, ...extra, ...configs.flatMap(namedBy)]) if (path) for (const spelling of spellings(path)) files.add(spelling);
  const stateDirs = spellings(stateDir);
  return {
    has: (path) => spellings(path).some((spelling) => files.has(spelling) || stateDirs.some((dir) => within(dir, spelling))),
  };
}
