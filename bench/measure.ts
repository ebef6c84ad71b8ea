/**
 * One load run's bookkeeping, shared by the keep-alive (autocannon) and handshake drivers:
 * warm-up, then a measured window whose boundaries call the caller's hooks in the same tick
 * the counting starts and stops, so the proxy's CPU snapshot and the request count cover the
 * same interval.
 */
import * as hdr from 'hdr-histogram-js';

export interface WindowHooks {
  /** Called synchronously as the window opens (take CPU snapshots here). */
  open(): void;
  /** Called synchronously as the window closes. */
  close(): void;
}

export interface Progress {
  phase: 'warmup' | 'measure';
  /** Time into the current phase and that phase's length. */
  elapsedMs: number;
  phaseMs: number;
  /** Responses completed since the load started (both phases). */
  completed: number;
  errors: number;
}

export interface LoadSpec {
  host: string;
  port: number;
  tls: boolean;
  connections: number;
  warmupMs: number;
  durationMs: number;
  hooks: WindowHooks;
  onProgress?: (p: Progress) => void;
}

export interface LoadResult {
  /** Responses (any status) completed inside the window. */
  requests: number;
  windowMs: number;
  /** Latency of requests completed in the window, microseconds. */
  histogram: hdr.Histogram;
  /**
   * Counted over the whole load, warm-up included: a proxy that fails during warm-up has
   * still failed. Timeouts are not included in errors.
   */
  errors: number;
  timeouts: number;
  non2xx: number;
}

/** A latency histogram in microseconds: 1 µs to 60 s at 3 significant digits. */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

export class Measurement {
  readonly histogram = newHistogram();
  measuring = false;
  requests = 0;
  completed = 0;
  errors = 0;
  timeouts = 0;
  non2xx = 0;
  private t0 = 0n;
  private t1 = 0n;

  response(status: number, latencyUs: number): void {
    this.completed++;
    if (status < 200 || status > 299) this.non2xx++;
    if (this.measuring) {
      this.requests++;
      this.histogram.recordValue(Math.max(1, Math.round(latencyUs)));
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
    return {
      requests: this.requests,
      windowMs: Number(this.t1 - this.t0) / 1e6,
      histogram: this.histogram,
      errors: this.errors,
      timeouts: this.timeouts,
      non2xx: this.non2xx,
    };
  }
}
