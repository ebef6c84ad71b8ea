/**
 * Invariants of the request path, counted when broken (DESIGN.md, "The life of one
 * exchange"). Each thread adds to its own Float64 region of shared memory; the primary sums
 * them into `/api/status` (`invariants`) and `/metrics` (`carelb_invariant_violations_total`).
 * Every count must stay 0: the soak and the request-path tests assert it. A violation is
 * also handled safely where it is detected (a suspicious pooled connection is destroyed, a
 * second answer is dropped), so a count means "a bug was caught", never "a request was lost".
 */
export const INVARIANT_KINDS = [
  /** A server connection went back to its pool while reading was paused. */
  'pooled_paused',
  /** A server connection went back to its pool with a response or request not finished on it. */
  'pooled_unread',
  /** A server connection went back to its pool still attached to an exchange. */
  'pooled_with_sink',
  /** An exchange tried to answer or fail a second time. */
  'answered_twice',
  /** A server's in-flight counter was released twice, or never, by one exchange. */
  'inflight_unbalanced',
  /** An exchange state change that its transition table does not allow. */
  'illegal_transition',
] as const;

export type InvariantKind = (typeof INVARIANT_KINDS)[number];

export const INVARIANT = Object.fromEntries(INVARIANT_KINDS.map((kind, i) => [kind, i])) as Record<InvariantKind, number>;

/** Counts violations into one thread's region of the shared stats (a single writer: plain `+=`). */
export class InvariantCounter {
  constructor(
    private readonly stats: Float64Array,
    /** Index of this thread's first invariant counter (SharedLayout.invariant(thread, 0)). */
    private readonly base: number,
  ) {}

  count(kind: InvariantKind): void {
    this.stats[this.base + INVARIANT[kind]]++;
  }
}
