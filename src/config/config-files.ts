/**
 * Every file a config names, checked before anything uses it (issue 11, point 4): by
 * `carelb check`, by `carelb start` before a thread runs, by every reload before anything
 * changes (a refused reload keeps the running config serving), and by HA sync on the staged
 * files. Each error is `key.path: reason`.
 *
 * Path-valued keys of src/config/schema.ts and what they must be:
 *   virtual_services[].tls.cert/key/passphrase_file, .tls.sni[].cert/key/passphrase_file,
 *   backend_tls.ca/cert/key (service and server), admin.tls.cert/key/ca
 *       readable PEM, parseable, key matching certificate (tls-files.ts)
 *   virtual_services[].fallback.body_file
 *       a readable regular file of at most FALLBACK_BODY_MAX_BYTES; read here, once, and sent
 *       to the threads as bytes (a thread never reads it, so it cannot fail on it)
 *   admin.token_file          may be absent (generated at first start); if present, a
 *                             readable regular file holding a token
 *   ha.peer_token_file, ha.auth_secret_file
 *                             a readable regular file; absent is only a warning, since the
 *                             peer's token may be provisioned after this node starts and the
 *                             VRRP secret is read by `carelb ha render`, not by `start`
 *   access_log.path           may be absent (created); must not be a directory
 *   ha.keepalived_conf        written by `carelb ha render`, not read: not checked here
 * Primary only.
 */
import { statSync } from 'node:fs';
import { errnoReason, readNamedFile } from './file-read';
import type { Config } from './schema';
import { checkTlsFiles, type TlsFileReport } from './tls-files';

/**
 * Largest fallback body: a maintenance page or an OperationOutcome, held in memory by every
 * thread and sent whole on each fallback answer. 1 MiB is far above any sensible page.
 */
export const FALLBACK_BODY_MAX_BYTES = 1024 * 1024;

/** The shortest token readToken (admin/token.ts) accepts. */
const MIN_TOKEN_LENGTH = 16;

export interface ConfigFileReport extends TlsFileReport {
  /** Per virtual service (config order): the fallback body's bytes, when it has a body_file. */
  fallbackBodies: (Buffer | undefined)[];
  /** Per virtual service: the cookie persistence key read from cookie.secret_file, when set. */
  cookieSecrets: (Buffer | undefined)[];
}

export function checkConfigFiles(config: Config, now = Date.now()): ConfigFileReport {
  const report: ConfigFileReport = { ...checkTlsFiles(config, now), fallbackBodies: [], cookieSecrets: [] };
  const { errors, warnings } = report;

  config.virtual_services.forEach((vs, v) => {
    const fallback = vs.fallback;
    if (!fallback || 'server' in fallback || fallback.body_file === undefined) return;
    const read = readNamedFile(fallback.body_file, 'fallback body file', FALLBACK_BODY_MAX_BYTES);
    if (read.ok) report.fallbackBodies[v] = read.bytes;
    else errors.push(`virtual_services[${v}].fallback.body_file: ${read.reason}`);
  });

  config.virtual_services.forEach((vs, v) => {
    const secretFile = vs.cookie?.secret_file;
    if (secretFile === undefined) return;
    const read = readNamedFile(secretFile, 'cookie secret file', 64 * 1024);
    if (!read.ok) return errors.push(`virtual_services[${v}].cookie.secret_file: ${read.reason}`);
    const secret = read.bytes.toString('utf8').split('\n')[0].trim();
    if (secret.length < MIN_TOKEN_LENGTH) errors.push(`virtual_services[${v}].cookie.secret_file: ${secretFile} holds no usable secret (want at least ${MIN_TOKEN_LENGTH} characters on its first line)`);
    else report.cookieSecrets[v] = Buffer.from(secret);
  });

  if (config.admin) tokenFile('admin.token_file', config.admin.token_file, { mayBeAbsent: 'generated' }, errors, warnings);
  if (config.ha?.peer_token_file) tokenFile('ha.peer_token_file', config.ha.peer_token_file, { mayBeAbsent: 'warn' }, errors, warnings);
  if (config.ha?.auth_secret_file) {
    const read = readNamedFile(config.ha.auth_secret_file, 'VRRP secret file');
    if (!read.ok && read.absent) warnings.push(`ha.auth_secret_file: ${read.reason}: \`carelb ha render\` will fail until it exists`);
    else if (!read.ok) errors.push(`ha.auth_secret_file: ${read.reason}`);
  }

  if (typeof config.access_log === 'object') {
    const path = config.access_log.path;
    try {
      if (statSync(path).isDirectory()) errors.push(`access_log.path: access log ${path} is a directory, not a file`);
    } catch (error) {
      // Absent is fine: the sink creates the file and its directory.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') errors.push(`access_log.path: cannot use access log ${path}: ${errnoReason(error)}`);
    }
  }
  return report;
}

/** A token file: readable, regular, holding a token; `mayBeAbsent` says what a missing one means. */
function tokenFile(key: string, file: string, options: { mayBeAbsent: 'generated' | 'warn' }, errors: string[], warnings: string[]): void {
  const read = readNamedFile(file, 'token file', 64 * 1024);
  if (!read.ok) {
    if (!read.absent) errors.push(`${key}: ${read.reason}`);
    else if (options.mayBeAbsent === 'warn') warnings.push(`${key}: ${read.reason}: the peer cannot be queried or synced until it exists`);
    return;
  }
  if (read.bytes.toString('utf8').split('\n')[0].trim().length < MIN_TOKEN_LENGTH) {
    errors.push(`${key}: token file ${file} holds no usable token (want at least ${MIN_TOKEN_LENGTH} characters on its first line)`);
  }
}
