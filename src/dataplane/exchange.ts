/**
 * One proxied request: client request in through uWS, a server picked, the request written
 * to a pooled connection, the response streamed back; retries, timeouts and aborts.
 *
 * Rules this file keeps (see DESIGN.md, hot path):
 * - the uWS response is never touched after onAborted, end, or a tryEnd that completed;
 * - request body chunks are copied (uWS detaches its ArrayBuffer when onData returns, and a
 *   socket write may complete later), response body slices go to uWS as they are;
 * - the server's in-flight counter is incremented once per attempt and decremented exactly
 *   once, whatever happens (`releaseServer`);
 * - nothing throws out of here: a failure ends this request with an error response and a
 *   counter, and the thread keeps serving.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, type ErrorName } from '../errors';
import { countError, respondError } from './respond';
import { S, V, statusClassOffset } from '../state/stats';
import type { FailureCode, FailurePhase, UpstreamConnection, UpstreamSink } from '../upstream/connection';
import type { RequestInfo } from './request-head';
import type { FallbackResponse, ServerRuntime, ServiceRuntime } from './service';
import { STATUS_CODES as STATUS_TEXT } from 'node:http';

/** Request bodies up to this size are kept until the response starts, so the request can be replayed. */
const REPLAY_LIMIT = 64 * 1024;
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/** RFC 9110 §9.2.2 idempotent methods. */
function isIdempotent(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'PUT' || method === 'DELETE' || method === 'OPTIONS' || method === 'TRACE';
}

export class Exchange implements UpstreamSink {
  private server: ServerRuntime | null = null;
  private connection: UpstreamConnection | null = null;
  /** True while this exchange holds +1 on `server`'s in-flight counter. */
  private holdsServer = false;
  /** Body chunks sent so far, kept while small so a retry can resend them; null once given up. */
  private replay: Buffer[] | null = [];
  private replayBytes = 0;
  private bodyDone: boolean;
  private clientPaused = false;
  private connectRetried = false;
  private staleRetried = false;
  /** The client response has begun (status written): errors can only close the connection now. */
  private responding = false;
  /** The client response is complete or the client is gone: `res` must not be touched. */
  private resDone = false;
  private ended = false;
  private contentLength = -1;
  /** Response body bytes uWS did not take yet (backpressure), copied, and their body offset. */
  private tail: Buffer | null = null;
  private tailOffset = 0;
  /** Body bytes uWS has taken so far (its write offset, tracked here to save a native call). */
  private bodyOffset = 0;
  private readonly bodyless: boolean;
  deadline = 0;
  private readonly startedAt = performance.now();
  private sentAt = 0;
  private headAt = 0;
  /** Status the client got (0: none, the connection was cut). */
  private status = 0;
  private errorCode: string | null = null;
  private bytesOut = 0;
  /** While the request body is expected: when it is considered stalled. */
  private bodyDeadline = 0;
  private bodyBytes = 0;
  /** While waiting in the queue for a server below max_conns. */
  private queueDeadline = 0;

  constructor(
    private readonly vs: ServiceRuntime,
    private readonly res: HttpResponse,
    private readonly request: RequestInfo,
    /** Close the client connection after this response (its listener was replaced). */
    private readonly closeAfter = false,
  ) {
    this.bodyless = request.method === 'HEAD';
    this.bodyDone = !request.chunked && request.contentLength <= 0;
    if (!this.bodyDone) this.bodyDeadline = Date.now() + vs.config.timeouts.client_body_idle;
    vs.active.add(this);
    vs.views.stats[vs.statBase + V.requests]++;
  }

  /** Starts the exchange: called once from the uWS handler after onAborted/onData are attached. */
  start(): void {
    if (this.vs.closing) {
      this.fail('SHUTTING_DOWN');
      return;
    }
    if (this.tryStart()) return;
    // Every server that could take it is at max_conns: wait in this thread's queue.
    if (this.vs.queue.length >= this.vs.config.max_queue) {
      this.fail('QUEUE_FULL');
      return;
    }
    this.queueDeadline = Date.now() + this.vs.config.timeouts.queue;
    this.vs.queue.push(this);
  }

  /**
   * Sends the request to a picked server (or the fallback); false when it must wait because
   * the eligible servers are all at max_conns. Called by start() and by the queue.
   */
  tryStart(): boolean {
    if (this.ended) return true;
    const local = this.vs.balancer.pick(-1, this.request.client);
    if (local !== -1) return this.sendTo(this.vs.servers[local], false);
    if (this.vs.anyServerFull()) return false;
    this.queueDeadline = 0;
    if (this.vs.fallbackServer !== null) this.sendTo(this.vs.fallbackServer, false);
    else if (this.vs.fallbackResponse !== null) this.answerFallback(this.vs.fallbackResponse);
    else this.fail('NO_SERVER');
    return true;
  }

  // ---- client side (uWS callbacks) ----

  /** uWS onData: a piece of the request body. */
  onClientData(chunk: ArrayBuffer, isLast: boolean): void {
    if (this.ended) return;
    const size = chunk.byteLength;
    if (size > 0) {
      this.bodyBytes += size;
      const maxBody = this.vs.config.limits.max_body;
      if (maxBody > 0 && this.bodyBytes > maxBody) {
        this.fail('BODY_TOO_LARGE'); // a chunked body that outgrew the limit while streaming
        return;
      }
      const copy = Buffer.allocUnsafe(size);
      copy.set(new Uint8Array(chunk));
      this.vs.views.stats[this.vs.statBase + V.bytes_in] += size;
      if (this.server !== null) this.vs.views.stats[this.server.statBase + S.bytes_in] += size;
      if (this.replay !== null) {
        this.replayBytes += size;
        if (this.connection === null) {
          // Waiting for a server (queue): keep everything, but stop reading the client past the limit.
          this.replay.push(copy);
          if (this.replayBytes > REPLAY_LIMIT && !this.clientPaused) {
            this.clientPaused = true;
            this.res.pause();
          }
        } else if (this.replayBytes <= REPLAY_LIMIT) this.replay.push(copy);
        else this.replay = null;
      }
      if (this.connection !== null) {
        this.writeBodyChunk(this.connection, copy);
        // The server timeout counts inactivity: a long upload is activity.
        if (this.deadline !== 0) this.deadline = Date.now() + this.vs.config.timeouts.server;
      }
    }
    if (isLast) {
      this.bodyDone = true;
      this.bodyDeadline = 0;
    } else {
      this.bodyDeadline = Date.now() + this.vs.config.timeouts.client_body_idle;
    }
    if (isLast) {
      if (this.request.chunked && this.connection !== null) this.connection.socket.write(LAST_CHUNK);
    }
  }

  /** uWS onAborted: the client connection is gone. */
  onClientAborted(): void {
    // Also called synchronously by our own res.close() in fail(), which has already finished the response.
    const alreadyDone = this.resDone;
    this.resDone = true;
    if (this.ended || alreadyDone) return;
    this.errorCode = ERRORS.CLIENT_ABORTED.code;
    this.vs.views.stats[this.vs.statBase + V.client_aborts]++;
    countError(this.vs, 'CLIENT_ABORTED');
    this.dropConnection();
    this.end();
  }

  // ---- server side (UpstreamSink) ----

  onResponseHead(status: number, statusLine: string, headerBlock: string, contentLength: number, bodyless: boolean): void {
    this.replay = null; // the server has answered: no replay from here on
    this.headAt = performance.now();
    this.status = status;
    if (this.resDone) return;
    this.deadline = Date.now() + this.vs.config.timeouts.server;
    this.responding = true;
    this.contentLength = contentLength;
    const stats = this.vs.views.stats;
    const klass = statusClassOffset(status);
    stats[this.vs.statBase + V.responses_1xx + klass]++;
    if (this.server) {
      stats[this.server.statBase + S.responses_1xx + klass]++;
      this.server.noteResponse(status);
    }
    const res = this.res;
    this.unpauseClient();
    if (bodyless) {
      this.resDone = true;
      // RFC 9112 §6.3: HEAD, 204 and 304 responses have no body; a HEAD response keeps the
      // Content-Length it would have had. uWS's endWithoutBody(length) waits for that many
      // bytes and then drops the connection, so the length goes in the header block instead.
      const keepsLength = contentLength >= 0 && status !== 204 && status !== 304;
      res.writeStatus(statusLine + headerBlock + (keepsLength ? `\r\nContent-Length: ${contentLength}` : ''));
      res.endWithoutBody();
      return;
    }
    res.writeStatus(headerBlock === '' ? statusLine : statusLine + headerBlock);
    if (contentLength === 0) {
      this.resDone = true;
      res.end('', this.closeClient());
    }
  }

  onResponseBody(chunk: Buffer): void {
    if (this.resDone && this.tail === null) return;
    const size = chunk.length;
    this.bytesOut += size;
    this.deadline = Date.now() + this.vs.config.timeouts.server;
    this.vs.views.stats[this.vs.statBase + V.bytes_out] += size;
    if (this.server) this.vs.views.stats[this.server.statBase + S.bytes_out] += size;
    if (this.contentLength >= 0) this.writeSizedBody(chunk);
    else if (!this.res.write(chunk)) this.waitForClient();
  }

  onResponseComplete(): void {
    this.releaseServer();
    this.connection = null;
    if (!this.resDone && this.contentLength < 0) {
      // Chunked or close-delimited body: uWS ends its own chunked encoding.
      this.resDone = true;
      this.res.end('', this.closeClient());
    }
    if (this.tail === null) this.end();
  }

  onUpstreamFailure(phase: FailurePhase, code: FailureCode, reason: string): void {
    const server = this.server;
    const connection = this.connection;
    this.connection = null;
    this.releaseServer();
    if (this.ended || server === null) return;
    const stats = this.vs.views.stats;
    if (phase === 'connect') {
      stats[server.statBase + S.connect_failures]++;
      server.noteFailure(reason);
      // Nothing reached the server: any method may go to another server, once.
      if (!this.connectRetried && this.canReplay()) {
        this.connectRetried = true;
        const other = this.vs.balancer.pick(server.local, this.request.client);
        if (other !== -1) {
          stats[server.statBase + S.retries]++;
          this.sendTo(this.vs.servers[other], false);
          return;
        }
      }
      stats[server.statBase + S.failures]++;
      if (code === 'tls') this.fail('UPSTREAM_TLS', reason); // the client is told why (e.g. "certificate has expired")
      else this.fail(code === 'connect-timeout' ? 'CONNECT_TIMEOUT' : 'CONNECT_FAILED');
      return;
    }
    if (phase === 'before-response' && code === 'closed' && connection !== null && connection.responses > 0) {
      // RFC 9112 §9.3.1: a kept-alive connection the server had already closed. Idempotent
      // requests are retried on a fresh connection to the same server.
      if (!this.staleRetried && isIdempotent(this.request.method) && this.canReplay()) {
        this.staleRetried = true;
        stats[server.statBase + S.retries]++;
        this.sendTo(server, true);
        return;
      }
    }
    stats[server.statBase + S.failures]++;
    server.noteFailure(reason);
    this.fail(code === 'bad-response' ? 'BAD_RESPONSE' : 'SERVER_CLOSED');
  }

  onUpstreamDrain(): void {
    if (this.clientPaused && !this.resDone) {
      this.clientPaused = false;
      this.res.resume();
    }
  }

  runCorked(work: () => void): void {
    if (this.resDone) work();
    else this.res.cork(work);
  }

  /** Sweep: enforce the body, queue and server timeouts. */
  checkDeadline(now: number): void {
    if (this.ended) return;
    if (this.bodyDeadline !== 0 && now >= this.bodyDeadline) {
      this.fail('BODY_TIMEOUT');
      return;
    }
    if (this.queueDeadline !== 0 && now >= this.queueDeadline) {
      this.fail('QUEUE_TIMEOUT');
      return;
    }
    if (this.deadline !== 0 && now >= this.deadline && !this.ended) {
      if (this.server) {
        this.vs.views.stats[this.server.statBase + S.failures]++;
        this.server.noteFailure('timeout');
      }
      this.dropConnection();
      this.fail('SERVER_TIMEOUT');
    }
  }

  // ---- internals ----

  /** Takes a place on `server` and writes the request; false when another thread filled its max_conns first. */
  private sendTo(server: ServerRuntime, fresh: boolean): boolean {
    const before = Atomics.add(this.vs.views.servers, server.inflightIndex, 1);
    if (server.config.max_conns > 0 && before >= server.config.max_conns) {
      Atomics.sub(this.vs.views.servers, server.inflightIndex, 1);
      return false;
    }
    this.queueDeadline = 0;
    this.server = server;
    this.holdsServer = true;
    this.sentAt = performance.now();
    this.vs.views.stats[server.statBase + S.requests]++;
    const connection = fresh ? server.pool.connectFresh() : server.pool.acquire();
    this.connection = connection;
    this.deadline = Date.now() + this.vs.config.timeouts.server;
    connection.attach(this, this.bodyless);
    const socket = connection.socket;
    if (this.replayBytes === 0 && !this.request.chunked) {
      socket.write(this.request.head); // the common case: one write, no cork
      return true;
    }
    socket.cork();
    socket.write(this.request.head);
    if (this.replay !== null) for (const chunk of this.replay) this.writeBodyChunk(connection, chunk);
    if (this.bodyDone && this.request.chunked) socket.write(LAST_CHUNK);
    socket.uncork();
    if (this.replayBytes > REPLAY_LIMIT) this.replay = null; // held only while waiting; too big to replay
    if (this.clientPaused && socket.writableLength === 0 && !this.resDone) {
      this.clientPaused = false;
      this.res.resume();
    }
    return true;
  }

  private writeBodyChunk(connection: UpstreamConnection, chunk: Buffer): void {
    const socket = connection.socket;
    let ok: boolean;
    if (this.request.chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      ok = socket.write(CRLF);
      socket.uncork();
    } else {
      ok = socket.write(chunk);
    }
    if (!ok && !this.clientPaused && !this.resDone) {
      // The server reads slower than the client sends: stop reading the client.
      this.clientPaused = true;
      this.res.pause();
    }
  }

  /** Content-Length body: tryEnd lets uWS write Content-Length and tells us what it could not send. */
  private writeSizedBody(chunk: Buffer): void {
    if (this.tail !== null) {
      // Still waiting on the client: keep the rest in order behind what is pending.
      this.tail = Buffer.concat([this.tail, chunk]);
      return;
    }
    const offset = this.bodyOffset;
    const [ok, done] = this.res.tryEnd(chunk, this.contentLength);
    if (done) {
      this.resDone = true;
    } else if (ok) {
      this.bodyOffset += chunk.length;
    } else {
      this.tail = Buffer.from(chunk); // copy: the read buffer is reused
      this.tailOffset = offset;
      this.waitForClient();
    }
  }

  /** Backpressure from the client: stop reading the server until uWS can write again. */
  private waitForClient(): void {
    this.connection?.socket.pause();
    this.deadline = 0; // a slow client is not a slow server
    this.res.onWritable((offset) => this.onClientWritable(offset));
  }

  private onClientWritable(offset: number): boolean {
    if (this.resDone && this.tail === null) return true;
    if (this.tail !== null) {
      const [ok, done] = this.res.tryEnd(this.tail.subarray(offset - this.tailOffset), this.contentLength);
      if (done) {
        this.resDone = true;
        this.tail = null;
        if (this.connection === null) this.end();
        return true;
      }
      if (!ok) return false;
      this.bodyOffset = this.tailOffset + this.tail.length;
      this.tail = null;
    }
    if (this.connection !== null) {
      this.connection.socket.resume();
      this.deadline = Date.now() + this.vs.config.timeouts.server;
    }
    return true;
  }

  /**
   * A client paused for upload backpressure must be resumed before its response ends: uWS
   * leaves a paused socket stuck once the response is done.
   */
  private unpauseClient(): void {
    if (this.clientPaused) {
      this.clientPaused = false;
      this.res.resume();
    }
  }

  /**
   * Whether the client connection must close after this response: during shutdown, and when
   * the request body was not read to its end (the rest would be taken for the next request).
   */
  private closeClient(): boolean {
    return this.vs.closing || this.closeAfter || !this.bodyDone;
  }

  private canReplay(): boolean {
    return this.replay !== null;
  }

  private releaseServer(): void {
    if (!this.holdsServer) return;
    this.holdsServer = false;
    Atomics.sub(this.vs.views.servers, this.server!.inflightIndex, 1);
    if (this.vs.queue.length > 0) this.vs.pumpQueue();
  }

  /** Destroys the server connection (never reused) and releases the server. */
  private dropConnection(): void {
    const connection = this.connection;
    this.connection = null;
    connection?.destroy();
    this.releaseServer();
  }

  /** Ends the request with carelb's own error response, or closes the client if it already began. */
  private fail(name: ErrorName, detail?: string): void {
    this.errorCode = ERRORS[name].code;
    this.dropConnection();
    if (!this.resDone) {
      this.resDone = true;
      if (this.responding) {
        this.res.close(); // a partial response cannot be turned into an error: cut it so the client sees it was incomplete
      } else {
        this.status = ERRORS[name].status;
        this.unpauseClient();
        respondError(this.vs, this.res, name, this.closeClient(), this.bodyless, detail);
        this.end();
        return;
      }
    }
    countError(this.vs, name);
    this.end();
  }

  /** `fallback:` local answer when no server is up (still counted as CLB_NO_SERVER). */
  private answerFallback(fallback: FallbackResponse): void {
    this.status = fallback.status;
    this.errorCode = ERRORS.NO_SERVER.code;
    countError(this.vs, 'NO_SERVER');
    this.vs.views.stats[this.vs.statBase + V.responses_1xx + statusClassOffset(fallback.status)]++;
    this.resDone = true;
    this.unpauseClient();
    const res = this.res;
    const close = this.closeClient();
    res.cork(() => {
      res.writeStatus(`${fallback.status} ${STATUS_TEXT[fallback.status] ?? 'Unavailable'}`).writeHeader('content-type', fallback.contentType).writeHeader('x-carelb-error', ERRORS.NO_SERVER.code);
      if (fallback.retryAfter !== null) res.writeHeader('retry-after', fallback.retryAfter);
      res.end(fallback.body, close);
    });
    this.end();
  }


  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.deadline = 0;
    this.bodyDeadline = 0;
    this.queueDeadline = 0;
    this.tail = null;
    this.replay = null;
    this.vs.active.delete(this);
    this.vs.onExchangeEnded();
    this.observe();
  }

  /** Latency for the server's histogram, and the access-log line when enabled. */
  private observe(): void {
    const observer = this.vs.events.observer;
    const now = performance.now();
    if (this.server !== null && this.headAt !== 0) this.server.latency.recordValue(Math.max(1, ((now - this.startedAt) * 1000) | 0));
    if (!observer.accessLogOn) return;
    observer.accessLog({
      vs: this.vs.config.name,
      server: this.server === null ? null : this.server.config.name,
      client: this.request.client,
      method: this.request.method,
      target: this.request.target,
      status: this.status,
      bytesIn: this.bodyBytes,
      bytesOut: this.bytesOut,
      totalMs: now - this.startedAt,
      upstreamMs: this.headAt === 0 || this.sentAt === 0 ? null : this.headAt - this.sentAt,
      error: this.errorCode,
      tls: this.vs.proto === 'https',
    });
  }
}
