/**
 * Supervises the data-plane threads through piscina: a fixed pool of N threads, one
 * long-running serve task per thread. A thread that dies is replaced by piscina; the
 * supervisor re-submits its serve task (same slot, so the same statistics region and CPU)
 * while the other threads keep serving: at once after a thread that served a while, with
 * backoff after one that failed to start or died soon again (restart-backoff.ts), never in
 * a hot loop. The first start fails as a whole if any thread cannot start.
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
import { RESTART_POLICY, restartDelay, type RestartPolicy } from './restart-backoff';

interface Slot {
  port: MessagePort | null;
  listening: boolean;
  /** Settles when this slot's current serve task ends (stopped or thread died). */
  task: Promise<unknown>;
  /** Reload generation of the config the current thread was started with. */
  generation: number;
  /** Failures in a row since a thread of this slot last served for `stableMs` (restart-backoff.ts). */
  failures: number;
  /** Why the current thread failed, as it told us ('crashed', 'listen-failed'). */
  reason: string | null;
  stack: string | null;
  retryTimer: NodeJS.Timeout | null;
  stableTimer: NodeJS.Timeout | null;
}

type MessagePort = import('node:worker_threads').MessagePort;

interface ReloadWaiter {
  pending: Set<number>;
  /** Virtual services a thread could not open a listener for. */
  failed: Set<string>;
  /** Threads that ended before they applied the config, with the reason. */
  errors: string[];
  resolve: (outcome: ReloadOutcome) => void;
}

/** What the threads made of a reload. Both empty: every running thread applied it. */
export interface ReloadOutcome {
  /** Virtual services whose new listener could not be opened. */
  unlistened: string[];
  /** Threads that failed (died) before applying the config, each with the reason. */
  threadErrors: string[];
}

export interface SupervisorOptions {
  /** The serve task module; tests substitute a scripted one. Default: dataplane/worker.js. */
  workerFile?: string;
  restartPolicy?: RestartPolicy;
  /**
   * Problems with the files the current config names (the primary's file check), added to
   * the reason a thread failed to start: a thread's own error ("App construction failed")
   * rarely says which file.
   */
  diagnose?: () => string[];
}

/** The first line of an error's text, without the "Error: " uncaught errors are printed with. */
function firstLine(text: string): string {
  return text.split('\n')[0].replace(/^[A-Za-z]*Error: /, '');
}

export class Supervisor {
  private readonly pool: Piscina;
  private readonly rates = createRateTable();
  private readonly slots: Slot[] = [];
  private readonly policy: RestartPolicy;
  private stopping = false;
  /** Set by the primary: latency histograms and access-log lines from a thread. */
  onObserve: (batch: ObserveBatch) => void = () => {};
  /** Set by the primary: a thread's passive detection marked a server down. */
  onPassiveDown: (serverSlot: number, reason: string) => void = () => {};
  /** Thread (re)starts after a thread died or failed to start (thread_restarts). */
  restarts = 0;
  /** Pending until the first start of every thread completes (then null). */
  private readyWaiters: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(
    /** The config and slot plan every (re)started thread gets: updated on reload. */
    public config: Config,
    public plan: SlotPlan,
    private readonly threads: number,
    private readonly shared: SharedViews,
    private readonly log: Logger,
    private readonly options: SupervisorOptions = {},
  ) {
    this.policy = options.restartPolicy ?? RESTART_POLICY;
    this.pool = new Piscina({
      filename: options.workerFile ?? join(__dirname, '..', 'dataplane', 'worker.js'),
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 2 ** 31 - 1,
      concurrentTasksPerWorker: 1,
      // Threads run an event loop for their whole life; piscina must not block it waiting for tasks.
      atomics: 'disabled',
      maxQueue: threads * 2,
      // V8's young generation of a worker grows to 16+ MB semi-spaces under load; the exchange
      // objects it holds die young either way. Measured saturated (plain, 1 thread, A/B
      // alternated, medians of 5): 8 MB costs no CPU (14.1 → 13.5 µs per request, within
      // noise) and keeps peak RSS of a 1-thread carelb at ~81 MB instead of ~98 MB.
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
    });
  }

  /**
   * Starts every thread; resolves when all listen. Rejects with the reason when one fails
   * before it listens (cannot bind, cannot build its services): a first start that cannot
   * complete is a failed start, not something to retry while `carelb start` hangs.
   */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => (this.readyWaiters = { resolve, reject }));
    for (let slot = 0; slot < this.threads; slot++) {
      this.slots.push({ port: null, listening: false, task: Promise.resolve(), generation: 0, failures: 0, reason: null, stack: null, retryTimer: null, stableTimer: null });
      this.runSlot(slot);
    }
    return ready;
  }

  /** Asks every thread to stop accepting, finish in-flight requests within graceMs, and close. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.retryTimer) clearTimeout(slot.retryTimer);
      if (slot.stableTimer) clearTimeout(slot.stableTimer);
      slot.retryTimer = slot.stableTimer = null;
    }
    const message: ToThread = { type: 'stop', graceMs };
    for (const slot of this.slots) slot.port?.postMessage(message);
    // Wait for the serve tasks ourselves: piscina's close() can resolve while a thread is
    // still closing its sockets (it miscounts finished workers), and terminating a thread
    // with open uWS handles aborts the process.
    await Promise.allSettled(this.slots.map((slot) => slot.task));
    await this.pool.destroy();
  }

  /**
   * Sends every serving thread a new config to apply in place; resolves with what failed.
   * A thread started meanwhile, or waiting to be restarted, gets the new config when it
   * starts or, if it was already starting with the old one, as soon as it listens.
   */
  reload(config: Config, plan: SlotPlan): Promise<ReloadOutcome> {
    this.config = config;
    this.plan = plan;
    const generation = ++this.generation;
    const live = this.slots.map((slot, index) => ({ slot, index })).filter(({ slot }) => slot.port !== null && slot.listening);
    return new Promise((resolve) => {
      const waiter: ReloadWaiter = { pending: new Set(live.map(({ index }) => index)), failed: new Set(), errors: [], resolve };
      this.reloadWaiters.set(generation, waiter);
      for (const { slot } of live) {
        slot.generation = generation;
        slot.port!.postMessage({ type: 'reload', config, plan, generation } satisfies ToThread);
      }
      this.settleReload(generation);
    });
  }

  private generation = 0;
  private readonly reloadWaiters = new Map<number, ReloadWaiter>();

  /** A thread answered a reload, or ended (`error`) without answering: resolve when all have. */
  private settleReload(generation: number, slot?: number, failed: string[] = [], error?: string): void {
    const waiter = this.reloadWaiters.get(generation);
    if (!waiter) return;
    if (slot !== undefined) {
      if (!waiter.pending.delete(slot)) return;
      if (error !== undefined) waiter.errors.push(`data-plane thread ${slot} ended before applying the config: ${error}`);
    }
    failed.forEach((name) => waiter.failed.add(name));
    if (waiter.pending.size === 0) {
      this.reloadWaiters.delete(generation);
      waiter.resolve({ unlistened: [...waiter.failed], threadErrors: waiter.errors });
    }
  }

  /** Fault injection for tests: makes one thread crash. */
  crashThread(slot: number): void {
    this.slots[slot]?.port?.postMessage({ type: 'crash' } satisfies ToThread);
  }

  private runSlot(index: number): void {
    const slot = this.slots[index];
    const { port1, port2 } = new MessageChannel();
    Object.assign(slot, { port: port1, listening: false, generation: this.generation, reason: null, stack: null });
    port1.on('message', (message: FromThread) => this.onThreadMessage(message));
    // The thread closes its end last (or the port closes when the thread exits): by then
    // every message it sent (final statistics, access-log lines, why it failed) is here.
    const drained = new Promise<void>((resolve) => port1.once('close', () => resolve()));
    const lastMessages = () => Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 2000).unref())]).then(() => port1.close());
    const task: ServeTask = { slot: index, config: this.config, plan: this.plan, shared: this.shared.buffer, shape: this.shared.layout.shape, rates: this.rates, port: port2 };
    slot.task = this.pool.run(task, { transferList: [port2] as never }).then(
      async (result: unknown) => {
        await lastMessages();
        // 'listen-failed': the thread closed everything and ended without serving.
        if (result === 'listen-failed') this.onThreadFailed(index, slot.reason ?? 'cannot open its listeners');
      },
      async (error: Error) => {
        await lastMessages();
        this.onThreadFailed(index, slot.reason ?? error.message);
      },
    );
  }

  /**
   * A thread ended without being asked to: fails the first start, or schedules the slot's
   * next thread after restartDelay(), counting and logging each attempt once.
   */
  private onThreadFailed(index: number, reason: string): void {
    if (this.stopping) return;
    const slot = this.slots[index];
    const whileServing = slot.listening;
    slot.port = null;
    slot.listening = false;
    if (slot.stableTimer) clearTimeout(slot.stableTimer);
    slot.stableTimer = null;
    for (const generation of [...this.reloadWaiters.keys()]) this.settleReload(generation, index, [], reason);
    // Why a start failed is often a file that went away: say which, from the primary's check.
    const problems = whileServing ? [] : (this.options.diagnose?.() ?? []);
    const err = problems.length > 0 ? `${reason}; the config's files: ${problems.join('; ')}` : reason;
    if (this.readyWaiters) {
      this.readyWaiters.reject(new Error(`data-plane thread ${index} failed to start: ${err}`));
      this.readyWaiters = null;
      return;
    }
    this.restarts++;
    slot.failures++;
    const delay = restartDelay(slot.failures, whileServing, this.policy);
    const fields = { slot: index, attempt: slot.failures, retry_in_ms: delay, err, ...(whileServing && slot.stack ? { stack: slot.stack } : {}) };
    this.log.error(fields, whileServing ? 'data-plane thread died; replacing it' : 'data-plane thread failed to start; retrying');
    slot.retryTimer = setTimeout(() => {
      slot.retryTimer = null;
      if (!this.stopping) this.runSlot(index);
    }, delay);
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
      case 'listening': {
        const slot = this.slots[message.slot];
        slot.listening = true;
        // Serving a while clears the failure count: the next death is replaced at once.
        slot.stableTimer = setTimeout(() => {
          slot.stableTimer = null;
          slot.failures = 0;
        }, this.policy.stableMs).unref();
        if (this.restarts > 0) this.log.info({ slot: message.slot }, 'replacement thread is serving');
        // Started before a reload with the config before it: bring it up to date.
        if (slot.generation !== this.generation) {
          slot.generation = this.generation;
          slot.port?.postMessage({ type: 'reload', config: this.config, plan: this.plan, generation: this.generation } satisfies ToThread);
        }
        if (this.readyWaiters && this.slots.every((s) => s.listening)) {
          this.readyWaiters.resolve();
          this.readyWaiters = null;
        }
        break;
      }
      case 'listen-failed':
        this.slots[message.slot].reason = `virtual service ${message.service}: cannot listen on ${message.address} (address in use or not available)`;
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
        // Logged once, with the restart decision, when the thread has ended (onThreadFailed).
        this.slots[message.slot].reason = firstLine(message.error);
        this.slots[message.slot].stack = message.error;
        break;
      case 'report':
        // Faults are bugs (the request got 502 CLB_INTERNAL, the thread went on): error level.
        if (message.kind === 'fault') this.log.error({ slot: message.slot, kind: message.kind, suppressed: message.suppressed, err: message.message }, 'request failed on an internal error (CLB_INTERNAL)');
        else this.log.warn({ slot: message.slot, kind: message.kind, suppressed: message.suppressed, detail: message.message }, 'data-plane report');
        break;
    }
  }
}
