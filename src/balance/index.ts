import { LeastConnBalancer } from './leastconn';
import { RoundRobinBalancer } from './roundrobin';
import { SourceHashBalancer } from './source-hash';
import { CookieBalancer } from './cookie';
import type { Balancer, ServerTable } from './types';

export type { Balancer, ServerTable } from './types';
export type BalanceKind = 'leastconn' | 'roundrobin';

export function createBalancer(kind: BalanceKind, table: ServerTable, persistence: 'none' | 'source_ip' | 'cookie' = 'none', names: string[] = []): Balancer {
  if (persistence === 'source_ip') return new SourceHashBalancer(table, names);
  const balancer = kind === 'roundrobin' ? new RoundRobinBalancer(table) : new LeastConnBalancer(table);
  return persistence === 'cookie' ? new CookieBalancer(table, balancer) : balancer;
}
