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
import pino from 'pino';
import { drainDestination, ReopenableLogFile } from '../observe/log-file';
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
  /**
   * Reopens the file at its path (SIGUSR1 after logrotate renamed it): lines written before go
   * to the old file, lines after to the new one. False when writing to stdout.
   */
  reopen(): boolean;
}

/**
 * The audit log at `path` (appended, directory created; opened now, so a path that cannot be
 * written fails the start), or stdout. `onError` hears write failures (disk full, a closed
 * pipe): they are reported, never thrown into the primary.
 */
export function createAuditLog(path?: string, onError: (error: Error) => void = () => {}, summary: SummaryOptions = {}): AuditLog {
  let file: ReopenableLogFile | null = null;
  let stdout: ReturnType<typeof pino.destination> | null = null;
  if (path) {
    // Opened now (a path that cannot be written fails the start here), and reopened at the
    // same path after logrotate moved the file away (SIGUSR1).
    file = new ReopenableLogFile(path, { mode: 0o640 }, onError);
  } else {
    stdout = pino.destination({ dest: 1, sync: false });
    stdout.on('error', onError);
  }
  const sink = file ?? stdout!;
  const log = pino({ base: { audit: true }, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, { write: (line: string) => sink.write(line) });
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
    reopen: () => {
      if (!file || closing) return false;
      return file.reopen();
    },
    close: () =>
      (closing ??= (() => {
        refusals.flush();
        return file ? file.close() : drainDestination(stdout!, false);
      })()),
  };
}
