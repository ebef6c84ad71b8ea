/**
 * Refused admin requests (401, 403) summarised per source and window (issue 13). A flood of bad
 * tokens must cost the primary a counter increment per request, not a log line: each refusal is
 * counted under (action, source, role); when a window closes (`windowMs` after its first
 * refusal) one entry per key is emitted:
 *
 *   {source, action, role?, target, result, count, window: {start, end}, results: {...}, targets: {...}}
 *
 * `target` and `result` are those of the first refusal in the window, so a single refusal reads
 * as it always did (with count 1). At most `maxKeys` keys are kept per window; refusals from
 * further sources are counted under the source "(other sources)" so memory stays bounded
 * whatever the number of addresses. Time and timers are injected for tests; the primary's
 * event loop calls everything here.
 */
import type { AuditEntry } from './audit';

export interface Refusal {
  action: 'unauthorized' | 'forbidden';
  source: string;
  /** `METHOD /path` */
  target: string;
  /** `no token`, `wrong token`, `read token`, ... */
  result: string;
  role?: string;
}

export interface SummaryOptions {
  windowMs?: number;
  maxKeys?: number;
  /** Distinct targets listed per entry; the rest are counted under "(other)". */
  maxTargets?: number;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

interface Bucket {
  first: Refusal;
  count: number;
  results: Record<string, number>;
  targets: Record<string, number>;
}

export const OTHER_SOURCES = '(other sources)';

export class RefusalSummary {
  private buckets = new Map<string, Bucket>();
  private windowStart = 0;
  private timer: unknown = null;
  private readonly windowMs: number;
  private readonly maxKeys: number;
  private readonly maxTargets: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (timer: unknown) => void;

  constructor(
    private readonly emit: (entry: AuditEntry) => void,
    options: SummaryOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 1000;
    this.maxKeys = options.maxKeys ?? 1000;
    this.maxTargets = options.maxTargets ?? 10;
    this.now = options.now ?? Date.now;
    this.setTimer =
      options.setTimer ??
      ((fn, ms) => {
        const timer = setTimeout(fn, ms);
        timer.unref();
        return timer;
      });
    this.clearTimer = options.clearTimer ?? ((timer) => clearTimeout(timer as NodeJS.Timeout));
  }

  /** Counts one refusal; O(1), writes nothing. */
  record(refusal: Refusal): void {
    if (this.buckets.size === 0) {
      this.windowStart = this.now();
      this.timer = this.setTimer(() => this.flush(), this.windowMs);
    }
    let key = `${refusal.action}\0${refusal.source}\0${refusal.role ?? ''}`;
    let bucket = this.buckets.get(key);
    if (!bucket && this.buckets.size >= this.maxKeys) {
      key = `${refusal.action}\0${OTHER_SOURCES}`;
      bucket = this.buckets.get(key);
      refusal = { ...refusal, source: OTHER_SOURCES, role: undefined };
    }
    if (!bucket) {
      bucket = { first: refusal, count: 0, results: {}, targets: {} };
      this.buckets.set(key, bucket);
    }
    bucket.count++;
    bucket.results[refusal.result] = (bucket.results[refusal.result] ?? 0) + 1;
    const target = refusal.target in bucket.targets || Object.keys(bucket.targets).length < this.maxTargets ? refusal.target : '(other)';
    bucket.targets[target] = (bucket.targets[target] ?? 0) + 1;
  }

  /** Emits one entry per key of the open window and closes it (also called on close). */
  flush(): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    if (this.buckets.size === 0) return;
    const window = { start: new Date(this.windowStart).toISOString(), end: new Date(this.now()).toISOString() };
    const buckets = this.buckets;
    this.buckets = new Map();
    for (const bucket of buckets.values()) {
      const { first } = bucket;
      this.emit({
        source: first.source,
        action: first.action,
        ...(first.role ? { role: first.role } : {}),
        target: first.target,
        result: first.result,
        count: bucket.count,
        window,
        results: bucket.results,
        targets: bucket.targets,
      });
    }
  }
}
