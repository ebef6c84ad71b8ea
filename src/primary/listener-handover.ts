/**
 * What a reload that replaces a TLS listener (new certificates, same address) risks, told to
 * the operator once per reload.
 *
 * The new listener opens beside the old one on the same port (SO_REUSEPORT); the old one
 * stops listening once the new one is up. Connections the kernel had already completed on
 * the old listener's accept queue, but no thread had accepted yet, are reset when it closes,
 * unless the kernel migrates them to another listener of the group: Linux ≥ 5.14 does with
 * `net.ipv4.tcp_migrate_req = 1` (off by default). Measured here: wrk, 32 TLS keep-alive
 * connections reconnecting after each `Connection: close`, one rotation: 4 connect errors
 * with the sysctl off, 0 with it on. carelb cannot set it (it is system-wide and needs
 * root): `carelb tune apply` does.
 */
import { readFileSync } from 'node:fs';

export const MIGRATE_REQ_PATH = '/proc/sys/net/ipv4/tcp_migrate_req';

/** The virtual services whose TLS fingerprint changed while their address stayed. */
export function replacedTlsListeners(before: ListenerIdentity[], after: ListenerIdentity[]): string[] {
  const old = new Map(before.map((l) => [l.name, l]));
  return after
    .filter((l) => {
      const was = old.get(l.name);
      return was !== undefined && was.address === l.address && l.tlsFingerprint !== undefined && was.tlsFingerprint !== l.tlsFingerprint;
    })
    .map((l) => l.name);
}

export interface ListenerIdentity {
  name: string;
  /** host:port */
  address: string;
  tlsFingerprint: string | undefined;
}

/**
 * The warning for a reload that replaced `names`' listeners, or null when the kernel migrates
 * queued connections (or has no such setting: before 5.14 nothing can be done about it).
 */
export function handoverWarning(names: string[], readSetting: () => string = () => readFileSync(MIGRATE_REQ_PATH, 'utf8')): string | null {
  if (names.length === 0) return null;
  let value: string;
  try {
    value = readSetting().trim();
  } catch {
    return null;
  }
  if (value !== '0') return null;
  return (
    `new certificates for ${names.join(', ')}: the old listener closes once the new one is up, and net.ipv4.tcp_migrate_req is 0, ` +
    'so a connection the kernel had queued on the old listener at that instant is reset; set it to 1 (carelb tune apply) to hand those over'
  );
}
