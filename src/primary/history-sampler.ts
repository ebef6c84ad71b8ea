/**
 * Fills the history ring (observe/history.ts) once a second in the primary: per virtual service
 * and per server, the counters' growth since the previous tick divided by the time that really
 * passed (a late timer gives a correct rate, not a spike), p50/p99 of the latency intervals the
 * threads sent in that time (merged hdr histograms, never averages), and in-flight now.
 * Reads the same snapshot /api/status does; never touches the request path.
 *
 * Entities are keyed by shared-memory slot, not by name: a slot keeps its name across reloads,
 * and a slot handed to a new server is cleared (forget) so its past is not inherited.
 */
import type { Histogram } from 'hdr-histogram-js';
import type { Config } from '../config/schema';
import { HISTORY_CAPACITY, HISTORY_INTERVAL_MS, HistoryRing, type Sample, type SeriesName } from '../observe/history';
import { newHistogram, type LatencyBook } from '../observe/latency';
import type { SlotPlan } from '../state/plan';
import type { ServiceStatus } from './status';

export interface HistorySource {
  config(): Config;
  plan(): SlotPlan;
  status(): ServiceStatus[];
  latency: LatencyBook;
  now?: () => number;
}

export interface HistoryView {
  interval_s: number;
  /** Seconds of samples returned (at most the window asked for, fewer just after start). */
  window_s: number;
  /** Sample times, ms since the epoch, oldest first; every series below has one value per time. */
  time: number[];
  virtual_services: { name: string; series: Record<SeriesName, (number | null)[]> | null; servers: { name: string; series: Record<SeriesName, (number | null)[]> | null }[] }[];
}

interface Totals {
  requests: number;
  e4xx: number;
  e5xx: number;
  eclb: number;
}

const vsKey = (slot: number) => `vs:${slot}`;
const serverKey = (slot: number) => `server:${slot}`;

export class HistorySampler {
  readonly ring: HistoryRing;
  private readonly previous = new Map<string, Totals>();
  private readonly scratch: Histogram = newHistogram();
  private readonly now: () => number;
  private last: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly source: HistorySource,
    capacity = HISTORY_CAPACITY,
  ) {
    this.ring = new HistoryRing(capacity);
    this.now = source.now ?? Date.now;
    this.last = this.now();
  }

  /** Samples every second until stop(); unref'd, so it never keeps the process alive. */
  start(): void {
    this.timer ??= setInterval(() => this.tick(), HISTORY_INTERVAL_MS).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.scratch.destroy();
  }

  /** Slots now used by someone else (reload): forget their past. */
  forget(vsSlots: number[], serverSlots: number[]): void {
    for (const key of [...vsSlots.map(vsKey), ...serverSlots.map(serverKey)]) {
      this.ring.clear(key);
      this.previous.delete(key);
    }
  }

  /** Takes one sample of every virtual service and server of the running config. */
  tick(): void {
    const now = this.now();
    const seconds = Math.max(0.001, (now - this.last) / 1000);
    const from = this.last;
    this.last = now;
    const plan = this.source.plan();
    const status = this.source.status();
    this.ring.begin(now);
    status.forEach((vs, v) => {
      const slots = plan.vs[v].servers;
      const errors = Object.values(vs.errors).reduce((sum, n) => sum + n, 0);
      const totals = { requests: vs.counters.requests, e4xx: vs.counters.responses_4xx, e5xx: vs.counters.responses_5xx, eclb: errors };
      const inFlight = vs.servers.reduce((sum, s) => sum + s.active, 0);
      this.put(vsKey(plan.vs[v].slot), totals, seconds, inFlight, this.source.latency.between(slots, from, now, this.scratch));
      vs.servers.forEach((server, s) => {
        const slot = slots[s];
        const c = server.counters;
        const serverTotals = { requests: c.requests, e4xx: c.responses_4xx, e5xx: c.responses_5xx, eclb: c.failures };
        this.put(serverKey(slot), serverTotals, seconds, server.active, this.source.latency.between([slot], from, now, this.scratch));
      });
    });
    this.ring.commit();
  }

  private put(key: string, totals: Totals, seconds: number, inFlight: number, latency: { p50: number; p99: number } | null): void {
    const before = this.previous.get(key);
    this.previous.set(key, totals);
    // The first sample of an entity has no previous totals: its rates are unknown, not zero.
    const rate = (field: keyof Totals) => (before ? Math.max(0, totals[field] - before[field]) / seconds : NaN);
    const sample: Sample = {
      rps: rate('requests'),
      e4xx: rate('e4xx'),
      e5xx: rate('e5xx'),
      eclb: rate('eclb'),
      p50: latency ? latency.p50 : NaN,
      p99: latency ? latency.p99 : NaN,
      in_flight: inFlight,
    };
    this.ring.put(key, sample);
  }

  /** The newest `windowS` seconds of every virtual service and server of the running config. */
  view(windowS: number): HistoryView {
    const count = Math.ceil((windowS * 1000) / HISTORY_INTERVAL_MS);
    const plan = this.source.plan();
    const time = this.ring.timesOf(count);
    return {
      interval_s: HISTORY_INTERVAL_MS / 1000,
      window_s: (time.length * HISTORY_INTERVAL_MS) / 1000,
      time,
      virtual_services: this.source.config().virtual_services.map((vs, v) => ({
        name: vs.name,
        series: this.ring.seriesOf(vsKey(plan.vs[v].slot), count),
        servers: vs.servers.map((server, s) => ({ name: server.name, series: this.ring.seriesOf(serverKey(plan.vs[v].servers[s]), count) })),
      })),
    };
  }
}
