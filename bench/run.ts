/**
 * `npm run bench`: carelb side by side with HAProxy and NGINX. Starts the reference backends,
 * then for each scenario and round starts each proxy in turn (order rotated every round so no
 * proxy always goes first), warms up, measures a window, stops the proxy, and finally writes
 * <timestamp>.json, .md and .svg and prints the table. See bench/README.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startBackend, type Backend } from './backends';
import { generateCerts, type BenchCerts } from './certs';
import { installCleanup, stopAll } from './children';
import { parseArgs, USAGE, type BenchOptions, type Scenario } from './cli-args';
import { clockTicks, cpuSnapshot, peakRssKb, type CpuSnapshot } from './cpu';
import { runHandshakeLoad } from './handshake';
import { planLayout, pinSelf, type CpuLayout } from './layout';
import { acquireLock, releaseLock } from './lock';
import { runKeepAliveLoad } from './load';
import type { LoadResult, Progress } from './measure';
import { firstError, freePort } from './net-util';
import { ProgressLine } from './progress';
import { carelb } from './proxies/carelb';
import { haproxy } from './proxies/haproxy';
import { nginx } from './proxies/nginx';
import { StartError, type ProxyDriver, type RunningProxy } from './proxies/types';
import { markdown } from './report';
import { ratios, roundResult, RowBuilder, type BenchResults, type RoundResult } from './results';
import { chart } from './svg';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** How long a run waits for another bench run on the machine to finish. */
const LOCK_WAIT_MS = 30 * 60_000;
/** Foreign process time on the proxy's CPUs above which a row is flagged as noisy. */
const FOREIGN_CPU_WARN_PCT = 5;

interface Env {
  opts: BenchOptions;
  layout: CpuLayout;
  tmp: string;
  certs: BenchCerts | undefined;
  plainBackend: Backend | undefined;
  tlsBackend: Backend | undefined;
  progress: ProgressLine;
}

function machine(): string {
  let model = os.cpus()[0]?.model ?? 'unknown CPU';
  model = model.replace(/\s+/g, ' ').trim();
  return `${model}, ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}`;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
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

interface Measured {
  result: RoundResult;
  histogram: LoadResult['histogram'];
}

/**
 * One proxy × scenario × round: start, warm up, measure, stop. Returns the measurement, or
 * undefined after recording in the row why there is none (refused config, start failure...).
 */
async function measureOnce(env: Env, driver: ProxyDriver, scenario: Scenario, round: number, row: RowBuilder): Promise<Measured | undefined> {
  const { opts, layout, progress } = env;
  const backend = scenario === 'bridge' ? env.tlsBackend : env.plainBackend;
  if (!backend || !env.certs) throw new Error(`no backend for ${scenario}`);
  if (backend.child.hasExited()) throw new Error(`${backend.child.label} died: ${firstError(backend.child, 'no message')}`);
  const label = `[${scenario} ${round}/${opts.rounds}] ${driver.name}`;
  progress.update(`${label} start`, `${label}: starting`);

  const workDir = path.join(env.tmp, `${driver.name}-${scenario}-r${round}`);
  fs.mkdirSync(workDir, { recursive: true });
  const port = await freePort();
  let running: RunningProxy;
  try {
    running = await driver.start({
      scenario,
      port,
      backendPort: backend.port,
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
  const backendPids = backend.child.tree.size ? [...backend.child.tree] : [backend.child.pid];
  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  const proxyCpuList = (layout.proxy ?? layout.load).split(',').map(Number);
  let lastCompleted = 0;
  let lastAt = Date.now();
  let rate = 0;
  const spec = {
    host: '127.0.0.1',
    port,
    tls: scenario !== 'plain',
    connections: opts.connections,
    warmupMs: opts.warmupMs,
    durationMs: opts.durationMs,
    hooks: {
      open: () => {
        // The process tree as it is now (nginx master + workers); the same PIDs close the window.
        pids = running.pids();
        before = cpuSnapshot(pids, backendPids, proxyCpuList);
      },
      close: () => {
        after = cpuSnapshot(pids, backendPids, proxyCpuList);
      },
    },
    onProgress: (p: Progress) => {
      const now = Date.now();
      if (now > lastAt) rate = ((p.completed - lastCompleted) * 1000) / (now - lastAt);
      lastCompleted = p.completed;
      lastAt = now;
      const unit = scenario === 'handshake' ? 'hs/s' : 'req/s';
      progress.update(
        `${label} ${p.phase}`,
        `${label}: ${p.phase} ${(p.elapsedMs / 1000).toFixed(1)}/${(p.phaseMs / 1000).toFixed(1)} s  ${fmtInt(rate)} ${unit}  errors ${p.errors}`,
      );
    },
  };
  let load: LoadResult;
  let rss = 0;
  let diedDuringRun = false;
  try {
    const bound = opts.warmupMs + opts.durationMs + 30_000;
    load = await withTimeout(scenario === 'handshake' ? runHandshakeLoad(spec) : runKeepAliveLoad(spec), bound, `${label} load`);
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
  if (!before || !after) throw new Error(`${label}: the measured window never opened`);
  if (load.requests === 0) {
    const why = `no responses in the window (errors ${load.errors}, timeouts ${load.timeouts})`;
    row.fail('failed', why);
    progress.log(`${label}: failed: ${why}`);
    return undefined;
  }
  const r = roundResult(round, load.histogram, {
    requests: load.requests,
    windowMs: load.windowMs,
    proxyCpuUs: after.proxyUs - before.proxyUs,
    cpusetBusyUs: after.cpuset.busy - before.cpuset.busy,
    cpusetTaskUs: after.cpuset.tasks - before.cpuset.tasks,
    loadgenCpuUs: after.selfUs - before.selfUs,
    backendCpuUs: after.backendUs - before.backendUs,
    peakRssKb: rss,
    errors: load.errors,
    timeouts: load.timeouts,
    non2xx: load.non2xx,
  });
  progress.log(
    `${label}: ${fmtInt(r.rps)} ${scenario === 'handshake' ? 'handshakes' : 'req'}/s, ${r.cpu_us_per_req.toFixed(1)} µs CPU/${scenario === 'handshake' ? 'handshake' : 'req'}, ` +
      `p50 ${(r.p50_us / 1000).toFixed(2)} ms, p99 ${(r.p99_us / 1000).toFixed(2)} ms, proxy CPU ${r.proxy_cpu_pct.toFixed(0)}%, ` +
      `load side ${(r.loadgen_cpu_pct + r.backend_cpu_pct).toFixed(0)}%, errors ${r.errors}/${r.timeouts}/${r.non_2xx}` +
      (noisy(layout, r) ? `, other processes on CPU ${layout.proxy ?? ''}: ${r.foreign_cpu_pct.toFixed(0)}%` : ''),
  );
  return { result: r, histogram: load.histogram };
}

/** Did something other than the proxy run on the proxy's CPUs during the window? */
function noisy(layout: CpuLayout, r: RoundResult): boolean {
  return layout.proxy !== undefined && r.foreign_cpu_pct > FOREIGN_CPU_WARN_PCT;
}

async function main(): Promise<number> {
  const parsed = parseArgs(process.argv.slice(2));
  if (typeof parsed === 'string') {
    process.stderr.write(`bench: ${parsed}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const opts = parsed;
  const progress = new ProgressLine();
  const started = new Date();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'carelb-bench-'));
  installCleanup(() => {
    releaseLock();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const layout = planLayout(opts.workers);
  const notes = [...layout.notes];
  // Smoke runs only prove the harness works; they do not wait behind a long measurement.
  const lockNote = await acquireLock(opts.smoke ? 0 : LOCK_WAIT_MS, (pid) =>
    progress.update('lock', `waiting for another bench run (pid ${pid}) to finish`),
  );
  if (lockNote) {
    notes.push(lockNote);
    progress.log(`note: ${lockNote}`);
  }
  const pinErr = pinSelf(layout.load);
  if (pinErr) notes.push(pinErr);

  // Proxies: carelb always, then the anchors asked for that are installed.
  const drivers: ProxyDriver[] = [carelb];
  const anchors: Record<string, ProxyDriver> = { haproxy, nginx };
  for (const a of opts.compare) drivers.push(anchors[a]);
  const skipped = new Map<string, string>();
  for (const d of drivers) {
    const why = d.unavailable();
    if (why) {
      skipped.set(d.name, why);
      progress.log(`note: ${d.name} skipped: ${why}`);
    }
  }
  const versions: Record<string, string> = {};
  for (const d of drivers) if (!skipped.has(d.name)) versions[d.name] = d.version();

  // Generated even for plain-only runs: it takes a fraction of a second and keeps one path.
  const certs = generateCerts(path.join(tmp, 'certs'), opts.cert);
  const env: Env = { opts, layout, tmp, certs, plainBackend: undefined, tlsBackend: undefined, progress };
  const backendOpts = { kind: opts.backend, cpus: layout.load, workDir: tmp };
  if (opts.scenarios.some((s) => s !== 'bridge')) env.plainBackend = await startBackend(backendOpts);
  if (opts.scenarios.includes('bridge')) env.tlsBackend = await startBackend({ ...backendOpts, certs });
  progress.log(
    `bench: ${opts.scenarios.join(',')} × ${drivers.map((d) => d.name).join(',')}, ${opts.rounds} round(s), ` +
      `${opts.warmupMs / 1000}s warm-up + ${opts.durationMs / 1000}s window, ${opts.connections} connections, ${layout.description}`,
  );

  const rows: RowBuilder[] = [];
  for (const scenario of opts.scenarios) {
    const builders = new Map(drivers.map((d) => [d.name, new RowBuilder(scenario, d.name)]));
    for (const d of drivers) {
      const why = skipped.get(d.name);
      if (why) builders.get(d.name)?.fail('unavailable', why);
    }
    const runnable = drivers.filter((d) => !skipped.has(d.name));
    for (let round = 1; round <= opts.rounds; round++) {
      // Rotate the order each round: carelb,haproxy,nginx → haproxy,nginx,carelb → ...
      const order = runnable.map((_, i) => runnable[(i + round - 1) % runnable.length]);
      for (const d of order) {
        const b = builders.get(d.name) as RowBuilder;
        // A config refused once will be refused again; a failure to start or serve may be
        // passing (e.g. a rebuild under way), so that proxy gets its next round anyway.
        if (b.status === 'unsupported' || b.status === 'unavailable') continue;
        // A window shared with some other job on the machine measures that job too: repeat it,
        // and if every try was shared, keep the least shared one.
        let best: Measured | undefined;
        let attempt = 1;
        for (; ; attempt++) {
          const m = await measureOnce(env, d, scenario, round, b);
          if (!m) break;
          if (!best || m.result.foreign_cpu_pct < best.result.foreign_cpu_pct) best = m;
          if (!noisy(layout, m.result) || attempt > opts.noisyRetries) break;
          progress.log(`[${scenario} ${round}/${opts.rounds}] ${d.name}: measuring this round again (${attempt}/${opts.noisyRetries}): the window was shared with other processes`);
          // Give a short burst of other work a moment to pass.
          await new Promise((r) => setTimeout(r, 1000 * attempt));
        }
        if (best) b.add({ ...best.result, attempts: attempt }, best.histogram);
      }
    }
    rows.push(...builders.values());
  }
  progress.clear();

  const builtRows = rows.map((b) => b.build());
  // Say so when the proxy did not have its CPU to itself: such numbers should not be quoted.
  if (layout.proxy !== undefined) {
    for (const r of builtRows) {
      const worst = r.spread.foreign_cpu_pct[1];
      if (r.rounds_ok > 0 && worst > FOREIGN_CPU_WARN_PCT) {
        notes.push(`${r.proxy}/${r.scenario}: other processes used up to ${worst.toFixed(0)}% of CPU ${layout.proxy} during a window; treat those numbers as noisy`);
      }
    }
  }
  const results: BenchResults = {
    meta: {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
      machine: machine(),
      hostname: os.hostname(),
      pinning: layout.description,
      versions,
      options: opts,
      clk_tck: clockTicks(),
      backend: `${opts.backend}, 55-byte JSON body, keep-alive`,
      cert: opts.cert,
      latency_source:
        'keep-alive scenarios: autocannon per-response events (request write to response end, process.hrtime) recorded in µs into hdr-histogram-js for the measured window only; handshake: tls.connect() to last body byte',
      cpu_source: '/proc/PID/stat utime+stime of the proxy process tree, delta over the window, ÷ responses in the window',
      notes,
    },
    rows: builtRows,
    ratios: ratios(builtRows),
  };

  const outDir = opts.out === undefined ? path.join(REPO_ROOT, 'bench', 'results') : path.resolve(opts.out);
  fs.mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, stamp(started));
  const md = markdown(results);
  fs.writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n');
  fs.writeFileSync(`${base}.md`, md);
  fs.writeFileSync(`${base}.svg`, chart(results));
  process.stdout.write('\n' + md + '\n');
  const rel = path.relative(process.cwd(), base);
  process.stdout.write(`wrote ${rel.startsWith('..') ? base : rel}.json, .md, .svg\n`);

  await stopAll();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    // The exit handler kills every child by PID and removes the temp directory.
    process.exit(1);
  },
);
