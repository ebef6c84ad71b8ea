/**
 * One soak run, start to verdict:
 *   servers → carelb child → traffic + control + monitor until the deadline → every request
 *   ended → quiet (in-flight back to 0) → final probes → counters and threads → RSS → SIGTERM
 *   → report. Everything started is undone by Cleanup, pass or fail.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/ports';
import { QUEUE_MAX_CONNS, startCarelb, type CarelbChild, type Topology, type Weights } from './carelb';
import { judgeResult, rssGrowth, signatureOf, type Finding } from './checks';
import { Cleanup, pollUntil, Stopper } from './cleanup';
import { Content } from './content';
import { Control } from './control';
import { Monitor } from './monitor';
import { seedText } from './prng';
import { formatReport, Stats } from './report';
import { describe, probePlans, type Vs } from './schedule';
import { Registry, startHttpServer, startRawServer, type SoakServer } from './servers';
import { Traffic } from './traffic';

/** Runs at least this long are judged on RSS growth over their second half (< 10 %). */
const RSS_JUDGED_FROM_MS = 5 * 60_000;

export interface SoakOptions {
  seed: number;
  durationMs: number;
  concurrency: number;
  /** Replay only these requests of the schedule, in order (no control operations). */
  only: number[] | null;
  repeat: number;
  /** With `only`: how many of them in flight at once (1 = in order). */
  onlyConcurrency: number;
  /** Request budget: the run also ends after this many (every loop bounded in count and time). */
  budget: number;
  /** Progress lines while running. */
  log: (line: string) => void;
  /** Arguments that replay this run (for the report). */
  replayArgs: string;
}

export interface SoakOutcome {
  pass: boolean;
  report: string;
  findings: Finding[];
}

const QUIET_LIMIT_MS = 10_000;

export async function runSoak(options: SoakOptions): Promise<SoakOutcome> {
  const cleanup = new Cleanup();
  const findings: Finding[] = [];
  const stats = new Stats();
  const log = options.log;
  try {
    return await soak(options, cleanup, findings, stats, log);
  } catch (error) {
    findings.push({ kind: 'harness', text: `the soak itself failed: ${(error as Error).stack ?? String(error)}` });
    return { pass: false, report: `carelb soak: seed ${seedText(options.seed)}: harness error\n${(error as Error).stack}`, findings };
  } finally {
    await cleanup.run();
    for (const text of cleanup.errors) log(text);
  }
}

async function soak(options: SoakOptions, cleanup: Cleanup, findings: Finding[], stats: Stats, log: (line: string) => void): Promise<SoakOutcome> {
  const { seed } = options;
  log(`carelb soak: seed ${seedText(options.seed)} (CARELB_SOAK_SEED), ${options.only ? `only ${options.only.join(',')}` : `${options.durationMs / 1000} s`}, ${options.concurrency} clients`);
  const dir = mkdtempSync(join(tmpdir(), 'carelb-soak-'));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  // Also when the harness is interrupted (main.ts exits on SIGINT/SIGTERM).
  process.on('exit', removeDir);
  cleanup.add('temp dir', () => {
    process.off('exit', removeDir);
    removeDir();
  });

  // Servers: two node:http behind main, two raw behind raw (closing idle connections after
  // 700 ms and 2 s, both shorter than carelb's upstream_idle), two raw behind queue (max_conns).
  const content = new Content(seed);
  const registry = new Registry();
  const servers: Record<string, SoakServer> = {};
  const start = async (name: string, make: () => Promise<SoakServer>) => {
    servers[name] = await make();
    cleanup.add(`server ${name}`, () => servers[name].close());
  };
  await start('h1', () => startHttpServer('h1', registry, content));
  await start('h2', () => startHttpServer('h2', registry, content));
  await start('r1', () => startRawServer('r1', registry, content, 700));
  await start('r2', () => startRawServer('r2', registry, content, 2000));
  await start('q1', () => startRawServer('q1', registry, content, 0));
  await start('q2', () => startRawServer('q2', registry, content, 0));
  const topology: Topology = {
    ports: { main: await freePort(), raw: await freePort(), queue: await freePort() },
    adminPort: await freePort(),
    servers: {
      main: [servers.h1, servers.h2],
      raw: [servers.r1, servers.r2],
      queue: [servers.q1, servers.q2],
    },
  };
  const weights: Weights = { main: [1, 2], raw: [2, 1] };
  const child = await startCarelb(topology, dir, weights);
  cleanup.add('carelb child', () => child.kill());
  if (process.env.CARELB_SOAK_CLI) child.notes.push(`carelb from CARELB_SOAK_CLI=${process.env.CARELB_SOAK_CLI}`);
  log(`carelb started, PID ${child.pid}; services on ports ${Object.entries(topology.ports).map(([k, v]) => `${k} ${v}`).join(', ')}`);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 5000 });
  cleanup.add('client agent', () => agent.destroy());
  const traffic = new Traffic(seed, registry, { portOf: (vs) => topology.ports[vs], content, agent }, stats, findings);
  const monitor = new Monitor(child, traffic, seed);
  const control = new Control(child, seed, topology.servers as Record<Vs, SoakServer[]>, findings);
  const stopper = new Stopper();
  cleanup.add('timers', async () => {
    stopper.stop();
    traffic.stopWatchdog();
    await monitor.stop();
  });

  // Traffic, control and monitoring, all bounded by the deadline.
  const began = Date.now();
  const deadline = began + options.durationMs;
  await monitor.sample();
  monitor.start();
  traffic.startWatchdog();
  const progress = setInterval(() => log(`  ${((Date.now() - began) / 1000).toFixed(0)} s: ${stats.requests} requests ended, ${traffic.active.size} in flight, ${findings.length} findings`), 10_000);
  cleanup.add('progress', () => clearInterval(progress));
  const controlling = options.only ? Promise.resolve() : control.run(stopper);
  if (options.only) await traffic.runOnly(options.only, options.repeat, options.onlyConcurrency, deadline);
  else await traffic.run(options.concurrency, deadline, options.budget);
  const trafficEnded = Date.now();
  stopper.stop();
  await controlling;
  clearInterval(progress);
  log(`traffic stopped after ${((trafficEnded - began) / 1000).toFixed(1)} s: ${stats.requests} requests`);

  // Servers behave from here on (no idle closes of their own), before the quiet period so
  // carelb has seen any close already sent when the probes start.
  for (const s of Object.values(servers)) s.behave();
  // Quiet: with no traffic, every server's in-flight count must come back to 0.
  const activeAfterQuiet = await quiet(child, findings, 'after the traffic');

  // Final probes: every kind of request, well-behaved on both sides, must be answered correctly.
  await control.restoreAll().catch((error: Error) => findings.push({ kind: 'control', text: `bringing servers back for the probes: ${error.message}` }));
  const probes = probePlans();
  let probesPassed = 0;
  for (let i = 0; i < probes.length; i += 3) {
    await Promise.all(
      probes.slice(i, i + 3).map((plan) =>
        traffic.runOne(plan, (result) => {
          const ok = result.outcome === 'ok';
          if (ok) probesPassed++;
          const seen = registry.seen.get(plan.index);
          const text = judgeResult(result, seen, describe)[0]?.text ?? `${describe(plan)} -> ${result.outcome} ${result.detail}`;
          return ok ? [] : [{ kind: 'final-probe', text, signature: signatureOf(result) }];
        }),
      ),
    );
  }
  const activeAfterProbes = await quiet(child, findings, 'after the final probes');

  // carelb's own view: invariants, thread restarts, SIGHUP reloads seen in its log, counters.
  const carelbView = await child.admin('GET', '/api/status').then(({ json }) => serviceLines(json), (error: Error) => [`GET /api/status failed: ${error.message}`]);
  if (traffic.cutsWhileUploading > 0) {
    child.notes.push(`${traffic.cutsWhileUploading} failed uploads reached their client as a reset mid-upload instead of carelb's 502 (no lingering close)`);
  }
  for (const [i, server] of [servers.q1, servers.q2].entries()) {
    // One over the limit is the close race docs/soak.md describes; more is carelb over-admitting.
    if (server.peak > QUEUE_MAX_CONNS[i] + 1) {
      findings.push({ kind: 'max-conns', text: `queue server ${server.name} had ${server.peak} requests in progress at once (max_conns ${QUEUE_MAX_CONNS[i]}, at most one more allowed)` });
    }
    child.notes.push(`queue server ${server.name} had at most ${server.peak} requests in progress at once (max_conns ${QUEUE_MAX_CONNS[i]})`);
  }
  traffic.stopWatchdog();
  await monitor.stop();
  await monitor.sample();
  if (options.only === null) {
    await pollUntil(() => child.reloads.sighup >= control.sighups, 5000);
    if (child.reloads.sighup < control.sighups) findings.push({ kind: 'control', text: `sent ${control.sighups} SIGHUPs, carelb logged ${child.reloads.sighup} "config reloaded" from SIGHUP` });
  }
  if (child.reloads.refused > 0) findings.push({ kind: 'control', text: `carelb refused ${child.reloads.refused} reloads` });
  if (monitor.invariants === null || monitor.invariants === undefined) {
    findings.push({ kind: 'invariant', text: 'carelb does not report invariants yet (GET /api/status has no "invariants" field)' });
  } else {
    for (const [kind, count] of Object.entries(monitor.invariants)) {
      if (count === 0) continue;
      const events = monitor.events.filter((e) => e.kind === kind);
      const when = events.map((e) => `+${e.to - e.from} at ${((e.t - began) / 1000).toFixed(1)} s${e.suspects.length ? ` (requests not ok in that second: ${e.suspects.join(' || ')})` : ''}`).join('; ');
      findings.push({ kind: 'invariant', text: `${kind} = ${count}: ${when}` });
    }
  }
  if (monitor.threadRestarts === null) findings.push({ kind: 'thread-restart', text: 'GET /api/status has no thread_restarts' });
  else if (monitor.threadRestarts > 0) findings.push({ kind: 'thread-restart', text: `${monitor.threadRestarts} data-plane threads were restarted` });
  for (const text of monitor.errors) findings.push({ kind: 'harness', text });
  for (const text of registry.anomalies) findings.push({ kind: 'server-anomaly', text });
  const childExit = child.exit ? `EXITED during the run (code ${child.exit.code}, signal ${child.exit.signal}, ${((child.exit.at - began) / 1000).toFixed(1)} s in)` : null;
  if (childExit) findings.push({ kind: 'child-exited', text: `carelb ${childExit}: ${child.problems.slice(-5).join(' | ')}` });

  // Memory over the second half of the traffic.
  const samples = monitor.rss.filter((s) => Number.isFinite(s.kb));
  const inTraffic = samples.filter((s) => s.t <= trafficEnded);
  const growth = rssGrowth(samples, began, trafficEnded);
  // Judged only when the second half is past the heap's warm-up: a 10-minute run reached its
  // plateau within ~5 min (86 -> 137 MB, then +3 % over the second half), while the 60 s run
  // of npm test, with a CPU hog on each core, was still warming up (+18 %, 118 -> 139 MB).
  if (growth && growth.growth >= 0.1) {
    const text = `RSS grew ${(growth.growth * 100).toFixed(1)} % over the second half (${growth.start} -> ${growth.end} kB)`;
    if (options.durationMs >= RSS_JUDGED_FROM_MS) findings.push({ kind: 'rss-growth', text });
    else child.notes.push(`${text}: not judged, a run under ${RSS_JUDGED_FROM_MS / 60_000} minutes ends within the heap's warm-up`);
  }
  const at = (list: typeof samples, f: number) => (list.length ? list[Math.min(list.length - 1, Math.floor(f * (list.length - 1)))].kb : NaN);

  // A clean shutdown: SIGTERM, exit 0 within shutdown_grace and a margin.
  let shutdown = 'not attempted (the child had exited)';
  if (!child.exit) {
    const code = await child.stop(8000);
    shutdown = code === 0 ? 'SIGTERM -> exit 0' : code === null ? 'SIGTERM ignored: killed after 8 s' : `SIGTERM -> exit ${code}`;
    if (code !== 0) findings.push({ kind: 'child-exited', text: `shutdown: ${shutdown}: ${child.problems.slice(-3).join(' | ')}` });
    if (child.problems.some((p) => /uv_loop_close|Assertion/.test(p))) findings.push({ kind: 'child-exited', text: 'shutdown aborted with open handles (uv_loop_close)' });
  }

  // Name the control operation just before each request finding: reloads and drains are suspects too.
  for (const f of findings) if (f.at !== undefined) f.text += `; control before it: ${control.before(f.at)}`;
  const pass = findings.length === 0;
  const report = formatReport({
    seed,
    requestedMs: options.durationMs,
    trafficMs: trafficEnded - began,
    concurrency: options.concurrency,
    only: options.only,
    stats,
    findings,
    control: control.counts,
    invariants: monitor.invariants ?? null,
    threadRestarts: monitor.threadRestarts,
    childExit,
    shutdown,
    activeAfterQuiet: `${activeAfterQuiet}; after the probes: ${activeAfterProbes}`,
    rss: { start: at(inTraffic, 0), mid: at(inTraffic, 0.5), end: at(inTraffic, 1), growth, samples: inTraffic.length },
    probes: { passed: probesPassed, total: probes.length },
    carelbProblems: child.problems,
    carelbView,
    notes: child.notes,
    replayArgs: options.replayArgs,
    pass,
  });
  return { pass, report, findings };
}

/** Polls /api/status until every server's `active` is 0; a finding when it stays above. */
async function quiet(child: CarelbChild, findings: Finding[], when: string): Promise<string> {
  const started = Date.now();
  let last = 'unknown';
  const zero = await pollUntil(async () => {
    if (child.exit) return true;
    try {
      const { json } = await child.admin('GET', '/api/status');
      const busy = (json.virtual_services as { name: string; servers: { name: string; active: number }[] }[]).flatMap((vs) => vs.servers.filter((s) => s.active !== 0).map((s) => `${vs.name}/${s.name}=${s.active}`));
      last = busy.join(' ');
      return busy.length === 0;
    } catch (error) {
      last = `status failed: ${(error as Error).message}`;
      return false;
    }
  }, QUIET_LIMIT_MS);
  if (child.exit) return 'unknown (carelb exited)';
  if (!zero) {
    findings.push({ kind: 'active-not-zero', text: `${when}: in-flight counts still ${last} after ${QUIET_LIMIT_MS / 1000} s without traffic` });
    return `NOT 0 (${last})`;
  }
  return `0 within ${Date.now() - started} ms`;
}

/** carelb's counters per virtual service, one line each: what it thinks it did. */
function serviceLines(status: any): string[] {
  return (status.virtual_services as any[]).map((vs) => {
    const c = vs.counters;
    const retries = (vs.servers as any[]).reduce((sum, s) => sum + (s.counters?.retries ?? 0), 0);
    const errors = Object.entries(vs.errors as Record<string, number>).filter(([, n]) => n > 0).map(([code, n]) => `${code} ${n}`).join(', ');
    return `${vs.name}: ${c.requests} requests, 2xx ${c.responses_2xx}, 4xx ${c.responses_4xx}, 5xx ${c.responses_5xx}, client aborts ${c.client_aborts}, retries ${retries}; errors: ${errors || 'none'}`;
  });
}
