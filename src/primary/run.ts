/**
 * `carelb start`: lay out shared state, start the threads, serve until stopped. Also the
 * operations every control surface uses (admin API, SIGHUP, ctl): reload, server admin
 * states, status. Primary only.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AdminContext, AdminState, ReloadResult } from '../admin/context';
import { loadConfigText, workerCount } from '../config/load';
import { checkConfigFiles, type ConfigFileReport } from '../config/config-files';
import { cookieTokens } from '../balance/cookie';
import type { SlotPlan } from '../state/plan';
import type { Config } from '../config/schema';
import { createLogger, type Logger } from '../observe/log';
import { ADMIN_DRAIN, ADMIN_HALT, ADMIN_ONLINE, F_ADMIN, type SharedViews } from '../state/layout';
import { applyPlan, createSharedFor } from './shared-state';
import { SlotAllocator } from './slots';
import { invariantCounts, snapshot, type ServerStatus, type ServiceStatus } from './status';
import { startAdminServer, type AdminServer } from '../admin/server';
import type { AdminExtension } from '../admin/extension';
import { haSelfInfo } from '../admin/sync';
import { peerOptionsFor, peerStatus, syncIfDrifted } from '../ha/client';
import { PLAINTEXT_WARNING, pushOptions, sendProblem } from '../ha/transport';
import { SlowStart } from './slow-start';
import { AccessLogSink } from '../observe/access-log';
import { LatencyBook } from '../observe/latency';
import { Supervisor } from './supervisor';
import { HealthMonitor } from '../health/monitor';
import { TransitionLog } from '../observe/transitions';
import { HistorySampler } from './history-sampler';
import { backendTlsOptions } from '../upstream/tls-options';
import { startExpiryWatch } from '../certs/expiry-watch';
import { handoverWarning, replacedTlsListeners, type ListenerIdentity } from './listener-handover';

const VERSION: string = require('../../../package.json').version;

export interface RunOptions {
  /** The config file: reload re-reads it. Absent for built-in configs (demo, tests). */
  configPath?: string;
  /** Text the config was parsed from, for the config hash. */
  configText?: string;
  log?: Logger;
  /** Audit log file of admin actions; default: JSON lines on stdout with "audit": true. */
  auditLog?: string;
  /** Runs after the threads have stopped (the demo closes its servers here). */
  onStopped?: () => Promise<void>;
  /** Extra admin API routes (the demo's, under /api/demo/); absent in production. */
  adminExtension?: AdminExtension;
}

export interface Running {
  supervisor: Supervisor;
  shared: SharedViews;
  /** Everything the admin API and ctl may see and do. */
  admin: AdminContext;
  /** The admin API server, or null when the config has no `admin` section. */
  adminServer: AdminServer | null;
  /** Live state and counters of the running config. */
  status(): ServiceStatus[];
  reload(source: string): Promise<ReloadResult>;
  /** Reopens the log files carelb writes (SIGUSR1, after log rotation); returns their paths. */
  reopenLogs(): string[];
  stop(): Promise<void>;
}

const ADMIN_CODES: Record<AdminState, number> = { online: ADMIN_ONLINE, drain: ADMIN_DRAIN, halt: ADMIN_HALT };

function hashOf(config: Config, text: string | undefined): string {
  return createHash('sha256')
    .update(text ?? JSON.stringify(config))
    .digest('hex');
}

/**
 * Records what the file check found in the plan the threads get: certificate fingerprints
 * (a changed one means a new listener or new pooled connections) and the fallback bodies'
 * bytes (threads never read files the primary has not checked).
 */
/** Each virtual service's listener as a reload compares them (listener-handover.ts). */
function listenersOf(config: Config, report: ConfigFileReport): ListenerIdentity[] {
  return config.virtual_services.map((vs) => ({ name: vs.name, address: `${vs.listen.host}:${vs.listen.port}`, tlsFingerprint: report.fingerprints[vs.name] }));
}

function annotatePlan(config: Config, plan: SlotPlan, report: ConfigFileReport): void {
  config.virtual_services.forEach((vs, i) => {
    plan.vs[i].tlsFingerprint = report.fingerprints[vs.name];
    plan.vs[i].backendTls = report.backendFingerprints[i];
    plan.vs[i].fallbackBody = report.fallbackBodies[i];
    if (vs.persistence === 'cookie') plan.vs[i].cookieTokens = cookieTokens(vs.name, vs.servers.map((s) => s.name), report.cookieSecrets[i]);
  });
}

export async function runCarelb(initial: Config, options: RunOptions = {}): Promise<Running> {
  const log = options.log ?? createLogger();
  const threads = workerCount(initial);
  const slots = SlotAllocator.forConfig(initial);
  const planned = slots.plan(initial);
  if ('error' in planned) throw new Error(planned.error);
  const files = checkConfigFiles(initial);
  for (const warning of files.warnings) log.warn(warning);
  if (files.errors.length > 0) throw new Error(`files the config names cannot be used, not starting:\n  ${files.errors.join('\n  ')}`);
  annotatePlan(initial, planned.plan, files);
  let listeners = listenersOf(initial, files);
  const shared = createSharedFor(slots.vsCapacity, slots.serverCapacity, threads);
  applyPlan(shared, initial, planned.plan, planned.freshServers, planned.freshVs);
  // A thread that failed to start is reported with what the file check finds now.
  const diagnose = () => checkConfigFiles(supervisor.config).errors;
  const supervisor: Supervisor = new Supervisor(initial, planned.plan, threads, shared, log, { diagnose });
  try {
    await supervisor.start();
  } catch (error) {
    await supervisor.stop(0);
    throw error;
  }
  const slowStart = new SlowStart(shared);
  const transitions = new TransitionLog();
  const health = new HealthMonitor({
    views: shared,
    log,
    tlsOptionsFor: (vs, server) => backendTlsOptions(vs, server),
    onTransition: (vs, server, to, reason) => transitions.add({ time: Date.now(), vs, server, kind: 'health', from: to === 'up' ? 'down' : 'up', to, reason }),
    onUp: (slot, vsName, serverName) => {
      const vs = supervisor.config.virtual_services.find((v) => v.name === vsName);
      const server = vs?.servers.find((s) => s.name === serverName);
      if (vs && server && vs.slow_start > 0) slowStart.begin(slot, server.weight, vs.slow_start);
    },
  });
  health.update(initial, planned.plan);
  supervisor.onPassiveDown = (slot, reason) => health.markDown(slot, reason);
  const latency = new LatencyBook();
  const accessLog = new AccessLogSink((error, target) => log.error({ err: error.message, access_log: target }, 'access log write failed'));
  accessLog.configure(initial);
  supervisor.onObserve = (batch) => {
    if (batch.latency) latency.add(batch.latency);
    if (batch.lines) accessLog.write(batch.lines);
  };
  const startedAt = Date.now();
  let configHash = hashOf(initial, options.configText);
  // Installed before anything is logged as started: a test that signals on seeing the log
  // line must find the handler in place (the first signal listener takes a while to install).
  if (process.env.CARELB_FAULT_INJECTION === '1') {
    process.on('SIGUSR2', () => {
      log.warn('fault injection: crashing data-plane thread 0');
      supervisor.crashThread(0);
    });
  }
  if (initial.ha?.allow_plaintext_sync) log.warn({ key: 'ha.allow_plaintext_sync' }, PLAINTEXT_WARNING);

  const status = () => snapshot(supervisor.config, supervisor.plan, shared);
  const history = new HistorySampler({ config: () => supervisor.config, plan: () => supervisor.plan, status, latency });
  history.start();

  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, config_hash: configHash });
  const reloadOnce = async (source: string): Promise<ReloadResult> => {
    if (!options.configPath) return { ok: false, errors: ['this instance runs a built-in config (no -c FILE): nothing to reload'] };
    let text: string;
    try {
      text = readFileSync(options.configPath, 'utf8');
    } catch (error) {
      return { ok: false, errors: [`${options.configPath}: cannot read config: ${(error as NodeJS.ErrnoException).code ?? String(error)}`] };
    }
    const loaded = loadConfigText(text, options.configPath);
    if (!loaded.ok) {
      log.error({ source, errors: loaded.errors }, 'reload refused: invalid config, still running the previous one');
      return { ok: false, errors: loaded.errors };
    }
    const config = loaded.config;
    if (workerCount(config) !== threads) {
      const errors = [`workers: changing the number of threads (${threads} → ${workerCount(config)}) needs a restart`];
      log.error({ source, errors }, 'reload refused');
      return { ok: false, errors };
    }
    // Every file the config names is checked before any slot is assigned, so a refused reload changes nothing.
    const report = checkConfigFiles(config);
    if (report.errors.length > 0) {
      log.error({ source, errors: report.errors }, 'reload refused: files the config names cannot be used, still running the previous config');
      return { ok: false, errors: report.errors };
    }
    for (const warning of report.warnings) log.warn(warning);
    const next = slots.plan(config);
    if ('error' in next) {
      log.error({ source, errors: [next.error] }, 'reload refused');
      return { ok: false, errors: [next.error] };
    }
    annotatePlan(config, next.plan, report);
    const replaced = replacedTlsListeners(listeners, (listeners = listenersOf(config, report)));
    const handover = handoverWarning(replaced);
    if (handover !== null) log.warn({ source, virtual_services: replaced }, handover);
    applyPlan(shared, config, next.plan, next.freshServers, next.freshVs);
    health.update(config, next.plan);
    for (const slot of next.freshServers) latency.forget(slot);
    history.forget(next.freshVs, next.freshServers);
    accessLog.configure(config);
    const outcome = await supervisor.reload(config, next.plan);
    configHash = hashOf(config, text);
    const errors = [
      ...outcome.unlistened.map((name) => `virtual service ${name}: cannot listen on its address (in use or not available)`),
      ...outcome.threadErrors,
    ];
    if (errors.length > 0) {
      log.error({ source, errors }, 'reload applied, but not every thread could apply it');
      return { ok: false, errors };
    }
    log.info({ source, config_hash: configHash, virtual_services: config.virtual_services.length }, 'config reloaded');
    if (config.ha?.auto_sync && !source.startsWith('ha sync')) autoSync(config, text);
    return { ok: true, config_hash: configHash };
  };
  /** Pushes a reloaded config to the peer (it validates and reloads, or refuses); failures are logged, not fatal. */
  const autoSync = (config: Config, text: string) => {
    const problem = sendProblem(config);
    if (problem) {
      log.warn({ reason: problem }, `ha auto_sync refused: ${problem}`);
      return;
    }
    let peer;
    try {
      peer = pushOptions(config);
    } catch (error) {
      log.warn({ reason: (error as Error).message }, `ha auto_sync refused: ${(error as Error).message}`);
      return;
    }
    void syncIfDrifted(config.ha!, text, config, options.configPath!, undefined, peer).then(
      (answer) => log.info({ answer }, 'ha auto_sync'),
      (error: Error) => log.warn({ err: error.message }, 'ha auto_sync failed'),
    );
  };
  // Reloads run one after another, never interleaved.
  const reload = (source: string) => (reloading = reloading.then(() => reloadOnce(source)));

  /** Server slots of a virtual service (all of them, or the named server's). */
  const latencySlots = (vsName: string, serverName: string | null): number[] => {
    const v = supervisor.config.virtual_services.findIndex((vs) => vs.name === vsName);
    if (v === -1) return [];
    const servers = supervisor.config.virtual_services[v].servers;
    return supervisor.plan.vs[v].servers.filter((_slot, s) => serverName === null || servers[s].name === serverName);
  };

  const findServer = (vsName: string, serverName: string): { v: number; s: number } | null => {
    const v = supervisor.config.virtual_services.findIndex((vs) => vs.name === vsName);
    const s = v === -1 ? -1 : supervisor.config.virtual_services[v].servers.findIndex((server) => server.name === serverName);
    return s === -1 ? null : { v, s };
  };

  const admin: AdminContext = {
    version: VERSION,
    startedAt,
    workers: threads,
    config: () => supervisor.config,
    configHash: () => configHash,
    status,
    lastCheck: (vsName, serverName) => health.lastCheck(vsName, serverName),
    latency(vsName, serverName) {
      const slots = latencySlots(vsName, serverName);
      return slots.length === 0 ? null : latency.recent(slots);
    },
    latencyBuckets(vsName, serverName) {
      const slots = latencySlots(vsName, serverName);
      return slots.length === 0 ? null : latency.buckets(slots);
    },
    setAdminState(vsName, serverName, state, by = 'admin'): ServerStatus | null {
      const found = findServer(vsName, serverName);
      if (!found) return null;
      const slot = supervisor.plan.vs[found.v].servers[found.s];
      const from = status()[found.v].servers[found.s].admin;
      if (from !== state) transitions.add({ time: Date.now(), vs: vsName, server: serverName, kind: 'admin', from, to: state, reason: by });
      Atomics.store(shared.servers, shared.layout.serverField(slot, F_ADMIN), ADMIN_CODES[state]);
      log.info({ vs: vsName, server: serverName, state }, 'server admin state changed');
      return status()[found.v].servers[found.s];
    },
    reload,
    history: (windowS) => history.view(windowS),
    transitions: () => transitions.list(),
    threadRestarts: () => supervisor.restarts,
    invariants: () => invariantCounts(shared),
    ha: () => (supervisor.config.ha ? { self: haSelfInfo(admin, options.configPath), peer: peerCache } : null),
  };

  // The peer's view (a network call with a timeout) is refreshed in the background, never per status request.
  let peerCache: unknown = null;
  const refreshPeer = () => {
    const ha = supervisor.config.ha;
    if (ha) void peerStatus(ha, undefined, peerOptionsFor(supervisor.config)).then((info) => (peerCache = info), (error: Error) => (peerCache = { error: error.message }));
  };
  refreshPeer();
  const peerTimer = setInterval(refreshPeer, 5000).unref();
  // A warning line a day for every certificate with under 30 days left (issue 14).
  const stopExpiryWatch = startExpiryWatch(() => supervisor.config, log);

  let adminServer: AdminServer | null = null;
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ grace_ms: supervisor.config.shutdown_grace }, 'stopping: no new connections, finishing in-flight requests');
      await reloading;
      clearInterval(peerTimer);
      stopExpiryWatch();
      history.stop();
      await adminServer?.close();
      slowStart.stop();
      await health.stop();
      await supervisor.stop(supervisor.config.shutdown_grace);
      await accessLog.close();
      await options.onStopped?.();
      log.info('stopped');
    })());

  try {
    adminServer = initial.admin ? await startAdminServer(admin, initial.admin, log, { auditLog: options.auditLog, configPath: options.configPath, extension: options.adminExtension }) : null;
  } catch (error) {
    // A start that cannot complete is a failed start: stop the threads, or the process would
    // keep serving without its admin API and `carelb start` would never return.
    await stop();
    throw error;
  }
  if (adminServer) log.info({ listen: `${initial.admin!.listen.host}:${adminServer.port}`, token_file: adminServer.tokenFile }, 'admin API and dashboard listening');
  // "ready" means everything answers, the admin API included (a script that waits for it must
  // not find the admin port refusing connections).
  log.info({
    msg: 'ready',
    workers: threads,
    virtual_services: initial.virtual_services.map((vs) => ({ name: vs.name, listen: `${vs.listen.host}:${vs.listen.port}`, servers: vs.servers.length })),
  });

  const reopenLogs = (): string[] => {
    const reopened: string[] = [];
    const access = accessLog.reopen();
    if (access) reopened.push(access);
    if (adminServer?.reopenAuditLog() && options.auditLog) reopened.push(options.auditLog);
    return reopened;
  };

  return { supervisor, shared, admin, adminServer, status, reload, reopenLogs, stop };
}
