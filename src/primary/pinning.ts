/**
 * CPU pinning of data-plane threads. The affinity of one thread (not the process) is set by
 * its kernel thread id, which the thread reads from /proc/thread-self and reports.
 */
import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';

/** CPU for thread slot i: i mod the CPUs this process may use. */
export function cpuForSlot(slot: number, cpus = availableParallelism()): number {
  return slot % cpus;
}

/** Pins kernel thread `tid` to `cpu` with taskset; resolves to an error message or null. */
export function pinThread(tid: number, cpu: number): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('taskset', ['-p', '-c', String(cpu), String(tid)], (error, _stdout, stderr) => {
      resolve(error ? `taskset failed for thread ${tid}: ${stderr.trim() || error.message}` : null);
    });
  });
}
