/**
 * What a thread records per request, off the I/O path and without locks: latency into an
 * hdr-histogram per server, and (when enabled) one access-log line. Both leave the thread in
 * batches over its MessagePort — histograms every second (then reset: the primary merges
 * intervals), log lines every 200 ms or every 512 lines — never one message or write per
 * request. Thread-local.
 */
import { LatencyRecorder, type SparseCounts } from '../observe/latency';


const LOG_BATCH_LINES = 512;
const LOG_FLUSH_MS = 200;
const LATENCY_FLUSH_MS = 1000;

export interface ObserveBatch {
  /** Latency histograms (µs) of the last interval, by server slot, as sparse bucket counts. */
  latency?: Record<number, SparseCounts>;
  /** Access-log lines (JSON), in order. */
  lines?: string[];
}

/** One access-log record; `path` has its query string only when log_query is on. */
export interface AccessRecord {
  vs: string;
  server: string | null;
  client: string;
  method: string;
  target: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  totalMs: number;
  upstreamMs: number | null;
  error: string | null;
  /** Why carelb failed the request (e.g. the server's TLS error), for operators; never sent to the client. */
  detail: string | null;
  tls: boolean;
  /** The request id (request_id rule), or null when the service has none: then the field is left out. */
  requestId: string | null;
}

export class ThreadObserver {
  /** Set from the config (start and reload). */
  accessLogOn = false;
  logQuery = false;
  private readonly histograms = new Map<number, LatencyRecorder>();
  private lines: string[] = [];
  private readonly timers: NodeJS.Timeout[];

  constructor(private readonly send: (batch: ObserveBatch) => void) {
    this.timers = [setInterval(() => this.flushLatency(), LATENCY_FLUSH_MS), setInterval(() => this.flushLines(), LOG_FLUSH_MS)];
  }

  /** The latency recorder of the server in `slot` (callers keep it: no lookup per request). */
  histogramFor(slot: number): LatencyRecorder {
    let histogram = this.histograms.get(slot);
    if (histogram === undefined) {
      histogram = new LatencyRecorder();
      this.histograms.set(slot, histogram);
    }
    return histogram;
  }

  /** Queues one access-log line (only call when accessLogOn). */
  accessLog(record: AccessRecord): void {
    const query = record.target.indexOf('?');
    const path = query === -1 || this.logQuery ? record.target : record.target.slice(0, query);
    const line =
      `{"time":"${new Date().toISOString()}","vs":${JSON.stringify(record.vs)},"server":${record.server === null ? 'null' : JSON.stringify(record.server)},` +
      `"client":${JSON.stringify(record.client)},"method":${JSON.stringify(record.method)},"path":${JSON.stringify(path)},"status":${record.status},` +
      `"bytes_in":${record.bytesIn},"bytes_out":${record.bytesOut},"duration_ms":${record.totalMs.toFixed(3)},` +
      `"upstream_ms":${record.upstreamMs === null ? 'null' : record.upstreamMs.toFixed(3)},"error":${record.error === null ? 'null' : `"${record.error}"`},` +
      `${record.detail === null ? '' : `"detail":${JSON.stringify(record.detail)},`}` +
      // A request id is validated (l7.ts: no quote, backslash or control character): no escaping needed.
      `${record.requestId === null ? '' : `"request_id":"${record.requestId}",`}"tls":${record.tls}}`;
    this.lines.push(line);
    if (this.lines.length >= LOG_BATCH_LINES) this.flushLines();
  }

  /** Sends what is pending now (shutdown) and stops the timers. */
  close(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.flushLatency();
    this.flushLines();
  }

  private flushLatency(): void {
    const latency: Record<number, SparseCounts> = {};
    let any = false;
    for (const [slot, histogram] of this.histograms) {
      if (histogram.totalCount === 0) continue;
      latency[slot] = histogram.takeSparse();
      any = true;
    }
    if (any) this.send({ latency });
  }

  private flushLines(): void {
    if (this.lines.length === 0) return;
    const lines = this.lines;
    this.lines = [];
    this.send({ lines });
  }
}
