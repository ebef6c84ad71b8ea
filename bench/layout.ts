/**
 * Which CPUs run what. The proxy under test gets CPUs of its own (1..N); the load generators
 * (wrk or paced, or autocannon inside this process) and the backends share the first CPU. On the 2-core
 * reference VM that is "load + backends on 0, proxy on 1" (DESIGN.md, Measuring).
 * `--pin off` pins nothing, for the scaling check (threads and load share every CPU).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

export interface CpuLayout {
  /** taskset list for the harness, wrk and backends, e.g. "0"; undefined = no pinning. */
  load: string | undefined;
  /** taskset list for the proxy under test, e.g. "1" or "1-3"; undefined = no pinning. */
  proxy: string | undefined;
  /**
   * CPUs the proxy can use, for the saturation rule (proxy CPU >= 95 % of them): its pinned
   * CPUs, or with nothing pinned its --workers (capped at the CPU count).
   */
  proxyCores: number;
  /** Human-readable summary for the report. */
  description: string;
  notes: string[];
}

/** CPUs this process may run on, from /proc/self/status (respects cgroup cpusets). */
export function allowedCpus(): number[] {
  try {
    const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) {
      const out: number[] = [];
      for (const part of m[1].trim().split(',')) {
        const [a, b] = part.split('-').map(Number);
        for (let c = a; c <= (b ?? a); c++) out.push(c);
      }
      if (out.length > 0) return out;
    }
  } catch {
    // Fall through.
  }
  return [0];
}

export function planLayout(workers: number, pin: boolean, loadCpuCount = 1): CpuLayout {
  const cpus = allowedCpus();
  const notes: string[] = [];
  if (!pin) {
    notes.push(`--pin off: nothing is pinned; proxy, load generator and backends share CPUs ${cpus.join(',')}, so no row can be judged saturated against a CPU of its own: compare req/s between runs (scaling check)`);
    return { load: undefined, proxy: undefined, proxyCores: Math.min(workers, cpus.length), description: `nothing pinned (--pin off), ${cpus.length} CPUs shared by all`, notes };
  }
  if (cpus.length < 2) {
    notes.push(`only ${cpus.length} CPU available: proxy, load generator and backends share it; no proxy can be saturated, so no ratio is computed`);
    return { load: String(cpus[0]), proxy: undefined, proxyCores: 1, description: `everything on CPU ${cpus[0]} (no second CPU)`, notes };
  }
  // The load side takes the first CPUs (one wrk thread each), the proxy the next ones.
  const loadTaken = Math.min(loadCpuCount, cpus.length - 1);
  if (loadTaken < loadCpuCount) notes.push(`--load-cpus ${loadCpuCount} but only ${cpus.length} CPUs: the load side gets ${loadTaken}`);
  const load = cpus.slice(0, loadTaken).join(',');
  const proxyCpus = cpus.slice(loadTaken, loadTaken + workers);
  if (proxyCpus.length < workers) notes.push(`--workers ${workers} but only ${proxyCpus.length} CPU(s) left for the proxy: its ${workers} threads share CPU(s) ${proxyCpus.join(',')}`);
  const proxy = proxyCpus.join(',');
  return {
    load,
    proxy,
    proxyCores: proxyCpus.length,
    description: `proxy under test on CPU ${proxy} (taskset, whole process); load generator (wrk or paced, or autocannon in the harness) and backends on CPU ${load}`,
    notes,
  };
}

/** Pins every thread of this process (autocannon and the handshake loops run here) to `cpus`. */
export function pinSelf(cpus: string): string | undefined {
  try {
    // -a: all existing threads (libuv pool, V8 platform); new threads inherit the mask.
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
    return undefined;
  } catch (err) {
    return `could not pin the load generator to CPU ${cpus}: ${err instanceof Error ? err.message : String(err)}`;
  }
}
