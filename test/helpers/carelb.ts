/**
 * Running carelb in tests: in-process (the primary runs in the test process, threads are
 * real worker threads, so tests can read shared counters directly) or as a child process
 * (for the CLI, signals and memory), always on free loopback ports, always cleaned up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import type { ServiceStatus } from '../../src/primary/status';

export const CLI = join(__dirname, '..', '..', 'src', 'cli.js');

export function configFrom(document: unknown): Config {
  const result = validateConfig(document);
  if (!result.ok) throw new Error(`test config invalid: ${result.errors.join('; ')}`);
  return result.config;
}

export interface InProcess {
  running: Running;
  config: Config;
  status(): ServiceStatus[];
  stop(): Promise<void>;
}

/** Starts carelb in this process; stopped automatically when the test ends. */
export async function startInProcess(t: TestContext, document: unknown): Promise<InProcess> {
  const config = configFrom(document);
  const running = await runCarelb(config, { log: createLogger('warn') });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await running.stop();
  };
  t.after(stop);
  return { running, config, status: () => running.status(), stop };
}

export interface Child {
  process: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

/** Spawns `carelb ARGS`; killed (SIGKILL, by PID) when the test ends if still running. */
export function spawnCli(t: TestContext, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => stdout.push(d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { process: child, stdout, stderr, exited };
}

/** Resolves when a JSON log line with `msg` appears on the child's stdout. */
export function waitForLog(child: Child, msg: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const check = (data: string) => {
      buffered += data;
      for (const line of buffered.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line);
          if (entry.msg === msg) {
            child.process.stdout!.off('data', check);
            resolve(entry);
            return;
          }
        } catch {
          /* partial line */
        }
      }
    };
    child.process.stdout!.on('data', check);
    check(child.stdout.join(''));
    void child.exited.then((code) => reject(new Error(`carelb exited (${code}) before logging "${msg}": ${child.stderr.join('')}`)));
  });
}

/** A temporary directory removed when the test ends. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `document` as YAML into a temp dir and returns the path. */
export function writeConfig(t: TestContext, document: unknown, text?: string): string {
  const path = join(tempDir(t), 'carelb.yaml');
  writeFileSync(path, text ?? stringify(document));
  return path;
}

/** Polls `condition` on the next turns of the event loop until true or `ms` elapse (no fixed sleeps). */
export async function eventually(condition: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Starts `carelb start -c <document as YAML>` as a child process and waits until it is ready. */
export async function startChild(t: TestContext, document: unknown, env: NodeJS.ProcessEnv = {}, configPath?: string): Promise<Child> {
  const child = spawnCli(t, ['start', '-c', configPath ?? writeConfig(t, document)], env);
  await waitForLog(child, 'ready');
  return child;
}

/** A field of /proc/PID/status in kB (VmHWM, VmRSS). */
export function procStatusKb(pid: number, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : NaN;
}

/**
 * Like `eventually` for conditions that need I/O: awaits `probe` again and again (10 ms
 * apart, never two at once) until it gives a value other than undefined; rejects after `ms`.
 */
export async function until<T>(probe: () => Promise<T | undefined>, ms = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
