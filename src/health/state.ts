/**
 * The rise/fall verdict of one server's health checks: a pure state machine, no I/O and no
 * clock, so it is unit-tested on its own. The monitor (primary thread) owns one per checked
 * server and writes the verdict into shared memory when `observe` reports a transition.
 *
 * Why a server starts UP: the primary's shared slot of a new server starts up (see
 * primary/shared-state.ts), and carelb restarts and reloads must not black out traffic for
 * rise × interval while a healthy pool proves itself again. A server that is really dead
 * goes down after `fall` failed checks; until then the data plane's retry on another server
 * covers its connection failures.
 */

export type Transition = 'up' | 'down' | null;

export class HealthState {
  up = true;
  /** Passes in a row since the last failure (or since a passive mark-down). */
  consecutivePass = 0;
  /** Failures in a row since the last pass. */
  consecutiveFail = 0;

  /**
   * Records one check result. Returns 'down' when an up server reaches `fall` failures in a
   * row, 'up' when a down server reaches `rise` passes in a row, null otherwise (so a server
   * alternating pass/fail with rise and fall ≥ 2 never changes state).
   */
  observe(passed: boolean, rise: number, fall: number): Transition {
    if (passed) {
      this.consecutivePass++;
      this.consecutiveFail = 0;
      if (!this.up && this.consecutivePass >= rise) {
        this.up = true;
        return 'up';
      }
    } else {
      this.consecutiveFail++;
      this.consecutivePass = 0;
      if (this.up && this.consecutiveFail >= fall) {
        this.up = false;
        return 'down';
      }
    }
    return null;
  }

  /**
   * Passive detection (issue 4): the data plane saw the server fail, so it goes down at once,
   * and forgets its passes so that `rise` fresh active passes are needed to bring it back.
   * Returns 'down' when the server was up.
   */
  markDown(): Transition {
    this.consecutivePass = 0;
    if (!this.up) return null;
    this.up = false;
    return 'down';
  }
}
