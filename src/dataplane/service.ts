/**
 * A virtual service as one data-plane thread runs it: its servers with their connection
 * pools, its balancer over the shared table, its uWS app and listener, and the exchanges in
 * flight. Created and used by one thread only.
 */
import { createBalancer, type Balancer } from '../balance';
import type { ServerConfig, TimeoutsConfig, VirtualServiceConfig } from '../config/schema';
import { ADMIN_HALT, ADMIN_ONLINE, F_WEIGHT, F_ADMIN, F_5XX_STREAK, F_FAIL_STREAK, F_HEALTH, F_INFLIGHT, HEALTH_DOWN, HEALTH_UP, SLOT_STRIDE, type SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { ServerPool } from '../upstream/pool';
import { backendTlsConfig, backendTlsOptions } from '../upstream/tls-options';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { ClientListener, Exchange } from './exchange';
import type { InvariantCounter } from '../state/invariants';
import { Admission } from './admission';
import { ActiveList } from './active-list';
import type { ThreadObserver } from './observe';
import type { LatencyRecorder } from '../observe/latency';
import type { RateTable } from '../state/rate-table';
import { hostWithoutPort, proxyRequest, redirectToHttps } from './frontend';
import { L7Rules } from './l7';

/**
 * Whether a server's pooled connections can serve the reloaded config: same address, TLS
 * settings and TLS files' contents (`tlsFingerprint`, from the primary's file check), so a
 * CA, certificate or key rotated in place gets a new pool (issue 11, point 7).
 */
function sameConnectionTarget(old: ServerRuntime, server: ServerConfig, vs: VirtualServiceConfig, tlsFingerprint: string | undefined): boolean {
  return (
    old.config.address.host === server.address.host &&
    old.config.address.port === server.address.port &&
    old.tlsFingerprint === tlsFingerprint &&
    JSON.stringify(backendTlsConfig(old.vsConfig, old.config)) === JSON.stringify(backendTlsConfig(vs, server))
  );
}

/** What a thread tells the primary about its servers (not per request: only on state changes). */
export interface ThreadEvents {
  passiveDown(slot: number, reason: string): void;
  /** Latency histograms and access-log batches of this thread. */
  readonly observer: ThreadObserver;
  /** A line for the primary's log, at most one per `kind` a second (faults.ts ThrottledReporter). */
  report(kind: string, message: string): void;
  /** This thread's invariant violation counters (state/invariants.ts). */
  readonly invariants: InvariantCounter;
}

export class ServerRuntime {
  pool: ServerPool;
  /** This thread's latency histogram (µs) for the server. */
  readonly latency: LatencyRecorder;
  private readonly slots: Int32Array;
  /** Index of this server's in-flight counter in the shared Int32 table. */
  readonly inflightIndex: number;
  /** Index of this thread's first counter for this server in the Float64 stats. */
  readonly statBase: number;
  /** Digest of the backend TLS files the pool was built from (plan.backendTls); carried with the pool. */
  tlsFingerprint: string | undefined = undefined;

  constructor(
    readonly config: ServerConfig,
    readonly local: number,
    /** This server's slot in shared memory. */
    readonly slot: number,
    readonly vsConfig: VirtualServiceConfig,
    views: SharedViews,
    thread: number,
    private readonly events: ThreadEvents,
  ) {
    this.slots = views.servers;
    this.latency = events.observer.histogramFor(slot);
    this.inflightIndex = slot * SLOT_STRIDE + F_INFLIGHT;
    this.statBase = views.layout.serverStat(thread, slot, 0);
    this.pool = new ServerPool({
      host: config.address.host,
      port: config.address.port,
      connectTimeoutMs: (config.pool_timeouts ?? vsConfig.timeouts).connect,
      idleMs: (config.pool_timeouts ?? vsConfig.timeouts).upstream_idle,
      maxIdle: vsConfig.max_idle_per_server,
      tls: backendTlsOptions(vsConfig, config),
      invariants: events.invariants,
      onFault: (error) => events.report('fault', `server connection of ${config.name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`),
    });
  }

  /** Idle expiry and connect timeouts; a halted server also loses its idle connections. */
  sweep(now: number): void {
    this.pool.sweep(now);
    if (this.pool.idleCount > 0 && Atomics.load(this.slots, this.slot * SLOT_STRIDE + F_ADMIN) === ADMIN_HALT) this.pool.closeIdle();
  }

  /** A response head arrived: counts toward (or resets) passive detection. */
  noteResponse(status: number): void {
    const base = this.slot * SLOT_STRIDE;
    const threshold = this.vsConfig.passive.consecutive_5xx;
    if (status >= 500 && threshold > 0) {
      if (Atomics.add(this.slots, base + F_5XX_STREAK, 1) + 1 >= threshold) this.markDown(`${threshold} consecutive 5xx responses`);
    } else if (Atomics.load(this.slots, base + F_5XX_STREAK) !== 0) {
      Atomics.store(this.slots, base + F_5XX_STREAK, 0);
    }
    if (Atomics.load(this.slots, base + F_FAIL_STREAK) !== 0) Atomics.store(this.slots, base + F_FAIL_STREAK, 0);
  }

  /** A connection failure, timeout or bad response: counts toward passive detection. */
  noteFailure(reason: string): void {
    const threshold = this.vsConfig.passive.consecutive_failures;
    if (threshold > 0 && Atomics.add(this.slots, this.slot * SLOT_STRIDE + F_FAIL_STREAK, 1) + 1 >= threshold) {
      this.markDown(`${threshold} consecutive failures, last: ${reason}`);
    }
  }

  /** Marks the server down now (all threads skip it from their next pick) and tells the primary once. */
  private markDown(reason: string): void {
    const base = this.slot * SLOT_STRIDE;
    Atomics.store(this.slots, base + F_FAIL_STREAK, 0);
    Atomics.store(this.slots, base + F_5XX_STREAK, 0);
    if (Atomics.compareExchange(this.slots, base + F_HEALTH, HEALTH_UP, HEALTH_DOWN) === HEALTH_UP) this.events.passiveDown(this.slot, reason);
  }

  /** The same server under a reloaded config: same slot and pool, new settings. */
  carriedInto(config: ServerConfig, local: number, vs: VirtualServiceConfig): ServerRuntime {
    const next = Object.create(ServerRuntime.prototype) as ServerRuntime;
    Object.assign(next, this, { config, local, vsConfig: vs });
    next.pool.options.connectTimeoutMs = (config.pool_timeouts ?? vs.timeouts).connect;
    next.pool.options.idleMs = (config.pool_timeouts ?? vs.timeouts).upstream_idle;
    next.pool.options.maxIdle = vs.max_idle_per_server;
    return next;
  }
}

/**
 * A pool of servers with its own balancer: the whole service's servers, or one named pool of
 * content switching (issue 14). `servers[i]` is the server the balancer's local index i names.
 */
export class PoolRuntime {
  /** Pool-local index of each service server (by ServerRuntime.local), -1 when not in this pool: maps a cookie's server. */
  readonly indexOf: Int32Array;

  constructor(
    readonly name: string,
    readonly servers: ServerRuntime[],
    readonly balancer: Balancer,
    serviceSize: number,
    /** The pool's timeouts (the service's, with the pool's own keys over them). */
    readonly timeouts: TimeoutsConfig,
  ) {
    this.indexOf = new Int32Array(serviceSize).fill(-1);
    servers.forEach((server, i) => (this.indexOf[server.local] = i));
  }
}

/** One content-switching route compiled: lowercase host (exact, or suffix with its dot), path prefix, methods; null = any. */
interface RouteRuntime {
  host: string | null;
  hostSuffix: string | null;
  pathPrefix: string | null;
  methods: string[] | null;
  pool: PoolRuntime;
}

/** `fallback:` with a local answer, prepared once per config. */
export interface FallbackResponse {
  status: number;
  contentType: string;
  /** Seconds, as the Retry-After header value. */
  retryAfter: string | null;
  body: Buffer;
}

export class ServiceRuntime {
  readonly servers: ServerRuntime[];
  readonly balancer: Balancer;
  /** Where a request goes when no route matches (all servers without content switching), or null (404 CLB_NO_ROUTE). */
  readonly defaultPool: PoolRuntime | null;
  /** Content-switching routes in order, or null without pools: then every request takes defaultPool. */
  readonly routes: RouteRuntime[] | null = null;
  readonly statBase: number;
  readonly errorBase: number;
  readonly proto: string;
  /** The uWS request handler for this service: proxy, or redirect to https. */
  readonly handle: (res: HttpResponse, req: HttpRequest, listener: ClientListener) => void;
  readonly portText: string;
  /** Where requests go when no server is up: a fallback server, a local answer, or neither. */
  readonly fallbackServer: ServerRuntime | null = null;
  readonly fallbackResponse: FallbackResponse | null = null;
  /**
   * Exchanges of this thread waiting for a server below its max_conns, in arrival order (a
   * Set iterates in insertion order): one that ends while waiting leaves at once, so it never
   * counts against max_queue.
   */
  readonly queue = new Set<Exchange>();
  /** This thread's invariant violation counters. */
  readonly invariants: InvariantCounter;
  /** Client address, access lists, rate limits. */
  readonly admission: Admission;
  /** Exchanges not yet finished, for timeouts and shutdown. */
  readonly active = new ActiveList<Exchange>();
  /** Set during shutdown: responses close their connection. */
  closing = false;
  /** L7 rules compiled from the config (l7.ts), or null: then the request path pays one null check. */
  readonly rules: L7Rules | null;

  constructor(
    readonly config: VirtualServiceConfig,
    readonly plan: SlotPlan['vs'][number],
    readonly views: SharedViews,
    readonly thread: number,
    readonly events: ThreadEvents,
    rates: RateTable | null,
    /** Servers of the previous config by slot: kept (with their warm pools) when the address is unchanged. */
    previous: Map<number, ServerRuntime> = new Map(),
  ) {
    this.servers = config.servers.map((server, local) => {
      const slot = plan.servers[local];
      const old = previous.get(slot);
      const tlsFingerprint = plan.backendTls?.[local];
      if (old && sameConnectionTarget(old, server, config, tlsFingerprint)) {
        return old.carriedInto(server, local, config);
      }
      // A new pool; the old one is retired by the plane: its busy connections finish, then close.
      const fresh = new ServerRuntime(server, local, slot, config, views, thread, events);
      fresh.tlsFingerprint = tlsFingerprint;
      return fresh;
    });
    this.admission = new Admission(config, rates);
    this.rules = L7Rules.compile(config, plan);
    this.invariants = events.invariants;
    const table = { slots: views.servers, members: Int32Array.from(plan.servers), count: config.servers.length };
    this.balancer = createBalancer(config.balance, table, config.persistence, config.servers.map((s) => s.name));
    if (config.pools === undefined) {
      this.defaultPool = new PoolRuntime('', this.servers, this.balancer, this.servers.length, config.timeouts);
    } else {
      // Each pool balances over its own servers' slots; a server's pool-local index is its place in the pool.
      const pools = new Map<string, PoolRuntime>();
      for (const poolConfig of config.pools) {
        const members = this.servers.filter((server) => server.config.pool === poolConfig.name);
        const poolTable = { slots: views.servers, members: Int32Array.from(members, (server) => server.slot), count: members.length };
        const balancer = createBalancer(poolConfig.balance, poolTable, config.persistence, members.map((server) => server.config.name));
        pools.set(poolConfig.name, new PoolRuntime(poolConfig.name, members, balancer, this.servers.length, poolConfig.timeouts));
      }
      this.defaultPool = config.default_pool === undefined ? null : pools.get(config.default_pool)!;
      this.routes = config.routes.map((route) => {
        const host = route.host?.toLowerCase() ?? null;
        const suffix = host !== null && host.startsWith('*.') ? host.slice(1) : null;
        const methods = route.method === undefined ? null : typeof route.method === 'string' ? [route.method] : [...route.method];
        return { host: suffix === null ? host : null, hostSuffix: suffix, pathPrefix: route.path_prefix ?? null, methods, pool: pools.get(route.pool)! };
      });
    }
    const fallback = config.fallback;
    if (fallback && 'server' in fallback && plan.fallbackSlot !== undefined) {
      const fallbackConfig: ServerConfig = { name: `${config.name}-fallback`, address: fallback.server, weight: 1, max_conns: 0 };
      this.fallbackServer = new ServerRuntime(fallbackConfig, -1, plan.fallbackSlot, config, views, thread, events);
    } else if (fallback && !('server' in fallback)) {
      this.fallbackResponse = {
        status: fallback.status,
        contentType: fallback.content_type,
        retryAfter: fallback.retry_after === undefined ? null : String(Math.ceil(fallback.retry_after / 1000)),
        // The primary read and checked body_file (config/config-files.ts): a thread never reads it.
        body: plan.fallbackBody ? Buffer.from(plan.fallbackBody.buffer, plan.fallbackBody.byteOffset, plan.fallbackBody.byteLength) : Buffer.from('no server is available to handle this request\n'),
      };
    }
    this.statBase = views.layout.vsStat(thread, plan.slot, 0);
    this.errorBase = views.layout.vsError(thread, plan.slot, 0);
    this.proto = config.tls ? 'https' : 'http';
    this.handle = config.redirect_https ? (res, req) => redirectToHttps(this, res, req) : (res, req, listener) => proxyRequest(this, res, req, listener);
    this.portText = String(config.listen.port);
  }

  /** Timeouts and idle-connection expiry; called by the thread's sweep timer. */
  sweep(now: number): void {
    for (const server of this.servers) server.sweep(now);
    this.fallbackServer?.sweep(now);
    this.active.forEach((exchange) => exchange.checkDeadline(now));
    if (this.queue.size > 0) this.pumpQueue();
  }

  /** Starts queued exchanges while servers have room, in order; stops at the first that must go on waiting. */
  pumpQueue(): void {
    // A start can release a server and so call back here: one pump at a time.
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (const exchange of this.queue) {
        if (!exchange.tryStart()) return;
        this.queue.delete(exchange);
        exchange.queued = false;
      }
    } finally {
      this.pumping = false;
    }
  }

  private pumping = false;

  /**
   * The pool for a request by the routes, in order (first match wins), else defaultPool; null
   * when nothing matches and there is no default (404 CLB_NO_ROUTE). Only called when
   * `routes` is not null. `host` is the Host field as received (port and case ignored).
   */
  route(method: string, target: string, host: string): PoolRuntime | null {
    const routes = this.routes!;
    let name: string | null = null;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i];
      if (route.pathPrefix !== null && !target.startsWith(route.pathPrefix)) continue;
      if (route.methods !== null && !route.methods.includes(method)) continue;
      if (route.host !== null || route.hostSuffix !== null) {
        name ??= hostWithoutPort(host).toLowerCase();
        if (route.host !== null ? name !== route.host : !(name.length > route.hostSuffix!.length && name.endsWith(route.hostSuffix!))) continue;
      }
      return route.pool;
    }
    return this.defaultPool;
  }

  /** Whether a server (of `servers`: a pool's, or all) could take requests but is at its max_conns (so waiting makes sense). */
  anyServerFull(servers: ServerRuntime[] = this.servers): boolean {
    const slots = this.views.servers;
    for (const server of servers) {
      const max = server.config.max_conns;
      if (max === 0) continue;
      const at = server.slot * SLOT_STRIDE;
      if (Atomics.load(slots, at + F_HEALTH) === HEALTH_UP && Atomics.load(slots, at + F_ADMIN) === ADMIN_ONLINE && Atomics.load(slots, at + F_WEIGHT) > 0 && Atomics.load(slots, at + F_INFLIGHT) >= max) return true;
    }
    return false;
  }

  /** Servers by slot, for the next config's runtime to carry over. */
  serversBySlot(): Map<number, ServerRuntime> {
    return new Map(this.servers.map((server) => [server.slot, server]));
  }

  /** Called by an exchange when it ends; wakes whoever waits for the service to go idle. */
  onExchangeEnded(): void {
    if (this.active.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters.splice(0);
      for (const wake of waiters) wake();
    }
  }

  /** Resolves when no exchange is in flight. */
  whenIdle(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private readonly idleWaiters: (() => void)[] = [];
}
