/**
 * A snapshot of shared state for reporting (tests now, the admin API and metrics later):
 * per virtual service and server, the live slot fields and the counters summed over threads.
 * Reads only; called in the primary.
 */
import type { Config } from '../config/schema';
import { ERROR_NAMES } from '../errors';
import { ADMIN_DRAIN, ADMIN_HALT, F_ADMIN, F_HEALTH, F_INFLIGHT, F_WEIGHT, HEALTH_UP, sumOverThreads, type SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { SERVER_STATS, VS_STATS, type ServerStat, type VsStat } from '../state/stats';
import { INVARIANT_KINDS, type InvariantKind } from '../state/invariants';

export interface ServerStatus {
  name: string;
  /** Its pool, with content switching (issue 14); absent otherwise. */
  pool?: string;
  address: string;
  weight: number;
  health: 'up' | 'down';
  admin: 'online' | 'drain' | 'halt';
  active: number;
  counters: Record<ServerStat, number>;
}

export interface ServiceStatus {
  name: string;
  listen: string;
  balance: string;
  /** Content switching: each pool's name, balance and servers (names), in config order; absent without pools. */
  pools?: { name: string; balance: string; servers: string[] }[];
  counters: Record<VsStat, number>;
  errors: Record<string, number>;
  servers: ServerStatus[];
}

export function snapshot(config: Config, plan: SlotPlan, shared: SharedViews): ServiceStatus[] {
  const { layout, servers } = shared;
  return config.virtual_services.map((vs, v) => ({
    name: vs.name,
    listen: `${vs.listen.host}:${vs.listen.port}`,
    balance: vs.balance,
    ...(vs.pools === undefined ? {} : { pools: vs.pools.map((p) => ({ name: p.name, balance: p.balance, servers: vs.servers.filter((s) => s.pool === p.name).map((s) => s.name) })) }),
    counters: Object.fromEntries(VS_STATS.map((stat, i) => [stat, sumOverThreads(shared, (t) => layout.vsStat(t, plan.vs[v].slot, i))])) as Record<VsStat, number>,
    errors: Object.fromEntries(ERROR_NAMES.map((name, i) => [name, sumOverThreads(shared, (t) => layout.vsError(t, plan.vs[v].slot, i))])),
    servers: vs.servers.map((server, s) => {
      const global = plan.vs[v].servers[s];
      const admin = Atomics.load(servers, layout.serverField(global, F_ADMIN));
      return {
        name: server.name,
        ...(server.pool === undefined ? {} : { pool: server.pool }),
        address: `${server.address.host}:${server.address.port}`,
        weight: Atomics.load(servers, layout.serverField(global, F_WEIGHT)),
        health: Atomics.load(servers, layout.serverField(global, F_HEALTH)) === HEALTH_UP ? 'up' : 'down',
        admin: admin === ADMIN_HALT ? 'halt' : admin === ADMIN_DRAIN ? 'drain' : 'online',
        active: Atomics.load(servers, layout.serverField(global, F_INFLIGHT)),
        counters: Object.fromEntries(SERVER_STATS.map((stat, i) => [stat, sumOverThreads(shared, (t) => layout.serverStat(t, global, i))])) as Record<ServerStat, number>,
      };
    }),
  }));
}

/** Invariant violations by kind, summed over threads (every count should be 0). */
export function invariantCounts(shared: SharedViews): Record<InvariantKind, number> {
  return Object.fromEntries(INVARIANT_KINDS.map((kind, i) => [kind, sumOverThreads(shared, (t) => shared.layout.invariant(t, i))])) as Record<InvariantKind, number>;
}
