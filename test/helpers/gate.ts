/**
 * A server handler that holds every response until the test releases it, so that tests can
 * know exactly how many requests a server has in flight at any moment instead of creating
 * overlap with server sleeps (which only works while the machine is quiet).
 */
import type * as http from 'node:http';
import type { Handler } from './backend';

export interface Gate {
  /** Use as the backend's handler. */
  handler: Handler;
  /** Responses held now, oldest first. */
  readonly held: number;
  /** Requests that reached the handler so far. */
  readonly arrived: number;
  /** The largest number held at once. */
  readonly peak: number;
  /** Resolves once `n` requests have reached the handler in all; rejects after `ms` (a bound, not a wait). */
  arrivals(n: number, ms?: number): Promise<void>;
  /** Answers the oldest held request (200, `body`); false when none is held. */
  releaseOne(): boolean;
  /** Answers every held request, and every later one at once. */
  open(): void;
}

export function gate(body: (req: http.IncomingMessage) => string = () => 'released'): Gate {
  const held: { req: http.IncomingMessage; res: http.ServerResponse }[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let arrived = 0;
  let peak = 0;
  let opened = false;
  const answer = ({ req, res }: { req: http.IncomingMessage; res: http.ServerResponse }) => {
    const text = body(req);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const handler: Handler = (req, res) => {
    arrived++;
    if (opened) answer({ req, res });
    else {
      held.push({ req, res });
      peak = Math.max(peak, held.length);
    }
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (arrived >= waiters[i].n) waiters.splice(i, 1)[0].resolve();
    }
  };
  return {
    handler,
    get held() {
      return held.length;
    },
    get arrived() {
      return arrived;
    },
    get peak() {
      return peak;
    },
    arrivals(n, ms = 10_000) {
      if (arrived >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${arrived} requests reached the server within ${ms} ms, expected ${n}`)), ms);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    releaseOne() {
      const next = held.shift();
      if (next === undefined) return false;
      answer(next);
      return true;
    },
    open() {
      opened = true;
      while (held.length > 0) answer(held.shift()!);
    },
  };
}
