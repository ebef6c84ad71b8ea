/**
 * Active health checks for every server of the running config (issue 4), run by the primary
 * off the request path. Each checked server has its own timer chain: one probe at a time,
 * the next one starting `interval` after the previous one started (or right after it ended
 * when a check takes longer than the interval), so checks of one server never overlap.
 * First checks are spread over one interval so a pool is never probed in a single burst.
 *
 * Verdicts go into shared memory (F_HEALTH of the server's slot, with Atomics): data-plane
 * threads skip a down server from their next pick on; no message crosses threads.
 *
 * The monitor writes F_HEALTH of every server in the plan it was given: the rise/fall verdict
 * for checked servers, UP for servers whose virtual service has no `health_check` (assumed up,
 * and a check removed on reload must not leave a server down forever).
 */
import { performance } from 'node:perf_hooks';
import type { LastCheck } from '../admin/context';
import type { Config, ServerConfig, VirtualServiceConfig } from '../config/schema';
import type { Logger } from '../observe/log';
import { F_HEALTH, HEALTH_DOWN, HEALTH_UP, type SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { resolveHealthCheck, type ResolvedHealthCheck } from './check-config';
import { probe, type ProbeResult, type ProbeTarget, type TlsProbeOptions } from './probe';
import { HealthState } from './state';

export interface HealthMonitorDeps {
  /** Called when a server comes back up (slow start ramps its weight from here). */
  onUp?: (slot: number, vs: string, server: string) => void;
  /** Called on every verdict change, active or passive (the dashboard's event list, issue 15). */
  onTransition?: (vs: string, server: string, to: 'up' | 'down', reason: string) => void;
  views: SharedViews;
  log: Logger;
  /** TLS settings for a server's `https` checks (CA, SNI, client certificate); default: verify against the system CAs. */
  tlsOptionsFor?: (vs: VirtualServiceConfig, server: ServerConfig) => TlsProbeOptions | null | undefined;
  /** Wall clock for LastCheck.time (ms since the epoch); scheduling uses the monotonic clock. */
  now?: () => number;
}

/** One checked server. Kept across reloads while `vs/server` stays in the config with a check. */
interface Checked {
  key: string;
  vs: string;
  server: string;
  slot: number;
  target: ProbeTarget;
  check: ResolvedHealthCheck;
  tlsOptions: TlsProbeOptions | undefined;
  /** Why the TLS options could not be built (e.g. an unreadable CA file): each check fails with it. */
  tlsError: string | undefined;
  state: HealthState;
  last: LastCheck | null;
  /** Pending timer for the next check (null while a check runs). */
  timer: NodeJS.Timeout | null;
  /** performance.now() when the last check started; null before the first one. */
  startedAt: number | null;
  running: { controller: AbortController; done: Promise<void> } | null;
  removed: boolean;
}

const keyOf = (vs: string, server: string) => `${vs}/${server}`;

export class HealthMonitor {
  private readonly entries = new Map<string, Checked>();
  private bySlot = new Map<number, Checked>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly deps: HealthMonitorDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Applies a config and its slot plan (primary, at start and on every reload): starts checks
   * of new servers, stops those of removed ones, keeps the verdict and last check of servers
   * that stay, and applies changed settings (a changed interval reschedules the pending check).
   * No-op after stop().
   */
  update(config: Config, plan: SlotPlan): void {
    if (this.stopped) return;
    const wanted: { vs: VirtualServiceConfig; server: ServerConfig; slot: number; check: ResolvedHealthCheck }[] = [];
    const unchecked: number[] = [];
    config.virtual_services.forEach((vs, v) => {
      vs.servers.forEach((server, s) => {
        const slot = plan.vs[v].servers[s];
        const check = resolveHealthCheck(vs, server);
        if (check) wanted.push({ vs, server, slot, check });
        else unchecked.push(slot);
      });
    });

    const keep = new Set(wanted.map((w) => keyOf(w.vs.name, w.server.name)));
    for (const entry of this.entries.values()) if (!keep.has(entry.key)) this.remove(entry);
    for (const slot of unchecked) this.writeHealth(slot, true);

    const bySlot = new Map<number, Checked>();
    wanted.forEach(({ vs, server, slot, check }, index) => {
      const key = keyOf(vs.name, server.name);
      const { tlsOptions, tlsError } = this.tlsFor(check, vs, server);
      const target = { host: server.address.host, port: server.address.port };
      // Spread first checks: server i of n starts at (i / n) × interval.
      const offset = (index / wanted.length) * check.interval;
      let entry = this.entries.get(key);
      if (!entry) {
        entry = { key, vs: vs.name, server: server.name, slot, target, check, tlsOptions, tlsError, state: new HealthState(), last: null, timer: null, startedAt: null, running: null, removed: false };
        this.entries.set(key, entry);
        this.writeHealth(slot, entry.state.up);
        this.schedule(entry, offset);
      } else {
        const intervalChanged = entry.check.interval !== check.interval;
        Object.assign(entry, { slot, target, check, tlsOptions, tlsError });
        // Slots are stable per name (primary/slots.ts); rewriting the verdict is harmless and
        // keeps the invariant "the slot shows this entry's verdict" even if one moved.
        this.writeHealth(slot, entry.state.up);
        if (intervalChanged && entry.timer) {
          clearTimeout(entry.timer);
          const delay = entry.startedAt === null ? offset : entry.startedAt + check.interval - performance.now();
          this.schedule(entry, delay);
        }
        // A running check picks the new interval up when it completes.
      }
      bySlot.set(slot, entry);
    });
    this.bySlot = bySlot;
  }

  /** Last active check of `vs/server`, or null when it has no checks or none completed yet. */
  lastCheck(vs: string, server: string): LastCheck | null {
    return this.entries.get(keyOf(vs, server))?.last ?? null;
  }

  /**
   * Passive detection (issue 4): the data plane saw consecutive connection failures or 5xx
   * from the server in `slot`, reported through the primary. The server goes down at once and
   * needs `rise` active passes to come back. Ignored for a server without active checks:
   * nothing would ever bring it back.
   */
  markDown(slot: number, reason: string): void {
    if (this.stopped) return;
    const entry = this.bySlot.get(slot);
    if (!entry) {
      this.deps.log.debug({ slot, reason }, 'passive mark-down ignored: server has no active checks');
      return;
    }
    const transition = entry.state.markDown();
    this.writeHealth(entry.slot, false);
    if (transition) {
      this.deps.log.warn({ vs: entry.vs, server: entry.server, reason, passive: true }, 'server down');
      this.deps.onTransition?.(entry.vs, entry.server, 'down', `passive: ${reason}`);
    }
  }

  /** Clears every timer and destroys the sockets of checks in flight; resolves when they have ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    const running: Promise<void>[] = [];
    for (const entry of this.entries.values()) {
      if (entry.running) running.push(entry.running.done);
      this.remove(entry);
    }
    this.bySlot.clear();
    await Promise.all(running);
  }

  private remove(entry: Checked): void {
    entry.removed = true;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    entry.running?.controller.abort();
    this.entries.delete(entry.key);
  }

  /** Timers stay ref'd: the primary must live while it checks; stop() clears them all. */
  private schedule(entry: Checked, delay: number): void {
    entry.timer = setTimeout(() => this.run(entry), Math.max(0, delay));
  }

  private run(entry: Checked): void {
    entry.timer = null;
    if (entry.removed) return;
    entry.startedAt = performance.now();
    const controller = new AbortController();
    const attempt = entry.tlsError
      ? Promise.resolve<ProbeResult>({ ok: false, reason: entry.tlsError, durationMs: 0 })
      : probe(entry.target, entry.check, { tlsOptions: entry.tlsOptions, signal: controller.signal });
    const done = attempt
      .then((result) => {
        entry.running = null;
        if (entry.removed) return;
        try {
          this.record(entry, result);
        } finally {
          // The next check starts `interval` after this one started, or now if it took longer.
          this.schedule(entry, entry.startedAt! + entry.check.interval - performance.now());
        }
      })
      // probe() never rejects; this guards the bookkeeping so a bug cannot crash the primary
      // with an unhandled rejection (the chain above has already rescheduled).
      .catch((error: unknown) => this.deps.log.error({ err: error, vs: entry.vs, server: entry.server }, 'health check bookkeeping failed'));
    entry.running = { controller, done };
  }

  private record(entry: Checked, result: ProbeResult): void {
    entry.last = { time: new Date(this.now()).toISOString(), result: result.ok ? 'pass' : 'fail', reason: result.reason, duration_ms: result.durationMs };
    const transition = entry.state.observe(result.ok, entry.check.rise, entry.check.fall);
    if (!transition) return;
    this.writeHealth(entry.slot, transition === 'up');
    const fields = { vs: entry.vs, server: entry.server, reason: result.reason };
    if (transition === 'down') this.deps.log.warn(fields, 'server down');
    else this.deps.log.info(fields, 'server up');
    this.deps.onTransition?.(entry.vs, entry.server, transition, result.reason);
    if (transition === 'up') this.deps.onUp?.(entry.slot, entry.vs, entry.server);
  }

  /** TLS options of an https check; a failure to build them (files read by the caller) fails the checks instead of throwing out of update(). */
  private tlsFor(check: ResolvedHealthCheck, vs: VirtualServiceConfig, server: ServerConfig): { tlsOptions?: TlsProbeOptions; tlsError?: string } {
    if (check.type !== 'https' || !this.deps.tlsOptionsFor) return {};
    try {
      return { tlsOptions: this.deps.tlsOptionsFor(vs, server) ?? undefined };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.deps.log.error({ vs: vs.name, server: server.name, err: error }, 'health check TLS options failed');
      return { tlsError: `TLS: cannot load options: ${message}` };
    }
  }

  private writeHealth(slot: number, up: boolean): void {
    const { layout, servers } = this.deps.views;
    Atomics.store(servers, layout.serverField(slot, F_HEALTH), up ? HEALTH_UP : HEALTH_DOWN);
  }
}
