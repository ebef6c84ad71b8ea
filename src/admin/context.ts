/**
 * What the admin API, dashboard, metrics and `carelb ctl` may see and do, provided by the
 * primary (primary/run.ts builds it from the running instance). The admin side never touches
 * threads or shared memory directly.
 */
import type { Config } from '../config/schema';
import type { ServerStatus, ServiceStatus } from '../primary/status';
import type { LatencyBuckets } from '../observe/latency';
import type { Transition } from '../observe/transitions';
import type { HistoryView } from '../primary/history-sampler';

export type AdminState = 'online' | 'drain' | 'halt';

export interface LastCheck {
  /** ISO time of the check. */
  time: string;
  result: 'pass' | 'fail';
  /** "HTTP 200", "timeout after 1s", "connection refused", ... */
  reason: string;
  duration_ms: number;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  count: number;
}

export type ReloadResult = { ok: true; config_hash: string } | { ok: false; errors: string[] };

export interface AdminContext {
  readonly version: string;
  readonly startedAt: number;
  readonly workers: number;
  config(): Config;
  /** sha256 of the config file text that is running. */
  configHash(): string;
  status(): ServiceStatus[];
  /** Last active health check of a server, or null when it has none (yet). */
  lastCheck(vs: string, server: string): LastCheck | null;
  /** Request latency percentiles in ms (per server, or per virtual service when server is null). */
  latency(vs: string, server: string | null): LatencySummary | null;
  /** Cumulative latency buckets since start (for the metrics histogram), or null without data. */
  latencyBuckets(vs: string, server: string | null): LatencyBuckets | null;
  /** Changes a server's admin state; null for unknown names. Kept across reloads. `by` says who, for the event list. */
  setAdminState(vs: string, server: string, state: AdminState, by?: string): ServerStatus | null;
  /** The newest `windowS` seconds of 1 s samples per virtual service and server (issue 15). */
  history(windowS: number): HistoryView;
  /** The last health and admin transitions of servers, oldest first. */
  transitions(): Transition[];
  /** Re-reads and applies the config file; the running config is kept when it is invalid. */
  reload(source: string): Promise<ReloadResult>;
  threadRestarts(): number;
  /** Request-path invariant violations by kind (state/invariants.ts); all 0 unless carelb has a bug. */
  invariants(): Record<string, number>;
  /** The HA pair: this node and the peer (cached, refreshed every few seconds); null without `ha:`. */
  ha(): { self: unknown; peer: unknown } | null;
}
