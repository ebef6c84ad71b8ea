/**
 * The shape of a bench run's results (what goes into <timestamp>.json) and the arithmetic
 * that turns per-round measurements into rows: medians over counted rounds, min–max spread,
 * and ratios from counted rows only (rules.ts says what counts).
 */
import type * as hdr from 'hdr-histogram-js';
import type { Scenario } from './cli-args';
import type { LatencySummary, PacedExtra } from './measure';
import { newHistogram } from './measure';
import type { ProxyName } from './proxies/types';
import { MIN_ROUNDS_FOR_HEADLINE, type Table } from './rules';

/** wrk: capacity; paced (default) or autocannon: latency at a fixed rate; tls-loop: the handshake scenario's own loops. */
export type LoadTool = 'wrk' | 'paced' | 'autocannon' | 'tls-loop';

export interface RoundResult {
  round: number;
  /** 1, or more when noisy windows were measured again (--noisy-retries); the least noisy is kept. */
  attempts: number;
  /** Responses completed in the window (handshake: connections that got their response). */
  requests: number;
  window_s: number;
  /** wrk: its own requests ÷ its own runtime; otherwise requests ÷ window. */
  rps: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p99_9_us: number;
  max_us: number;
  /** Proxy utime+stime over the window ÷ requests. */
  cpu_us_per_req: number;
  /** Proxy CPU time ÷ window wall time; 100 = one CPU fully busy. */
  proxy_cpu_pct: number;
  /**
   * Busy time of the proxy's pinned CPU(s) from /proc/stat (processes + irq + softirq) ÷
   * window. Above proxy_cpu_pct by the kernel's loopback softirq work on those CPUs, which
   * Linux with IRQ time accounting charges to no process (about 10 % of a core here).
   */
  proxy_cpuset_busy_pct: number;
  /** The load generator (wrk, or the harness) and the backends, same formula: who was the bottleneck. */
  loadgen_cpu_pct: number;
  backend_cpu_pct: number;
  /**
   * Busy time of the proxy's pinned CPU(s) from /proc/stat (any process, softirq included)
   * ÷ requests. A cross-check of cpu_us_per_req: higher by the kernel's network work on
   * those CPUs, and by anything else that ran there.
   */
  cpuset_us_per_req: number;
  /**
   * Busy time on the proxy's CPUs not charged to the proxy, ÷ window: other processes, and
   * irq/softirq, which Linux charges to no process. The proxy's own loopback softirq is
   * ~1–2 % of its core on a quiet machine; other jobs' network traffic lands here too, and
   * above a few % the proxy did not have its CPU to itself: noisy numbers.
   */
  foreign_cpu_pct: number;
  /**
   * On the load CPU: process time that was not the load generator's or the backends'.
   * Processes only: the load side's own softirq (wrk and nginx both send) is ~5–10 % there.
   */
  load_foreign_cpu_pct: number;
  /**
   * Busy time of the load CPU from /proc/stat (processes + irq + softirq) ÷ window: near 100
   * means the load side, not the proxy, set the pace. Higher than loadgen + backend by the
   * kernel's loopback work, which is accounted to no process.
   */
  load_cpu_busy_pct: number;
  /** Hypervisor steal on the bench's pinned CPUs ÷ window: time none of its processes got. */
  steal_pct: number;
  peak_rss_kb: number;
  errors: number;
  timeouts: number;
  non_2xx: number;
  /** rules.ts: saturated (capacity) or offered rate achieved (latency). */
  counted: boolean;
  not_counted?: string;
  /** Latency table: the rate asked of the load (req/s) and the busiest 100 ms of responses in the window × 10. */
  offered_rps?: number;
  burst_peak_rps?: number;
  /**
   * paced only. p50_us... above are from each request's due time (coordinated omission
   * corrected); these are from its write. max_backlog: most requests due but not yet sent (no
   * idle connection) at once; max_send_lag_us: longest due-to-write wait; sent_peak_rps: the
   * busiest 100 ms of sends × 10 (the pacing as sent). gen_lag_*_us: how long requests
   * waited while a connection was idle, i.e. paced's own lateness, which is inside p50_us...
   */
  send_p50_us?: number;
  send_p99_us?: number;
  send_p99_9_us?: number;
  max_backlog?: number;
  max_send_lag_us?: number;
  sent_peak_rps?: number;
  gen_lag_p50_us?: number;
  gen_lag_p99_us?: number;
  gen_lag_max_us?: number;
}

/** Metrics that get a median and a spread over rounds. */
export const METRICS = [
  'rps',
  'p50_us',
  'p90_us',
  'p99_us',
  'p99_9_us',
  'cpu_us_per_req',
  'cpuset_us_per_req',
  'foreign_cpu_pct',
  'load_foreign_cpu_pct',
  'load_cpu_busy_pct',
  'steal_pct',
  'proxy_cpu_pct',
  'proxy_cpuset_busy_pct',
  'loadgen_cpu_pct',
  'backend_cpu_pct',
  'peak_rss_kb',
] as const;
export type Metric = (typeof METRICS)[number];

/** `skipped`: not measured by design in this run (e.g. no rate for the latency table). */
export type RowStatus = 'ok' | 'unsupported' | 'unavailable' | 'failed' | 'skipped';

export interface CurvePoint {
  percentile: number;
  latency_us: number;
}

export interface Row {
  table: Table;
  load: LoadTool;
  scenario: Scenario;
  proxy: ProxyName;
  status: RowStatus;
  /** Why the row has no numbers (or fewer rounds than asked). */
  reason?: string;
  rounds_ok: number;
  /** Rounds that produced no numbers (see reason). */
  rounds_failed: number;
  /** Rounds that pass the table's rule (rules.ts). */
  rounds_counted: number;
  /** At least one counted round: only such rows give ratios. */
  counted: boolean;
  /** Whether the medians below are over the counted rounds, or over all (none counted). */
  medians_over: 'counted rounds' | 'all rounds';
  /** Latency table: the rate offered to every proxy in this scenario, and where it came from. */
  offered_rps?: number;
  rate_basis?: string;
  /** Latency table: median busiest-100 ms rate, see RoundResult.burst_peak_rps. */
  burst_peak_rps?: number;
  /** Sum over the rounds the medians are over of requests completed in the window. */
  requests: number;
  /** Medians over rounds (see medians_over). */
  rps: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p99_9_us: number;
  cpu_us_per_req: number;
  proxy_cpu_pct: number;
  proxy_cpuset_busy_pct: number;
  loadgen_cpu_pct: number;
  backend_cpu_pct: number;
  cpuset_us_per_req: number;
  foreign_cpu_pct: number;
  load_foreign_cpu_pct: number;
  load_cpu_busy_pct: number;
  steal_pct: number;
  /** Worst round of all (capacity planning wants the peak, not a median). */
  peak_rss_kb: number;
  /** Sums over all rounds, warm-up included. */
  errors: number;
  timeouts: number;
  non_2xx: number;
  /** [min, max] over the same rounds as the medians. */
  spread: Record<Metric, [number, number]>;
  /** Latency percentile curve of the same rounds' windows merged (not for wrk rows: wrk gives percentiles only). */
  curve: CurvePoint[];
  /** The generated proxy config of the first round that started (ports and paths vary per round). */
  config?: string;
  per_round: RoundResult[];
}

export interface Ratio {
  table: Table;
  scenario: Scenario;
  anchor: ProxyName;
  /** "counted/ok" rounds of each side, e.g. "3/3". */
  carelb_rounds: string;
  anchor_rounds: string;
  /** Fewer than MIN_ROUNDS_FOR_HEADLINE counted rounds on either side. */
  indicative: boolean;
  /**
   * carelb ÷ anchor, of medians. capacity: cpu_us_per_req (below 1 = carelb cheaper) and rps
   * (above 1 = carelb faster); latency: cpu_us_per_req, p50, p99, p99_9 (below 1 = carelb lower).
   */
  values: Record<string, number>;
}

/** A pair of rows with numbers whose ratio was not computed, and why. */
export interface WithheldRatio {
  table: Table;
  scenario: Scenario;
  anchor: ProxyName;
  reason: string;
}

export interface BenchResults {
  meta: Record<string, unknown>;
  rows: Row[];
  ratios: Ratio[];
  ratios_withheld: WithheldRatio[];
}

export const CURVE_PERCENTILES = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99];

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export interface RawRound {
  requests: number;
  windowMs: number;
  /** The load tool's own req/s, if it has one. */
  rps?: number;
  latency: LatencySummary;
  proxyCpuUs: number;
  cpusetBusyUs: number;
  loadCpusetTaskUs: number;
  loadCpusetBusyUs: number;
  stealUs: number;
  loadgenCpuUs: number;
  backendCpuUs: number;
  peakRssKb: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  offeredRps?: number;
  burstPeakRps?: number;
  paced?: PacedExtra;
}

/** The round's figures; `counted` is filled in by the caller from rules.ts. */
export function roundResult(round: number, m: RawRound): RoundResult {
  const windowUs = m.windowMs * 1000;
  const pct = (us: number): number => (windowUs > 0 ? (100 * us) / windowUs : 0);
  return {
    round,
    attempts: 1,
    requests: m.requests,
    window_s: m.windowMs / 1000,
    rps: m.rps ?? (m.windowMs > 0 ? (m.requests * 1000) / m.windowMs : 0),
    p50_us: m.latency.p50,
    p90_us: m.latency.p90,
    p99_us: m.latency.p99,
    p99_9_us: m.latency.p99_9,
    max_us: m.latency.max,
    cpu_us_per_req: m.requests > 0 ? m.proxyCpuUs / m.requests : 0,
    proxy_cpu_pct: pct(m.proxyCpuUs),
    proxy_cpuset_busy_pct: pct(m.cpusetBusyUs),
    loadgen_cpu_pct: pct(m.loadgenCpuUs),
    backend_cpu_pct: pct(m.backendCpuUs),
    cpuset_us_per_req: m.requests > 0 ? m.cpusetBusyUs / m.requests : 0,
    foreign_cpu_pct: Math.max(0, pct(m.cpusetBusyUs - m.proxyCpuUs)),
    load_foreign_cpu_pct: Math.max(0, pct(m.loadCpusetTaskUs - m.loadgenCpuUs - m.backendCpuUs)),
    load_cpu_busy_pct: pct(m.loadCpusetBusyUs),
    steal_pct: pct(m.stealUs),
    peak_rss_kb: m.peakRssKb,
    errors: m.errors,
    timeouts: m.timeouts,
    non_2xx: m.non2xx,
    counted: false,
    ...(m.offeredRps !== undefined ? { offered_rps: m.offeredRps } : {}),
    ...(m.burstPeakRps !== undefined ? { burst_peak_rps: m.burstPeakRps } : {}),
    ...(m.paced !== undefined
      ? {
          send_p50_us: m.paced.fromSend.p50,
          send_p99_us: m.paced.fromSend.p99,
          send_p99_9_us: m.paced.fromSend.p99_9,
          max_backlog: m.paced.maxBacklog,
          max_send_lag_us: m.paced.maxSendLagUs,
          sent_peak_rps: m.paced.sentPeakRps,
          gen_lag_p50_us: m.paced.generatorLag.p50,
          gen_lag_p99_us: m.paced.generatorLag.p99,
          gen_lag_max_us: m.paced.generatorLag.max,
        }
      : {}),
  };
}

/** Collects rounds and merged latencies for one table × proxy × scenario. */
export class RowBuilder {
  readonly rounds: RoundResult[] = [];
  private readonly histograms: (hdr.Histogram | undefined)[] = [];
  status: RowStatus = 'ok';
  reason?: string;
  config?: string;
  failedRounds = 0;
  offeredRps?: number;
  rateBasis?: string;

  constructor(
    readonly table: Table,
    readonly load: LoadTool,
    readonly scenario: Scenario,
    readonly proxy: ProxyName,
  ) {}

  add(r: RoundResult, h: hdr.Histogram | undefined): void {
    // A round that failed before this one stays in `reason`, shown beside the numbers.
    if (this.status === 'failed') this.status = 'ok';
    this.rounds.push(r);
    this.histograms.push(h);
  }

  /** A round that could not run; the row keeps its other rounds. The first reason is kept. */
  fail(status: Exclude<RowStatus, 'ok'>, reason: string): void {
    if (this.rounds.length === 0) this.status = status;
    this.reason ??= reason;
    this.failedRounds++;
  }

  /** The row will not be measured at all in this run. */
  skip(reason: string): void {
    this.status = 'skipped';
    this.reason = reason;
  }

  build(): Row {
    const countedIdx = this.rounds.map((r, i) => (r.counted ? i : -1)).filter((i) => i >= 0);
    const useIdx = countedIdx.length > 0 ? countedIdx : this.rounds.map((_, i) => i);
    const use = useIdx.map((i) => this.rounds[i]);
    const spread = {} as Record<Metric, [number, number]>;
    const med = {} as Record<Metric, number>;
    for (const k of METRICS) {
      const xs = use.map((r) => r[k]);
      med[k] = median(xs);
      spread[k] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 0];
    }
    const sumAll = (k: 'errors' | 'timeouts' | 'non_2xx'): number => this.rounds.reduce((a, r) => a + r[k], 0);
    const merged = newHistogram();
    for (const i of useIdx) {
      const h = this.histograms[i];
      if (h) merged.add(h);
    }
    const curve = merged.totalCount > 0 ? CURVE_PERCENTILES.map((p) => ({ percentile: p, latency_us: merged.getValueAtPercentile(p) })) : [];
    const bursts = use.map((r) => r.burst_peak_rps).filter((b): b is number => b !== undefined);
    return {
      table: this.table,
      load: this.load,
      scenario: this.scenario,
      proxy: this.proxy,
      status: this.status,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      rounds_ok: this.rounds.length,
      rounds_failed: this.failedRounds,
      rounds_counted: countedIdx.length,
      counted: this.status === 'ok' && countedIdx.length > 0,
      medians_over: countedIdx.length > 0 ? 'counted rounds' : 'all rounds',
      ...(this.offeredRps !== undefined ? { offered_rps: this.offeredRps } : {}),
      ...(this.rateBasis !== undefined ? { rate_basis: this.rateBasis } : {}),
      ...(bursts.length > 0 ? { burst_peak_rps: median(bursts) } : {}),
      requests: use.reduce((a, r) => a + r.requests, 0),
      ...med,
      peak_rss_kb: Math.max(0, ...this.rounds.map((r) => r.peak_rss_kb)),
      errors: sumAll('errors'),
      timeouts: sumAll('timeouts'),
      non_2xx: sumAll('non_2xx'),
      spread,
      curve,
      ...(this.config !== undefined ? { config: this.config } : {}),
      per_round: this.rounds,
    };
  }
}

function why(r: Row): string {
  if (r.status !== 'ok') return `${r.proxy}: ${r.status}`;
  return `${r.proxy}: ${r.table === 'capacity' ? 'not saturated' : 'offered rate not achieved (cleanly)'} in any of ${r.rounds_ok} round(s)`;
}

/** carelb ÷ each anchor, per table and scenario, from counted rows only; the rest is withheld with a reason. */
export function ratios(rows: readonly Row[]): { ratios: Ratio[]; withheld: WithheldRatio[] } {
  const out: Ratio[] = [];
  const withheld: WithheldRatio[] = [];
  for (const c of rows) {
    if (c.proxy !== 'carelb') continue;
    for (const a of rows) {
      if (a.table !== c.table || a.scenario !== c.scenario || a.proxy === 'carelb') continue;
      // Only pairs where both sides have numbers are worth a line; a skipped anchor is already in the table.
      if (c.rounds_ok === 0 || a.rounds_ok === 0) continue;
      if (!c.counted || !a.counted) {
        withheld.push({ table: c.table, scenario: c.scenario, anchor: a.proxy, reason: [c, a].filter((r) => !r.counted).map(why).join('; ') });
        continue;
      }
      const q = (x: number, y: number): number => (y > 0 ? x / y : 0);
      const values: Record<string, number> =
        c.table === 'capacity'
          ? { cpu_us_per_req: q(c.cpu_us_per_req, a.cpu_us_per_req), rps: q(c.rps, a.rps) }
          : { cpu_us_per_req: q(c.cpu_us_per_req, a.cpu_us_per_req), p50: q(c.p50_us, a.p50_us), p99: q(c.p99_us, a.p99_us), p99_9: q(c.p99_9_us, a.p99_9_us) };
      out.push({
        table: c.table,
        scenario: c.scenario,
        anchor: a.proxy,
        carelb_rounds: `${c.rounds_counted}/${c.rounds_ok}`,
        anchor_rounds: `${a.rounds_counted}/${a.rounds_ok}`,
        indicative: Math.min(c.rounds_counted, a.rounds_counted) < MIN_ROUNDS_FOR_HEADLINE,
        values,
      });
    }
  }
  return { ratios: out, withheld };
}
