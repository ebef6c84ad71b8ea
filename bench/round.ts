/**
 * One proxy × scenario × round of one table: start the proxy, run the load (wrk for capacity,
 * paced or autocannon at a fixed rate for latency, the TLS loops for handshakes), take the CPU
 * snapshots at the window's edges, stop the proxy, and judge the round by the table's rule.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Backend } from './backends';
import type { BenchCerts } from './certs';
import type { BenchOptions, Scenario } from './cli-args';
import { cpuSnapshot, peakRssKb, type CpuSnapshot } from './cpu';
import { runHandshakeLoad } from './handshake';
import { allowedCpus, type CpuLayout } from './layout';
import { runAutocannonLoad } from './load';
import type { LoadResult, LoadSpec, Progress } from './measure';
import { firstError, freePort } from './net-util';
import { runPacedLoad } from './paced';
import type { ProgressLine } from './progress';
import { StartError, type ProxyDriver, type RunningProxy } from './proxies/types';
import { roundResult, type LoadTool, type RoundResult, type RowBuilder } from './results';
import { judgeCapacity, judgeLatency, type Table } from './rules';
import { runWrkLoad } from './wrk';

/** Foreign process time on a bench CPU above which a window is called noisy. */
export const FOREIGN_CPU_WARN_PCT = 5;

export interface Env {
  opts: BenchOptions;
  layout: CpuLayout;
  tmp: string;
  certs: BenchCerts;
  plainBackends: Backend[];
  tlsBackends: Backend[];
  progress: ProgressLine;
  /** The built paced binary, when the latency table uses paced. */
  pacedBin?: string;
}

/** What is measured: which table, with which load, and (latency) at which rate. */
export interface RoundPlan {
  table: Table;
  load: LoadTool;
  scenario: Scenario;
  round: number;
  rate?: number;
}

export interface Measured {
  result: RoundResult;
  histogram: LoadResult['histogram'];
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function cpuList(s: string | undefined): number[] {
  return s === undefined ? [] : s.split(',').map(Number);
}

/** Rejects when `p` takes longer than ms: the last guard against a hung load or proxy. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

/** Other processes on the proxy's CPUs during the window (only judged when it has CPUs of its own). */
export function noisyProxyCpu(layout: CpuLayout, r: RoundResult): boolean {
  return layout.proxy !== undefined && r.foreign_cpu_pct > FOREIGN_CPU_WARN_PCT;
}

/** Other processes on the load CPU (judged likewise: on one CPU everything is "foreign"). */
export function noisyLoadCpu(layout: CpuLayout, r: RoundResult): boolean {
  return layout.proxy !== undefined && layout.load !== undefined && r.load_foreign_cpu_pct > FOREIGN_CPU_WARN_PCT;
}

/** The hypervisor ran someone else on the bench's vCPUs. */
export function noisySteal(r: RoundResult): boolean {
  return r.steal_pct > FOREIGN_CPU_WARN_PCT;
}

/** Did something other than the bench's own processes run on its CPUs during the window? */
export function noisy(layout: CpuLayout, r: RoundResult): boolean {
  return noisyProxyCpu(layout, r) || noisyLoadCpu(layout, r) || noisySteal(r);
}

function runLoad(env: Env, plan: RoundPlan, spec: LoadSpec, workDir: string): Promise<LoadResult> {
  if (plan.load === 'wrk') return runWrkLoad(spec, env.layout.load, workDir);
  if (plan.load === 'tls-loop') return runHandshakeLoad(spec);
  if (plan.load === 'paced') {
    if (env.pacedBin === undefined) throw new Error('paced was not built');
    return runPacedLoad(spec, env.layout.load, env.pacedBin);
  }
  return runAutocannonLoad(spec);
}

/**
 * Start, load, measure, stop. Returns the measurement, or undefined after recording in the
 * row why there is none (refused config, start failure...).
 */
export async function measureOnce(env: Env, driver: ProxyDriver, plan: RoundPlan, row: RowBuilder): Promise<Measured | undefined> {
  const { opts, layout, progress } = env;
  const { scenario, round } = plan;
  const backends = scenario === 'bridge' ? env.tlsBackends : env.plainBackends;
  if (backends.length === 0) throw new Error(`no backend for ${scenario}`);
  for (const b of backends) if (b.child.hasExited()) throw new Error(`${b.child.label} died: ${firstError(b.child, 'no message')}`);
  const label = `[${plan.table} ${scenario} ${round}/${opts.rounds}] ${driver.name}`;
  progress.update(`${label} start`, `${label}: starting`);

  const workDir = path.join(env.tmp, `${plan.table}-${driver.name}-${scenario}-r${round}`);
  fs.mkdirSync(workDir, { recursive: true });
  const port = await freePort();
  let running: RunningProxy;
  try {
    running = await driver.start({
      scenario,
      port,
      backendPorts: backends.map((b) => b.port),
      certs: env.certs,
      workers: opts.workers,
      cpus: layout.proxy ?? layout.load,
      workDir,
      connections: opts.connections,
    });
  } catch (err) {
    const kind = err instanceof StartError ? err.kind : 'failed';
    const msg = err instanceof Error ? err.message : String(err);
    row.fail(kind, msg);
    progress.log(`${label}: ${kind}: ${msg}`);
    return undefined;
  }

  row.config ??= running.config;
  let pids: number[] = [];
  let loadPids: number[] = [];
  const backendPids = backends.flatMap((b) => (b.child.tree.size ? [...b.child.tree] : [b.child.pid]));
  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  // Unpinned (--pin off): both "sets" are the whole machine, so their busy % reads as such.
  const proxyCpus = layout.proxy !== undefined || layout.load !== undefined ? cpuList(layout.proxy ?? layout.load) : allowedCpus();
  const loadCpus = layout.load !== undefined ? cpuList(layout.load) : allowedCpus();
  let lastCompleted = 0;
  let lastAt = Date.now();
  let rate = 0;
  const unit = scenario === 'handshake' ? 'hs/s' : 'req/s';
  const spec: LoadSpec = {
    host: '127.0.0.1',
    port,
    tls: scenario !== 'plain',
    connections: opts.connections,
    threads: loadCpus.length,
    warmupMs: opts.warmupMs,
    durationMs: opts.durationMs,
    ...(plan.rate !== undefined ? { rate: plan.rate } : {}),
    hooks: {
      open: (load = []) => {
        // The process tree as it is now (nginx master + workers); the same PIDs close the window.
        pids = running.pids();
        loadPids = [...load];
        before = cpuSnapshot(pids, backendPids, loadPids, proxyCpus, loadCpus);
      },
      close: () => {
        after = cpuSnapshot(pids, backendPids, loadPids, proxyCpus, loadCpus);
      },
    },
    onProgress: (p: Progress) => {
      let live = '';
      if (p.completed !== undefined) {
        const now = Date.now();
        if (now > lastAt) rate = ((p.completed - lastCompleted) * 1000) / (now - lastAt);
        lastCompleted = p.completed;
        lastAt = now;
        live = `  ${fmtInt(rate)} ${unit}  errors ${p.errors ?? 0}`;
      }
      progress.update(`${label} ${p.phase}`, `${label}: ${p.phase} ${(p.elapsedMs / 1000).toFixed(1)}/${(p.phaseMs / 1000).toFixed(1)} s${live}`);
    },
  };
  let load: LoadResult | undefined;
  let loadError: unknown;
  let rss = 0;
  let diedDuringRun = false;
  try {
    // wrk runs twice (warm-up, window), each bounded by itself; this is the outer bound.
    const bound = opts.warmupMs + opts.durationMs + 30_000;
    load = await withTimeout(runLoad(env, plan, spec, workDir), bound, `${label} load`);
  } catch (err) {
    loadError = err;
  } finally {
    // Peak RSS before the proxy exits (its /proc entries go with it).
    rss = peakRssKb(pids.length ? pids : running.pids());
    diedDuringRun = running.child.hasExited();
    await running.stop();
  }
  if (diedDuringRun) {
    row.fail('failed', `exited during the run: ${firstError(running.child, 'no message')}`);
    progress.log(`${label}: failed: exited during the run`);
    return undefined;
  }
  if (loadError !== undefined || !load) {
    const msg = loadError instanceof Error ? loadError.message : String(loadError);
    row.fail('failed', `load: ${msg}`);
    progress.log(`${label}: failed: load: ${msg}`);
    return undefined;
  }
  if (!before || !after) throw new Error(`${label}: the measured window never opened`);
  if (load.requests === 0) {
    const why = `no responses in the window (errors ${load.errors}, timeouts ${load.timeouts})`;
    row.fail('failed', why);
    progress.log(`${label}: failed: ${why}`);
    return undefined;
  }
  const r = roundResult(round, {
    requests: load.requests,
    windowMs: load.windowMs,
    ...(load.rps !== undefined ? { rps: load.rps } : {}),
    latency: load.latency,
    proxyCpuUs: after.proxyUs - before.proxyUs,
    cpusetBusyUs: after.cpuset.busy - before.cpuset.busy,
    loadCpusetTaskUs: after.loadCpuset.tasks - before.loadCpuset.tasks,
    loadCpusetBusyUs: after.loadCpuset.busy - before.loadCpuset.busy,
    // Both sets: on one CPU they are the same CPU, counted once.
    stealUs: layout.proxy === undefined ? after.loadCpuset.steal - before.loadCpuset.steal : after.cpuset.steal - before.cpuset.steal + (after.loadCpuset.steal - before.loadCpuset.steal),
    loadgenCpuUs: after.selfUs - before.selfUs,
    backendCpuUs: after.backendUs - before.backendUs,
    peakRssKb: rss,
    errors: load.errors,
    timeouts: load.timeouts,
    non2xx: load.non2xx,
    ...(plan.rate !== undefined ? { offeredRps: plan.rate } : {}),
    ...(load.burstPeakRps !== undefined ? { burstPeakRps: load.burstPeakRps } : {}),
    ...(load.paced !== undefined ? { paced: load.paced } : {}),
  });
  const verdict = plan.table === 'capacity' ? judgeCapacity(r, layout.proxyCores) : judgeLatency(r, plan.rate ?? 0);
  r.counted = verdict.counted;
  if (verdict.why !== undefined) r.not_counted = verdict.why;
  const what = scenario === 'handshake' ? 'handshake' : 'req';
  progress.log(
    `${label}: ${fmtInt(r.rps)} ${what === 'req' ? 'req' : 'handshakes'}/s${plan.rate !== undefined ? ` of ${fmtInt(plan.rate)} offered (burst peak ${fmtInt(r.burst_peak_rps ?? 0)}${r.max_backlog !== undefined ? `, max backlog ${r.max_backlog}, max send lag ${((r.max_send_lag_us ?? 0) / 1000).toFixed(2)} ms` : ''})` : ''}, ` +
      `${r.cpu_us_per_req.toFixed(1)} µs CPU/${what}, p50 ${(r.p50_us / 1000).toFixed(2)} ms, p99 ${(r.p99_us / 1000).toFixed(2)} ms, ` +
      `proxy CPU ${r.proxy_cpu_pct.toFixed(0)}% (its CPUs ${r.proxy_cpuset_busy_pct.toFixed(0)}% busy), load CPU ${r.load_cpu_busy_pct.toFixed(0)}% busy (load gen ${r.loadgen_cpu_pct.toFixed(0)}%, backends ${r.backend_cpu_pct.toFixed(0)}%), errors ${r.errors}/${r.timeouts}/${r.non_2xx}` +
      (noisyProxyCpu(layout, r) ? `, other work on CPU ${layout.proxy ?? ''}: ${r.foreign_cpu_pct.toFixed(0)}%` : '') +
      (noisyLoadCpu(layout, r) ? `, other processes on load CPU ${layout.load ?? ''}: ${r.load_foreign_cpu_pct.toFixed(0)}%` : '') +
      (noisySteal(r) ? `, hypervisor steal ${r.steal_pct.toFixed(0)}%` : '') +
      (r.counted ? '' : ` — ${r.not_counted ?? 'not counted'}`),
  );
  return { result: r, histogram: load.histogram };
}
