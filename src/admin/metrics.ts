/**
 * `GET /metrics`: Prometheus text exposition format 0.0.4, every name prefixed `carelb_`.
 * Counter families are generated from the stat lists in state/stats.ts and the error catalogue
 * in errors.ts (declared once), so a new counter appears here without editing this file; only
 * its HELP text is added below (the compiler insists). Runs in the primary; reads a snapshot.
 *
 * Families, per virtual service (`vs`) and per server (`vs`, `server`):
 *   carelb_requests_total, carelb_responses_total{class}, carelb_client_aborts_total,
 *   carelb_bytes_in_total, carelb_bytes_out_total, carelb_errors_total{code}, carelb_in_flight,
 *   carelb_request_duration_seconds (summary: quantile 0.5/0.9/0.99/0.999 over the last 60 s;
 *     _sum and _count since start, so they only go up, as Prometheus requires of a summary)
 *   carelb_request_latency_seconds (histogram: cumulative buckets since start, _sum, _count)
 *   carelb_server_<same counters>, carelb_server_failures_total, carelb_server_retries_total,
 *   carelb_server_connect_failures_total, carelb_server_in_flight, carelb_server_weight,
 *   carelb_server_up, carelb_server_admin_state{state}, carelb_server_check_success,
 *   carelb_server_check_duration_seconds, carelb_server_request_duration_seconds
 * and carelb_build_info{version}, carelb_start_time_seconds, carelb_workers,
 * carelb_thread_restarts_total, carelb_admin_unauthorized_total, carelb_admin_forbidden_total,
 * and carelb_certificate_expiry_timestamp_seconds{name,virtual_service} (issue 14: one sample
 * per certificate and virtual service using it; virtual_service="" for one used by none, such
 * as a stored certificate not yet assigned or the admin API's own),
 * carelb_ha_peer_up, carelb_ha_config_in_sync (with `ha:` only).
 */
import type { LatencyBuckets } from '../observe/latency';
import type { AdminContext, AdminState, LatencySummary } from './context';
import { ERRORS, type ErrorName } from '../errors';
import { SERVER_STATS, VS_STATS, type ServerStat, type VsStat } from '../state/stats';
import { certificateInventory } from '../certs/inventory';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;
type Sample = { suffix?: string; labels: Labels; value: number };
type MetricType = 'counter' | 'gauge' | 'summary' | 'histogram';

/** Status-class counters (`responses_2xx`) become one family with a `class` label. */
type ClassStat = `responses_${string}`;
const CLASS_STAT = /^responses_(\dxx)$/;

const VS_HELP: Record<Exclude<VsStat, ClassStat>, string> & { responses: string } = {
  requests: 'Requests received by the virtual service.',
  responses: 'Responses sent to clients by status class, carelb error responses included.',
  client_aborts: 'Requests whose client went away before the response was complete.',
  bytes_in: 'Request body bytes received from clients.',
  bytes_out: 'Response body bytes sent to clients.',
};

const SERVER_HELP: Record<Exclude<ServerStat, ClassStat>, string> & { responses: string } = {
  requests: 'Requests forwarded to the server.',
  responses: 'Responses received from the server by status class.',
  failures: 'Requests that failed at the server (no valid response).',
  retries: 'Requests retried on another server after failing at this one.',
  connect_failures: 'Connections to the server that could not be opened.',
  bytes_in: 'Request body bytes sent to the server.',
  bytes_out: 'Response body bytes received from the server.',
};

const ADMIN_STATES: readonly AdminState[] = ['online', 'drain', 'halt'];
const QUANTILES: readonly [string, keyof LatencySummary][] = [
  ['0.5', 'p50'],
  ['0.9', 'p90'],
  ['0.99', 'p99'],
  ['0.999', 'p999'],
];

/** Label value escaping of the text format: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** Collects samples by family so each family is written once, with its HELP and TYPE first. */
class Exposition {
  private readonly families = new Map<string, { type: MetricType; help: string; samples: Sample[] }>();

  add(name: string, type: MetricType, help: string, labels: Labels, value: number, suffix?: string): void {
    let family = this.families.get(name);
    if (!family) this.families.set(name, (family = { type, help, samples: [] }));
    family.samples.push({ labels, value, suffix });
  }

  /** Declares a family with no samples yet (so HELP/TYPE appear even when nothing is configured). */
  declare(name: string, type: MetricType, help: string): void {
    if (!this.families.has(name)) this.families.set(name, { type, help, samples: [] });
  }

  text(): string {
    const out: string[] = [];
    for (const [name, family] of this.families) {
      out.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`);
      for (const sample of family.samples) {
        const labels = Object.entries(sample.labels)
          .map(([key, value]) => `${key}="${escapeLabelValue(value)}"`)
          .join(',');
        out.push(`${name}${sample.suffix ?? ''}${labels ? `{${labels}}` : ''} ${formatValue(sample.value)}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}

/** Adds one sample per stat of a counter list; `responses_Nxx` stats go into one family with a class label. */
function addCounters(x: Exposition, prefix: string, stats: readonly string[], help: Record<string, string>, counters: Record<string, number>, labels: Labels): void {
  for (const stat of stats) {
    const klass = CLASS_STAT.exec(stat);
    if (klass) x.add(`${prefix}responses_total`, 'counter', help.responses, { ...labels, class: klass[1] }, counters[stat]);
    else x.add(`${prefix}${stat}_total`, 'counter', help[stat], labels, counters[stat]);
  }
}

/**
 * A summary as Prometheus's own client libraries write one (client_golang's MaxAge): the
 * quantiles describe a sliding window (the last 60 s), while `_sum` and `_count` come from the
 * cumulative histogram and only go up, so `rate(x_sum) / rate(x_count)` is a true mean and a
 * quiet minute never looks like a counter reset. Quantiles are NaN when the window is empty,
 * as client_golang writes them. Without any data at all the family is declared, not sampled.
 */
function addLatency(x: Exposition, name: string, help: string, labels: Labels, latency: LatencySummary | null, total: LatencyBuckets | null): void {
  if (!total) return x.declare(name, 'summary', help);
  for (const [quantile, key] of QUANTILES) x.add(name, 'summary', help, { ...labels, quantile }, latency ? latency[key] / 1000 : NaN);
  x.add(name, 'summary', help, labels, total.sum, '_sum');
  x.add(name, 'summary', help, labels, total.count, '_count');
}

/** A cumulative histogram family from merged thread histograms (bucket bounds in seconds). */
function addBuckets(x: Exposition, name: string, help: string, labels: Labels, buckets: LatencyBuckets | null): void {
  if (!buckets) return x.declare(name, 'histogram', help);
  buckets.bounds.forEach((bound, i) => x.add(name, 'histogram', help, { ...labels, le: String(bound) }, buckets.counts[i], '_bucket'));
  x.add(name, 'histogram', help, { ...labels, le: '+Inf' }, buckets.count, '_bucket');
  x.add(name, 'histogram', help, labels, buckets.sum, '_sum');
  x.add(name, 'histogram', help, labels, buckets.count, '_count');
}

/**
 * The HA pair, from the primary's cached view of the peer (refreshed every 5 s): whether the
 * peer's admin API answered, and whether both nodes run the same shared config (the hash
 * without the node-local blocks, on which drift is judged). No sample where nothing is known:
 * without `ha:`, and for the hashes while the peer is unreachable or a file changed unloaded.
 */
function addHa(x: Exposition, ctx: AdminContext): void {
  const upHelp = "HA pair: 1 when the peer's admin API answered the last status query (every 5 s), 0 when it did not.";
  const syncHelp = "HA pair: 1 when this node and the peer run the same shared config (hash without the node-local blocks), 0 when they differ.";
  x.declare('carelb_ha_peer_up', 'gauge', upHelp);
  x.declare('carelb_ha_config_in_sync', 'gauge', syncHelp);
  const pair = ctx.ha() as { self: { shared_hash?: string | null }; peer: { shared_hash?: string | null; error?: string } | null } | null;
  if (!pair || pair.peer === null) return;
  const answered = pair.peer.error === undefined;
  x.add('carelb_ha_peer_up', 'gauge', upHelp, {}, answered ? 1 : 0);
  const mine = pair.self.shared_hash;
  const theirs = answered ? pair.peer.shared_hash : null;
  if (mine && theirs) x.add('carelb_ha_config_in_sync', 'gauge', syncHelp, {}, mine === theirs ? 1 : 0);
}

export interface MetricsExtras {
  /** Requests refused by the admin server for a missing or wrong token. */
  unauthorized: number;
  /** Requests refused because the token's role does not allow them. */
  forbidden: number;
}

export function renderMetrics(ctx: AdminContext, extras: MetricsExtras): string {
  const x = new Exposition();
  x.add('carelb_build_info', 'gauge', 'Always 1; the running carelb version as a label.', { version: ctx.version }, 1);
  x.add('carelb_start_time_seconds', 'gauge', 'Start time of carelb, seconds since the Unix epoch.', {}, Math.floor(ctx.startedAt / 1000));
  x.add('carelb_workers', 'gauge', 'Data-plane threads.', {}, ctx.workers);
  x.add('carelb_thread_restarts_total', 'counter', 'Data-plane threads replaced after dying.', {}, ctx.threadRestarts());
  for (const [kind, count] of Object.entries(ctx.invariants())) {
    x.add('carelb_invariant_violations_total', 'counter', 'Request-path invariant violations caught by the threads, by kind (0 unless carelb has a bug).', { kind }, count);
  }
  x.add('carelb_admin_unauthorized_total', 'counter', 'Admin requests refused for a missing or wrong token.', {}, extras.unauthorized);
  x.add('carelb_admin_forbidden_total', 'counter', "Admin requests refused because the token's role does not allow them.", {}, extras.forbidden);
  addHa(x, ctx);

  const services = ctx.status();
  // One pass per family group keeps each family contiguous whatever the number of services.
  for (const service of services) {
    const labels = { vs: service.name };
    addCounters(x, 'carelb_', VS_STATS, VS_HELP, service.counters, labels);
    for (const [name, count] of Object.entries(service.errors)) {
      x.add('carelb_errors_total', 'counter', 'Errors carelb answered itself, by stable error code (x-carelb-error).', { ...labels, code: ERRORS[name as ErrorName]?.code ?? name }, count);
    }
    x.add('carelb_in_flight', 'gauge', 'Requests in flight to the servers of the virtual service.', labels, service.servers.reduce((sum, s) => sum + s.active, 0));
  }
  for (const service of services) {
    addLatency(x, 'carelb_request_duration_seconds', 'Request duration seen by clients (summary of the merged thread histograms).', { vs: service.name }, ctx.latency(service.name, null), ctx.latencyBuckets(service.name, null));
    addBuckets(x, 'carelb_request_latency_seconds', 'Request duration since start, as histogram buckets from the merged thread histograms.', { vs: service.name }, ctx.latencyBuckets(service.name, null));
  }

  for (const service of services) {
    for (const server of service.servers) {
      addCounters(x, 'carelb_server_', SERVER_STATS, SERVER_HELP, server.counters, serverLabels(service.name, server));
    }
  }
  for (const service of services) {
    for (const server of service.servers) {
      const labels = serverLabels(service.name, server);
      x.add('carelb_server_in_flight', 'gauge', 'Requests in flight to the server.', labels, server.active);
      x.add('carelb_server_weight', 'gauge', 'Configured weight of the server.', labels, server.weight);
      x.add('carelb_server_up', 'gauge', 'Health of the server: 1 up, 0 down.', labels, server.health === 'up' ? 1 : 0);
      for (const state of ADMIN_STATES) {
        x.add('carelb_server_admin_state', 'gauge', 'Admin state of the server: 1 for the current state.', { ...labels, state }, server.admin === state ? 1 : 0);
      }
    }
  }
  x.declare('carelb_server_check_success', 'gauge', 'Result of the last active health check: 1 pass, 0 fail.');
  x.declare('carelb_server_check_duration_seconds', 'gauge', 'Duration of the last active health check.');
  for (const service of services) {
    for (const server of service.servers) {
      const check = ctx.lastCheck(service.name, server.name);
      if (!check) continue;
      const labels = serverLabels(service.name, server);
      x.add('carelb_server_check_success', 'gauge', '', labels, check.result === 'pass' ? 1 : 0);
      x.add('carelb_server_check_duration_seconds', 'gauge', '', labels, check.duration_ms / 1000);
    }
  }
  for (const service of services) {
    for (const server of service.servers) {
      addLatency(x, 'carelb_server_request_duration_seconds', 'Request duration at the server (summary of the merged thread histograms).', serverLabels(service.name, server), ctx.latency(service.name, server.name), ctx.latencyBuckets(service.name, server.name));
    }
  }
  addCertificates(x, ctx);
  return x.text();
}

/** notAfter of every certificate in the inventory, so alerting can say "expires within N days" itself. */
function addCertificates(x: Exposition, ctx: AdminContext): void {
  const name = 'carelb_certificate_expiry_timestamp_seconds';
  const help = 'End of validity (notAfter) of a certificate, seconds since the Unix epoch, per virtual service using it.';
  x.declare(name, 'gauge', help);
  for (const entry of certificateInventory(ctx.config())) {
    const value = Date.parse(entry.not_after) / 1000;
    if (entry.virtual_services.length === 0) x.add(name, 'gauge', help, { name: entry.name, virtual_service: '' }, value);
    for (const vs of entry.virtual_services) x.add(name, 'gauge', help, { name: entry.name, virtual_service: vs }, value);
  }
}

/** Labels of a server's series: vs and server, and its pool with content switching (issue 14). */
function serverLabels(vs: string, server: { name: string; pool?: string }): Record<string, string> {
  return server.pool === undefined ? { vs, server: server.name } : { vs, pool: server.pool, server: server.name };
}
