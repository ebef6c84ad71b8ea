/**
 * When a failed attempt is sent again, and where. A pure function of what happened, so the
 * policy reads in one place and is tested without sockets.
 *
 * - Nothing reached the server (connect failed): any method may go to another server, once.
 * - A kept-alive connection the server had already closed, before any response byte
 *   (RFC 9112 §9.3.1): an idempotent request goes once more to the same server, on a fresh
 *   connection. A POST is never replayed: the server may have acted on it.
 * - Only while the body is still held whole (RequestBody.replayable).
 */
import type { FailureCode, FailurePhase } from '../upstream/connection';

export type Retry = 'none' | 'other-server' | 'same-server';

export interface AttemptOutcome {
  phase: FailurePhase;
  code: FailureCode;
  /** The connection had carried a response before (a reused keep-alive connection). */
  reused: boolean;
  method: string;
  replayable: boolean;
  /** Retries already made for this request. */
  connectRetried: boolean;
  staleRetried: boolean;
}

/** RFC 9110 §9.2.2 idempotent methods. */
export function isIdempotent(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'PUT' || method === 'DELETE' || method === 'OPTIONS' || method === 'TRACE';
}

export function retryFor(outcome: AttemptOutcome): Retry {
  if (!outcome.replayable) return 'none';
  if (outcome.phase === 'connect') return outcome.connectRetried ? 'none' : 'other-server';
  if (outcome.phase === 'before-response' && outcome.code === 'closed' && outcome.reused && !outcome.staleRetried && isIdempotent(outcome.method)) return 'same-server';
  return 'none';
}
