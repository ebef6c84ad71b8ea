/**
 * Every process the harness starts goes through here, so that every one of them is ended,
 * by PID, whatever way the harness ends: normal completion, an error, SIGINT/SIGTERM, or an
 * uncaught exception. nginx forks workers; those are found through /proc (parent PID) and
 * remembered, so they are killed too even if their master died first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';

export interface Tracked {
  label: string;
  pid: number;
  proc: ChildProcess;
  /** Resolves when the direct child has exited (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /** First stderr lines, kept for error messages ("unsupported: ..."). */
  stderrHead: string[];
  /** The child and every descendant seen so far (see rememberTree). */
  tree: Set<number>;
}

export interface SpawnOptions {
  /** CPU list for `taskset -c` (e.g. "1" or "1-3"); taskset execs, so the PID is the program's. */
  cpus?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  onStdoutLine?: (line: string) => void;
  onStderrLine?: (line: string) => void;
}

/** PID → process start time (clock ticks since boot), so a recycled PID is never killed. */
const known = new Map<number, string>();
const live = new Set<Tracked>();

function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; starttime is field 22 overall.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isSame(pid: number, start: string): boolean {
  return startTime(pid) === start;
}

/** Direct and indirect children of pid, found by scanning /proc for parent PIDs. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // The process ended while we looked; it has no children to worry about.
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const [child, parent] of parentOf) {
      if (parent === p && !out.includes(child)) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/**
 * Records the current process tree under the child so it can be killed even after its
 * members were re-parented (nginx workers outlive a SIGKILLed master). Returns the live tree.
 */
export function rememberTree(t: Tracked): number[] {
  if (t.pid < 0 || t.hasExited()) return [];
  const pids = [t.pid, ...descendants(t.pid)];
  for (const p of pids) {
    const st = startTime(p);
    if (st !== undefined && !known.has(p)) known.set(p, st);
    t.tree.add(p);
  }
  return pids;
}

function splitLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let rest = '';
  stream.setEncoding('utf8');
  // Always drain: a proxy that logs into a full pipe would stall and skew the numbers.
  stream.on('data', (chunk: string) => {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
    if (rest.length > 65536) rest = rest.slice(-65536);
  });
  stream.on('end', () => {
    if (rest) onLine(rest);
  });
}

export function spawnTracked(label: string, command: string, args: string[], opts: SpawnOptions = {}): Tracked {
  const [cmd, argv] = opts.cpus !== undefined ? ['taskset', ['-c', opts.cpus, command, ...args]] : [command, args];
  const proc = spawn(cmd, argv, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let done = false;
  const stderrHead: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
    proc.on('error', (err) => {
      done = true;
      stderrHead.push(`${label}: ${err.message}`);
      resolve({ code: null, signal: null });
    });
  });
  if (proc.pid === undefined) {
    // spawn failed synchronously (e.g. ENOENT); 'error' follows and resolves `exited`.
    return { label, pid: -1, proc, exited, hasExited: () => true, stderrHead, tree: new Set() };
  }
  const tracked: Tracked = { label, pid: proc.pid, proc, exited, hasExited: () => done, stderrHead, tree: new Set([proc.pid]) };
  known.set(proc.pid, startTime(proc.pid) ?? '');
  live.add(tracked);
  void exited.then(() => live.delete(tracked));
  splitLines(proc.stdout, (line) => opts.onStdoutLine?.(line));
  splitLines(proc.stderr, (line) => {
    if (stderrHead.length < 20 && line.trim()) stderrHead.push(line.trim());
    opts.onStderrLine?.(line);
  });
  return tracked;
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  const st = known.get(pid);
  if (st === undefined || (st !== '' && !isSame(pid, st))) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function alive(pid: number): boolean {
  const st = known.get(pid);
  return st !== undefined && startTime(pid) !== undefined && (st === '' || isSame(pid, st));
}

/**
 * SIGTERM the child (and whatever it forked), wait up to graceMs, then SIGKILL what is left.
 * Callers wait for this before starting the next proxy, so two never overlap.
 */
export async function stopTracked(t: Tracked, graceMs = 3000): Promise<void> {
  if (t.pid < 0) return;
  rememberTree(t);
  const all = new Set(t.tree);
  all.delete(t.pid);
  killPid(t.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && (!t.hasExited() || [...all].some(alive))) {
    await new Promise((r) => setTimeout(r, 25));
  }
  for (const p of all) if (alive(p)) killPid(p, 'SIGKILL');
  if (!t.hasExited()) killPid(t.pid, 'SIGKILL');
  await Promise.race([t.exited, new Promise((r) => setTimeout(r, 2000))]);
  for (const p of all) known.delete(p);
  known.delete(t.pid);
}

/** Synchronous last resort (process 'exit' handlers cannot wait): SIGKILL everything known. */
export function killAllSync(): void {
  for (const t of live) rememberTree(t);
  for (const pid of known.keys()) if (alive(pid)) killPid(pid, 'SIGKILL');
  known.clear();
}

export async function stopAll(graceMs = 2000): Promise<void> {
  await Promise.all([...live].map((t) => stopTracked(t, graceMs)));
  killAllSync();
}

let installed = false;
/**
 * Ends every child on the way out, however the harness ends. `cleanup` runs extra
 * synchronous work (temp directories) after the processes are gone.
 */
export function installCleanup(cleanup: () => void): void {
  if (installed) return;
  installed = true;
  const finish = (): void => {
    killAllSync();
    try {
      cleanup();
    } catch {
      // Best effort: nothing more can be done while exiting.
    }
  };
  process.on('exit', finish);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping children\n`);
      void stopAll(1000).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
