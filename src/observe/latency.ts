/**
 * Latency statistics. Threads record into one hdr-histogram per server and send the
 * interval's non-zero buckets as a sparse list once a second; the primary merges them per
 * server slot into a cumulative histogram (for metrics) and keeps the sparse intervals of
 * the last 60 s (for status and the dashboard). Percentiles come from merged histograms,
 * exact to their precision (2 significant digits), never averages.
 *
 * Only hdr-histogram-js's pure-JS histogram is loaded: its package index also decodes and
 * compiles a WebAssembly build, and its compressed encoding loads pako, ~16 MB of resident
 * memory in every thread that imports it (measured with process.memoryUsage().rss).
 */
import type { Histogram } from 'hdr-histogram-js';
import Int32Histogram from 'hdr-histogram-js/dist/Int32Histogram';

const WINDOW_INTERVALS = 60;

/** Microseconds, 1 µs to 1 h, 2 significant digits; 32-bit buckets record fastest (~180 ns measured). */
export const HISTOGRAM_OPTIONS = { lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 2 } as const;

/** A new empty latency histogram (µs). */
export function newHistogram(): Histogram {
  return new Int32Histogram(HISTOGRAM_OPTIONS.lowestDiscernibleValue, HISTOGRAM_OPTIONS.highestTrackableValue, HISTOGRAM_OPTIONS.numberOfSignificantValueDigits);
}

/**
 * A histogram's non-zero buckets as [index, count, index, count, ...]: what a thread sends
 * for an interval (a few dozen numbers instead of 13 KB of counts).
 */
export type SparseCounts = number[];

interface CountsAccess {
  countsArrayLength: number;
  getCountAtIndex(index: number): number;
  valueFromIndex(index: number): number;
  recordValueWithCount(value: number, count: number): void;
}

/**
 * What a thread records latencies into, one per server: counts by the bucket index an
 * hdr-histogram with HISTOGRAM_OPTIONS gives a value, sent as the same sparse counts.
 * hdr-histogram-js computes the index with Math.log2, Math.pow and 53-bit arithmetic on
 * every record (perf at saturation: ~0.5 % of a thread's CPU); for values below 2^31 (the
 * caller records `| 0` microseconds) the same index is two integer operations.
 */
export class LatencyRecorder {
  private readonly counts = new Int32Array(INDEXING.length);
  totalCount = 0;

  /** Records one latency in µs, an integer in [1, 2^31). */
  record(micros: number): void {
    const magnitude = INDEXING.halfMagnitude;
    // hdr: bucket = max(floor(log2(v)) - halfMagnitude, 0); sub-bucket = v >> bucket;
    // index = (bucket + 1) << halfMagnitude + sub-bucket - halfCount (unit magnitude 0).
    let bucket = 31 - Math.clz32(micros) - magnitude;
    if (bucket < 0) bucket = 0;
    this.counts[((bucket + 1) << magnitude) + (micros >>> bucket) - INDEXING.halfCount]++;
    this.totalCount++;
  }

  /** The counts since the last call, as sparse counts; starts a new interval. */
  takeSparse(): SparseCounts {
    const out: number[] = [];
    const counts = this.counts;
    for (let index = 0; index < counts.length; index++) {
      if (counts[index] !== 0) {
        out.push(index, counts[index]);
        counts[index] = 0;
      }
    }
    this.totalCount = 0;
    return out;
  }
}

/** hdr-histogram's layout for HISTOGRAM_OPTIONS, read once from an instance (not restated by hand). */
const INDEXING = (() => {
  const reference = newHistogram() as unknown as { subBucketHalfCountMagnitude: number; subBucketHalfCount: number; unitMagnitude: number; countsArrayLength: number };
  if (reference.unitMagnitude !== 0) throw new Error('LatencyRecorder assumes lowestDiscernibleValue 1');
  return { halfMagnitude: reference.subBucketHalfCountMagnitude, halfCount: reference.subBucketHalfCount, length: reference.countsArrayLength };
})();

export function sparseCounts(histogram: Histogram): SparseCounts {
  const access = histogram as unknown as CountsAccess;
  const out: number[] = [];
  for (let index = 0; index < access.countsArrayLength; index++) {
    const count = access.getCountAtIndex(index);
    if (count !== 0) out.push(index, count);
  }
  return out;
}

/** Adds sparse counts into `histogram` (same options: bucket index i holds the values of valueFromIndex(i)). */
export function addSparse(histogram: Histogram, counts: SparseCounts): void {
  const access = histogram as unknown as CountsAccess;
  for (let k = 0; k < counts.length; k += 2) access.recordValueWithCount(access.valueFromIndex(counts[k]), counts[k + 1]);
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  count: number;
}

class SlotLatency {
  readonly cumulative = newHistogram();
  /** Ring of recent intervals (sparse counts of all threads for ~1 s each). */
  readonly recent: { at: number; counts: SparseCounts }[] = [];
}

export class LatencyBook {
  private readonly slots = new Map<number, SlotLatency>();

  /** Adds one thread's interval counts, by server slot. */
  add(batch: Record<number, SparseCounts>, now = Date.now()): void {
    for (const [slotText, counts] of Object.entries(batch)) {
      const slot = Number(slotText);
      let entry = this.slots.get(slot);
      if (!entry) {
        entry = new SlotLatency();
        this.slots.set(slot, entry);
      }
      addSparse(entry.cumulative, counts);
      entry.recent.push({ at: now, counts });
      while (entry.recent.length > 0 && now - entry.recent[0].at > WINDOW_INTERVALS * 1000) entry.recent.shift();
    }
  }

  /** Percentiles in milliseconds over the recent window of the given server slots, or null without data. */
  recent(slots: number[], now = Date.now()): Percentiles | null {
    const merged = newHistogram();
    for (const slot of slots) {
      for (const { at, counts } of this.slots.get(slot)?.recent ?? []) if (now - at <= WINDOW_INTERVALS * 1000) addSparse(merged, counts);
    }
    const result = merged.totalCount === 0 ? null : percentiles(merged);
    merged.destroy();
    return result;
  }

  /**
   * p50 and p99 in ms of the intervals that arrived in (from, to] for the given slots, merged
   * into `scratch` (reset first, so the history sampler reuses one histogram every second
   * instead of allocating one per entity); null when none arrived.
   */
  between(slots: number[], from: number, to: number, scratch: Histogram): { p50: number; p99: number } | null {
    scratch.reset();
    for (const slot of slots) {
      for (const { at, counts } of this.slots.get(slot)?.recent ?? []) if (at > from && at <= to) addSparse(scratch, counts);
    }
    if (scratch.totalCount === 0) return null;
    return { p50: Math.round(scratch.getValueAtPercentile(50)) / 1000, p99: Math.round(scratch.getValueAtPercentile(99)) / 1000 };
  }

  /** The cumulative histogram of the given slots (merged), for metric buckets; caller destroys it. */
  cumulative(slots: number[]): Histogram {
    const merged = newHistogram();
    for (const slot of slots) {
      const entry = this.slots.get(slot);
      if (entry) merged.add(entry.cumulative);
    }
    return merged;
  }

  /**
   * Prometheus-style cumulative buckets (counts of requests ≤ each bound, in seconds) over
   * the whole run, from the merged histograms; null without data.
   */
  buckets(slots: number[], bounds: readonly number[] = BUCKET_BOUNDS_S): LatencyBuckets | null {
    const merged = this.cumulative(slots);
    const count = merged.totalCount;
    if (count === 0) {
      merged.destroy();
      return null;
    }
    const counts = countsAtOrBelow(merged, bounds.map((bound) => bound * 1e6));
    const result = { bounds: [...bounds], counts, count, sum: (merged.mean * count) / 1e6 };
    merged.destroy();
    return result;
  }

  /** A slot left the config (or was reused): forget its numbers. */
  forget(slot: number): void {
    this.slots.delete(slot);
  }
}

export const BUCKET_BOUNDS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export interface LatencyBuckets {
  /** Upper bounds in seconds, ascending; counts[i] = requests that took at most bounds[i]. */
  bounds: number[];
  counts: number[];
  count: number;
  /** Total seconds. */
  sum: number;
}

/**
 * Requests at or below each bound (µs, ascending), from one pass over the buckets: a bucket
 * counts under a bound when its lowest value is at or below it (values within the
 * histogram's precision of a bound may fall on either side). Exact counts, never a
 * percentile rounded to a count.
 */
function countsAtOrBelow(histogram: Histogram, boundsMicros: number[]): number[] {
  const access = histogram as unknown as CountsAccess;
  const counts = boundsMicros.map(() => 0);
  for (let index = 0; index < access.countsArrayLength; index++) {
    const count = access.getCountAtIndex(index);
    if (count === 0) continue;
    const value = access.valueFromIndex(index);
    for (let b = boundsMicros.length - 1; b >= 0 && value <= boundsMicros[b]; b--) counts[b] += count;
  }
  return counts;
}

function percentiles(histogram: Histogram): Percentiles {
  const ms = (micros: number) => Math.round(micros) / 1000;
  return {
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    count: histogram.totalCount,
  };
}
