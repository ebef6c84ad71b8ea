/**
 * The load: a bounded number of client slots, each taking the next request of the schedule
 * until the deadline (or the request budget) is reached, plus the watchdog that ends any
 * request making no progress for longer than timeouts.server + 1 s and reports it as stuck.
 * Large transfers and requests to the queue service have their own, lower bounds.
 */
import { Semaphore } from './cleanup';
import { cutWhileUploading, expectationFor, judgeResult, type Finding } from './checks';
import { runHttpClient, type ClientContext } from './client-http';
import { runRawClient } from './client-raw';
import type { Stats } from './report';
import { describe, isLarge, planFor, TIMEOUTS, type Plan } from './schedule';
import type { Registry } from './servers';
import { Tracker, type Result } from './tracker';

/** No progress for this long: stuck (the bound the issue sets). */
export const STUCK_MS = TIMEOUTS.serverMs + 1000;
/** No request of the schedule may last longer than this, progress or not. */
const LIFETIME_MS = 120_000;
const MAX_LARGE = 3;
/** Few enough that an untouched queue request never waits out timeouts.queue (max_conns 4, ≤ 300 ms each). */
const MAX_QUEUE = 8;

export interface Ended {
  index: number;
  ended: number;
  outcome: string;
}

export class Traffic {
  readonly active = new Set<Tracker>();
  /** The last few thousand requests that ended, to name suspects when an invariant counter rises. */
  readonly recent: Ended[] = [];
  private watchdog: NodeJS.Timeout | undefined;
  private readonly large = new Semaphore(MAX_LARGE);
  private readonly queue = new Semaphore(MAX_QUEUE);
  /** Requests started so far (the next index of the schedule). */
  next = 0;
  /** Failed uploads the client saw as a reset instead of carelb's 502 (checks.ts, cutWhileUploading). */
  cutsWhileUploading = 0;

  constructor(
    private readonly seed: number,
    private readonly registry: Registry,
    private readonly clients: ClientContext,
    private readonly stats: Stats,
    private readonly findings: Finding[],
  ) {}

  /** Runs one request of the schedule and judges it; never rejects. */
  async runOne(plan: Plan, judgeAs: (result: Result) => Finding[] = (r) => judgeResult(r, this.registry.seen.get(plan.index), describe)): Promise<Result> {
    this.registry.begin(plan);
    const tracker = new Tracker(plan);
    this.active.add(tracker);
    let result: Result;
    try {
      result = await (plan.client === 'raw' ? runRawClient : runHttpClient)(plan, this.clients, tracker);
    } catch (error) {
      result = { plan, outcome: 'wrong', detail: `harness error: ${(error as Error).stack}`, status: null, started: tracker.started, ended: Date.now(), sent: 0, received: 0, stage: tracker.stage, maxGapMs: 0, reusedSocket: false, headAt: 0 };
    }
    this.active.delete(tracker);
    this.findings.push(...judgeAs(result));
    if (cutWhileUploading(result, expectationFor(plan))) this.cutsWhileUploading++;
    this.stats.add(result);
    this.recent.push({ index: plan.index, ended: result.ended, outcome: result.outcome });
    if (this.recent.length > 5000) this.recent.splice(0, 1000);
    this.registry.finish(plan.index);
    return result;
  }

  /** Runs `concurrency` slots over the schedule until `deadline` or `budget` requests. */
  async run(concurrency: number, deadline: number, budget: number): Promise<void> {
    const slot = async () => {
      while (Date.now() < deadline && this.next < budget) {
        const plan = planFor(this.seed, this.next++);
        const bounds = [isLarge(plan) ? this.large : null, plan.vs === 'queue' ? this.queue : null].filter((s): s is Semaphore => s !== null);
        for (const bound of bounds) await bound.take();
        try {
          await this.runOne(plan);
        } finally {
          for (const bound of bounds) bound.give();
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, slot));
  }

  /**
   * Replays the given requests of the schedule, `repeat` times over, with up to `concurrency`
   * in flight (1: one after another, in order; more: the contention some bugs need).
   */
  async runOnly(indices: number[], repeat: number, concurrency: number, deadline: number): Promise<void> {
    const queue = Array.from({ length: repeat }, () => indices).flat();
    const slot = async () => {
      while (queue.length > 0 && Date.now() < deadline) await this.runOne(planFor(this.seed, queue.shift()!));
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, slot));
  }

  startWatchdog(): void {
    const every = 250;
    let last = Date.now();
    this.watchdog = setInterval(() => {
      const now = Date.now();
      // The harness itself was blocked (GC, a busy shared machine): not carelb's time.
      const lag = now - last - every;
      last = now;
      for (const tracker of this.active) {
        if (lag > 500) tracker.forgive(lag);
        if (tracker.done) continue;
        const idle = now - tracker.lastProgress;
        if ((!tracker.paused && idle > STUCK_MS) || now - tracker.started > LIFETIME_MS) tracker.onStuck(idle);
      }
    }, every);
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
  }
}
