import { LeastConnBalancer } from './leastconn';
import { RoundRobinBalancer } from './roundrobin';
import type { Balancer, ServerTable } from './types';

export type { Balancer, ServerTable } from './types';
export type BalanceKind = 'leastconn' | 'roundrobin';

export function createBalancer(kind: BalanceKind, table: ServerTable): Balancer {
  return kind === 'roundrobin' ? new RoundRobinBalancer(table) : new LeastConnBalancer(table);
}
