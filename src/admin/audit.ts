/**
 * The audit log: one JSON line per admin action (state change, reload, sync), always on, and
 * refused requests (401, 403) as counted summaries per source and window (audit-summary.ts).
 * Written with pino to a file (`auditLog` option of the admin server, appended, directory
 * created) or, by default, to stdout next to carelb's own log with `"audit":true` on every line
 * so it can be filtered out.
 *
 * Writes are asynchronous (sonic-boom, issue 13): the admin server runs in the primary beside
 * the health checks, and a synchronous write to a slow reader (journald busy, a full pipe)
 * would stop both. Lines queued meanwhile are written together when the previous write
 * completes. close() writes out everything pending, summaries included, before it resolves;
 * lines of the last moments before a crash can be lost, a bounded price for never stalling.
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { RefusalSummary, type Refusal, type SummaryOptions } from './audit-summary';

export interface AuditEntry {
  /** Client address of the admin request. */
  source: string;
  /** `drain`, `halt`, `online`, `reload`, `ha_sync`, `unauthorized`, `forbidden`. */
  action: string;
  /** `vs/server`, the config, or the refused `METHOD /path`. */
  target: string;
  /** `ok`, `not found`, `invalid config`, `refused`, ... */
  result: string;
  [detail: string]: unknown;
}

export interface AuditLog {
  /** One line, queued now, written asynchronously. */
  write(entry: AuditEntry): void;
  /** A refused request: counted, written as part of a summary when its window closes. */
  refused(refusal: Refusal): void;
  /** Writes out pending summaries and lines; resolves when they are written. */
  close(): Promise<void>;
}

type Destination = ReturnType<typeof pino.destination>;

/** Resolves once `destination` has written what it holds (and, for a file, closed it). */
function drain(destination: Destination, end: boolean): Promise<void> {
  return new Promise((resolve) => {
    try {
      destination.flushSync();
    } catch {
      /* the fd is gone (or never written): nothing left to flush */
    }
    if (!end) return resolve();
    destination.once('close', () => resolve());
    destination.once('error', () => resolve());
    destination.end();
  });
}

/**
 * The audit log at `path` (appended, directory created; opened now, so a path that cannot be
 * written fails the start), or stdout. `onError` hears write failures (disk full, a closed
 * pipe): they are reported, never thrown into the primary.
 */
export function createAuditLog(path?: string, onError: (error: Error) => void = () => {}, summary: SummaryOptions = {}): AuditLog {
  let fd = 1;
  if (path) {
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(path, 'a', 0o640);
  }
  const destination = pino.destination({ dest: fd, sync: false });
  destination.on('error', onError);
  const log = pino({ base: { audit: true }, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, destination);
  const refusals = new RefusalSummary((entry) => log.info(entry, 'admin requests refused'), summary);
  let closing: Promise<void> | null = null;
  return {
    // After close nothing more is queued: the destination may be ended already.
    write: (entry) => {
      if (!closing) log.info(entry, 'admin action');
    },
    refused: (refusal) => {
      if (!closing) refusals.record(refusal);
    },
    close: () =>
      (closing ??= (() => {
        refusals.flush();
        return drain(destination, path !== undefined);
      })()),
  };
}
