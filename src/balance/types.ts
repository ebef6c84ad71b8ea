/**
 * One balancer interface (HAProxy's lb_* hooks idea): the mechanism (eligibility, shared
 * table access) is here, each algorithm supplies only its pick. Pure: no I/O, no clock; the
 * only state is what the caller passes in or what the balancer object keeps per thread.
 */
import { ADMIN_ONLINE, F_ADMIN, F_HEALTH, F_INFLIGHT, F_MAXCONN, F_WEIGHT, HEALTH_UP, SLOT_STRIDE } from '../state/layout';

/** The servers of one virtual service inside the shared Int32 slot table. */
export interface ServerTable {
  readonly slots: Int32Array;
  /** Shared slot index of each server, by its local index (config order). */
  readonly members: Int32Array;
  readonly count: number;
}

export interface Balancer {
  /**
   * Returns the local index (0..count-1) of the server for the next request, or -1 when no
   * server may take it. `exclude` is a local index to skip (a server that just failed), or -1.
   * `preferred`: the server a persistence cookie names (-1: none); only cookie persistence reads it.
   */
  pick(exclude: number, client?: string, preferred?: number): number;
}

/** Weight of a server if it may take a new request now, else 0. */
export function eligibleWeight(table: ServerTable, local: number): number {
  const at = table.members[local] * SLOT_STRIDE;
  const slots = table.slots;
  if (Atomics.load(slots, at + F_HEALTH) !== HEALTH_UP) return 0;
  if (Atomics.load(slots, at + F_ADMIN) !== ADMIN_ONLINE) return 0;
  const max = slots[at + F_MAXCONN];
  if (max !== 0 && Atomics.load(slots, at + F_INFLIGHT) >= max) return 0;
  return Atomics.load(slots, at + F_WEIGHT);
}
