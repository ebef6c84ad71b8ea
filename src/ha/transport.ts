/**
 * How config sync may travel between the two nodes (issue 13). A sync carries the config,
 * private keys and passphrases, so it needs the admin API in TLS on both nodes (admin.tls), the
 * peer's certificate verified against the pair's CA (admin.tls.ca, never the system CAs), unless
 * the operator accepts plain HTTP with ha.allow_plaintext_sync. Each node checks its own side:
 * the sender before it pushes (`carelb ha sync`, auto_sync), the receiver before it reads a push.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema';
import type { PeerOptions } from './client';

const HOW = 'set admin.tls: { cert, key, ca } on both nodes, or ha.allow_plaintext_sync: true to accept plain HTTP';

/** Why this node may not send a sync, or null when it may. Reads nothing. */
export function sendProblem(config: Config): string | null {
  const tls = config.admin?.tls;
  if (tls) return tls.ca ? null : "admin.tls.ca is not set: the peer's admin certificate must be verified against the pair's CA";
  if (config.ha?.allow_plaintext_sync) return null;
  return `config sync carries private keys and needs TLS, but admin.tls is not set on this node (${HOW})`;
}

/** Why this node may not accept a sync on an admin API that does (`servesTls`) or does not serve TLS, or null. */
export function receiveProblem(config: Config, servesTls: boolean): string | null {
  if (servesTls || config.ha?.allow_plaintext_sync) return null;
  return `config sync carries private keys and needs TLS, but this node's admin API serves plain HTTP (${HOW})`;
}

/** Whether this node sends syncs in the clear (allowed by ha.allow_plaintext_sync): worth a warning each time. */
export function sendsPlaintext(config: Config): boolean {
  return !config.admin?.tls && config.ha?.allow_plaintext_sync === true;
}

export const PLAINTEXT_WARNING = 'ha.allow_plaintext_sync is on: config sync to and from the peer may carry keys and passphrases over plain HTTP';

/**
 * The connection options for a push, once sendProblem said yes: https verified against
 * admin.tls.ca (or `caOverride`, the text of `carelb ha sync --ca FILE`), or plain HTTP. Throws
 * with the path when the CA file cannot be read.
 */
export function pushOptions(config: Config, caOverride?: string): PeerOptions {
  const tls = config.admin?.tls;
  if (!tls) return {};
  if (caOverride !== undefined) return { tls: { ca: caOverride } };
  try {
    return { tls: { ca: readFileSync(tls.ca!, 'utf8') } };
  } catch (error) {
    throw new Error(`admin.tls.ca: cannot read ${tls.ca}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}
