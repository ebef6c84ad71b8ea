/**
 * Who may send a request to a virtual service, decided before anything is forwarded: the
 * client address (the TCP peer, or what a trusted proxy says), allow/deny lists, the per-client
 * rate limit shared by all threads. Built once per config in each thread.
 */
import { BlockList, isIP } from 'node:net';
import type { VirtualServiceConfig } from '../config/schema';
import { hashText } from '../balance/source-hash';
import { RateTable, type RateRule } from '../state/rate-table';

function blockList(cidrs: string[]): BlockList | null {
  if (cidrs.length === 0) return null;
  const list = new BlockList();
  for (const entry of cidrs) {
    const [address, bits] = entry.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

function contains(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

export class Admission {
  private readonly allow: BlockList | null;
  private readonly deny: BlockList | null;
  private readonly trusted: BlockList | null;
  private readonly rule: RateRule | null;
  /** Mixed into rate-limit keys so services keep separate buckets for the same client. */
  private readonly keySalt: string;

  constructor(
    config: VirtualServiceConfig,
    private readonly rates: RateTable | null,
  ) {
    this.allow = blockList(config.allow);
    this.deny = blockList(config.deny);
    this.trusted = blockList(config.trusted_proxies);
    const limit = config.rate_limit;
    this.rule = limit ? { perMs: limit.requests / limit.per, burst: limit.burst ?? limit.requests } : null;
    this.keySalt = `${config.name}|`;
  }

  /** Whether `peer` is a trusted proxy: its PROXY-protocol address and X-Forwarded-For are believed. */
  trusts(peer: string): boolean {
    return this.trusted !== null && contains(this.trusted, peer);
  }

  /** Whether the client may use the service at all (deny first, then allow when an allow list exists). */
  admits(client: string): boolean {
    if (this.deny !== null && contains(this.deny, client)) return false;
    return this.allow === null || contains(this.allow, client);
  }

  /** 0 when the client is within its rate, else milliseconds until it may send again. */
  rateWait(client: string): number {
    if (this.rule === null || this.rates === null) return 0;
    return this.rates.take(hashText(this.keySalt + client), this.rule);
  }
}
