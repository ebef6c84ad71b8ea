/**
 * Source-address persistence: weighted rendezvous (highest random weight) hashing over the
 * eligible servers. Each (client, server) pair gets a pseudo-random score scaled by the
 * server's weight; the client goes to the highest. When a server goes down only the clients
 * whose highest score was that server move, and they come back when it returns: the
 * "consistent hashing" the availability issue asks for, without a ring to rebuild.
 */
import { eligibleWeight, type Balancer, type ServerTable } from './types';

/** FNV-1a, 32 bit. */
export function hashText(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** murmur3's finalizer: spreads the combined bits of client and server hashes. */
function mix(a: number, b: number): number {
  let h = (a ^ Math.imul(b, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class SourceHashBalancer implements Balancer {
  private readonly serverSeeds: Uint32Array;

  /** `names`: server names, so a server keeps its clients across reloads that reorder the list. */
  constructor(
    private readonly table: ServerTable,
    names: string[],
  ) {
    this.serverSeeds = Uint32Array.from(names, (name) => hashText(name));
  }

  pick(exclude: number, client = ''): number {
    const clientHash = hashText(client);
    let best = -1;
    let bestScore = -Infinity;
    for (let local = 0; local < this.table.count; local++) {
      if (local === exclude) continue;
      const weight = eligibleWeight(this.table, local);
      if (weight === 0) continue;
      // u in (0, 1); -ln(u) is exponential: weight / -ln(u) gives each server its weighted share.
      const u = (mix(clientHash, this.serverSeeds[local]) + 0.5) / 4294967296;
      const score = weight / -Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = local;
      }
    }
    return best;
  }
}
