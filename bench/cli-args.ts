/**
 * Command-line parsing for `npm run bench`, on node:util `parseArgs` in strict mode (issue 13:
 * no hand-written parsers; an unknown flag or a stray argument is an error, never ignored).
 * Pure: argv in, options or an error message out; run.ts turns a message into exit 2 + usage.
 */
import { parseArgs } from 'node:util';

export const SCENARIOS = ['plain', 'offload', 'bridge', 'handshake'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const ANCHORS = ['haproxy', 'nginx'] as const;
export type Anchor = (typeof ANCHORS)[number];

/**
 * wrk → the capacity table (saturated); paced (the default) or autocannon → the latency table
 * (fixed offered rate). paced is open-loop at evenly spaced times; autocannon is kept for
 * comparison, and sends each connection's per-second quota in a burst (bench/README.md).
 */
export const LOADS = ['wrk', 'paced', 'autocannon'] as const;
export type LoadKind = (typeof LOADS)[number];
export type LatencyLoad = 'paced' | 'autocannon';

/** The latency table's load in a --load list, if any (at most one of them is allowed). */
export function latencyLoad(loads: readonly LoadKind[]): LatencyLoad | undefined {
  return loads.includes('paced') ? 'paced' : loads.includes('autocannon') ? 'autocannon' : undefined;
}

export type BackendKind = 'builtin' | 'nginx';
export type CertKind = 'rsa2048' | 'p256';

export interface BenchOptions {
  scenarios: Scenario[];
  loads: LoadKind[];
  /** Offered rate of the latency table, req/s; undefined = 50 % of HAProxy's wrk capacity. */
  rate: number | undefined;
  /** Length of the measured window of one proxy-scenario-round, whole seconds. */
  durationMs: number;
  /** Load before the window opens, whole seconds; nothing from it is counted except errors. */
  warmupMs: number;
  connections: number;
  workers: number;
  /** CPUs for the load generator and backends (wrk gets one thread per CPU); the proxy gets the CPUs after them. */
  loadCpus: number;
  rounds: number;
  /** How many times a round is measured again when other processes used the bench's CPUs. */
  noisyRetries: number;
  /** Anchors asked for; missing binaries are skipped at run time with a note. */
  compare: Anchor[];
  backend: BackendKind;
  cert: CertKind;
  /** false: nothing is pinned (scaling check: threads and load share every CPU). */
  pin: boolean;
  smoke: boolean;
  /** undefined = bench/results in the repository, wherever the harness is started from. */
  out: string | undefined;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [options]

  --scenario S       plain | offload | bridge | handshake | all   (default all; comma list allowed)
  --load L           wrk | paced | autocannon, or wrk plus one of the others   (default wrk,paced)
                       wrk:        capacity table, every proxy driven to saturation
                       paced:      latency table at one fixed offered rate for every proxy,
                                   open loop, evenly spaced, latency from each request's due time
                       autocannon: the latency table with autocannon's overallRate instead
                                   (per-second bursts; latency from the write)
  --rate N           offered rate of the latency table, req/s   (default 50% of HAProxy's
                     wrk capacity in the same scenario and run; required without wrk or HAProxy)
  --duration D       measured window per proxy and round, whole seconds: 10s, 1m, 10   (default 10s)
  --warmup D         load before the window opens, whole seconds   (default max(2s, 10% of duration))
  --connections N    concurrent client connections (handshake: concurrent connect loops)   (default 64)
  --workers N        threads/processes per proxy (carelb workers, HAProxy nbthread, NGINX
                     worker_processes); proxies are pinned to the N CPUs after the load's   (default 1)
  --load-cpus N      CPUs for the load generator and backends, from CPU 0; wrk runs one thread
                     per CPU (a bigger machine needs more than one to saturate N workers)   (default 1)
  --rounds N         each proxy runs N times, order rotated each round   (default 3)
  --noisy-retries N  measure a round again, up to N times, when other processes ran on the
                     bench's CPUs during its window   (default 2; 0 with --smoke)
  --compare LIST     anchors beside carelb: haproxy,nginx | haproxy | nginx | none   (default haproxy,nginx)
  --backend B        nginx (two nginx 'return 200' servers) | builtin (two uWebSockets.js servers)   (default nginx)
  --cert C           rsa2048 | p256: key type of the generated bench certificates   (default rsa2048)
  --pin P            on | off: off pins nothing (scaling check)   (default on)
  --smoke            1 s warm-up + 1 s window, 1 round, 8 connections: proves the harness works
  --out DIR          where <timestamp>.json/.md/.svg go   (default bench/results)
  --help`;

/** "10s", "500ms", "1m", or a bare number of seconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return undefined;
  const value = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000;
  return ms > 0 ? Math.round(ms) : undefined;
}

/**
 * Windows are whole seconds: wrk's -d counts whole seconds, and autocannon's rate is a quota
 * per connection per second, so only a whole number of seconds holds a whole number of quotas.
 */
function wholeSeconds(flag: string, text: string): number | string {
  const ms = parseDurationMs(text);
  if (ms === undefined) return `${flag}: "${text}" is not a duration (e.g. 10s, 1m)`;
  if (ms % 1000 !== 0) return `${flag}: "${text}" is not a whole number of seconds (wrk and autocannon's rate count whole seconds)`;
  return ms;
}

function positiveInt(flag: string, text: string): number | string {
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 ? n : `${flag}: "${text}" is not a positive integer`;
}

/** A comma list whose items must all be in `allowed`; returned in `allowed`'s order. */
function list<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] | string {
  const items = text.split(',').map((s) => s.trim());
  for (const s of items) if (!(allowed as readonly string[]).includes(s)) return `${flag}: unknown value "${s}" (${allowed.join(', ')})`;
  return allowed.filter((a) => items.includes(a));
}

const SPEC = {
  scenario: { type: 'string' },
  load: { type: 'string' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  workers: { type: 'string' },
  'load-cpus': { type: 'string' },
  rounds: { type: 'string' },
  'noisy-retries': { type: 'string' },
  compare: { type: 'string' },
  backend: { type: 'string' },
  cert: { type: 'string' },
  pin: { type: 'string' },
  smoke: { type: 'boolean' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function strictValues(argv: readonly string[]) {
  return parseArgs({ args: [...argv], options: SPEC, strict: true, allowPositionals: false }).values;
}

/** Returns the options, or a message for the first bad argument. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions | string {
  let v: ReturnType<typeof strictValues>;
  try {
    v = strictValues(argv);
  } catch (err) {
    // ERR_PARSE_ARGS_UNKNOWN_OPTION, _UNEXPECTED_POSITIONAL, _INVALID_OPTION_VALUE: one line each.
    return err instanceof Error ? err.message : String(err);
  }
  const smoke = v.smoke === true;

  let scenarios: Scenario[] = [...SCENARIOS];
  if (v.scenario !== undefined && v.scenario !== 'all') {
    const s = list('--scenario', v.scenario, SCENARIOS);
    if (typeof s === 'string') return s;
    scenarios = s;
  }
  let loads: LoadKind[] = ['wrk', 'paced'];
  if (v.load !== undefined) {
    const l = list('--load', v.load, LOADS);
    if (typeof l === 'string') return l;
    if (l.includes('paced') && l.includes('autocannon')) return '--load: paced and autocannon both drive the latency table; pick one';
    loads = l;
  }
  let compare: Anchor[] = [...ANCHORS];
  if (v.compare !== undefined) {
    if (v.compare === 'none' || v.compare === '') compare = [];
    else {
      const c = list('--compare', v.compare, ANCHORS);
      if (typeof c === 'string') return c;
      compare = c;
    }
  }

  const ints: Record<'connections' | 'workers' | 'rounds' | 'rate' | 'load-cpus', number | undefined> = { connections: undefined, workers: undefined, rounds: undefined, rate: undefined, 'load-cpus': undefined };
  for (const k of ['connections', 'workers', 'rounds', 'rate', 'load-cpus'] as const) {
    const text = v[k];
    if (text === undefined) continue;
    const n = positiveInt(`--${k}`, text);
    if (typeof n === 'string') return n;
    ints[k] = n;
  }
  let noisyRetries: number | undefined;
  if (v['noisy-retries'] !== undefined) {
    const n = Number(v['noisy-retries']);
    if (!Number.isInteger(n) || n < 0) return `--noisy-retries: "${v['noisy-retries']}" is not a whole number`;
    noisyRetries = n;
  }
  let durationMs: number | undefined;
  let warmupMs: number | undefined;
  if (v.duration !== undefined) {
    const ms = wholeSeconds('--duration', v.duration);
    if (typeof ms === 'string') return ms;
    durationMs = ms;
  }
  if (v.warmup !== undefined) {
    const ms = wholeSeconds('--warmup', v.warmup);
    if (typeof ms === 'string') return ms;
    warmupMs = ms;
  }
  const backend = v.backend ?? 'nginx';
  if (backend !== 'builtin' && backend !== 'nginx') return `--backend: "${backend}" is not nginx or builtin`;
  const cert = v.cert ?? 'rsa2048';
  if (cert !== 'rsa2048' && cert !== 'p256') return `--cert: "${cert}" is not rsa2048 or p256`;
  const pin = v.pin ?? 'on';
  if (pin !== 'on' && pin !== 'off') return `--pin: "${pin}" is not on or off`;
  if (v.out === '') return '--out needs a directory';

  // The latency table's rate is 50 % of HAProxy's wrk capacity; without either, it needs --rate.
  const lat = latencyLoad(loads);
  const latency = lat !== undefined && scenarios.some((s) => s !== 'handshake');
  if (latency && ints.rate === undefined && !loads.includes('wrk')) return `--load ${lat} without wrk needs --rate N: there is no wrk capacity to take 50 % of`;
  if (latency && ints.rate === undefined && !compare.includes('haproxy')) return '--compare without haproxy needs --rate N for the latency table: its rate is 50 % of HAProxy\'s capacity';

  if (smoke) {
    // The test suite runs this: small and quick, but through every code path of a real run.
    durationMs ??= 1000;
    warmupMs ??= 1000;
    ints.connections ??= 8;
    ints.rounds ??= 1;
    noisyRetries ??= 0;
  }
  durationMs ??= 10_000;
  // Long enough for JIT, connection pools and TLS session caches to settle; whole seconds.
  warmupMs ??= Math.max(2000, Math.ceil(durationMs / 10_000) * 1000);

  return {
    scenarios,
    loads,
    rate: ints.rate,
    durationMs,
    warmupMs,
    connections: ints.connections ?? 64,
    workers: ints.workers ?? 1,
    loadCpus: ints['load-cpus'] ?? 1,
    rounds: ints.rounds ?? 3,
    noisyRetries: noisyRetries ?? 2,
    compare,
    backend,
    cert,
    pin: pin === 'on',
    smoke,
    out: v.out,
    help: v.help === true,
  };
}
