/**
 * The last health and admin transitions of servers (issue 15): "what happened at 03:10?" on
 * the dashboard, as marks on the charts' time axis and a list. A fixed ring of the newest 50;
 * older ones are in the log (`server down`, `server admin state changed`). Primary only.
 */

export interface Transition {
  /** ms since the epoch. */
  time: number;
  vs: string;
  server: string;
  /** health: the checks' verdict (up/down); admin: the operator's state (online/drain/halt). */
  kind: 'health' | 'admin';
  from: string;
  to: string;
  /** Why: the failed check's reason, "passive: ...", or who changed the admin state. */
  reason: string;
}

export const TRANSITIONS_KEPT = 50;

export class TransitionLog {
  private readonly ring: (Transition | undefined)[];
  private next = 0;

  constructor(readonly capacity = TRANSITIONS_KEPT) {
    this.ring = new Array(capacity);
  }

  add(transition: Transition): void {
    this.ring[this.next] = transition;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Kept transitions, oldest first. */
  list(): Transition[] {
    const out: Transition[] = [];
    for (let i = 0; i < this.capacity; i++) {
      const entry = this.ring[(this.next + i) % this.capacity];
      if (entry) out.push(entry);
    }
    return out;
  }
}
