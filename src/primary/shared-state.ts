/**
 * Lays out the shared state at start and (re)initialises server slots for a plan: a slot used
 * for the first time starts up, online, with its configured weight and zeroed counters; a
 * kept server's health and admin state survive (operator states persist across reloads).
 * Primary only.
 */
import type { Config } from '../config/schema';
import { ADMIN_ONLINE, createShared, F_MAXCONN, F_ADMIN, F_HEALTH, F_INFLIGHT, F_WEIGHT, HEALTH_UP, type SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { SERVER_STATS, VS_STATS } from '../state/stats';
import { ERROR_NAMES } from '../errors';

export function createSharedFor(vsCapacity: number, serverCapacity: number, threadSlots: number): SharedViews {
  return createShared({ vsCapacity, serverCapacity, threadSlots });
}

export function applyPlan(views: SharedViews, config: Config, plan: SlotPlan, freshServers: number[], freshVs: number[]): void {
  const { layout, servers, stats } = views;
  for (const slot of freshVs) {
    for (let t = 0; t < layout.shape.threadSlots; t++) {
      for (let i = 0; i < VS_STATS.length; i++) stats[layout.vsStat(t, slot, i)] = 0;
      for (let i = 0; i < ERROR_NAMES.length; i++) stats[layout.vsError(t, slot, i)] = 0;
    }
  }
  const fresh = new Set(freshServers);
  for (const slot of fresh) {
    Atomics.store(servers, layout.serverField(slot, F_HEALTH), HEALTH_UP);
    Atomics.store(servers, layout.serverField(slot, F_ADMIN), ADMIN_ONLINE);
    Atomics.store(servers, layout.serverField(slot, F_INFLIGHT), 0);
    for (let t = 0; t < layout.shape.threadSlots; t++) {
      for (let i = 0; i < SERVER_STATS.length; i++) stats[layout.serverStat(t, slot, i)] = 0;
    }
  }
  config.virtual_services.forEach((vs, v) => {
    vs.servers.forEach((server, s) => {
      Atomics.store(servers, layout.serverField(plan.vs[v].servers[s], F_WEIGHT), server.weight);
      Atomics.store(servers, layout.serverField(plan.vs[v].servers[s], F_MAXCONN), server.max_conns);
    });
    const fallback = plan.vs[v].fallbackSlot;
    if (fallback !== undefined) Atomics.store(servers, layout.serverField(fallback, F_WEIGHT), 1);
  });
}
