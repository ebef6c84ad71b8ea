/**
 * `keepalived --config-test` on the file `carelb ha render` wrote, and what its outcome means.
 *
 * keepalived 2.2.7 (Debian 12's) has a config-test bug, fixed in 2.2.8 (acassen/keepalived#2587
 * and #2617): with `enable_script_security` set (carelb always sets it) and a script that runs
 * as its own user, `keepalived -t` sends itself SIGTERM and dies (exit 143) without a word.
 * That says nothing about the file, so it is reported as "written but not checked", not as a
 * failure. Every other failure is reported with keepalived's output and the reason (its exit
 * status or the signal that ended it).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

export type ConfigTestOutcome =
  | { kind: 'ok' }
  | { kind: 'not-installed' }
  /** keepalived < 2.2.8 killed its own config test: the file was written, not checked. */
  | { kind: 'known-bug'; version: string; output: string }
  | { kind: 'failed'; reason: string; output: string };

/** The first release with the fix of acassen/keepalived#2587/#2617. */
const FIXED_IN: readonly [number, number, number] = [2, 2, 8];

/** "Keepalived v2.2.7 (01/16,2022)" → [2, 2, 7]; null when there is no version in the text. */
export function parseKeepalivedVersion(text: string): [number, number, number] | null {
  const match = /Keepalived v(\d+)\.(\d+)\.(\d+)/i.exec(text);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : null;
}

function before(version: readonly number[], fixed: readonly number[]): boolean {
  for (let i = 0; i < fixed.length; i++) if (version[i] !== fixed[i]) return version[i] < fixed[i];
  return false;
}

export interface ConfigTestRun {
  /** Exit status, or null when a signal ended keepalived. */
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/**
 * What a config-test run means (pure: the run, `keepalived --version`'s text and the
 * rendered file in, a verdict out). A shell reports a SIGTERM death as exit 143: both count.
 */
export function classifyConfigTest(run: ConfigTestRun, versionText: string, conf: string): ConfigTestOutcome {
  if (run.status === 0) return { kind: 'ok' };
  const output = run.output.trim();
  const killedByTerm = run.signal === 'SIGTERM' || run.status === 143;
  const version = parseKeepalivedVersion(versionText);
  if (killedByTerm && version && before(version, FIXED_IN) && /^\s*enable_script_security\b/m.test(conf)) {
    return { kind: 'known-bug', version: version.join('.'), output };
  }
  const reason = run.signal ? `keepalived was killed by ${run.signal}` : `keepalived exited with status ${run.status}`;
  return { kind: 'failed', reason, output };
}

function combined(run: SpawnSyncReturns<string>): string {
  return `${run.stdout ?? ''}${run.stderr ?? ''}`;
}

/** Runs `keepalived --config-test -f confPath` (bounded by a timeout) and classifies it. */
export function runConfigTest(confPath: string, conf: string): ConfigTestOutcome {
  const version = spawnSync('keepalived', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if ((version.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return { kind: 'not-installed' };
  const run = spawnSync('keepalived', ['--config-test', '-f', confPath], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (run.error) return { kind: 'failed', reason: `keepalived could not be run: ${run.error.message}`, output: combined(run) };
  return classifyConfigTest({ status: run.status, signal: run.signal, output: combined(run) }, combined(version), conf);
}
