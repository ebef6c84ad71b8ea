/**
 * One request in flight, as the clients and the watchdog see it: its stage, bytes each way,
 * and the time of its last progress (a byte sent or received). The client's own deliberate
 * pauses (slow reader, slow uploader) do not count against carelb: while paused, the
 * watchdog skips the request, and resuming counts as progress.
 *
 * Also where a response is judged against its plan (`judge`): one place that says what a
 * correct answer is.
 */
import { ERRORS } from '../../src/errors';
import type { Verifier } from './content';
import type { Plan } from './schedule';

/** How a request ended. `carelb:CODE` for carelb's own error answers (x-carelb-error). */
export type Outcome = 'ok' | 'cut' | 'aborted' | 'stuck' | 'wrong' | `carelb:${string}`;

export interface Result {
  plan: Plan;
  outcome: Outcome;
  detail: string;
  status: number | null;
  started: number;
  ended: number;
  sent: number;
  received: number;
  /** What the client was doing when it ended. */
  stage: string;
  /** Longest time without progress, the client's own pauses excluded. */
  maxGapMs: number;
  /** node:http agent: the request went out on a reused keep-alive connection. */
  reusedSocket: boolean;
  /** When the final response head reached the client (0: never). */
  headAt: number;
}

export class Tracker {
  readonly started = Date.now();
  lastProgress = this.started;
  maxGapMs = 0;
  paused = false;
  stage = 'connecting';
  sent = 0;
  received = 0;
  /** When the final response head arrived (0: not yet). */
  headAt = 0;
  done = false;
  /** Set by the client: ends the request as stuck (the watchdog calls it). */
  onStuck: (idleMs: number) => void = () => {};
  private readonly wakers = new Set<() => void>();

  constructor(readonly plan: Plan) {}

  progress(): void {
    const now = Date.now();
    if (!this.paused) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastProgress);
    this.lastProgress = now;
  }

  pause(): void {
    this.progress();
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.lastProgress = Date.now();
  }

  /** The harness itself was blocked (event-loop lag): that time is not carelb's. */
  forgive(ms: number): void {
    this.lastProgress += ms;
  }

  /** A deliberate pause of the client; ends early when the request ends. */
  sleep(ms: number): Promise<void> {
    if (this.done) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  /** Marks the request ended and wakes any sleep. */
  end(): void {
    this.done = true;
    for (const wake of [...this.wakers]) wake();
  }
}

export interface Answer {
  status: number;
  header(name: string): string | undefined;
  body: Verifier;
}

/** Whether an answer is correct for what was asked: the outcome and, when not ok, why. */
export function judge(plan: Plan, answer: Answer): { outcome: Outcome; detail: string } {
  const code = answer.header('x-carelb-error');
  if (code !== undefined) {
    const known = Object.values(ERRORS).find((e) => e.code === code);
    if (!known) return { outcome: 'wrong', detail: `unknown carelb error code ${code} (status ${answer.status})` };
    if (known.status !== answer.status) return { outcome: 'wrong', detail: `${code} came with status ${answer.status}, its catalogue status is ${known.status}` };
    return { outcome: `carelb:${code}`, detail: '' };
  }
  if (answer.status !== 200) return { outcome: 'wrong', detail: `status ${answer.status} without x-carelb-error (the servers only send 200)` };
  const id = answer.header('x-soak-id');
  if (id !== String(plan.index)) return { outcome: 'wrong', detail: `the answer of ${id === undefined ? 'no request (no x-soak-id)' : `request #${id}`} (crossed responses)` };
  const length = answer.header('content-length');
  if (length !== undefined && Number(length) !== plan.respSize) {
    // The same truncation before any body byte: carelb ends the empty close-delimited body, uWS writes Content-Length: 0.
    if (length === '0' && plan.server.kind === 'reset' && plan.respFraming === 'close') return { outcome: 'cut', detail: 'content-length 0 (a reset seen as the end of a close-delimited body)' };
    return { outcome: 'wrong', detail: `content-length ${length}, the server sent ${plan.respSize}` };
  }
  if (plan.method === 'HEAD') {
    if (answer.body.received !== 0) return { outcome: 'wrong', detail: `a HEAD answer with ${answer.body.received} body bytes` };
  } else {
    const problem = answer.body.problem();
    // A reset right behind a close-delimited body reaches carelb as an orderly end: libuv
    // reports EOF on POLLHUP after a partial read and never reads the ECONNRESET. Such a
    // response has no framing that could tell carelb it is short, so a correct but short body
    // is that truncation, not a wrong answer (README, "Limits": close-delimited responses).
    if (problem?.startsWith('too short') && plan.server.kind === 'reset' && plan.respFraming === 'close') return { outcome: 'cut', detail: `response body ${problem} (a reset seen as the end of a close-delimited body)` };
    if (problem) return { outcome: 'wrong', detail: `response body ${problem}` };
  }
  const got = answer.header('x-soak-req-bytes');
  if (got !== undefined) {
    if (Number(got) !== plan.reqSize) return { outcome: 'wrong', detail: `the server received ${got} body bytes, the client sent ${plan.reqSize}` };
    if (answer.header('x-soak-req-ok') !== '1') return { outcome: 'wrong', detail: 'the server received the request body corrupted' };
  }
  return { outcome: 'ok', detail: '' };
}
