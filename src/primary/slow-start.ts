/**
 * Slow start: a server that comes back up gets a small share of new requests first, and its
 * weight ramps linearly to the configured one over `slow_start`, so a cold server (empty
 * caches, JIT, connection pools) is not flooded at once. Writes the effective weight into the
 * shared slot; the data plane just reads weights. Primary only.
 */
import { F_WEIGHT, type SharedViews } from '../state/layout';

const STEPS = 10;
const MIN_STEP_MS = 200;

export class SlowStart {
  private readonly ramps = new Map<number, NodeJS.Timeout>();

  constructor(private readonly views: SharedViews) {}

  /** Starts (or restarts) the ramp of server `slot` towards `weight` over `durationMs`. */
  begin(slot: number, weight: number, durationMs: number): void {
    this.cancel(slot);
    if (durationMs <= 0 || weight <= 1) return;
    const started = Date.now();
    const index = this.views.layout.serverField(slot, F_WEIGHT);
    const step = () => {
      const share = Math.min(1, (Date.now() - started) / durationMs);
      Atomics.store(this.views.servers, index, Math.max(1, Math.round(weight * share)));
      if (share >= 1) this.cancel(slot);
    };
    Atomics.store(this.views.servers, index, Math.max(1, Math.round(weight / STEPS)));
    this.ramps.set(slot, setInterval(step, Math.max(MIN_STEP_MS, durationMs / STEPS)));
  }

  cancel(slot: number): void {
    const timer = this.ramps.get(slot);
    if (timer) clearInterval(timer);
    this.ramps.delete(slot);
  }

  stop(): void {
    for (const slot of [...this.ramps.keys()]) this.cancel(slot);
  }
}
