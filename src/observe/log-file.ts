/**
 * A log file written asynchronously (sonic-boom, pino's destination) that can be reopened at
 * its path: logrotate renames the file, then sends SIGUSR1 (deploy/logrotate/carelb), and the
 * next line goes to a new file at the old path. Used by the access log and the audit log in
 * the primary.
 *
 * Why a fresh destination instead of sonic-boom's own reopen(): sonic-boom 4.2 defers a reopen
 * asked for during a write, and a line queued meanwhile was seen landing in the renamed file
 * after the reopen had been asked for. Here the split is exact: every line written before
 * reopen() goes to the old file (the old destination writes out what it holds, then closes),
 * every line after it to the new one. Nothing is lost either way.
 */
import pino from 'pino';

type Destination = ReturnType<typeof pino.destination>;

export interface LogFileOptions {
  /** Bytes buffered before a write (0: write each line as it comes). */
  minLength?: number;
  /** Mode of a file created (0o640 for the audit log). */
  mode?: number;
}

/** Resolves once `destination` has written what it holds and, when `end`, closed its fd. */
export function drainDestination(destination: Destination, end: boolean): Promise<void> {
  return new Promise((resolve) => {
    try {
      destination.flushSync();
    } catch {
      /* not open yet, or the fd is gone: end() below still writes what it holds once open */
    }
    if (!end) return resolve();
    destination.once('close', () => resolve());
    destination.once('error', () => resolve());
    destination.end();
  });
}

export class ReopenableLogFile {
  private current: Destination;

  /** Opens `path` (appended, directory created); `onError` hears write and open failures, never thrown. */
  constructor(
    readonly path: string,
    private readonly options: LogFileOptions,
    private readonly onError: (error: Error) => void,
  ) {
    this.current = this.open();
  }

  private open(): Destination {
    const destination = pino.destination({ dest: this.path, sync: false, append: true, mkdir: true, minLength: this.options.minLength ?? 0, mode: this.options.mode });
    // Without a listener an 'error' event (a directory removed under us) would crash the primary.
    destination.on('error', this.onError);
    return destination;
  }

  write(text: string): void {
    this.current.write(text);
  }

  /** New lines go to a new file at the path; the old destination finishes its lines into the old file. */
  reopen(): void {
    const old = this.current;
    this.current = this.open();
    void drainDestination(old, true);
  }

  /** Writes out what is buffered synchronously when possible (stop), without closing. */
  flushSync(): void {
    try {
      this.current.flushSync();
    } catch {
      /* not open yet: close() writes it */
    }
  }

  /** Writes out everything and closes the file. */
  close(): Promise<void> {
    return drainDestination(this.current, true);
  }
}
