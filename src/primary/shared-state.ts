/**
 * Lays out the shared state for a config and sets each server's initial slot: up, online,
 * configured weight. Called by the primary only.
 */
import type { Config } from '../config/schema';
import { ADMIN_ONLINE, createShared, F_ADMIN, F_HEALTH, F_WEIGHT, HEALTH_UP, type SharedViews } from '../state/layout';

export function layoutFor(config: Config, threadSlots: number): SharedViews {
  const views = createShared({ serversPerVs: config.virtual_services.map((vs) => vs.servers.length), threadSlots });
  config.virtual_services.forEach((vs, v) => {
    vs.servers.forEach((server, s) => {
      const global = views.layout.vsServerBase[v] + s;
      Atomics.store(views.servers, views.layout.serverField(global, F_HEALTH), HEALTH_UP);
      Atomics.store(views.servers, views.layout.serverField(global, F_ADMIN), ADMIN_ONLINE);
      Atomics.store(views.servers, views.layout.serverField(global, F_WEIGHT), server.weight);
    });
  });
  return views;
}
