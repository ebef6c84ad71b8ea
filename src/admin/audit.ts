/**
 * The audit log: one JSON line per admin action (state change, reload, refused token), always
 * on. Written with pino to a file (`auditLog` option of the admin server, appended, directory
 * created) or, by default, to stdout next to carelb's own log with `"audit":true` on every line
 * so it can be filtered out. Writes are synchronous: admin actions are rare and an audit line
 * must not be lost when the process exits right after.
 */
import pino from 'pino';

export interface AuditEntry {
  /** Client address of the admin request. */
  source: string;
  /** `drain`, `halt`, `online`, `reload`, `unauthorized`. */
  action: string;
  /** `vs/server`, the config, or the refused path. */
  target: string;
  /** `ok`, `not found`, `invalid config`, `refused`, ... */
  result: string;
  [detail: string]: unknown;
}

export interface AuditLog {
  write(entry: AuditEntry): void;
  close(): void;
}

export function createAuditLog(path?: string): AuditLog {
  const destination = pino.destination(path ? { dest: path, sync: true, mkdir: true, append: true } : { dest: 1, sync: true });
  const log = pino({ base: { audit: true }, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, destination);
  return {
    write: (entry) => log.info(entry, 'admin action'),
    close: () => {
      if (path) destination.end();
    },
  };
}
