/**
 * Supervises the data-plane threads through piscina: a fixed pool of N threads, one
 * long-running serve task per thread. A thread that dies is replaced by piscina; the
 * supervisor re-submits its serve task (same slot, so the same statistics region and CPU)
 * while the other threads keep serving.
 */
import { MessageChannel } from 'node:worker_threads';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import type { Config } from '../config/schema';
import type { FromThread, ServeTask, ToThread } from '../dataplane/messages';
import type { ObserveBatch } from '../dataplane/observe';
import type { Logger } from '../observe/log';
import type { SharedViews } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import { cpuForSlot, pinThread } from './pinning';
import { createRateTable } from '../state/rate-table';

interface Slot {
  port: MessagePort | null;
  listening: boolean;
  /** Settles when this slot's current serve task ends (stopped or thread died). */
  task: Promise<unknown>;
}

type MessagePort = import('node:worker_threads').MessagePort;

interface ReloadWaiter {
  pending: Set<number>;
  failed: Set<string>;
  resolve: (failed: string[]) => void;
}

export class Supervisor {
  private readonly pool: Piscina;
  private readonly rates = createRateTable();
  private readonly slots: Slot[] = [];
  private stopping = false;
  /** Set by the primary: latency histograms and access-log lines from a thread. */
  onObserve: (batch: ObserveBatch) => void = () => {};
  /** Set by the primary: a thread's passive detection marked a server down. */
  onPassiveDown: (serverSlot: number, reason: string) => void = () => {};
  /** Threads replaced after dying. */
  restarts = 0;
  private readyWaiters: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(
    /** The config and slot plan every (re)started thread gets: updated on reload. */
    public config: Config,
    public plan: SlotPlan,
    private readonly threads: number,
    private readonly shared: SharedViews,
    private readonly log: Logger,
  ) {
    this.pool = new Piscina({
      filename: join(__dirname, '..', 'dataplane', 'worker.js'),
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 2 ** 31 - 1,
      concurrentTasksPerWorker: 1,
      // Threads run an event loop for their whole life; piscina must not block it waiting for tasks.
      atomics: 'disabled',
      maxQueue: threads * 2,
    });
  }

  /** Starts every thread; resolves when all listen, rejects when one cannot bind. */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => (this.readyWaiters = { resolve, reject }));
    for (let slot = 0; slot < this.threads; slot++) {
      this.slots.push({ port: null, listening: false, task: Promise.resolve() });
      this.runSlot(slot);
    }
    return ready;
  }

  /** Asks every thread to stop accepting, finish in-flight requests within graceMs, and close. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const message: ToThread = { type: 'stop', graceMs };
    for (const slot of this.slots) slot.port?.postMessage(message);
    // Wait for the serve tasks ourselves: piscina's close() can resolve while a thread is
    // still closing its sockets (it miscounts finished workers), and terminating a thread
    // with open uWS handles aborts the process.
    await Promise.allSettled(this.slots.map((slot) => slot.task));
    await this.pool.destroy();
  }

  /**
   * Sends every thread a new config to apply in place; resolves with the virtual services a
   * thread could not open. A thread started meanwhile gets the new config with its task.
   */
  reload(config: Config, plan: SlotPlan): Promise<string[]> {
    this.config = config;
    this.plan = plan;
    const generation = ++this.generation;
    const live = this.slots.map((slot, index) => ({ slot, index })).filter(({ slot }) => slot.port !== null && slot.listening);
    return new Promise((resolve) => {
      const waiter: ReloadWaiter = { pending: new Set(live.map(({ index }) => index)), failed: new Set(), resolve };
      this.reloadWaiters.set(generation, waiter);
      for (const { slot } of live) slot.port!.postMessage({ type: 'reload', config, plan, generation } satisfies ToThread);
      this.settleReload(generation);
    });
  }

  private generation = 0;
  private readonly reloadWaiters = new Map<number, ReloadWaiter>();

  /** A thread answered a reload (or died, answering nothing): resolve when all have. */
  private settleReload(generation: number, slot?: number, failed: string[] = []): void {
    const waiter = this.reloadWaiters.get(generation);
    if (!waiter) return;
    if (slot !== undefined) waiter.pending.delete(slot);
    failed.forEach((name) => waiter.failed.add(name));
    if (waiter.pending.size === 0) {
      this.reloadWaiters.delete(generation);
      waiter.resolve([...waiter.failed]);
    }
  }

  /** Fault injection for tests: makes one thread crash. */
  crashThread(slot: number): void {
    this.slots[slot]?.port?.postMessage({ type: 'crash' } satisfies ToThread);
  }

  private runSlot(slot: number): void {
    const { port1, port2 } = new MessageChannel();
    this.slots[slot].port = port1;
    this.slots[slot].listening = false;
    port1.on('message', (message: FromThread) => this.onThreadMessage(message));
    // The thread closes its end last: by then every message it sent (final statistics and
    // access-log lines) has been delivered here.
    const drained = new Promise<void>((resolve) => port1.once('close', () => resolve()));
    const task: ServeTask = { slot, config: this.config, plan: this.plan, shared: this.shared.buffer, shape: this.shared.layout.shape, rates: this.rates, port: port2 };
    this.slots[slot].task = this.pool.run(task, { transferList: [port2] as never }).then(
      () => Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 2000).unref())]).then(() => port1.close()),
      (error: Error) => {
        port1.close();
        if (this.stopping) return;
        this.restarts++;
        for (const generation of [...this.reloadWaiters.keys()]) this.settleReload(generation, slot);
        this.log.error({ slot, err: error.message }, 'data-plane thread died; replacing it');
        this.runSlot(slot);
      },
    );
  }

  private onThreadMessage(message: FromThread): void {
    switch (message.type) {
      case 'started':
        if (this.config.pin_workers) {
          const cpu = cpuForSlot(message.slot);
          void pinThread(message.tid, cpu).then((error) => {
            if (error) this.log.warn({ slot: message.slot }, error);
            else this.log.debug({ slot: message.slot, tid: message.tid, cpu }, 'thread pinned');
          });
        }
        break;
      case 'listening':
        this.slots[message.slot].listening = true;
        if (this.restarts > 0) this.log.info({ slot: message.slot }, 'replacement thread is serving');
        if (this.slots.every((s) => s.listening)) this.readyWaiters?.resolve();
        break;
      case 'listen-failed':
        this.readyWaiters?.reject(new Error(`virtual service ${message.service}: cannot listen on ${message.address} (address in use or not available)`));
        break;
      case 'observe':
        this.onObserve(message.batch);
        break;
      case 'passive-down':
        this.log.warn({ slot: message.serverSlot, reason: message.reason }, 'passive detection marked a server down');
        this.onPassiveDown(message.serverSlot, message.reason);
        break;
      case 'reloaded':
        this.settleReload(message.generation, message.slot, message.failed);
        break;
      case 'crashed':
        this.log.error({ slot: message.slot, err: message.error }, 'data-plane thread crashed');
        break;
      case 'report':
        // Faults are bugs (the request got 502 CLB_INTERNAL, the thread went on): error level.
        if (message.kind === 'fault') this.log.error({ slot: message.slot, kind: message.kind, suppressed: message.suppressed, err: message.message }, 'request failed on an internal error (CLB_INTERNAL)');
        else this.log.warn({ slot: message.slot, kind: message.kind, suppressed: message.suppressed, detail: message.message }, 'data-plane report');
        break;
    }
  }
}
