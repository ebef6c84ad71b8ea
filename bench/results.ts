/**
 * The shape of a bench run's results (what goes into <timestamp>.json) and the arithmetic
 * that turns per-round measurements into rows: medians, min–max spread, ratios.
 */
import type * as hdr from 'hdr-histogram-js';
import type { Scenario } from './cli-args';
import { newHistogram } from './measure';
import type { ProxyName } from './proxies/types';

export interface RoundResult {
  round: number;
  /** 1, or more when noisy windows were measured again (--noisy-retries); the least noisy is kept. */
  attempts: number;
  /** Responses completed in the window (handshake: connections that got their response). */
  requests: number;
  window_s: number;
  rps: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p99_9_us: number;
  max_us: number;
  /** Proxy utime+stime over the window ÷ requests. */
  cpu_us_per_req: number;
  /** Proxy CPU time ÷ window wall time; 100 = one CPU fully busy. Below ~95 per pinned CPU = not saturated. */
  proxy_cpu_pct: number;
  /** The harness process (load generator) and the backend, same formula: shows who was the bottleneck. */
  loadgen_cpu_pct: number;
  backend_cpu_pct: number;
  /**
   * Busy time of the proxy's pinned CPU(s) from /proc/stat (any process, softirq included)
   * ÷ requests. A cross-check of cpu_us_per_req: higher by the kernel's network work on
   * those CPUs, and by anything else that ran there.
   */
  cpuset_us_per_req: number;
  /**
   * Process time on the proxy's CPUs that was not the proxy's, ÷ window. Above a few % the
   * proxy shared its CPU with something else (another job on the machine): noisy numbers.
   */
  foreign_cpu_pct: number;
  peak_rss_kb: number;
  errors: number;
  timeouts: number;
  non_2xx: number;
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
  'proxy_cpu_pct',
  'loadgen_cpu_pct',
  'backend_cpu_pct',
  'peak_rss_kb',
] as const;
export type Metric = (typeof METRICS)[number];

export type RowStatus = 'ok' | 'unsupported' | 'unavailable' | 'failed';

export interface CurvePoint {
  percentile: number;
  latency_us: number;
}

export interface Row {
  scenario: Scenario;
  proxy: ProxyName;
  status: RowStatus;
  /** Why the row has no numbers (or fewer rounds than asked). */
  reason?: string;
  rounds_ok: number;
  /** Rounds that produced no numbers (see reason). */
  rounds_failed: number;
  /** Sum over rounds of requests completed in the window. */
  requests: number;
  /** Medians over rounds. */
  rps: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p99_9_us: number;
  cpu_us_per_req: number;
  proxy_cpu_pct: number;
  loadgen_cpu_pct: number;
  backend_cpu_pct: number;
  cpuset_us_per_req: number;
  foreign_cpu_pct: number;
  peak_rss_kb: number;
  /** Sums over rounds, warm-up included. */
  errors: number;
  timeouts: number;
  non_2xx: number;
  /** [min, max] over rounds for each median above. */
  spread: Record<Metric, [number, number]>;
  /** Latency percentile curve of all rounds' windows merged. */
  curve: CurvePoint[];
  /** The generated proxy config of the first round that started (ports and paths vary per round). */
  config?: string;
  per_round: RoundResult[];
}

export interface Ratio {
  scenario: Scenario;
  anchor: ProxyName;
  /** carelb ÷ anchor, medians. Below 1 = carelb spends less CPU per request. */
  cpu_per_req: number;
  /** carelb ÷ anchor, medians. Above 1 = carelb served more requests per second. */
  rps: number;
}

export interface BenchResults {
  meta: Record<string, unknown>;
  rows: Row[];
  ratios: Ratio[];
}

export const CURVE_PERCENTILES = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99];

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function roundResult(
  round: number,
  h: hdr.Histogram,
  m: {
    requests: number;
    windowMs: number;
    proxyCpuUs: number;
    cpusetBusyUs: number;
    cpusetTaskUs: number;
    loadgenCpuUs: number;
    backendCpuUs: number;
    peakRssKb: number;
    errors: number;
    timeouts: number;
    non2xx: number;
  },
): RoundResult {
  const windowUs = m.windowMs * 1000;
  return {
    round,
    attempts: 1,
    requests: m.requests,
    window_s: m.windowMs / 1000,
    rps: m.windowMs > 0 ? (m.requests * 1000) / m.windowMs : 0,
    p50_us: h.getValueAtPercentile(50),
    p90_us: h.getValueAtPercentile(90),
    p99_us: h.getValueAtPercentile(99),
    p99_9_us: h.getValueAtPercentile(99.9),
    max_us: h.maxValue,
    cpu_us_per_req: m.requests > 0 ? m.proxyCpuUs / m.requests : 0,
    proxy_cpu_pct: windowUs > 0 ? (100 * m.proxyCpuUs) / windowUs : 0,
    loadgen_cpu_pct: windowUs > 0 ? (100 * m.loadgenCpuUs) / windowUs : 0,
    backend_cpu_pct: windowUs > 0 ? (100 * m.backendCpuUs) / windowUs : 0,
    cpuset_us_per_req: m.requests > 0 ? m.cpusetBusyUs / m.requests : 0,
    foreign_cpu_pct: windowUs > 0 ? Math.max(0, (100 * (m.cpusetTaskUs - m.proxyCpuUs)) / windowUs) : 0,
    peak_rss_kb: m.peakRssKb,
    errors: m.errors,
    timeouts: m.timeouts,
    non_2xx: m.non2xx,
  };
}

/** Collects rounds and merged latencies for one proxy × scenario. */
export class RowBuilder {
  readonly rounds: RoundResult[] = [];
  private readonly merged = newHistogram();
  status: RowStatus = 'ok';
  reason?: string;
  config?: string;
  failedRounds = 0;

  constructor(
    readonly scenario: Scenario,
    readonly proxy: ProxyName,
  ) {}

  add(r: RoundResult, h: hdr.Histogram): void {
    // A round that failed before this one stays in `reason`, shown beside the numbers.
    if (this.status === 'failed') this.status = 'ok';
    this.rounds.push(r);
    this.merged.add(h);
  }

  /** A round that could not run; the row keeps its other rounds. The first reason is kept. */
  fail(status: Exclude<RowStatus, 'ok'>, reason: string): void {
    if (this.rounds.length === 0) this.status = status;
    this.reason ??= reason;
    this.failedRounds++;
  }

  build(): Row {
    const pick = (k: Metric): number[] => this.rounds.map((r) => r[k]);
    const spread = {} as Record<Metric, [number, number]>;
    const med = {} as Record<Metric, number>;
    for (const k of METRICS) {
      const xs = pick(k);
      med[k] = median(xs);
      spread[k] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 0];
    }
    const sum = (k: 'requests' | 'errors' | 'timeouts' | 'non_2xx'): number => this.rounds.reduce((a, r) => a + r[k], 0);
    const curve = this.merged.totalCount > 0 ? CURVE_PERCENTILES.map((p) => ({ percentile: p, latency_us: this.merged.getValueAtPercentile(p) })) : [];
    return {
      scenario: this.scenario,
      proxy: this.proxy,
      status: this.status,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      rounds_ok: this.rounds.length,
      rounds_failed: this.failedRounds,
      requests: sum('requests'),
      ...med,
      // Peak RSS: the worst round, not the median, is what capacity planning needs.
      peak_rss_kb: spread.peak_rss_kb[1],
      errors: sum('errors'),
      timeouts: sum('timeouts'),
      non_2xx: sum('non_2xx'),
      spread,
      curve,
      ...(this.config !== undefined ? { config: this.config } : {}),
      per_round: this.rounds,
    };
  }
}

export function ratios(rows: readonly Row[]): Ratio[] {
  const out: Ratio[] = [];
  for (const c of rows) {
    if (c.proxy !== 'carelb' || c.status !== 'ok' || c.rounds_ok === 0) continue;
    for (const a of rows) {
      if (a.scenario !== c.scenario || a.proxy === 'carelb' || a.status !== 'ok' || a.rounds_ok === 0) continue;
      out.push({
        scenario: c.scenario,
        anchor: a.proxy,
        cpu_per_req: a.cpu_us_per_req > 0 ? c.cpu_us_per_req / a.cpu_us_per_req : 0,
        rps: a.rps > 0 ? c.rps / a.rps : 0,
      });
    }
  }
  return out;
}
