/**
 * Cookie persistence (issue 14; HAProxy's `cookie NAME insert indirect nocache`): a client
 * that presents the cookie of a server keeps reaching it while the server is up and not
 * halted. Drain keeps its cookie clients (that is what drain means for persistence) and so
 * does weight 0; a down or halted server's clients, and a server at max_conns, go to the
 * balancer underneath (leastconn or roundrobin), and get a new cookie.
 *
 * The cookie value names the server by an opaque token: HMAC-SHA256 of the virtual service
 * and server names under the service's secret, cut to 16 hex digits. It reveals neither the
 * server's name nor its address, and stays the same across reloads (and on both nodes of an
 * HA pair with the same secret). Pure: no I/O, no clock.
 */
import { createHmac } from 'node:crypto';
import { ADMIN_HALT, F_ADMIN, F_HEALTH, F_INFLIGHT, F_MAXCONN, HEALTH_UP, SLOT_STRIDE } from '../state/layout';
import type { Balancer, ServerTable } from './types';

/** Key when no cookie.secret_file is set: opaque, but a server name could be confirmed by guessing it. */
const DEFAULT_SECRET = 'carelb cookie persistence v1';

/** The cookie token of each server (config order). Called by the primary once per load. */
export function cookieTokens(vsName: string, serverNames: string[], secret: Uint8Array | string | undefined): string[] {
  const key = secret ?? DEFAULT_SECRET;
  return serverNames.map((name) => createHmac('sha256', key).update(`${vsName}\n${name}`).digest('hex').slice(0, 16));
}

/** Whether a server may take a persistent client now: up, not halted (drain is fine), below max_conns. */
export function keepsCookieClients(table: ServerTable, local: number): boolean {
  const at = table.members[local] * SLOT_STRIDE;
  const slots = table.slots;
  if (Atomics.load(slots, at + F_HEALTH) !== HEALTH_UP) return false;
  if (Atomics.load(slots, at + F_ADMIN) === ADMIN_HALT) return false;
  const max = slots[at + F_MAXCONN];
  return max === 0 || Atomics.load(slots, at + F_INFLIGHT) < max;
}

export class CookieBalancer implements Balancer {
  constructor(
    private readonly table: ServerTable,
    /** Picks for requests without a usable cookie. */
    private readonly inner: Balancer,
  ) {}

  /** `preferred`: the local index the request's cookie names, or -1. */
  pick(exclude: number, client?: string, preferred = -1): number {
    if (preferred >= 0 && preferred !== exclude && preferred < this.table.count && keepsCookieClients(this.table, preferred)) return preferred;
    return this.inner.pick(exclude, client);
  }
}
