/**
 * `carelb start`: validate the config, lay out shared state, start the threads, serve until
 * SIGTERM/SIGINT, then stop gracefully and exit 0.
 */
import { workerCount } from '../config/load';
import type { Config } from '../config/schema';
import { createLogger, type Logger } from '../observe/log';
import type { SharedViews } from '../state/layout';
import { applyPlan, createSharedFor } from './shared-state';
import { SlotAllocator } from './slots';
import { snapshot, type ServiceStatus } from './status';
import { Supervisor } from './supervisor';

export interface Running {
  supervisor: Supervisor;
  shared: SharedViews;
  /** Live state and counters of the running config. */
  status(): ServiceStatus[];
  stop(): Promise<void>;
}

export async function runCarelb(config: Config, log: Logger = createLogger(), onStopped?: () => Promise<void>): Promise<Running> {
  const threads = workerCount(config);
  const slots = SlotAllocator.forConfig(config);
  const planned = slots.plan(config);
  if ('error' in planned) throw new Error(planned.error);
  const shared = createSharedFor(slots.vsCapacity, slots.serverCapacity, threads);
  applyPlan(shared, config, planned.plan, planned.freshServers, planned.freshVs);
  const supervisor = new Supervisor(config, planned.plan, threads, shared, log);
  try {
    await supervisor.start();
  } catch (error) {
    await supervisor.stop(0);
    throw error;
  }
  log.info(
    {
      msg: 'ready',
      workers: threads,
      virtual_services: config.virtual_services.map((vs) => ({ name: vs.name, listen: `${vs.listen.host}:${vs.listen.port}`, servers: vs.servers.length })),
    },
  );

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ grace_ms: config.shutdown_grace }, 'stopping: no new connections, finishing in-flight requests');
      await supervisor.stop(config.shutdown_grace);
      await onStopped?.();
      log.info('stopped');
    })());

  if (process.env.CARELB_FAULT_INJECTION === '1') {
    process.on('SIGUSR2', () => {
      log.warn('fault injection: crashing data-plane thread 0');
      supervisor.crashThread(0);
    });
  }
  return { supervisor, shared, status: () => snapshot(supervisor.config, supervisor.plan, shared), stop };
}
