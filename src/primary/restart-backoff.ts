/**
 * When to start a data-plane thread again after it failed (issue 11, point 4). Pure: the
 * supervisor keeps the count and the timers.
 *
 * A thread that dies after serving a while is replaced at once: one fault must not cost a
 * CPU's share of capacity for longer than a thread start. A thread that fails while
 * starting (before it listens), or dies again soon after a replacement, would fail the same
 * way if re-run at once: it waits 100 ms, then 200 ms, doubling up to 10 s, so a lasting
 * fault (a certificate file gone, a port taken) costs a log line per attempt, not a core.
 * Serving for `stableMs` clears the count.
 */
export interface RestartPolicy {
  initialMs: number;
  maxMs: number;
  /** Serving this long clears the failure count. */
  stableMs: number;
}

export const RESTART_POLICY: RestartPolicy = { initialMs: 100, maxMs: 10_000, stableMs: 30_000 };

/**
 * Delay before the next start of a thread that has now failed `failures` times in a row
 * (1 = first failure since it last served stably); `whileServing`: it had been listening.
 */
export function restartDelay(failures: number, whileServing: boolean, policy: RestartPolicy = RESTART_POLICY): number {
  if (whileServing && failures <= 1) return 0;
  const exponent = Math.max(0, failures - 1);
  // 2 ** exponent overflows to Infinity long before it matters; min() caps it.
  return Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
}
