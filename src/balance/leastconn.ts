/**
 * Weighted least-connections: the eligible server with the lowest (in-flight + 1) / weight,
 * in-flight counted across ALL threads from the shared table. Ties are rotated: the scan
 * starts one server further on each pick and only a strictly better score replaces the
 * current best, so equal servers take turns.
 */
import { F_INFLIGHT, SLOT_STRIDE } from '../state/layout';
import { eligibleWeight, type Balancer, type ServerTable } from './types';

export class LeastConnBalancer implements Balancer {
  private rotation = 0;

  constructor(private readonly table: ServerTable) {}

  pick(exclude: number): number {
    const { slots, members, count } = this.table;
    const start = this.rotation++ % count;
    if (this.rotation >= 0x3fffffff) this.rotation = 0;
    let best = -1;
    let bestLoad = 0;
    let bestWeight = 1;
    for (let step = 0; step < count; step++) {
      let local = start + step;
      if (local >= count) local -= count;
      if (local === exclude) continue;
      const weight = eligibleWeight(this.table, local);
      if (weight === 0) continue;
      const load = Atomics.load(slots, members[local] * SLOT_STRIDE + F_INFLIGHT) + 1;
      // load/weight < bestLoad/bestWeight, compared without division.
      if (best === -1 || load * bestWeight < bestLoad * weight) {
        best = local;
        bestLoad = load;
        bestWeight = weight;
      }
    }
    return best;
  }
}
