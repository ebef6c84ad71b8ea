/**
 * Per-client token buckets shared by every thread, for `rate_limit`.
 *
 * A fixed-size open-addressing table in its own SharedArrayBuffer, so its memory is bounded
 * whatever the number of client addresses: a flood of distinct sources only evicts entries
 * (the least recently used of the probed ones), it cannot grow the table. Each entry is
 * guarded by a tiny spin lock (Atomics.compareExchange) held for a few instructions, so two
 * threads never lose an update to the same client's bucket.
 *
 * Entry (Int32 × 4): lock, key hash (0 = empty), tokens in thousandths, last refill time
 * (ms since the table's epoch).
 */

const FIELDS = 4;
const LOCK = 0;
const KEY = 1;
const TOKENS = 2;
const TIME = 3;
const PROBES = 8;
export const RATE_TABLE_ENTRIES = 65_536;

export function createRateTable(entries = RATE_TABLE_ENTRIES): SharedArrayBuffer {
  // One extra Float64 header slot (the epoch) ahead of the entries.
  const buffer = new SharedArrayBuffer(8 + entries * FIELDS * 4);
  new Float64Array(buffer, 0, 1)[0] = Date.now();
  return buffer;
}

export interface RateRule {
  /** Tokens added per millisecond. */
  perMs: number;
  /** Bucket size. */
  burst: number;
}

export class RateTable {
  private readonly cells: Int32Array;
  private readonly epoch: number;
  private readonly mask: number;

  constructor(buffer: SharedArrayBuffer) {
    this.epoch = new Float64Array(buffer, 0, 1)[0];
    this.cells = new Int32Array(buffer, 8);
    this.mask = this.cells.length / FIELDS - 1;
  }

  /**
   * Takes one token for `keyHash` (non-zero). Returns 0 when allowed, else the milliseconds
   * until a token will be available (for Retry-After).
   */
  take(keyHash: number, rule: RateRule, now = Date.now()): number {
    const key = keyHash | 0 || 1;
    const time = (now - this.epoch) | 0;
    const at = this.slotFor(key, time);
    const cells = this.cells;
    while (Atomics.compareExchange(cells, at + LOCK, 0, 1) !== 0) {
      /* another thread is updating this entry for a few instructions */
    }
    let tokens: number;
    if (cells[at + KEY] !== key) {
      cells[at + KEY] = key;
      tokens = rule.burst * 1000;
    } else {
      const elapsed = time - cells[at + TIME];
      tokens = elapsed < 0 ? rule.burst * 1000 : Math.min(rule.burst * 1000, cells[at + TOKENS] + Math.floor(elapsed * rule.perMs * 1000));
    }
    cells[at + TIME] = time;
    let wait = 0;
    if (tokens >= 1000) tokens -= 1000;
    else wait = Math.ceil((1000 - tokens) / (rule.perMs * 1000));
    cells[at + TOKENS] = tokens;
    Atomics.store(cells, at + LOCK, 0);
    return wait;
  }

  /** The entry of `key`, or a free one, or the least recently used of the probed entries. */
  private slotFor(key: number, time: number): number {
    const cells = this.cells;
    const start = Math.imul(key, 0x9e3779b1) >>> 0;
    let oldest = -1;
    let oldestAge = -1;
    for (let probe = 0; probe < PROBES; probe++) {
      const at = ((start + probe) & this.mask) * FIELDS;
      const stored = Atomics.load(cells, at + KEY);
      if (stored === key || stored === 0) return at;
      const age = time - Atomics.load(cells, at + TIME);
      if (age > oldestAge) {
        oldestAge = age;
        oldest = at;
      }
    }
    return oldest;
  }
}
