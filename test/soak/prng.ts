/**
 * A small seeded PRNG (sfc32) and the helpers the schedule draws with. Every random choice of
 * the soak comes from here, so one seed replays the same operations.
 *
 * Each operation gets its own generator, derived from (seed, stream, index): operation i is
 * the same whatever happened before it, so a request named in a report ("seed index 1234")
 * can be replayed alone with `--only 1234`.
 */

/** 32-bit integer mixing (murmur3 finaliser): spreads nearby inputs far apart. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Streams: independent sequences for the same seed. */
export const enum Stream {
  Request = 1,
  ServerSide = 2,
  Control = 3,
  Content = 4,
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0, index = 0) {
    this.a = mix32(seed ^ 0x9e3779b9);
    this.b = mix32(this.a ^ Math.imul(stream + 1, 0x27d4eb2f));
    this.c = mix32(this.b ^ Math.imul(index + 1, 0x165667b1));
    this.d = mix32(this.c ^ 0xdeadbeef);
    // Warm up: the first outputs of sfc32 from close seeds are correlated.
    for (let i = 0; i < 12; i++) this.next();
  }

  /** Uniform in [0, 2^32). */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** Integer in [low, high], both included. */
  int(low: number, high: number): number {
    return low + Math.floor(this.float() * (high - low + 1));
  }

  /** Integer in [low, high], log-uniform: small values as likely per decade as large ones. */
  logInt(low: number, high: number): number {
    const lo = Math.log(Math.max(1, low));
    const hi = Math.log(Math.max(1, high));
    return Math.min(high, Math.max(low, Math.round(Math.exp(lo + this.float() * (hi - lo)))));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)];
  }

  /** One key of `weights`, chosen in proportion to its weight (0 = never). */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let roll = this.float() * total;
    for (const [key, w] of entries) {
      if (roll < w) return key;
      roll -= w;
    }
    return entries[entries.length - 1][0];
  }
}

/** The seed: CARELB_SOAK_SEED (decimal or 0x hex, or any text, hashed), else a fresh random one. */
export function seedFrom(text: string | undefined, fallback: () => number): number {
  if (text === undefined || text.trim() === '') return fallback() >>> 0;
  const trimmed = text.trim();
  if (/^0x[0-9a-f]{1,8}$/i.test(trimmed)) return Number.parseInt(trimmed.slice(2), 16) >>> 0;
  if (/^\d{1,10}$/.test(trimmed) && Number(trimmed) <= 0xffffffff) return Number(trimmed) >>> 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < trimmed.length; i++) h = Math.imul(h ^ trimmed.charCodeAt(i), 0x01000193);
  return mix32(h);
}

export function seedText(seed: number): string {
  return `0x${seed.toString(16).padStart(8, '0')}`;
}
