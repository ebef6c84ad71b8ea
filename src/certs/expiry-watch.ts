/**
 * The daily expiry warning (issue 14): once at start and then every 24 hours, one warning log
 * line per certificate in the inventory (store, front end, bridging) that has fewer than 30
 * days left or has expired. An expired certificate on the EHR's API stops every integration
 * at once; a line a day in the log that monitoring already reads gives a month's notice.
 * Primary only; the timer is unref'd and stopped with carelb.
 */
import type { Config } from '../config/schema';
import type { Logger } from '../observe/log';
import { EXPIRY_WARNING_DAYS } from './bundle';
import { certificateInventory } from './inventory';

const DAY_MS = 86_400_000;

/** Logs the certificates that need attention now; returns how many lines it wrote. */
export function warnExpiring(config: Config, log: Logger, now = Date.now()): number {
  let warned = 0;
  for (const entry of certificateInventory(config, now)) {
    if (entry.days_left >= EXPIRY_WARNING_DAYS) continue;
    const expired = Date.parse(entry.not_after) <= now;
    log.warn(
      { certificate: entry.name, subject: entry.subject, not_after: entry.not_after, days_left: entry.days_left, used_by: entry.used_by },
      expired ? `certificate ${entry.name} has expired` : `certificate ${entry.name} expires in ${entry.days_left} days`,
    );
    warned++;
  }
  return warned;
}

/** Starts the daily check; `config()` is read at each run, so reloads are followed. Returns stop(). */
export function startExpiryWatch(config: () => Config, log: Logger, intervalMs = DAY_MS): () => void {
  const run = () => {
    try {
      warnExpiring(config(), log);
    } catch (error) {
      log.error({ err: (error as Error).message }, 'certificate expiry check failed');
    }
  };
  run();
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
