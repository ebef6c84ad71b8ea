/**
 * A log file written asynchronously (sonic-boom, pino's destination) that can be reopened at
 * its path: logrotate renames the file, then sends SIGUSR1 (deploy/logrotate/carelb), and the
 * next line goes to a new file at the old path. Used by the access log and the audit log in
 * the primary.
 *
 * A reopen makes a fresh destination on a freshly opened descriptor rather than calling
 * sonic-boom's own reopen(): sonic-boom 4.2 defers a reopen asked for during a write, and a line
 * queued meanwhile was seen landing in the renamed file after the reopen had been asked for
 * (and its reopen needs a destination that opens its path asynchronously, see open()). Here
 * the split is exact: every line written before reopen() goes to the old file (the old
 * destination writes out what it holds, then closes), every line after it to the new one.
 * Nothing is lost either way.
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';

type Destination = ReturnType<typeof pino.destination>;

export interface LogFileOptions {
  /** Bytes buffered before a write (0: write each line as it comes). */
  minLength?: number;
  /** Mode of a file created (0o640 for the audit log). */
  mode?: number;
}

/** sonic-boom 4.2 has no public "write in flight" flag; its own code reads this field. */
function writing(destination: Destination): boolean {
  return (destination as unknown as { _writing?: boolean })._writing === true;
}

/**
 * Resolves once `destination` has written what it holds and, when `end`, closed its fd.
 * Never flushSync() while an asynchronous write is in flight: sonic-boom 4.2's flushSync does
 * not wait for it, so the lines it writes would land before the one in flight (seen: a file
 * reading "two\none\n"). end() waits for that write, then writes the rest in order.
 */
export function drainDestination(destination: Destination, end: boolean): Promise<void> {
  return new Promise((resolve) => {
    destination.once('error', () => resolve());
    if (end) {
      destination.once('close', () => resolve());
      destination.end();
      return;
    }
    // After the write in flight, what is left may be under minLength and stay buffered: write
    // it out once nothing is in flight.
    const settle = (): void => {
      if (writing(destination)) {
        destination.once('drain', settle);
        return;
      }
      try {
        destination.flushSync();
      } catch {
        /* the fd is gone: nothing more can be written to it */
      }
      resolve();
    };
    settle();
  });
}

export class ReopenableLogFile {
  private current: Destination;

  /**
   * Opens `path` (appended, directory created); throws when it cannot be opened, so a start
   * fails on a path it cannot write. `onError` hears write failures later, never thrown.
   */
  constructor(
    readonly path: string,
    private readonly options: LogFileOptions,
    private readonly onError: (error: Error) => void,
  ) {
    this.current = this.open();
  }

  /**
   * The file is opened here, synchronously, and the destination given its descriptor: a
   * destination still opening its path asynchronously cannot be flushed, and pino's exit hook
   * then throws "sonic boom is not ready yet" if the process exits in that moment.
   */
  private open(): Destination {
    mkdirSync(dirname(this.path), { recursive: true });
    const fd = openSync(this.path, 'a', this.options.mode ?? 0o666);
    const destination = pino.destination({ dest: fd, sync: false, minLength: this.options.minLength ?? 0 });
    // Without a listener an 'error' event (a disk full) would crash the primary.
    destination.on('error', this.onError);
    return destination;
  }

  write(text: string): void {
    this.current.write(text);
  }

  /**
   * New lines go to a new file at the path; the old destination finishes its lines into the
   * old file, then closes it. When the path cannot be opened now (a directory gone, a
   * permission changed) the old file stays in use and the error is reported: no line is lost.
   */
  reopen(): boolean {
    let next: Destination;
    try {
      next = this.open();
    } catch (error) {
      this.onError(error as Error);
      return false;
    }
    const old = this.current;
    this.current = next;
    void drainDestination(old, true);
    return true;
  }

  /** Writes out everything and closes the file. */
  close(): Promise<void> {
    return drainDestination(this.current, true);
  }
}
