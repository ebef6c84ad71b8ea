/**
 * Command-line parsing for `npm run bench`. Pure: argv in, options (or an error message) out,
 * so it can be unit-tested and so run.ts never has to look at raw strings again.
 */

export const SCENARIOS = ['plain', 'offload', 'bridge', 'handshake'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const ANCHORS = ['haproxy', 'nginx'] as const;
export type Anchor = (typeof ANCHORS)[number];

export type BackendKind = 'builtin' | 'nginx';
export type CertKind = 'rsa2048' | 'p256';

export interface BenchOptions {
  scenarios: Scenario[];
  /** Length of the measured window of one proxy-scenario-round. */
  durationMs: number;
  /** Load before the window opens; nothing from it is counted except errors. */
  warmupMs: number;
  connections: number;
  workers: number;
  rounds: number;
  /** How many times a round is measured again when other processes used the proxy's CPU. */
  noisyRetries: number;
  /** Anchors asked for; missing binaries are skipped at run time with a note. */
  compare: Anchor[];
  backend: BackendKind;
  cert: CertKind;
  smoke: boolean;
  /** undefined = bench/results in the repository, wherever the harness is started from. */
  out: string | undefined;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [options]

  --scenario S       plain | offload | bridge | handshake | all   (default all; comma list allowed)
  --duration D       measured window per proxy and round, e.g. 10s, 500ms, 1m   (default 10s)
  --warmup D         load before the window opens   (default max(2s, 10% of duration))
  --connections N    concurrent client connections (handshake: concurrent connect loops)   (default 64)
  --workers N        threads/processes per proxy; proxies are pinned to CPUs 1..N   (default 1)
  --rounds N         each proxy runs N times, order rotated each round   (default 3)
  --noisy-retries N  measure a round again, up to N times, when other processes ran on the
                     proxy's CPU during its window   (default 2; 0 with --smoke)
  --compare LIST     anchors beside carelb: haproxy,nginx | haproxy | nginx | none   (default haproxy,nginx)
  --backend B        builtin (uWebSockets.js) | nginx   (default builtin)
  --cert C           rsa2048 | p256: key type of the generated bench certificates   (default rsa2048)
  --smoke            2 s per proxy-scenario (0.5 s warm-up), 1 round, 8 connections
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

function positiveInt(flag: string, text: string): number | string {
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 ? n : `${flag}: "${text}" is not a positive integer`;
}

/** Returns the options, or a message for the first bad argument. */
export function parseArgs(argv: readonly string[]): BenchOptions | string {
  let scenarios: Scenario[] = [...SCENARIOS];
  let durationMs: number | undefined;
  let warmupMs: number | undefined;
  let connections: number | undefined;
  let workers = 1;
  let rounds: number | undefined;
  let noisyRetries: number | undefined;
  let compare: Anchor[] = [...ANCHORS];
  let backend: BackendKind = 'builtin';
  let cert: CertKind = 'rsa2048';
  let smoke = false;
  let out: string | undefined;
  let help = false;

  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    // Accept both "--flag value" and "--flag=value".
    const eq = raw.indexOf('=');
    const flag = raw.startsWith('--') && eq > 0 ? raw.slice(0, eq) : raw;
    const inline = raw.startsWith('--') && eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = (): string | undefined => (inline !== undefined ? inline : argv[++i]);

    switch (flag) {
      case '--help':
      case '-h':
        help = true;
        break;
      case '--smoke':
        smoke = true;
        break;
      case '--scenario': {
        const v = value();
        if (!v) return '--scenario needs a value';
        if (v === 'all') {
          scenarios = [...SCENARIOS];
          break;
        }
        const list = v.split(',').map((s) => s.trim());
        for (const s of list) if (!(SCENARIOS as readonly string[]).includes(s)) return `--scenario: unknown scenario "${s}" (plain, offload, bridge, handshake, all)`;
        scenarios = SCENARIOS.filter((s) => list.includes(s));
        break;
      }
      case '--duration':
      case '--warmup': {
        const v = value();
        const ms = v === undefined ? undefined : parseDurationMs(v);
        if (ms === undefined) return `${flag}: "${v ?? ''}" is not a duration (e.g. 10s, 500ms, 1m)`;
        if (flag === '--duration') durationMs = ms;
        else warmupMs = ms;
        break;
      }
      case '--connections':
      case '--workers':
      case '--rounds': {
        const v = value();
        if (v === undefined) return `${flag} needs a value`;
        const n = positiveInt(flag, v);
        if (typeof n === 'string') return n;
        if (flag === '--connections') connections = n;
        else if (flag === '--workers') workers = n;
        else rounds = n;
        break;
      }
      case '--noisy-retries': {
        const v = value();
        const n = Number(v);
        if (v === undefined || !Number.isInteger(n) || n < 0) return `--noisy-retries: "${v ?? ''}" is not a whole number`;
        noisyRetries = n;
        break;
      }
      case '--compare': {
        const v = value();
        if (v === undefined) return '--compare needs a value';
        if (v === 'none' || v === '') {
          compare = [];
          break;
        }
        const list = v.split(',').map((s) => s.trim());
        for (const a of list) if (!(ANCHORS as readonly string[]).includes(a)) return `--compare: unknown proxy "${a}" (haproxy, nginx, none)`;
        compare = ANCHORS.filter((a) => list.includes(a));
        break;
      }
      case '--backend': {
        const v = value();
        if (v !== 'builtin' && v !== 'nginx') return `--backend: "${v ?? ''}" is not builtin or nginx`;
        backend = v;
        break;
      }
      case '--cert': {
        const v = value();
        if (v !== 'rsa2048' && v !== 'p256') return `--cert: "${v ?? ''}" is not rsa2048 or p256`;
        cert = v;
        break;
      }
      case '--out': {
        const v = value();
        if (!v) return '--out needs a directory';
        out = v;
        break;
      }
      default:
        return `unknown argument "${raw}"`;
    }
  }

  if (smoke) {
    // The test suite runs this: small and quick, but through every code path of a real run.
    durationMs ??= 1500;
    warmupMs ??= 500;
    connections ??= 8;
    rounds ??= 1;
    noisyRetries ??= 0;
  }
  durationMs ??= 10_000;
  // Long enough for JIT, connection pools and TLS session caches to settle.
  warmupMs ??= Math.max(2000, Math.round(durationMs * 0.1));
  connections ??= 64;
  rounds ??= 3;
  noisyRetries ??= 2;

  return { scenarios, durationMs, warmupMs, connections, workers, rounds, noisyRetries, compare, backend, cert, smoke, out, help };
}
