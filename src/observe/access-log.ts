/**
 * The access-log sink in the primary: lines arrive from the threads in batches and go to a
 * sonic-boom stream (pino's asynchronous destination), so nothing on the request path waits
 * for a disk. Reopened when a reload changes `access_log`, and on SIGUSR1 at the same path
 * (logrotate renames the file, then signals: see deploy/logrotate/carelb). The threads never
 * hold the file, so the primary reopening it is enough.
 */
import pino from 'pino';
import type { Config } from '../config/schema';
import { drainDestination, ReopenableLogFile } from './log-file';

export class AccessLogSink {
  private file: ReopenableLogFile | null = null;
  private stdout: ReturnType<typeof pino.destination> | null = null;
  private target = 'off';

  /** `onError` hears write and open failures (disk full, directory gone): reported, never thrown. */
  constructor(private readonly onError: (error: Error, target: string) => void = () => {}) {}

  /** Points the sink at the config's access_log (off, stdout or a file). */
  configure(config: Config): void {
    const target = typeof config.access_log === 'string' ? config.access_log : config.access_log.path;
    if (target === this.target) return;
    void this.close();
    this.target = target;
    if (target === 'off') return;
    if (target === 'stdout') {
      this.stdout = pino.destination({ dest: 1, sync: false, minLength: 4096 });
      this.stdout.on('error', (error: Error) => this.onError(error, target));
      return;
    }
    try {
      this.file = new ReopenableLogFile(target, { minLength: 4096 }, (error) => this.onError(error, target));
    } catch (error) {
      // The file check before start and reload makes this rare (a disk gone read-only since):
      // requests are served without an access log rather than not at all.
      this.onError(error as Error, target);
    }
  }

  write(lines: string[]): void {
    const text = `${lines.join('\n')}\n`;
    if (this.file) this.file.write(text);
    else this.stdout?.write(text);
  }

  /**
   * Reopens the file at its path (lines before go to the old file); the path, or null when off,
   * on stdout, or when the path cannot be opened now (the old file is kept, the error reported).
   */
  reopen(): string | null {
    if (!this.file || !this.file.reopen()) return null;
    return this.target;
  }

  /** Writes out what is buffered and closes the file (on stop, or a reload that moves the log); resolves when written. */
  close(): Promise<void> {
    const done = this.file ? this.file.close() : this.stdout ? drainDestination(this.stdout, false) : Promise.resolve();
    this.file = null;
    this.stdout = null;
    this.target = 'off';
    return done;
  }
}
