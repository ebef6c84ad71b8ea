/**
 * The access-log sink in the primary: lines arrive from the threads in batches and go to a
 * sonic-boom stream (pino's asynchronous destination), so nothing on the request path waits
 * for a disk. Reopened when a reload changes `access_log`.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { Config } from '../config/schema';

type Destination = ReturnType<typeof pino.destination>;

export class AccessLogSink {
  private destination: Destination | null = null;
  private target = 'off';

  /** Points the sink at the config's access_log (off, stdout or a file). */
  configure(config: Config): void {
    const target = typeof config.access_log === 'string' ? config.access_log : config.access_log.path;
    if (target === this.target) return;
    this.close();
    this.target = target;
    if (target === 'off') return;
    if (target !== 'stdout') mkdirSync(dirname(target), { recursive: true });
    this.destination = pino.destination({ dest: target === 'stdout' ? 1 : target, sync: false, minLength: 4096, mkdir: true });
  }

  write(lines: string[]): void {
    this.destination?.write(`${lines.join('\n')}\n`);
  }

  /** Writes out what is buffered (on stop). */
  close(): void {
    if (this.destination) {
      const destination = this.destination;
      destination.flushSync();
      if (this.target !== 'stdout') destination.end();
    }
    this.destination = null;
    this.target = 'off';
  }
}
