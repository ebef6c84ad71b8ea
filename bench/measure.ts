/**
 * What every load driver (wrk, paced, autocannon, handshake loops) hands back, and the in-process
 * bookkeeping of the autocannon and handshake drivers: warm-up, then a measured window whose
 * boundaries call the caller's hooks in the same tick the counting starts and stops, so the
 * proxy's CPU snapshot and the request count cover the same interval.
 */
import * as hdr from 'hdr-histogram-js';

export interface WindowHooks {
  /**
   * Called synchronously as the window opens (take CPU snapshots here). `loadPids`: a load
   * generator that is a running child (paced), whose CPU counts as the load generator's.
   */
  open(loadPids?: readonly number[]): void;
  /** Called synchronously as the window closes. */
  close(): void;
}

export interface Progress {
  phase: 'warmup' | 'measure';
  /** Time into the current phase and that phase's length. */
  elapsedMs: number;
  phaseMs: number;
  /** Responses completed since the load started (both phases); undefined = not known live (wrk). */
  completed: number | undefined;
  errors: number | undefined;
}

export interface LoadSpec {
  host: string;
  port: number;
  tls: boolean;
  connections: number;
  /** wrk threads (one per load CPU). */
  threads: number;
  warmupMs: number;
  durationMs: number;
  /** The latency table's offered rate, req/s over all connections (paced -R, autocannon overallRate). */
  rate?: number;
  hooks: WindowHooks;
  onProgress?: (p: Progress) => void;
}

/** Latency percentiles of the requests completed in the window, microseconds. */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
}

export interface LoadResult {
  /** Responses (any status) completed inside the window. */
  requests: number;
  /** Wall time between the window's open and close hooks (the CPU snapshots). */
  windowMs: number;
  /**
   * The load tool's own req/s when it has one (wrk: its requests ÷ its runtime); otherwise
   * requests ÷ windowMs is used.
   */
  rps?: number;
  latency: LatencySummary;
  /** Full latency histogram of the window, when the driver has one (not wrk): the curves. */
  histogram?: hdr.Histogram;
  /**
   * Rate-limited load only: the highest number of responses in any 100 ms of the window,
   * × 10. autocannon spends each connection's per-second quota as fast as it can, then waits
   * for the next second, so this is well above the offered rate: the bursts the proxy saw.
   */
  burstPeakRps?: number;
  /** paced only: what else it measured (latency from the write, and how far behind it got). */
  paced?: PacedExtra;
  /**
   * Counted over the whole load, warm-up included: a proxy that fails during warm-up has
   * still failed. Timeouts are not included in errors.
   */
  errors: number;
  timeouts: number;
  non2xx: number;
}

export interface PacedExtra {
  /** Latency from the request's write (µs); LoadResult.latency is from its due time. */
  fromSend: LatencySummary;
  /**
   * How long requests waited while a connection was idle (µs): paced's own lateness (timer
   * wake-up, a busy load CPU). It is part of the from-due latency, the same for every proxy
   * at best, and shown so that nobody reads it as the proxy's.
   */
  generatorLag: LatencySummary;
  /** Most requests due but not sent at once in the window (no idle connection). */
  maxBacklog: number;
  /** Longest wait in the window between a request's due time and its write, µs. */
  maxSendLagUs: number;
  /** Busiest 100 ms of sends in the window × 10. */
  sentPeakRps: number;
}

/** A latency histogram in microseconds: 1 µs to 60 s at 3 significant digits. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

export function summarize(h: hdr.Histogram): LatencySummary {
  return { p50: h.getValueAtPercentile(50), p90: h.getValueAtPercentile(90), p99: h.getValueAtPercentile(99), p99_9: h.getValueAtPercentile(99.9), max: h.maxValue };
}

/** Length of a burst bucket (see LoadResult.burstPeakRps). */
const BUCKET_MS = 100;

export class Measurement {
  readonly histogram = newHistogram();
  /** Responses per BUCKET_MS of the window, when tracking bursts. */
  private readonly buckets: number[] = [];
  private windowStartMs = 0;
  measuring = false;
  requests = 0;
  completed = 0;
  errors = 0;
  timeouts = 0;
  non2xx = 0;
  private t0 = 0n;
  private t1 = 0n;

  /** trackBursts: count responses per 100 ms of the window (rate-limited load). */
  constructor(private readonly trackBursts = false) {}

  response(status: number, latencyUs: number): void {
    this.completed++;
    if (status < 200 || status > 299) this.non2xx++;
    if (this.measuring) {
      this.requests++;
      this.histogram.recordValue(Math.max(1, Math.round(latencyUs)));
      if (this.trackBursts) {
        const i = Math.floor((Date.now() - this.windowStartMs) / BUCKET_MS);
        this.buckets[i] = (this.buckets[i] ?? 0) + 1;
      }
    }
  }

  error(timeout: boolean): void {
    if (timeout) this.timeouts++;
    else this.errors++;
  }

  /**
   * Runs warm-up then the window; resolves when the window has closed. `stop` is called
   * right after close so the driver stops generating load.
   */
  run(spec: LoadSpec, stop: () => void): Promise<void> {
    const start = Date.now();
    return new Promise((resolve) => {
      const tick = setInterval(() => {
        const now = Date.now() - start;
        const phase = this.measuring || now >= spec.warmupMs ? 'measure' : 'warmup';
        spec.onProgress?.({
          phase,
          elapsedMs: phase === 'warmup' ? now : Math.min(now - spec.warmupMs, spec.durationMs),
          phaseMs: phase === 'warmup' ? spec.warmupMs : spec.durationMs,
          completed: this.completed,
          errors: this.errors + this.timeouts,
        });
      }, 500);
      setTimeout(() => {
        spec.hooks.open();
        this.t0 = process.hrtime.bigint();
        this.windowStartMs = Date.now();
        this.measuring = true;
        setTimeout(() => {
          this.measuring = false;
          this.t1 = process.hrtime.bigint();
          spec.hooks.close();
          clearInterval(tick);
          stop();
          resolve();
        }, spec.durationMs);
      }, spec.warmupMs);
    });
  }

  result(): LoadResult {
    let peak = 0;
    for (const n of this.buckets) if (n !== undefined && n > peak) peak = n;
    return {
      requests: this.requests,
      windowMs: Number(this.t1 - this.t0) / 1e6,
      latency: summarize(this.histogram),
      histogram: this.histogram,
      ...(this.trackBursts ? { burstPeakRps: (peak * 1000) / BUCKET_MS } : {}),
      errors: this.errors,
      timeouts: this.timeouts,
      non2xx: this.non2xx,
    };
  }
}
