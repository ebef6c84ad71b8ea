/**
 * When a measurement counts. Two rules, one per table, applied per round; only counted rounds
 * give a row's medians and only counted rows give ratios (DESIGN.md, Measuring: "two figures,
 * and never one passed off as the other"). The texts here are printed in every report, so the
 * rule a reader sees is the rule the code applied.
 */
import type { RoundResult } from './results';

/** Capacity: the proxy's CPUs were at least this busy, per core. */
export const SATURATED_PCT_PER_CORE = 95;
/** Latency: the proxy answered at least this share of the offered rate within the window, with no errors. */
export const ACHIEVED_MIN_SHARE = 0.97;
/** Fewer counted rounds than this and a ratio is marked indicative. */
export const MIN_ROUNDS_FOR_HEADLINE = 3;

export type Table = 'capacity' | 'latency';

export const RULE_TEXT: Record<Table, string> = {
  capacity: `a round counts ("saturated") when the proxy's own CPU time (utime+stime of its whole process tree from /proc/PID/stat, over the window) is at least ${SATURATED_PCT_PER_CORE} % of each CPU it is pinned to. Other rounds are "not saturated": their req/s measure the load side or a disturbance, not the proxy. When "its CPU busy %" is high but the proxy's share is not, something else used its CPU (another process, or other jobs' network softirq, which Linux charges to no process). A row's medians are over its counted rounds; a row with none is shown over all rounds, marked not saturated, and gives no ratio.`,
  latency: `every proxy in a scenario is offered the same rate; a round counts when the proxy completed at least ${Math.round(ACHIEVED_MIN_SHARE * 100)} % of the offered requests in the window, with no socket errors, timeouts or non-2xx responses (warm-up included) ("achieved"). A row's medians are over its counted rounds; a row with none is shown over all rounds, marked not achieved, and gives no ratio.`,
};

export interface Verdict {
  counted: boolean;
  /** Why not, when not. */
  why?: string;
}

export function judgeCapacity(r: Pick<RoundResult, 'proxy_cpu_pct' | 'proxy_cpuset_busy_pct'>, proxyCores: number): Verdict {
  const need = SATURATED_PCT_PER_CORE * proxyCores;
  if (r.proxy_cpu_pct >= need) return { counted: true };
  return { counted: false, why: `not saturated: proxy CPU ${r.proxy_cpu_pct.toFixed(0)} % < ${need} % (its CPUs were ${r.proxy_cpuset_busy_pct.toFixed(0)} % busy)` };
}

export function judgeLatency(r: Pick<RoundResult, 'rps' | 'errors' | 'timeouts' | 'non_2xx'>, offeredRps: number): Verdict {
  const need = offeredRps * ACHIEVED_MIN_SHARE;
  if (r.rps < need) return { counted: false, why: `rate not achieved: ${Math.round(r.rps)} of ${Math.round(offeredRps)} req/s offered` };
  // A proxy that drops or refuses some requests answers the rest faster: that is no latency figure.
  if (r.errors + r.timeouts + r.non_2xx > 0) return { counted: false, why: `not achieved cleanly: ${r.errors} errors / ${r.timeouts} timeouts / ${r.non_2xx} non-2xx` };
  return { counted: true };
}
