/**
 * A millisecond clock for deadlines (server, body, queue timeouts), refreshed by a timer
 * every CLOCK_TICK_MS instead of read per request: four clock reads per request were a
 * measurable share of the hot path. Server and body deadlines are seconds long, so being up
 * to one tick early (more when the thread was starved of CPU) is immaterial; the queue
 * deadline, often a few hundred ms, reads the real clock (exchange.ts). Latencies still use
 * performance.now(). One per thread (module state).
 */
const CLOCK_TICK_MS = 20;

export const coarseClock = { now: Date.now() };

let timer: NodeJS.Timeout | null = null;

/** Starts the ticking (the thread's entry calls it; idempotent). */
export function startCoarseClock(): void {
  if (timer !== null) return;
  coarseClock.now = Date.now();
  timer = setInterval(() => (coarseClock.now = Date.now()), CLOCK_TICK_MS);
  timer.unref();
}

export function stopCoarseClock(): void {
  if (timer !== null) clearInterval(timer);
  timer = null;
}
