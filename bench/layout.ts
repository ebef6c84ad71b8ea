/**
 * Which CPUs run what. The proxy under test gets CPUs of its own (1..N); the load generator
 * (this process, autocannon in-process) and the backends share the first CPU. On the 2-core
 * reference VM that is "load + backends on 0, proxy on 1" (DESIGN.md, Measuring).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

export interface CpuLayout {
  /** taskset list for the harness and backends, e.g. "0". */
  load: string;
  /** taskset list for the proxy under test, e.g. "1" or "1-3"; undefined = no pinning. */
  proxy: string | undefined;
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

export function planLayout(workers: number): CpuLayout {
  const cpus = allowedCpus();
  const notes: string[] = [];
  if (cpus.length < 2) {
    notes.push(`only ${cpus.length} CPU available: proxy, load generator and backends share it; CPU/request ratios still compare, throughput does not`);
    return { load: String(cpus[0]), proxy: undefined, description: `everything on CPU ${cpus[0]} (no second CPU)`, notes };
  }
  const load = String(cpus[0]);
  const proxyCpus = cpus.slice(1, 1 + workers);
  if (proxyCpus.length < workers) notes.push(`--workers ${workers} but only ${proxyCpus.length} CPU(s) left for the proxy: its ${workers} threads share CPU(s) ${proxyCpus.join(',')}`);
  const proxy = proxyCpus.join(',');
  return {
    load,
    proxy,
    description: `proxy under test on CPU ${proxy} (taskset, whole process); load generator (autocannon in the harness) and backends on CPU ${load}`,
    notes,
  };
}

/** Pins every thread of this process (autocannon runs here) to `cpus`. */
export function pinSelf(cpus: string): string | undefined {
  try {
    // -a: all existing threads (libuv pool, V8 platform); new threads inherit the mask.
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
    return undefined;
  } catch (err) {
    return `could not pin the load generator to CPU ${cpus}: ${err instanceof Error ? err.message : String(err)}`;
  }
}
