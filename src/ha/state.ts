/**
 * The files carelb and keepalived share on a node (issue 8), all in one state directory
 * (default /var/lib/carelb/ha, `CARELB_HA_STATE_DIR` overrides it for carelb and the render):
 *
 *   <instance>.json   written by the notify script on every VRRP transition of that instance:
 *                     {"time","node","instance","state","vip","priority"} (one file per
 *                     instance, replaced atomically, so two instances never race on one file)
 *   release           "1" makes keepalived put every carelb instance in FAULT at once
 *                     (vrrp_track_file, inotify): written by `carelb ha handoff` before carelb
 *                     stops, so the address moves while carelb still serves; "0" again at start
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { HaConfig } from '../config/schema';
import { writeFileAtomic } from './atomic-write';

export const DEFAULT_STATE_DIR = '/var/lib/carelb/ha';

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CARELB_HA_STATE_DIR || DEFAULT_STATE_DIR;
}

export function releaseFile(dir: string): string {
  return join(dir, 'release');
}

export type VrrpStateName = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP' | 'unknown';

export interface InstanceState {
  instance: string;
  state: VrrpStateName | string;
  vip: string | null;
  /** ISO time of the transition, as the notify script wrote it. */
  time: string | null;
  priority: number | null;
}

export interface VrrpState {
  /** The instances' common state, "mixed" when they differ (active-active), "unknown" without state files. */
  state: string;
  instances: InstanceState[];
}

/** Reads the notify script's state files; a missing directory or unreadable file means "unknown". */
export function readVrrpState(dir: string): VrrpState {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.json')).sort();
  } catch {
    return { state: 'unknown', instances: [] };
  }
  const instances: InstanceState[] = [];
  for (const name of names) {
    try {
      const entry = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Record<string, unknown>;
      instances.push({
        instance: typeof entry.instance === 'string' ? entry.instance : name.slice(0, -5),
        state: typeof entry.state === 'string' ? entry.state : 'unknown',
        vip: typeof entry.vip === 'string' ? entry.vip : null,
        time: typeof entry.time === 'string' ? entry.time : null,
        priority: typeof entry.priority === 'number' ? entry.priority : Number.isFinite(Number(entry.priority)) ? Number(entry.priority) : null,
      });
    } catch {
      instances.push({ instance: name.slice(0, -5), state: 'unknown', vip: null, time: null, priority: null });
    }
  }
  const states = new Set(instances.map((i) => i.state));
  return { state: states.size === 0 ? 'unknown' : states.size === 1 ? [...states][0] : 'mixed', instances };
}

/** Writes the release flag ("1": give up the addresses, "0": normal), atomically (exclusive random temporary file). */
export function writeRelease(dir: string, released: boolean): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(releaseFile(dir), released ? '1\n' : '0\n', 0o644);
}

/** The VIP addresses (without prefix length) of `ha` that are on one of this host's interfaces now. */
export function heldVips(ha: HaConfig, interfaces = networkInterfaces()): string[] {
  const local = new Set<string>();
  for (const list of Object.values(interfaces)) for (const entry of list ?? []) local.add(entry.address);
  return ha.vips.map((vip) => vip.address.split('/')[0]).filter((address) => local.has(address));
}
