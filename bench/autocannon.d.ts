/**
 * The slice of autocannon@8's programmatic API the harness uses. autocannon ships no types
 * and @types/autocannon is not a dependency; declaring only what we call keeps the compiler
 * honest about it without pulling in a package.
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Seconds before a request counts as timed out. */
    timeout?: number;
    pipelining?: number;
    method?: string;
    headers?: Record<string, string>;
    servername?: string;
    tlsOptions?: Record<string, unknown>;
    maxOverallRequests?: number;
    /** Requests per second over all connections (each connection gets a per-second quota). */
    overallRate?: number;
  }

  interface Result {
    totalCompletedRequests: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    duration: number;
  }

  interface Instance extends EventEmitter {
    stop(): void;
    on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this;
    on(event: 'reqError', listener: (error: Error) => void): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  function autocannon(opts: Options, cb: (err: Error | null, result: Result) => void): Instance;
  export = autocannon;
}
