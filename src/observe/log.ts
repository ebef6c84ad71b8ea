/**
 * carelb's own log (start, warnings, health transitions, thread restarts): JSON lines via pino
 * on stdout, written synchronously because they are rare and must not be lost when the process
 * exits; on a terminal the same records are printed as readable lines.
 */
import { Writable } from 'node:stream';
import pino from 'pino';

export type Logger = pino.Logger;

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Renders one pino JSON record as `HH:MM:SS LEVEL message key=value ...`. */
export function humanLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json);
  } catch {
    return json;
  }
  const { time, level, msg, pid, ...rest } = record;
  void pid;
  const fields = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
  const clock = typeof time === 'string' ? time.slice(11, 19) : '';
  return `${clock} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${fields ? `  ${fields}` : ''}`;
}

function terminalStream(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      process.stdout.write(lines.map(humanLine).join('\n') + '\n');
      done();
    },
  });
}

export function createLogger(level: string = process.env.CARELB_LOG_LEVEL ?? 'info'): Logger {
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (process.stdout.isTTY && process.env.CARELB_LOG_FORMAT !== 'json') return pino(options, terminalStream());
  return pino(options, pino.destination({ dest: 1, sync: true }));
}
