import { LeastConnBalancer } from './leastconn';
import { RoundRobinBalancer } from './roundrobin';
import { SourceHashBalancer } from './source-hash';
import type { Balancer, ServerTable } from './types';

export type { Balancer, ServerTable } from './types';
export type BalanceKind = 'leastconn' | 'roundrobin';

export function createBalancer(kind: BalanceKind, table: ServerTable, persistence: 'none' | 'source_ip' = 'none', names: string[] = []): Balancer {
  if (persistence === 'source_ip') return new SourceHashBalancer(table, names);
  return kind === 'roundrobin' ? new RoundRobinBalancer(table) : new LeastConnBalancer(table);
}
