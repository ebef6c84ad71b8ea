/**
 * One proxied request, from the uWS handler to the last byte of its answer. Thread-local.
 *
 * Each exchange has one explicit `phase`; every change goes through `enter()`, which checks
 * it against the table below and counts a violation for any other (state/invariants.ts):
 *
 *     Admitted ──► Queued ◄──────────┐ (a retry that must wait)
 *        │           │               │
 *        └───────────┴──► AwaitingServer ─► Streaming ⇄ ClientBlocked ─► Flushing
 *                           ▲   │  (retry)     │              │              │
 *                           └───┘              ▼              ▼              ▼
 *        any phase before Done/Failed ───────► Failed        Done ◄──────────┘
 *                                                             ▲
 *        Admitted / Queued (fallback answer) ─────────────────┘
 *
 * - Admitted: the request head is copied; nothing sent yet.
 * - Queued: every eligible server is at max_conns; waiting in the service's queue.
 * - AwaitingServer: holds +1 on a server's in-flight counter and a connection; the request is
 *   being written (the body may still be arriving) and the response head is awaited.
 * - Streaming: the response head arrived; body bytes flow from the server to the client.
 * - ClientBlocked: the client could not take more; reading the server is paused.
 * - Flushing: the server's response is complete (its connection is back in the pool), the
 *   last bytes wait for the client.
 * - Done: answered completely. Failed: carelb's own error answer, a cut, or the client left.
 *
 * Invariants kept here, each counted when broken: an exchange is answered or failed exactly
 * once (`answered_twice`); every in-flight increment has exactly one decrement
 * (`inflight_unbalanced`); a transition outside the table is a bug (`illegal_transition`).
 *
 * The parts live in their own modules: RequestBody (upload, replay, client pause),
 * ResponseWriter (response to uWS with backpressure), retry.ts (when to send again).
 * Every callback from uWS or a socket is guarded: an exception fails this exchange only
 * (502 CLB_INTERNAL, or a cut) and the thread keeps serving.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, type ErrorName } from '../errors';
import { countError, respondError } from './respond';
import { S, V, statusClassOffset } from '../state/stats';
import type { FailureCode, FailurePhase, UpstreamConnection, UpstreamSink } from '../upstream/connection';
import type { RequestInfo } from './request-head';
import type { TimeoutsConfig } from '../config/schema';
import type { FallbackResponse, PoolRuntime, ServerRuntime, ServiceRuntime } from './service';
import { STATUS_CODES as STATUS_TEXT } from 'node:http';
// Imported, not the global: in a worker thread the global is a getter (a LoadGlobalIC per call).
import { performance } from 'node:perf_hooks';
import { RequestBody } from './request-body';
import { ResponseWriter, type WriterListener } from './response-writer';
import { retryFor } from './retry';
import { describeThrown, FaultPoint, injectFault } from './faults';
import type { ActiveLinks } from './active-list';
import { CloseMode, endsWithClose } from './close-mode';
import { coarseClock } from '../state/coarse-clock';

export const enum Phase {
  Admitted,
  Queued,
  AwaitingServer,
  Streaming,
  ClientBlocked,
  Flushing,
  Done,
  Failed,
}

const PHASE_NAMES = ['Admitted', 'Queued', 'AwaitingServer', 'Streaming', 'ClientBlocked', 'Flushing', 'Done', 'Failed'];

const bit = (...phases: Phase[]): number => phases.reduce((mask, phase) => mask | (1 << phase), 0);

/** Allowed next phases, by phase (a bit per phase). */
const NEXT: readonly number[] = [
  /* Admitted */ bit(Phase.Queued, Phase.AwaitingServer, Phase.Done, Phase.Failed),
  /* Queued */ bit(Phase.AwaitingServer, Phase.Done, Phase.Failed),
  /* AwaitingServer */ bit(Phase.AwaitingServer, Phase.Queued, Phase.Streaming, Phase.Failed),
  /* Streaming */ bit(Phase.ClientBlocked, Phase.Done, Phase.Failed),
  /* ClientBlocked */ bit(Phase.Streaming, Phase.Flushing, Phase.Done, Phase.Failed),
  /* Flushing */ bit(Phase.Done, Phase.Failed),
  /* Done */ 0,
  /* Failed */ 0,
];

/** The client-side listener an exchange belongs to: in-flight accounting and whether its connections must close. */
export interface ClientListener {
  /** Replaced by a new listener (new certificates): each response closes its connection. */
  readonly lingering: boolean;
  exchangeStarted(): void;
  exchangeEnded(): void;
}

export class Exchange implements UpstreamSink, WriterListener, ActiveLinks<Exchange> {
  phase = Phase.Admitted;
  // Links of the service's list of exchanges in flight (active-list.ts).
  prevActive: Exchange | null = null;
  nextActive: Exchange | null = null;
  listed = false;
  /** Waiting in the service queue. */
  queued = false;
  private server: ServerRuntime | null = null;
  /** The server whose in-flight counter this exchange holds +1 on, or null. */
  private held: ServerRuntime | null = null;
  private connection: UpstreamConnection | null = null;
  private readonly body: RequestBody;
  private readonly writer: ResponseWriter;
  private connectRetried = false;
  /** Pool-local index of a server this request failed to connect to: a queued retry does not pick it again (-1: none). */
  private avoid = -1;
  /** Pool-local index of the server the request's persistence cookie names (-1: none). */
  private readonly sticky: number;
  /** The routed pool's timeouts (the service's without content switching). */
  private readonly timeouts: TimeoutsConfig;
  private staleRetried = false;
  /** Content-Length of the response being relayed (-1: chunked or close-delimited). */
  private contentLength = -1;
  /** Deadlines (ms since epoch; 0 = none): server inactivity, request body idle, queue wait. */
  deadline = 0;
  private bodyDeadline = 0;
  private queueDeadline = 0;
  private readonly startedAt = performance.now();
  private sentAt = 0;
  private headAt = 0;
  /** A response head came from the server (its latency is recorded). */
  private answered = false;
  /** Status the client got (0: none, the connection was cut). */
  private status = 0;
  private errorCode: string | null = null;
  /** Why it failed, for the access log (never sent to the client). */
  private errorDetail: string | null = null;
  private bytesOut = 0;

  constructor(
    private readonly vs: ServiceRuntime,
    private readonly res: HttpResponse,
    private readonly request: RequestInfo,
    private readonly listener: ClientListener,
    /** The pool the request was routed to (the whole service without content switching). */
    private readonly pool: PoolRuntime,
    /** Test-only fault injection point (faults.ts); None in production. */
    private readonly faultAt: FaultPoint = FaultPoint.None,
  ) {
    // The pool-local index of the server a persistence cookie names, when it is in this pool.
    const l7 = request.l7;
    this.sticky = l7 === null || l7.sticky < 0 ? -1 : pool.indexOf[l7.sticky];
    this.timeouts = pool.timeouts;
    this.writer = new ResponseWriter(res, this);
    this.body = new RequestBody(res, this.writer, request.chunked, request.chunked || request.contentLength > 0);
    if (!this.body.done) this.bodyDeadline = coarseClock.now + this.timeouts.client_body_idle;
    vs.active.add(this);
    listener.exchangeStarted();
    vs.views.stats[vs.statBase + V.requests]++;
  }

  /** Starts the exchange: called once from the uWS handler after onAborted/onData are attached. */
  start(): void {
    try {
      if (this.vs.closing) return this.fail('SHUTTING_DOWN');
      if (!this.tryStart()) this.enqueue(null);
    } catch (error) {
      this.fault(error);
    }
  }

  /**
   * Sends the request to a picked server (or the fallback); false when it must wait because
   * the eligible servers are all at max_conns. Called by start() and by the queue.
   */
  tryStart(): boolean {
    // Only a request not yet sent can start; anything else is done with the queue.
    if (this.phase !== Phase.Admitted && this.phase !== Phase.Queued) return true;
    try {
      const pool = this.pool;
      const local = pool.balancer.pick(this.avoid, this.request.client, this.sticky);
      if (local !== -1) return this.sendTo(pool.servers[local], false);
      if (this.vs.anyServerFull(pool.servers)) return false;
      if (this.vs.fallbackServer !== null) this.sendTo(this.vs.fallbackServer, false);
      else if (this.vs.fallbackResponse !== null) this.answerFallback(this.vs.fallbackResponse);
      else this.fail('NO_SERVER');
    } catch (error) {
      this.fault(error);
    }
    return true;
  }

  /** Done or Failed: nothing more happens to this exchange. */
  get isOver(): boolean {
    return this.phase >= Phase.Done;
  }

  // ---- client side (uWS callbacks) ----

  /** uWS onData: a piece of the request body. */
  onClientData(chunk: ArrayBuffer, isLast: boolean): void {
    if (this.isOver) return;
    try {
      if (this.faultAt === FaultPoint.RequestBody) injectFault(this.faultAt);
      const connection = this.connection;
      const copy = this.body.accept(chunk, isLast, connection === null);
      if (copy !== null) {
        const maxBody = this.vs.config.limits.max_body;
        if (maxBody > 0 && this.body.received > maxBody) return this.fail('BODY_TOO_LARGE'); // a chunked body that outgrew the limit
        this.vs.views.stats[this.vs.statBase + V.bytes_in] += copy.length;
        if (this.server !== null) this.vs.views.stats[this.server.statBase + S.bytes_in] += copy.length;
      }
      this.bodyDeadline = isLast ? 0 : coarseClock.now + this.timeouts.client_body_idle;
      if (connection !== null) {
        this.body.forward(connection, copy);
        // The server timeout counts inactivity: a long upload is activity.
        if (this.deadline !== 0) this.deadline = coarseClock.now + this.timeouts.server;
      }
    } catch (error) {
      this.fault(error);
    }
  }

  /** uWS onAborted: the client connection is gone (also called by our own res.close()). */
  onClientAborted(): void {
    this.writer.abandon();
    if (this.isOver) return;
    try {
      this.errorCode = ERRORS.CLIENT_ABORTED.code;
      this.vs.views.stats[this.vs.statBase + V.client_aborts]++;
      countError(this.vs, 'CLIENT_ABORTED');
      this.dropConnection();
      this.enter(Phase.Failed);
    } catch (error) {
      this.fault(error);
    }
  }

  // ---- server side (UpstreamSink) ----

  onResponseHead(status: number, head: Uint8Array, contentLength: number, bodyless: boolean): void {
    if (this.isOver) return;
    try {
      if (this.faultAt === FaultPoint.ResponseHead) injectFault(this.faultAt);
      this.body.dropReplay(); // the server has answered: no replay from here on
      this.answered = true;
      if (this.vs.events.observer.accessLogOn) this.headAt = performance.now();
      this.status = status;
      this.contentLength = contentLength;
      this.deadline = coarseClock.now + this.timeouts.server;
      const stats = this.vs.views.stats;
      const klass = statusClassOffset(status);
      stats[this.vs.statBase + V.responses_1xx + klass]++;
      if (this.server) {
        stats[this.server.statBase + S.responses_1xx + klass]++;
        this.server.noteResponse(status);
      }
      this.enter(Phase.Streaming);
      this.body.onResponseBegun();
      // Whether the response finishes here or later, the client is told now whether it may reuse its connection.
      // A bodyless or empty response is finished by this call: the client must be flowing first.
      if (bodyless || contentLength === 0) this.body.releaseClient();
      const rules = this.vs.rules;
      this.writer.begin(status, rules === null ? head : rules.responseHead(head, this.request, this.server === null ? '' : this.server.config.name, this.server === null ? -1 : this.server.local), contentLength, bodyless, this.closeMode());
    } catch (error) {
      this.fault(error);
    }
  }

  onResponseBody(chunk: Uint8Array): void {
    if (this.isOver || this.writer.finished) return; // client gone or answered: the rest is dropped
    try {
      if (this.faultAt === FaultPoint.ResponseBody) injectFault(this.faultAt);
      const size = chunk.length;
      this.bytesOut += size;
      this.deadline = coarseClock.now + this.timeouts.server;
      this.vs.views.stats[this.vs.statBase + V.bytes_out] += size;
      if (this.server) this.vs.views.stats[this.server.statBase + S.bytes_out] += size;
      // The write that finishes the response must find the client flowing (uWS leaves a paused socket stuck).
      if (this.contentLength >= 0 && this.bytesOut >= this.contentLength) this.body.releaseClient();
      if (!this.writer.body(chunk)) this.waitForClient();
    } catch (error) {
      this.fault(error);
    }
  }

  onResponseComplete(): void {
    try {
      // The connection has detached itself and resumed reading; it is the pool's again.
      this.connection = null;
      this.releaseServer();
      if (this.isOver) return;
      this.body.releaseClient();
      if (this.writer.complete()) this.enter(Phase.Done);
      else this.enter(Phase.Flushing);
    } catch (error) {
      this.fault(error);
    }
  }

  onUpstreamFailure(phase: FailurePhase, code: FailureCode, reason: string): void {
    try {
      this.failAttempt(phase, code, reason);
    } catch (error) {
      this.fault(error);
    }
  }

  onUpstreamFault(error: unknown): void {
    this.connection = null; // the connection destroyed itself
    this.fault(error);
  }

  onUpstreamDrain(): void {
    try {
      if (!this.isOver) this.body.onServerDrain();
    } catch (error) {
      this.fault(error);
    }
  }

  /** Called by the server connection around the parsing of each read (not guarded here: the connection guards it). */
  runCorked(work: () => void): void {
    if (this.faultAt === FaultPoint.UpstreamRead) injectFault(this.faultAt);
    const writer = this.writer;
    // A streamed body must not be written inside a cork past its first piece (response-writer.ts).
    if (writer.finished || writer.uncorkedReads) return work();
    corked = this;
    corkedWork = work;
    writer.inCork = true;
    try {
      this.res.cork(runCorkedRead);
    } finally {
      writer.inCork = false;
    }
    if (!writer.afterCork() && !this.isOver) this.waitForClient();
  }

  /** Inside res.cork: parse one read, then send a response head its body did not take along. */
  finishRead(work: () => void): void {
    work();
    if (!this.writer.finished && !this.isOver && !this.writer.endOfRead()) this.waitForClient();
  }

  // ---- client writable again (WriterListener, from uWS onWritable) ----

  onClientWritable(): void {
    try {
      if (this.phase !== Phase.ClientBlocked) return;
      this.enter(Phase.Streaming);
      if (this.connection !== null) {
        this.connection.resumeReading();
        this.deadline = coarseClock.now + this.timeouts.server;
      }
    } catch (error) {
      this.fault(error);
    }
  }

  onClientFlushed(): void {
    try {
      if (this.phase === Phase.Flushing || this.phase === Phase.ClientBlocked) this.enter(Phase.Done);
    } catch (error) {
      this.fault(error);
    }
  }

  /** Sweep: enforce the body, queue and server timeouts. */
  checkDeadline(now: number): void {
    if (this.isOver) return;
    try {
      if (this.bodyDeadline !== 0 && now >= this.bodyDeadline) return this.fail('BODY_TIMEOUT');
      if (this.queueDeadline !== 0 && now >= this.queueDeadline) return this.fail('QUEUE_TIMEOUT');
      if (this.deadline !== 0 && now >= this.deadline) {
        if (this.server) {
          this.vs.views.stats[this.server.statBase + S.failures]++;
          this.server.noteFailure('timeout');
        }
        this.fail('SERVER_TIMEOUT');
      }
    } catch (error) {
      this.fault(error);
    }
  }

  // ---- internals ----

  /**
   * Moves to `next`; a move from a terminal phase (a second answer) or outside the table is
   * counted as a violation. Entering Done or Failed does the end-of-exchange bookkeeping.
   */
  private enter(next: Phase): void {
    const from = this.phase;
    if (from >= Phase.Done) {
      this.vs.invariants.count('answered_twice');
      return;
    }
    if ((NEXT[from] & (1 << next)) === 0) this.vs.invariants.count('illegal_transition');
    this.phase = next;
    if (next >= Phase.Done) this.finish();
  }

  /** Takes a place on `server` and writes the request; false when another thread filled its max_conns first. */
  private sendTo(server: ServerRuntime, fresh: boolean): boolean {
    if (this.held !== server && !this.takeServer(server)) return false;
    this.queueDeadline = 0;
    this.server = server;
    if (this.vs.events.observer.accessLogOn) this.sentAt = performance.now();
    this.vs.views.stats[server.statBase + S.requests]++;
    const connection = fresh ? server.pool.connectFresh() : server.pool.acquire();
    this.connection = connection;
    this.deadline = coarseClock.now + this.timeouts.server;
    this.enter(Phase.AwaitingServer);
    connection.attach(this, this.request.method === 'HEAD');
    const rules = this.vs.rules;
    this.body.sendTo(connection, rules === null ? this.request.head : rules.requestHead(this.request, server.config.name), this.request.asciiHead);
    return true;
  }

  /** +1 on the server's in-flight counter, unless it is at max_conns. */
  private takeServer(server: ServerRuntime): boolean {
    const slots = this.vs.views.servers;
    const before = Atomics.add(slots, server.inflightIndex, 1);
    if (server.config.max_conns > 0 && before >= server.config.max_conns) {
      Atomics.sub(slots, server.inflightIndex, 1);
      return false;
    }
    if (this.held !== null) this.releaseServer();
    this.held = server;
    return true;
  }

  /** Releases the held in-flight place (at most once per take) and lets a queued exchange have it. */
  private releaseServer(): void {
    const held = this.held;
    if (held === null) return;
    this.held = null;
    Atomics.sub(this.vs.views.servers, held.inflightIndex, 1);
    if (this.vs.queue.size > 0) this.vs.pumpQueue();
  }

  /** Waits in the service queue; `failure` is what the client gets when the queue is full. */
  private enqueue(failure: ErrorName | null): void {
    if (this.vs.queue.size >= this.vs.config.max_queue) return this.fail(failure ?? 'QUEUE_FULL');
    // The real clock, not the coarse one: queue timeouts are set in hundreds of milliseconds,
    // and a coarse clock that lagged (a starved timer) made one fire 12 ms early. Queueing
    // is the slow path; the sweep compares against Date.now() too.
    this.queueDeadline = Date.now() + this.timeouts.queue;
    this.deadline = 0;
    this.enter(Phase.Queued);
    this.queued = true;
    this.vs.queue.add(this);
  }

  /** A failed attempt on the server connection: retry (retry.ts) or fail the request. */
  private failAttempt(phase: FailurePhase, code: FailureCode, reason: string): void {
    const server = this.server;
    const connection = this.connection;
    this.connection = null;
    if (this.isOver || server === null) return this.releaseServer();
    const stats = this.vs.views.stats;
    if (phase === 'connect') {
      stats[server.statBase + S.connect_failures]++;
      server.noteFailure(reason);
    }
    const retry = retryFor({
      phase,
      code,
      reused: connection !== null && connection.responses > 0,
      method: this.request.method,
      replayable: this.body.replayable,
      connectRetried: this.connectRetried,
      staleRetried: this.staleRetried,
    });
    if (retry === 'same-server') {
      // Keeps its place on the server: a queued exchange must not take it in between.
      this.staleRetried = true;
      stats[server.statBase + S.retries]++;
      this.sendTo(server, true);
      return;
    }
    if (retry === 'other-server') {
      this.connectRetried = true;
      const pool = this.pool;
      const failed = server.local < 0 ? -1 : pool.indexOf[server.local]; // the fallback server is in no pool
      this.avoid = failed;
      const other = pool.balancer.pick(failed, this.request.client, this.sticky);
      if (other !== -1 || this.vs.anyServerFull(pool.servers)) {
        stats[server.statBase + S.retries]++;
        this.releaseServer();
        // The other server may be full (or another thread, or the queue this release just
        // pumped, filled it): then the retry waits its turn, never stranded.
        if (other === -1 || !this.sendTo(pool.servers[other], false)) this.enqueue(connectFailure(code));
        return;
      }
    }
    this.releaseServer();
    stats[server.statBase + S.failures]++;
    if (phase !== 'connect') server.noteFailure(reason);
    this.errorDetail = reason;
    if (phase === 'connect') this.fail(connectFailure(code));
    else this.fail(code === 'bad-response' ? 'BAD_RESPONSE' : 'SERVER_CLOSED');
  }

  /** Backpressure from the client: stop reading the server until uWS can write again. */
  private waitForClient(): void {
    if (this.phase === Phase.Streaming) this.enter(Phase.ClientBlocked);
    this.connection?.pauseReading();
    this.deadline = 0; // a slow client is not a slow server
  }

  /**
   * How the client connection ends after this response (close-mode.ts): it closes during
   * shutdown and when its listener was replaced (new certificates); a request body still
   * arriving is never cut by that close, only told to stop (`Connection: close`), and so is a
   * response that comes before the body was read to its end.
   */
  private closeMode(): CloseMode {
    if (!this.body.done) return CloseMode.Advise;
    return this.vs.closing || this.listener.lingering ? CloseMode.AfterResponse : CloseMode.Keep;
  }

  /** Destroys the server connection (never reused) and releases the server. */
  private dropConnection(): void {
    const connection = this.connection;
    this.connection = null;
    connection?.destroy();
    this.releaseServer();
  }

  /** Ends the request with carelb's own error response, or cuts the client if its response began. */
  private fail(name: ErrorName, detail?: string): void {
    if (this.isOver) return this.vs.invariants.count('answered_twice');
    this.errorCode = ERRORS[name].code;
    if (detail !== undefined) this.errorDetail = detail;
    this.dropConnection();
    const writer = this.writer;
    if (writer.started) {
      // A partial response cannot turn into an error: cut it so the client sees it was incomplete.
      countError(this.vs, name);
      this.enter(Phase.Failed);
      writer.cut();
      return;
    }
    this.enter(Phase.Failed);
    if (writer.finished) {
      countError(this.vs, name); // the client is already gone
      return;
    }
    this.status = ERRORS[name].status;
    this.body.releaseClient();
    writer.finished = true;
    // A body that stalled is not arriving: nothing to linger for, the connection closes.
    respondError(this.vs, this.res, name, name === 'BODY_TIMEOUT' ? CloseMode.AfterResponse : this.closeMode(), this.request.method === 'HEAD');
  }

  /**
   * An exception on this exchange's path (a bug): fail it alone with 502 CLB_INTERNAL (or a
   * cut), count and report it. Must not throw: a second exception only cuts the client.
   */
  fault(error: unknown): void {
    try {
      this.vs.events.report('fault', `request ${this.request.method} ${this.request.target}: ${describeThrown(error)}`);
      const connection = this.connection;
      this.connection = null;
      connection?.destroy();
      if (this.isOver) {
        countError(this.vs, 'INTERNAL');
        this.releaseServer();
        return;
      }
      this.fail('INTERNAL');
    } catch {
      try {
        this.releaseServer();
        if (!this.writer.finished) {
          this.writer.finished = true;
          this.res.close();
        }
        if (!this.isOver) this.enter(Phase.Failed);
      } catch {
        /* nothing more can be done for this request; the thread goes on */
      }
    }
  }

  /** `fallback:` local answer when no server is up (still counted as CLB_NO_SERVER). */
  private answerFallback(fallback: FallbackResponse): void {
    this.status = fallback.status;
    this.errorCode = ERRORS.NO_SERVER.code;
    countError(this.vs, 'NO_SERVER');
    this.vs.views.stats[this.vs.statBase + V.responses_1xx + statusClassOffset(fallback.status)]++;
    this.body.releaseClient();
    this.writer.finished = true;
    const res = this.res;
    const close = this.closeMode();
    this.enter(Phase.Done);
    res.cork(() => {
      res.writeStatus(`${fallback.status} ${STATUS_TEXT[fallback.status] ?? 'Unavailable'}`).writeHeader('content-type', fallback.contentType).writeHeader('x-carelb-error', ERRORS.NO_SERVER.code);
      if (fallback.retryAfter !== null) res.writeHeader('retry-after', fallback.retryAfter);
      const local = this.vs.rules?.localHeaders;
      if (local) for (const [key, value] of local) res.writeHeader(key, value);
      if (close === CloseMode.Advise) res.writeHeader('connection', 'close');
      res.end(fallback.body, endsWithClose(close));
    });
  }

  /** End-of-exchange bookkeeping, once, on entering Done or Failed. */
  private finish(): void {
    this.deadline = 0;
    this.bodyDeadline = 0;
    this.queueDeadline = 0;
    this.body.dropReplay();
    if (this.held !== null && this.connection === null) {
      // Every path releases before it ends; one that did not is a bug, repaired here.
      this.vs.invariants.count('inflight_unbalanced');
      this.releaseServer();
    }
    if (this.queued) {
      this.queued = false;
      this.vs.queue.delete(this);
    }
    this.vs.active.delete(this);
    this.listener.exchangeEnded();
    this.vs.onExchangeEnded();
    this.observe();
  }

  /** Latency for the server's histogram, and the access-log line when enabled. */
  private observe(): void {
    const observer = this.vs.events.observer;
    const now = performance.now();
    if (this.server !== null && this.answered) this.server.latency.record(Math.max(1, ((now - this.startedAt) * 1000) | 0));
    if (!observer.accessLogOn) return;
    observer.accessLog({
      vs: this.vs.config.name,
      server: this.server === null ? null : this.server.config.name,
      client: this.request.client,
      method: this.request.method,
      target: this.request.target,
      status: this.phase === Phase.Done || this.status !== 0 ? this.status : 0,
      bytesIn: this.body.received,
      bytesOut: this.bytesOut,
      totalMs: now - this.startedAt,
      upstreamMs: this.headAt === 0 || this.sentAt === 0 ? null : this.headAt - this.sentAt,
      error: this.errorCode,
      detail: this.errorDetail,
      tls: this.vs.proto === 'https',
      requestId: this.request.l7 === null || this.request.l7.requestId === '' ? null : this.request.l7.requestId,
    });
  }

  /** For debugging and tests: the phase by name. */
  get phaseName(): string {
    return PHASE_NAMES[this.phase];
  }
}

// The read being parsed inside res.cork (one at a time per thread): a module-level callback
// instead of a closure per read.
let corked: Exchange | null = null;
let corkedWork: () => void = () => {};
function runCorkedRead(): void {
  const exchange = corked!;
  corked = null;
  exchange.finishRead(corkedWork);
}

function connectFailure(code: FailureCode): ErrorName {
  return code === 'tls' ? 'UPSTREAM_TLS' : code === 'connect-timeout' ? 'CONNECT_TIMEOUT' : 'CONNECT_FAILED';
}
