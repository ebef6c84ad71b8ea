/**
 * Everything one data-plane thread serves: a front end per virtual service and the service
 * runtimes behind them. Applies a new config in place (reload): a virtual service whose
 * listen address is unchanged keeps its listener and gets a new runtime; servers that stay
 * keep their warm connection pools; what was removed stops taking new work and is closed
 * once its in-flight requests are done. Thread-local.
 */
import type { Config } from '../config/schema';
import type { Uws } from '../native';
import type { SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { Frontend } from './frontend';
import type { RateTable } from '../state/rate-table';
import { ServiceRuntime, type ThreadEvents } from './service';

export class DataPlane {
  private readonly frontends = new Map<string, Frontend>();
  /** Runtimes replaced by a reload, kept until their in-flight exchanges end. */
  private readonly retiring = new Set<ServiceRuntime>();
  /** Front ends of removed services, closed when their last exchange ends. */
  private readonly closingFrontends = new Set<Frontend>();

  constructor(
    private readonly uws: Uws,
    private readonly views: SharedViews,
    private readonly thread: number,
    private readonly events: ThreadEvents,
    private readonly rates: RateTable,
  ) {}

  /**
   * Applies `config`: returns the names of virtual services whose listener could not be opened.
   * The first call opens everything.
   */
  async apply(config: Config, plan: SlotPlan): Promise<string[]> {
    this.events.observer.accessLogOn = config.access_log !== 'off';
    this.events.observer.logQuery = config.log_query;
    const failed: string[] = [];
    const next = new Map<string, Frontend>();
    const opened: Frontend[] = [];
    for (const [index, vsConfig] of config.virtual_services.entries()) {
      const old = this.frontends.get(vsConfig.name);
      const previousServers = old ? old.current.serversBySlot() : new Map();
      const runtime = new ServiceRuntime(vsConfig, plan.vs[index], this.views, this.thread, this.events, this.rates, previousServers);
      if (old && Frontend.identity(old.current) === Frontend.identity(runtime)) {
        this.retire(old.current, runtime);
        old.current = runtime;
        next.set(vsConfig.name, old);
        this.frontends.delete(vsConfig.name);
      } else if (old && old.current.config.listen.host === vsConfig.listen.host && old.current.config.listen.port === vsConfig.listen.port) {
        // Same address, new certificates: a new listener next to the old one (SO_REUSEPORT);
        // the old one stops accepting and lets its connections finish on the new runtime.
        this.frontends.delete(vsConfig.name);
        this.retire(old.current, runtime);
        this.linger(old, runtime);
        const frontend = new Frontend(this.uws, runtime);
        next.set(vsConfig.name, frontend);
        opened.push(frontend);
      } else {
        const frontend = new Frontend(this.uws, runtime);
        next.set(vsConfig.name, frontend);
        opened.push(frontend);
      }
    }
    // What is left in the old map was removed or moved to another address: stop it first, so
    // a service that moved does not race its own old listener.
    for (const frontend of this.frontends.values()) this.closeWhenIdle(frontend);
    this.frontends.clear();
    for (const [name, frontend] of next) this.frontends.set(name, frontend);
    for (const frontend of opened) {
      if (!(await frontend.listen())) failed.push(frontend.current.config.name);
    }
    return failed;
  }

  /** Timeouts and idle expiry for current and retiring runtimes (sweep timer). */
  sweep(now: number): void {
    for (const frontend of this.frontends.values()) frontend.current.sweep(now);
    for (const runtime of this.retiring) {
      runtime.sweep(now);
      if (runtime.active.size === 0) this.retiring.delete(runtime);
    }
    for (const frontend of this.closingFrontends) frontend.current.sweep(now);
  }

  /** Stops accepting everywhere; resolves when every exchange has ended. */
  async drain(): Promise<void> {
    const runtimes = [...this.frontends.values(), ...this.closingFrontends].map((f) => f.current).concat([...this.retiring]);
    for (const frontend of this.frontends.values()) frontend.stopListening();
    for (const frontend of this.lingeringFrontends) frontend.lingering = true;
    for (const runtime of runtimes) {
      runtime.closing = true;
      for (const server of runtime.servers) server.pool.closeIdle();
    }
    await Promise.all(runtimes.map((runtime) => runtime.whenIdle()));
  }

  /** Closes every listener and socket at once. */
  closeAll(): void {
    for (const frontend of [...this.frontends.values(), ...this.closingFrontends]) {
      frontend.close();
      for (const server of frontend.current.servers) server.pool.closeAll();
    }
    for (const frontend of this.lingeringFrontends) frontend.close();
    this.lingeringFrontends.clear();
    for (const runtime of this.retiring) for (const server of runtime.servers) server.pool.closeAll();
    this.frontends.clear();
    this.closingFrontends.clear();
    this.retiring.clear();
  }

  /** `old` is replaced by `next`: servers `next` did not carry over stop being reused. */
  private retire(old: ServiceRuntime, next: ServiceRuntime): void {
    const kept = new Set(next.servers.map((s) => s.pool));
    for (const server of old.servers) if (!kept.has(server.pool)) server.pool.retire();
    if (old.active.size > 0) this.retiring.add(old);
  }

  /**
   * Keeps a replaced listener's connections served on the new runtime: each closes after its
   * next response, and the listener closes what is left once nothing is in flight on it
   * (Frontend.linger). In-flight requests are never cut.
   */
  private linger(old: Frontend, runtime: ServiceRuntime): void {
    old.current = runtime;
    this.lingeringFrontends.add(old);
    old.linger(() => {
      if (this.lingeringFrontends.delete(old)) old.close();
    });
  }

  private readonly lingeringFrontends = new Set<Frontend>();

  private closeWhenIdle(frontend: Frontend): void {
    frontend.stopListening();
    const runtime = frontend.current;
    runtime.closing = true;
    for (const server of runtime.servers) server.pool.retire();
    this.closingFrontends.add(frontend);
    void runtime.whenIdle().then(() => {
      if (!this.closingFrontends.delete(frontend)) return;
      frontend.close();
      for (const server of runtime.servers) server.pool.closeAll();
    });
  }
}
