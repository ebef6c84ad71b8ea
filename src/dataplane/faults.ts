/**
 * Faults: an exception on the request path fails the one exchange it hit (502 CLB_INTERNAL,
 * or a cut if its response had started), is counted and logged with its stack at most once
 * a second per thread, and the thread goes on serving (issue 11, point 8).
 *
 * Tests reach the fault paths through a request header that makes carelb throw at a chosen
 * point. The header is honoured only when the process was started with
 * CARELB_FAULT_INJECTION=1 — an environment variable, never a config key — and read once, so
 * a production process ignores it at the cost of one boolean test per request.
 */
export const FAULT_INJECTION = process.env.CARELB_FAULT_INJECTION === '1';

/** Request header naming where to throw (only with CARELB_FAULT_INJECTION=1). */
export const FAULT_HEADER = 'x-carelb-fault';

export const enum FaultPoint {
  None = 0,
  /** In the uWS request handler, after the request was copied. */
  Handler = 1,
  /** In uWS onData, with a body chunk. */
  RequestBody = 2,
  /** When the server's response head arrives. */
  ResponseHead = 3,
  /** When response body bytes arrive. */
  ResponseBody = 4,
  /** In the server connection's read, outside the exchange's own guards. */
  UpstreamRead = 5,
}

const POINTS: Record<string, FaultPoint> = {
  handler: FaultPoint.Handler,
  'request-body': FaultPoint.RequestBody,
  'response-head': FaultPoint.ResponseHead,
  'response-body': FaultPoint.ResponseBody,
  'upstream-read': FaultPoint.UpstreamRead,
};

export function faultPoint(header: string): FaultPoint {
  return POINTS[header] ?? FaultPoint.None;
}

export function injectFault(point: FaultPoint): never {
  throw new Error(`fault injection: exception at point ${point}`);
}

/** Rate-limited reports from a thread to the primary's log: at most one per kind per interval. */
export class ThrottledReporter {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly send: (kind: string, message: string, suppressed: number) => void,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  report(kind: string, message: string): void {
    const now = this.now();
    const entry = this.last.get(kind);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    this.send(kind, message, entry?.suppressed ?? 0);
    this.last.set(kind, { at: now, suppressed: 0 });
  }
}

/** The text to log for a thrown value: its stack when it has one. */
export function describeThrown(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
