/**
 * Latency statistics in the primary: merges the per-interval histograms threads send, per
 * server slot, into a cumulative histogram (for metrics) and a recent window (the last 60 s,
 * for status and the dashboard). Percentiles come from the merged histograms, exact to their
 * precision (2 significant digits), never averages. Primary only.
 */
import * as hdr from 'hdr-histogram-js';

const WINDOW_INTERVALS = 60;

/** Microseconds, 1 µs to 1 h, 2 significant digits; 32-bit buckets record fastest (~180 ns measured). */
export const HISTOGRAM_OPTIONS = { lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 2, bitBucketSize: 32 } as const;

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  count: number;
}

class SlotLatency {
  readonly cumulative = hdr.build(HISTOGRAM_OPTIONS);
  /** Ring of recent intervals (each the merge of all threads' histograms for ~1 s). */
  readonly recent: { at: number; histogram: hdr.Histogram }[] = [];
}

export class LatencyBook {
  private readonly slots = new Map<number, SlotLatency>();

  /** Adds one thread's interval histograms (compressed, by server slot). */
  add(batch: Record<number, string>, now = Date.now()): void {
    for (const [slotText, encoded] of Object.entries(batch)) {
      const slot = Number(slotText);
      let entry = this.slots.get(slot);
      if (!entry) {
        entry = new SlotLatency();
        this.slots.set(slot, entry);
      }
      const histogram = hdr.decodeFromCompressedBase64(encoded, HISTOGRAM_OPTIONS.bitBucketSize);
      entry.cumulative.add(histogram);
      entry.recent.push({ at: now, histogram });
      while (entry.recent.length > 0 && now - entry.recent[0].at > WINDOW_INTERVALS * 1000) entry.recent.shift()!.histogram.destroy();
    }
  }

  /** Percentiles in milliseconds over the recent window of the given server slots, or null without data. */
  recent(slots: number[], now = Date.now()): Percentiles | null {
    const merged = hdr.build(HISTOGRAM_OPTIONS);
    for (const slot of slots) {
      for (const { at, histogram } of this.slots.get(slot)?.recent ?? []) if (now - at <= WINDOW_INTERVALS * 1000) merged.add(histogram);
    }
    const result = merged.totalCount === 0 ? null : percentiles(merged);
    merged.destroy();
    return result;
  }

  /** The cumulative histogram of the given slots (merged), for metric buckets; caller destroys it. */
  cumulative(slots: number[]): hdr.Histogram {
    const merged = hdr.build(HISTOGRAM_OPTIONS);
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
    if (count === 0) return null;
    const counts = bounds.map((bound) => countAtOrBelow(merged, bound * 1e6, count));
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

/** Requests at or below `micros`: the percentile whose value is the bound, found by bisection. */
function countAtOrBelow(histogram: hdr.Histogram, micros: number, count: number): number {
  if (histogram.maxValue <= micros) return count;
  if (histogram.getValueAtPercentile(0) > micros) return 0;
  let low = 0;
  let high = 100;
  for (let i = 0; i < 30; i++) {
    const mid = (low + high) / 2;
    if (histogram.getValueAtPercentile(mid) <= micros) low = mid;
    else high = mid;
  }
  return Math.floor((low / 100) * count);
}

function percentiles(histogram: hdr.Histogram): Percentiles {
  const ms = (micros: number) => Math.round(micros) / 1000;
  return {
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    count: histogram.totalCount,
  };
}
