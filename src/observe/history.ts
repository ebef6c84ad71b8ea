/**
 * The dashboard's history (issue 15): a fixed-size ring of 1 s samples, 15 minutes deep, per
 * virtual service and per server. Pure storage: no timers, no I/O; the primary's sampler
 * (primary/history-sampler.ts) writes one sample per tick and the admin API reads windows.
 *
 * Memory is fixed when an entity is first seen and never grows: each entity (a virtual
 * service slot or a server slot) owns one Float32Array of SERIES.length × capacity values,
 * 7 × 900 × 4 B = 25,200 B at the default depth, and all entities share one Float64Array of
 * sample times (7,200 B). Slots are reused by name across reloads (primary/slots.ts), so the
 * number of entities never exceeds the slot capacity carelb started with; a reused slot's ring
 * is cleared so a new server never shows its predecessor's past.
 *
 * Float32 is enough: rates and milliseconds are shown with 3 significant digits, and integer
 * counts stay exact up to 2^24 per second. NaN marks "no sample" (an entity not yet present,
 * or a percentile of a second without requests); JSON carries it as null.
 */

/** The series every entity has, in storage order. */
export const SERIES = [
  /** Requests per second. */
  'rps',
  /** Responses of class 4xx per second. */
  'e4xx',
  /** Responses of class 5xx per second. */
  'e5xx',
  /** Failures carelb answered itself per second (error catalogue codes; servers: no valid response). */
  'eclb',
  /** Median latency of the second, ms, from the merged histograms. */
  'p50',
  /** 99th percentile latency of the second, ms. */
  'p99',
  /** Requests in flight when the sample was taken. */
  'in_flight',
] as const;

export type SeriesName = (typeof SERIES)[number];
export type Sample = Record<SeriesName, number>;

/** Samples kept: 15 minutes of 1 s samples. */
export const HISTORY_CAPACITY = 900;
export const HISTORY_INTERVAL_MS = 1000;

/** Bytes one entity's ring takes (the memory bound the README states is built from this). */
export const BYTES_PER_ENTITY = SERIES.length * HISTORY_CAPACITY * Float32Array.BYTES_PER_ELEMENT;

export class HistoryRing {
  private readonly times: Float64Array;
  private readonly entities = new Map<string, Float32Array>();
  /** Index the next sample goes to. */
  private head = 0;
  /** Samples written so far, capped at capacity. */
  private filled = 0;

  constructor(readonly capacity = HISTORY_CAPACITY) {
    this.times = new Float64Array(capacity);
  }

  /** Starts a new sample at `time` (ms since the epoch); every entity's value defaults to NaN for it. */
  begin(time: number): void {
    this.times[this.head] = time;
    for (const values of this.entities.values()) for (let s = 0; s < SERIES.length; s++) values[s * this.capacity + this.head] = NaN;
  }

  /** Writes `sample` for `entity` into the sample begun last. */
  put(entity: string, sample: Sample): void {
    let values = this.entities.get(entity);
    if (!values) {
      values = new Float32Array(SERIES.length * this.capacity).fill(NaN);
      this.entities.set(entity, values);
    }
    for (let s = 0; s < SERIES.length; s++) values[s * this.capacity + this.head] = sample[SERIES[s]];
  }

  /** Closes the sample begun last. */
  commit(): void {
    this.head = (this.head + 1) % this.capacity;
    this.filled = Math.min(this.filled + 1, this.capacity);
  }

  /** Forgets an entity's past (its slot now belongs to another server or virtual service). */
  clear(entity: string): void {
    this.entities.get(entity)?.fill(NaN);
  }

  /** Number of entities holding a ring (for the memory figure). */
  get size(): number {
    return this.entities.size;
  }

  /** Sample times (ms) of the newest `count` samples, oldest first. */
  timesOf(count: number): number[] {
    const n = Math.min(count, this.filled);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.times[(this.head - n + i + this.capacity) % this.capacity];
    return out;
  }

  /**
   * The newest `count` values of each series of `entity`, oldest first, rounded to 4
   * significant digits (NaN becomes null); null when the entity has no ring.
   */
  seriesOf(entity: string, count: number): Record<SeriesName, (number | null)[]> | null {
    const values = this.entities.get(entity);
    if (!values) return null;
    const n = Math.min(count, this.filled);
    const out = {} as Record<SeriesName, (number | null)[]>;
    SERIES.forEach((name, s) => {
      const column = new Array<number | null>(n);
      for (let i = 0; i < n; i++) {
        const v = values[s * this.capacity + ((this.head - n + i + this.capacity) % this.capacity)];
        column[i] = Number.isNaN(v) ? null : Number(v.toPrecision(4));
      }
      out[name] = column;
    });
    return out;
  }
}
