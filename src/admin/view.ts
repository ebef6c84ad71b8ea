/**
 * The JSON the admin API returns (`GET /api/status`, a server after a state change): built
 * from an AdminContext snapshot, so the dashboard, `carelb ctl` and scripts read one shape.
 * Pure: reads the context, mutates nothing.
 */
import type { AdminContext, LastCheck, LatencySummary } from './context';
import { ERRORS, type ErrorName } from '../errors';
import type { ServerStatus, ServiceStatus } from '../primary/status';
import type { ServerStat, VsStat } from '../state/stats';

export interface ServerView {
  name: string;
  /** Its pool, with content switching (issue 14). */
  pool?: string;
  address: string;
  weight: number;
  health: 'up' | 'down';
  admin: 'online' | 'drain' | 'halt';
  /** In-flight requests. */
  active: number;
  requests: number;
  /** Requests that failed at this server (`failures` counter). */
  errors: number;
  last_check: LastCheck | null;
  latency_ms: LatencySummary | null;
  counters: Record<ServerStat, number>;
}

export interface ServiceView {
  name: string;
  listen: string;
  tls: boolean;
  balance: string;
  active: number;
  requests: number;
  counters: Record<VsStat, number>;
  /** Errors carelb answered itself, by stable code (`CLB_NO_SERVER`, ...). */
  errors: Record<string, number>;
  latency_ms: LatencySummary | null;
  servers: ServerView[];
}

export interface StatusView {
  /** Both nodes of the HA pair (config hashes for drift, VRRP state), or null. */
  ha: { self: unknown; peer: unknown } | null;
  version: string;
  /** ISO time of this snapshot. */
  time: string;
  uptime_s: number;
  workers: number;
  config_hash: string;
  thread_restarts: number;
  /** Request-path invariant violations by kind; every count is 0 unless carelb has a bug. */
  invariants: Record<string, number>;
  virtual_services: ServiceView[];
}

export function serverView(ctx: AdminContext, vs: string, server: ServerStatus): ServerView {
  return {
    name: server.name,
    ...(server.pool === undefined ? {} : { pool: server.pool }),
    address: server.address,
    weight: server.weight,
    health: server.health,
    admin: server.admin,
    active: server.active,
    requests: server.counters.requests,
    errors: server.counters.failures,
    last_check: ctx.lastCheck(vs, server.name),
    latency_ms: ctx.latency(vs, server.name),
    counters: { ...server.counters },
  };
}

/** Whether a virtual service terminates TLS: the `tls` key of its config (absent: plain HTTP). */
function hasTls(ctx: AdminContext, vs: string): boolean {
  const config = ctx.config().virtual_services.find((v) => v.name === vs) as Record<string, unknown> | undefined;
  return config !== undefined && config.tls !== undefined && config.tls !== null && config.tls !== false;
}

export function errorsByCode(service: ServiceStatus): Record<string, number> {
  return Object.fromEntries(Object.entries(service.errors).map(([name, count]) => [ERRORS[name as ErrorName]?.code ?? name, count]));
}

export function statusView(ctx: AdminContext, now = Date.now()): StatusView {
  return {
    version: ctx.version,
    time: new Date(now).toISOString(),
    uptime_s: Math.max(0, Math.floor((now - ctx.startedAt) / 1000)),
    workers: ctx.workers,
    config_hash: ctx.configHash(),
    thread_restarts: ctx.threadRestarts(),
    invariants: ctx.invariants(),
    ha: ctx.ha(),
    virtual_services: ctx.status().map((service) => ({
      name: service.name,
      listen: service.listen,
      tls: hasTls(ctx, service.name),
      balance: service.balance,
      ...(service.pools === undefined ? {} : { pools: service.pools }),
      active: service.servers.reduce((sum, s) => sum + s.active, 0),
      requests: service.counters.requests,
      counters: { ...service.counters },
      errors: errorsByCode(service),
      latency_ms: ctx.latency(service.name, null),
      servers: service.servers.map((server) => serverView(ctx, service.name, server)),
    })),
  };
}
