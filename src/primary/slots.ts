/**
 * Stable shared-memory slots for virtual services and servers, keyed by name. A server keeps
 * its slot (and so its counters and state) across reloads for as long as it stays in the
 * config; the slot of a removed one is reused last, after every never-used slot.
 * Primary only.
 */
import type { Config } from '../config/schema';
import type { SlotPlan } from '../state/plan';

class Slots {
  private readonly byKey = new Map<string, number>();
  private readonly free: number[];

  constructor(readonly capacity: number) {
    this.free = Array.from({ length: capacity }, (_v, i) => i);
  }

  /** Slots for `keys`, keeping existing ones; null if there are not enough free slots. */
  assign(keys: string[]): { slots: number[]; fresh: number[] } | null {
    const wanted = new Set(keys);
    const released = [...this.byKey.keys()].filter((key) => !wanted.has(key));
    const needed = keys.filter((key) => !this.byKey.has(key)).length;
    if (needed > this.free.length + released.length) return null;
    for (const key of released) {
      this.free.push(this.byKey.get(key)!);
      this.byKey.delete(key);
    }
    const fresh: number[] = [];
    const slots = keys.map((key) => {
      let slot = this.byKey.get(key);
      if (slot === undefined) {
        slot = this.free.shift()!;
        this.byKey.set(key, slot);
        fresh.push(slot);
      }
      return slot;
    });
    return { slots, fresh };
  }
}

export class SlotAllocator {
  private readonly vs: Slots;
  private readonly servers: Slots;

  constructor(
    readonly vsCapacity: number,
    readonly serverCapacity: number,
  ) {
    this.vs = new Slots(vsCapacity);
    this.servers = new Slots(serverCapacity);
  }

  /** Capacities for a first config: room to grow on reload. */
  static forConfig(config: Config): SlotAllocator {
    const servers = config.virtual_services.reduce((n, vs) => n + vs.servers.length, 0);
    return new SlotAllocator(Math.max(64, config.virtual_services.length * 4), Math.max(1024, servers * 4));
  }

  /**
   * The plan for `config`, and the server slots it uses for the first time (to be reset), or
   * an error when the config needs more slots than carelb was started with.
   */
  plan(config: Config): { plan: SlotPlan; freshServers: number[]; freshVs: number[] } | { error: string } {
    const vs = this.vs.assign(config.virtual_services.map((v) => v.name));
    if (!vs) return { error: `more than ${this.vsCapacity} virtual services: restart carelb to grow` };
    const hasFallbackServer = (v: Config['virtual_services'][number]) => Boolean(v.fallback && 'server' in v.fallback);
    const serverKeys = config.virtual_services.flatMap((v) => [...v.servers.map((s) => `${v.name}/${s.name}`), ...(hasFallbackServer(v) ? [`${v.name}/#fallback`] : [])]);
    const servers = this.servers.assign(serverKeys);
    if (!servers) return { error: `more than ${this.serverCapacity} servers: restart carelb to grow` };
    let at = 0;
    const plan: SlotPlan = {
      vs: config.virtual_services.map((v, i) => ({
        slot: vs.slots[i],
        servers: v.servers.map(() => servers.slots[at++]),
        ...(hasFallbackServer(v) ? { fallbackSlot: servers.slots[at++] } : {}),
      })),
    };
    return { plan, freshServers: servers.fresh, freshVs: vs.fresh };
  }
}
