/**
 * The HA test's own hosts: network namespaces joined by veth pairs to a bridge that lives in a
 * "switch" namespace, so nothing is added to the host's network (no host link, no host
 * address, no host sysctl). Processes run inside with `ip netns exec`, optionally with a
 * directory bind-mounted over a common path in their private mount namespace (two "hosts"
 * with the same /etc-like path but different files).
 *
 * Cleanup (`destroy`, and a synchronous `process.on('exit')` safety net): every process still
 * in one of these namespaces is killed (`ip netns pids`: only what this test started, and
 * their children, live there), then the namespaces are deleted, which removes their links.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface HostSpec {
  name: string;
  /** Address with prefix length on its eth0, e.g. 10.99.0.11/24. */
  address: string;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** Resolves with the first stdout line for which `match` returns true. */
  line(match: (line: string) => boolean, ms?: number): Promise<string>;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  /** Bind-mount `source` over `target` (an existing directory) for this process only. */
  bind?: { source: string; target: string };
  stdin?: string;
}

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin'])) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** Why this test cannot run here, or null. */
export function missingPrerequisites(probeName: string): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, keepalived, addresses)';
  for (const command of ['ip', 'keepalived', 'mount', 'setsid']) {
    if (!onPath(command)) return `${command} is not installed (apt-get install ${command === 'ip' ? 'iproute2' : command === 'keepalived' ? 'keepalived' : 'util-linux'})`;
  }
  const probe = spawnSync('ip', ['netns', 'add', probeName], { encoding: 'utf8' });
  if (probe.status !== 0) return `cannot create a network namespace here: ${probe.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probeName]);
  return null;
}

function wrap(ns: string, argv: string[], options: ExecOptions): string[] {
  if (!options.bind) return ['netns', 'exec', ns, ...argv];
  // `ip netns exec` gives the process its own mount namespace (slave to the host's): a mount made
  // inside never reaches the host and disappears with the process.
  return ['netns', 'exec', ns, 'sh', '-c', 'mount --bind "$0" "$1" && shift && exec "$@"', options.bind.source, options.bind.target, ...argv];
}

export class Network {
  readonly namespaces: string[] = [];
  private readonly procs = new Set<ChildProcess>();
  private destroyed = false;
  private readonly safetyNet = () => this.destroySync();

  constructor(readonly prefix: string) {
    process.on('exit', this.safetyNet);
  }

  ns(name: string): string {
    return `${this.prefix}-${name}`;
  }

  private ip(args: string[]): void {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** The switch namespace with a bridge, and one namespace per host with eth0 on the bridge. */
  build(hosts: HostSpec[]): void {
    const sw = this.ns('sw');
    this.ip(['netns', 'add', sw]);
    this.namespaces.push(sw);
    this.ip(['-n', sw, 'link', 'set', 'lo', 'up']);
    this.ip(['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    this.ip(['-n', sw, 'link', 'set', 'br0', 'up']);
    for (const host of hosts) {
      const ns = this.ns(host.name);
      this.ip(['netns', 'add', ns]);
      this.namespaces.push(ns);
      const port = `p-${host.name}`.slice(0, 15);
      // Both ends are created inside namespaces: the host's own network never sees them.
      this.ip(['-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      this.ip(['-n', sw, 'link', 'set', port, 'master', 'br0']);
      this.ip(['-n', sw, 'link', 'set', port, 'up']);
      this.ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      this.ip(['-n', ns, 'addr', 'add', host.address, 'dev', 'eth0']);
      this.ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    }
  }

  /** Starts a long-running process inside `host`'s namespace. */
  spawn(host: string, argv: string[], options: ExecOptions = {}): Proc {
    const child = spawn('ip', wrap(this.ns(host), argv, options), { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.procs.add(child);
    const stdout: string[] = [];
    const stderr: string[] = [];
    let partial = '';
    const waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
    child.stdout!.setEncoding('utf8').on('data', (data: string) => {
      partial += data;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        stdout.push(line);
        for (const waiter of [...waiters]) {
          if (waiter.match(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (data: string) => stderr.push(data));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => {
        this.procs.delete(child);
        resolve(code);
      }),
    );
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    const line = (match: (line: string) => boolean, ms = 15_000) =>
      new Promise<string>((resolve, reject) => {
        const found = stdout.find(match);
        if (found !== undefined) return resolve(found);
        const timer = setTimeout(() => reject(new Error(`timed out waiting for a line from ${argv.join(' ')}; stderr: ${stderr.join('').slice(-2000)}`)), ms);
        waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`${argv.join(' ')} exited (${code}) before the expected line; stderr: ${stderr.join('').slice(-2000)}`));
        });
      });
    return { child, pid: child.pid!, stdout, stderr, exited, line };
  }

  /** Runs a command inside `host`'s namespace to completion. */
  run(host: string, argv: string[], options: ExecOptions = {}, timeoutMs = 30_000): Promise<RunResult> {
    return new Promise((resolve) => {
      const child = execFile('ip', wrap(this.ns(host), argv, options), { env: { ...process.env, ...options.env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        this.procs.delete(child);
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
      });
      this.procs.add(child);
      if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    });
  }

  /** IPv4 addresses (without prefix) on `dev` in `host`'s namespace. */
  addresses(host: string, dev = 'eth0'): Promise<string[]> {
    return new Promise((resolve) => {
      execFile('ip', ['-n', this.ns(host), '-o', '-4', 'addr', 'show', 'dev', dev], (error, stdout) => {
        resolve(error ? [] : [...String(stdout).matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]));
      });
    });
  }

  /** Writes a sysctl of `host`'s namespace (its own copy; the host's is untouched). */
  async sysctl(host: string, key: string, value: string): Promise<void> {
    const result = await this.run(host, ['sh', '-c', 'echo "$1" > "/proc/sys/$0"', key.replace(/\./g, '/'), value]);
    if (result.code !== 0) throw new Error(`sysctl ${key}=${value} in ${host}: ${result.stderr}`);
  }

  /** PIDs of every process inside one of this network's namespaces. */
  private pidsInside(): number[] {
    const pids: number[] = [];
    for (const ns of this.namespaces) {
      const out = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
      if (out.status === 0) pids.push(...out.stdout.split('\n').filter(Boolean).map(Number));
    }
    return pids.filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid);
  }

  /** Stops every process (SIGTERM, then SIGKILL after `graceMs`), deletes the namespaces. */
  async destroy(graceMs = 3000): Promise<void> {
    if (this.destroyed) return;
    for (const pid of this.pidsInside()) signal(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (this.pidsInside().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const pid of this.pidsInside()) signal(pid, 'SIGKILL');
    for (const child of this.procs) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) spawnSync('ip', ['netns', 'del', ns]);
    process.off('exit', this.safetyNet);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}
