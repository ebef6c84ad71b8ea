/**
 * Watches carelb once a second while the soak runs: the child's RSS (/proc/PID/status), and
 * /api/status for the invariant violation counters and thread_restarts. When a counter rises,
 * it notes when, and which requests ended in that second that did not end ok: the suspects
 * to replay with --only.
 */
import type { CarelbChild } from './carelb';
import { describe, planFor } from './schedule';
import type { Traffic } from './traffic';

export interface InvariantEvent {
  t: number;
  kind: string;
  from: number;
  to: number;
  suspects: string[];
}

export class Monitor {
  readonly rss: { t: number; kb: number }[] = [];
  readonly events: InvariantEvent[] = [];
  /** Last invariants seen; null when /api/status has no `invariants` field. */
  invariants: Record<string, number> | null | undefined = undefined;
  threadRestarts: number | null = null;
  readonly errors: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private lastPoll = Date.now();

  constructor(
    private readonly child: CarelbChild,
    private readonly traffic: Traffic,
    private readonly seed: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.sample());
    }, 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One RSS sample and one status poll (also called once more at the end). */
  async sample(): Promise<void> {
    if (this.child.exit) return;
    try {
      this.rss.push({ t: Date.now(), kb: this.child.rssKb() });
    } catch {
      // The child just exited: the exit is reported on its own.
    }
    await this.poll();
  }

  async poll(): Promise<void> {
    const since = this.lastPoll;
    this.lastPoll = Date.now();
    let status: any;
    try {
      const reply = await this.child.admin('GET', '/api/status');
      if (reply.status !== 200) throw new Error(`status ${reply.status}`);
      status = reply.json;
    } catch (error) {
      if (!this.child.exit && this.errors.length < 20) this.errors.push(`GET /api/status failed: ${(error as Error).message}`);
      return;
    }
    this.threadRestarts = typeof status.thread_restarts === 'number' ? status.thread_restarts : null;
    const next: Record<string, number> | null = status.invariants && typeof status.invariants === 'object' ? status.invariants : null;
    if (next && this.invariants) {
      for (const [kind, to] of Object.entries(next)) {
        const from = this.invariants[kind] ?? 0;
        if (to > from) this.events.push({ t: this.lastPoll, kind, from, to, suspects: this.suspects(since - 100) });
      }
    } else if (next && this.invariants === undefined) {
      for (const [kind, to] of Object.entries(next)) if (to > 0) this.events.push({ t: this.lastPoll, kind, from: 0, to, suspects: this.suspects(0) });
    }
    this.invariants = next;
  }

  /** Requests that ended since `from` not ok (up to 8), named with their plans. */
  private suspects(from: number): string[] {
    return this.traffic.recent
      .filter((e) => e.ended >= from && e.outcome !== 'ok')
      .slice(-8)
      .map((e) => `${describe(planFor(this.seed, e.index))} -> ${e.outcome}`);
  }
}
