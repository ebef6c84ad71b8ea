/**
 * carelb's own log (start, warnings, thread restarts): JSON lines via pino on stdout, written
 * synchronously because they are rare and must not be lost when the process exits.
 */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string = process.env.CARELB_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}
