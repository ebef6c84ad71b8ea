/**
 * CPU time and memory of a process tree, read from /proc. The headline metric of the bench is
 * CPU time per proxied request (DESIGN.md, Measuring): utime+stime of the proxy's processes
 * (all threads included — /proc/PID/stat sums them) across the measured window, divided by
 * the requests completed in that window.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

let clkTck: number | undefined;

/** Clock ticks per second for /proc/PID/stat times (`getconf CLK_TCK`, nearly always 100). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      clkTck = NaN;
    }
    if (!Number.isFinite(clkTck) || clkTck <= 0) clkTck = 100;
  }
  return clkTck;
}

/** utime+stime in clock ticks, or undefined when the process is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Split after the command name, which may itself contain spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 (utime) and 15 (stime) overall = indexes 11 and 12 after the name.
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/** Sum of utime+stime over pids, in microseconds. Gone processes count as 0. */
export function cpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += cpuTicks(pid) ?? 0;
  return (ticks * 1e6) / clockTicks();
}

/** A status field in kB (e.g. VmHWM = peak resident set), or 0 when unreadable. */
function statusKb(pid: number, field: string): number {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Peak RSS summed over the processes. For nginx (master + workers) this over-counts pages
 * they share after fork; it is still the number an operator's `ps` would add up.
 */
export function peakRssKb(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) kb += statusKb(pid, 'VmHWM');
  return kb;
}

/**
 * CPU time of this very process plus its children that have exited and been reaped, in
 * microseconds (/proc/self/stat utime+stime+cutime+cstime). The load generator is either
 * in-process (autocannon, handshake loops) or wrk, a child that exits as the window closes:
 * by then libuv has reaped it, so its whole CPU time is in cutime+cstime. No other child of
 * the harness exits inside a window (proxies stop after it, backends at the end).
 */
export function harnessCpuMicros(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 overall: utime, stime, cutime, cstime = indexes 11-14 after the name.
    return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1e6) / clockTicks();
  } catch {
    return 0;
  }
}

/**
 * Time whole CPUs spent busy, from /proc/stat, microseconds. `tasks` = user+nice+system (time
 * in processes, any process); `busy` adds irq+softirq, the kernel's network work that is
 * accounted to no process (loopback TCP is mostly softirq); `steal` is time the hypervisor
 * gave the vCPU to someone else, which no process in this VM sees. Used to cross-check the
 * per-process figure and to see whether something else ran on the bench's CPUs in a window.
 */
export interface CpuSetTimes {
  tasks: number;
  busy: number;
  steal: number;
}

export function cpuSetMicros(cpus: readonly number[]): CpuSetTimes {
  let tasks = 0;
  let irq = 0;
  let steal = 0;
  try {
    for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m || !cpus.includes(Number(m[1]))) continue;
      const f = m[2].trim().split(/\s+/).map(Number);
      tasks += f[0] + f[1] + f[2];
      irq += f[5] + f[6];
      steal += f[7] ?? 0;
    }
  } catch {
    return { tasks: 0, busy: 0, steal: 0 };
  }
  const k = 1e6 / clockTicks();
  return { tasks: tasks * k, busy: (tasks + irq) * k, steal: steal * k };
}

/** Every CPU counter of one window boundary, taken together in one synchronous step. */
export interface CpuSnapshot {
  proxyUs: number;
  backendUs: number;
  /**
   * The load generator: the harness itself and wrk (see harnessCpuMicros), plus a load
   * generator that is still running as the window closes (paced), read from its /proc entry.
   */
  selfUs: number;
  /** /proc/stat of the proxy's CPUs. */
  cpuset: CpuSetTimes;
  /** /proc/stat of the load CPU: how busy it was, and other jobs competing with the load generator. */
  loadCpuset: CpuSetTimes;
}

export function cpuSnapshot(proxyPids: readonly number[], backendPids: readonly number[], loadPids: readonly number[], proxyCpus: readonly number[], loadCpus: readonly number[]): CpuSnapshot {
  return {
    proxyUs: cpuMicros(proxyPids),
    backendUs: cpuMicros(backendPids),
    selfUs: harnessCpuMicros() + cpuMicros(loadPids),
    cpuset: cpuSetMicros(proxyCpus),
    loadCpuset: cpuSetMicros(loadCpus),
  };
}
