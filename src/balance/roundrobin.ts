/**
 * Smooth weighted round-robin (the algorithm NGINX uses): each pick adds every eligible
 * server's weight to its running score, takes the highest, and subtracts the total from it.
 * Weights 1:3 give the sequence b,b,a,b rather than a,b,b,b, so load is spread evenly in
 * time. State is per thread; every thread keeps the same proportions, so the sum does too.
 */
import { eligibleWeight, type Balancer, type ServerTable } from './types';

export class RoundRobinBalancer implements Balancer {
  private readonly scores: Float64Array;

  constructor(private readonly table: ServerTable) {
    this.scores = new Float64Array(table.count);
  }

  pick(exclude: number): number {
    const scores = this.scores;
    let total = 0;
    let best = -1;
    for (let local = 0; local < this.table.count; local++) {
      const weight = local === exclude ? 0 : eligibleWeight(this.table, local);
      if (weight === 0) {
        scores[local] = 0;
        continue;
      }
      scores[local] += weight;
      total += weight;
      if (best === -1 || scores[local] > scores[best]) best = local;
    }
    if (best !== -1) scores[best] -= total;
    return best;
  }
}
