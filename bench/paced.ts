/**
 * The latency table's default load: paced (bench/paced/paced.c), a constant-rate, open-loop
 * HTTP/1.1 load generator in C that is built here at run time. It runs as a child pinned to
 * the load CPU, with `--connections` keep-alive connections and one request in flight on each.
 *
 * Why not autocannon: its overallRate sends each connection's per-second quota back to back,
 * then waits for the next second. The offered rate therefore arrives in bursts (25–40k req/s
 * at 10k offered). It also times a request from its write, not from when it was due. paced
 * sends request k at t0 + k/rate on one schedule shared by all connections. A due request
 * with no idle connection waits, and its latency is counted from its due time (the
 * coordinated-omission correction, as in wrk2). A single Node process also cannot offer 50 %
 * of HAProxy's plain capacity while sharing a CPU with the backends. A C loop can.
 *
 * The window: paced writes "paced: window open" / "paced: window close" on stderr at its
 * measured window's edges, and the harness takes its CPU snapshots when those lines arrive
 * (within a fraction of a millisecond; the harness has nothing else to do meanwhile). Counts
 * and latencies come from paced's JSON on stdout. Its warm-up and window run in one process,
 * so the connections stay warm across the window's opening.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnTracked, stopTracked, type Tracked } from './children';
import { newHistogram, type LoadResult, type LoadSpec } from './measure';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const PACED_SOURCE = path.join(REPO_ROOT, 'bench', 'paced', 'paced.c');
/** Git-ignored; the binary is built here from the source at run time and never committed. */
export const PACED_BUILD_DIR = path.join(REPO_ROOT, 'bench', '.build');
export const PACED_BIN = path.join(PACED_BUILD_DIR, 'paced');

/** paced's request timeout (from send), which is also its longest drain after the window. */
const TIMEOUT_S = 5;
/** paced waits up to 2 s for its connections before t0. */
const CONNECT_WAIT_S = 2;

/**
 * Builds paced when the binary is missing or older than its source, and returns its path.
 * Throws an Error that says what to install when there is no compiler or no libssl-dev.
 */
export function buildPaced(): string {
  if (!fs.existsSync(PACED_SOURCE)) throw new Error(`${PACED_SOURCE} is missing`);
  const srcTime = fs.statSync(PACED_SOURCE).mtimeMs;
  try {
    if (fs.statSync(PACED_BIN).mtimeMs >= srcTime) return PACED_BIN;
  } catch {
    // Not built yet.
  }
  fs.mkdirSync(PACED_BUILD_DIR, { recursive: true });
  // Build to a private name, then rename: two runs building at once never see half a binary.
  const tmp = `${PACED_BIN}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', tmp, PACED_SOURCE, '-lssl', '-lcrypto'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error || r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    const err = r.error as NodeJS.ErrnoException | undefined;
    if (err?.code === 'ENOENT') throw new Error('cannot build paced: no C compiler (`cc` not found; Debian: apt-get install gcc libssl-dev)');
    const out = `${r.stderr ?? ''}${r.stdout ?? ''}`;
    if (/openssl\/\w+\.h|-lssl|-lcrypto/.test(out)) {
      throw new Error('cannot build paced: the OpenSSL development files are missing (Debian: apt-get install libssl-dev)');
    }
    const head = out.trim().split('\n').slice(0, 5).join('\n');
    throw new Error(`cannot build paced (cc ${err ? err.message : `exit ${r.status}`}): ${head}`);
  }
  fs.renameSync(tmp, PACED_BIN);
  return PACED_BIN;
}

export interface PacedLatency {
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
  mean: number;
}

/** paced's JSON (see the header of paced.c); latencies in ms. */
export interface PacedJson {
  offered_rps: number;
  achieved_rps: number;
  /** Responses whose last byte arrived inside the window. */
  completed: number;
  window_due: number;
  latency_samples: number;
  sent: number;
  responses: number;
  non2xx: number;
  errors: { connect: number; tls: number; read: number; write: number; parse: number; timeout: number; unfinished: number };
  errors_total: number;
  reconnects: number;
  max_backlog: number;
  max_send_lag_ms: number;
  timer: string;
  pacing: { sent_per_100ms: { max: number; mean: number }; done_per_100ms: { max: number; mean: number } };
  latency_ms: { from_due: PacedLatency; from_send: PacedLatency };
  /** How long requests due in the window waited while a connection was idle: paced's own lateness. */
  generator: { lag_ms: PacedLatency };
  histogram_from_due_us: [number, number][];
}

export function parsePacedJson(text: string): PacedJson {
  const j = JSON.parse(text) as PacedJson;
  for (const k of ['achieved_rps', 'completed', 'non2xx', 'max_backlog'] as const) {
    if (!Number.isFinite(j[k])) throw new Error(`paced JSON: ${k} missing`);
  }
  if (!j.errors || !j.latency_ms?.from_due || !j.latency_ms.from_send || !j.generator?.lag_ms || !Array.isArray(j.histogram_from_due_us)) {
    throw new Error('paced JSON: errors or latency missing');
  }
  return j;
}

/** Runs paced once: warm-up and window in one process, the window hooks on its stderr lines. */
export async function runPacedLoad(spec: LoadSpec, cpus: string | undefined, bin: string): Promise<LoadResult> {
  if (spec.rate === undefined) throw new Error('paced needs an offered rate');
  // TLS: "localhost", so that paced sends SNI (it maps localhost to 127.0.0.1 itself).
  const url = `${spec.tls ? 'https' : 'http'}://${spec.tls ? 'localhost' : spec.host}:${spec.port}/fhir/r4/Patient/example`;
  const args = ['-R', String(spec.rate), '-c', String(spec.connections), '-w', String(spec.warmupMs / 1000), '-d', String(spec.durationMs / 1000), '-t', String(TIMEOUT_S), url];
  let stdout = '';
  const messages: string[] = [];
  let opened = false;
  let closed = false;
  let t0 = 0n;
  let t1 = 0n;
  const started = Date.now();
  let openedAt = 0;
  const tick = setInterval(() => {
    const now = Date.now();
    spec.onProgress?.(
      opened
        ? { phase: 'measure', elapsedMs: Math.min(now - openedAt, spec.durationMs), phaseMs: spec.durationMs, completed: undefined, errors: undefined }
        : { phase: 'warmup', elapsedMs: Math.min(now - started, spec.warmupMs), phaseMs: spec.warmupMs, completed: undefined, errors: undefined },
    );
  }, 500);
  const child: Tracked = spawnTracked('paced', bin, args, {
    cpus,
    onStdoutLine: (line) => {
      if (stdout.length < 4 << 20) stdout += line + '\n';
    },
    // These callbacks run after spawnTracked has returned, so `child` is set.
    onStderrLine: (line) => {
      if (line === 'paced: window open' && !opened) {
        opened = true;
        openedAt = Date.now();
        // taskset execs paced, so this PID is paced's: its CPU is the load generator's.
        spec.hooks.open([child.pid]);
        t0 = process.hrtime.bigint();
      } else if (line === 'paced: window close' && opened && !closed) {
        t1 = process.hrtime.bigint();
        spec.hooks.close();
        closed = true;
      } else if (line.trim() !== '' && messages.length < 10) {
        messages.push(line.trim());
      }
    },
  });
  // 'exit' can come before the last stdout bytes; 'close' comes after the pipes are drained.
  const drained = new Promise<void>((resolve) => child.proc.once('close', () => resolve()));
  // paced bounds itself (connect + warm-up + window + drain + 1 s); this is the backstop.
  const boundMs = spec.warmupMs + spec.durationMs + (CONNECT_WAIT_S + TIMEOUT_S + 10) * 1000;
  const killer = setTimeout(() => void stopTracked(child, 500), boundMs);
  let exit: Awaited<Tracked['exited']>;
  try {
    exit = await child.exited;
    await Promise.race([drained, new Promise((r) => setTimeout(r, 2000))]);
  } finally {
    clearTimeout(killer);
    clearInterval(tick);
  }
  const why = messages[0] ?? child.stderrHead.find((l) => !l.startsWith('paced: window')) ?? '';
  if (exit.code !== 0) throw new Error(`paced exited with ${exit.signal ?? `code ${exit.code}`}: ${why}`);
  if (!opened || !closed) throw new Error(`paced ended without ${opened ? 'closing' : 'opening'} its window: ${why}`);
  let j: PacedJson;
  try {
    j = parsePacedJson(stdout);
  } catch (err) {
    throw new Error(`paced wrote no usable JSON (${err instanceof Error ? err.message : String(err)}): ${stdout.slice(0, 300)}`);
  }
  const histogram = newHistogram();
  for (const [us, count] of j.histogram_from_due_us) histogram.recordValueWithCount(Math.max(1, us), count);
  const us = (l: PacedLatency): LoadResult['latency'] => ({ p50: l.p50 * 1000, p90: l.p90 * 1000, p99: l.p99 * 1000, p99_9: l.p99_9 * 1000, max: l.max * 1000 });
  const e = j.errors;
  return {
    requests: j.completed,
    windowMs: Number(t1 - t0) / 1e6,
    // paced's own count ÷ its own window, as wrk's req/s is wrk's.
    rps: j.achieved_rps,
    latency: us(j.latency_ms.from_due),
    histogram,
    burstPeakRps: j.pacing.done_per_100ms.max * 10,
    errors: e.connect + e.tls + e.read + e.write + e.parse,
    // Requests due in the window that never got an answer count as timed out.
    timeouts: e.timeout + e.unfinished,
    non2xx: j.non2xx,
    paced: {
      fromSend: us(j.latency_ms.from_send),
      generatorLag: us(j.generator.lag_ms),
      maxBacklog: j.max_backlog,
      maxSendLagUs: j.max_send_lag_ms * 1000,
      sentPeakRps: j.pacing.sent_per_100ms.max * 10,
    },
  };
}
