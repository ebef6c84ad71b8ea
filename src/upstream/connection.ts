/**
 * One keep-alive connection to a server, owned by one data-plane thread.
 *
 * Plain connections read into the thread's single shared read buffer (`onread`), so reading
 * a response allocates nothing; body slices of it are handed to uWS synchronously, and uWS
 * copies whatever it cannot send at once. The connection is attached to at most one
 * exchange at a time; it reports to it through `UpstreamSink` and never outlives a protocol
 * error (a connection that saw anything odd is destroyed, not reused).
 *
 * Reading can be paused by the attached exchange (its client is slower than the server).
 * That pause belongs to the attachment: when the response completes, the connection resumes
 * reading itself before it goes back to the pool, whatever the exchange still has to write
 * to its client (issue 11: a paused socket handed to the next request hung it until 504).
 *
 * Every socket callback is guarded: an exception fails the attached exchange (its sink hears
 * `onUpstreamFault`) and destroys this connection; it never reaches the thread.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ResponseParser, type ResponseEvents } from './response-parser';

export type FailurePhase = 'connect' | 'before-response' | 'response';
export type FailureCode = 'refused' | 'connect-timeout' | 'tls' | 'closed' | 'bad-response';

/** Certificate verification and handshake errors, as opposed to plain connection errors. */
function isTlsFailure(error: NodeJS.ErrnoException): boolean {
  const code = error.code ?? '';
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED|UNABLE_TO|DEPTH_ZERO|HOSTNAME/.test(code) || /SSL routines/.test(error.message);
}

/** What an exchange (one proxied request) hears from its server connection. */
export interface UpstreamSink {
  /** See ResponseEvents.onHead. */
  onResponseHead(status: number, head: Uint8Array, contentLength: number, bodyless: boolean): void;
  onResponseBody(chunk: Uint8Array): void;
  /** The response is complete; the connection is no longer this exchange's. */
  onResponseComplete(): void;
  /**
   * The connection failed before the response completed. `phase`: 'connect' (never
   * connected), 'before-response' (connected, not one response byte seen), 'response'
   * (the response had started). `reason` is for logs.
   */
  onUpstreamFailure(phase: FailurePhase, code: FailureCode, reason: string): void;
  /** An exception escaped the connection's own code while this sink was attached (a bug). */
  onUpstreamFault(error: unknown): void;
  onUpstreamDrain(): void;
  /**
   * Runs `work` (the parsing of one read) with the client response corked, so a read's
   * writes leave in one syscall; the sink finishes the read's writes after it (a response
   * head not yet written goes out at the end of the read that brought it).
   */
  runCorked(work: () => void): void;
}

/** What the connection needs from its pool. */
export interface ConnectionOwner {
  /** A finished response left the connection reusable. */
  release(connection: UpstreamConnection): void;
  /** The connection is gone (closed by either side). */
  forget(connection: UpstreamConnection): void;
  /** An exception escaped a socket callback while no exchange was attached (a bug): report it. */
  fault(error: unknown): void;
  /** Last TLS session from this server, offered on the next connect (resumption). */
  tlsSession: Buffer | null;
}

const READ_BUFFER_BYTES = 64 * 1024;
let sharedReadBuffer: Buffer | null = null;
const EMPTY = Buffer.alloc(0);

export class UpstreamConnection implements ResponseEvents {
  readonly socket: net.Socket | tls.TLSSocket;
  readonly parser: ResponseParser;
  sink: UpstreamSink | null = null;
  connected = false;
  /** Responses completed on this connection: >0 means it is a reused keep-alive connection. */
  responses = 0;
  idleSince = 0;
  /** Set when the connection is in its pool's idle list. */
  idle = false;
  /** Deadline (ms since epoch) while connecting, 0 otherwise. */
  connectDeadline = 0;
  /**
   * The whole request (head and body) has been handed to the socket. A response that ends
   * before that (the server answered early) leaves the server expecting more body bytes, so
   * the connection cannot carry another request.
   */
  requestSent = false;
  /** Reading paused by the attached exchange (client backpressure). */
  private readingPaused = false;
  private completed = false;
  private closed = false;

  constructor(
    readonly owner: ConnectionOwner,
    host: string,
    port: number,
    connectTimeoutMs: number,
    /** TLS to the server (bridging), or null for plain TCP. */
    tlsOptions: tls.ConnectionOptions | null = null,
  ) {
    sharedReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    this.parser = new ResponseParser(this);
    this.connectDeadline = Date.now() + connectTimeoutMs;
    if (tlsOptions) {
      // TLS sockets cannot read into a caller's buffer (no `onread`): their chunks arrive as 'data'.
      const socket = tls.connect({ ...tlsOptions, host, port, session: owner.tlsSession ?? undefined });
      socket.setNoDelay(true);
      socket.on('secureConnect', () => this.onConnect());
      socket.on('session', (session: Buffer) => (owner.tlsSession = session));
      socket.on('data', (chunk: Buffer) => this.onRead(chunk, chunk.length));
      this.socket = socket;
    } else {
      this.socket = net.connect({
        host,
        port,
        noDelay: true,
        onread: { buffer: sharedReadBuffer, callback: (bytes: number, buffer: Uint8Array) => this.onRead(buffer as Buffer, bytes) },
      });
      this.socket.on('connect', () => this.onConnect());
    }
    this.socket.on('error', (error: NodeJS.ErrnoException) => this.guarded(this.onSocketClosed, error));
    this.socket.on('end', () => this.guarded(this.onServerEnd, null));
    this.socket.on('close', () => this.guarded(this.onSocketClosed, null));
    this.socket.on('drain', () => this.guarded(this.onDrain, null));
  }

  /** Binds an exchange; the caller then writes the request and calls markRequestSent when all of it is written. */
  attach(sink: UpstreamSink, bodyless: boolean): void {
    this.sink = sink;
    this.completed = false;
    this.requestSent = false;
    this.parser.expect(bodyless);
  }

  /** Unbinds and destroys: used when the exchange gave up (client abort, timeout). */
  destroy(): void {
    this.sink = null;
    if (!this.closed) this.socket.destroy();
    this.markClosed();
  }

  /** Gives up a connection attempt that passed its deadline (called by the pool's sweep). */
  timeoutConnect(): void {
    const sink = this.sink;
    this.destroy();
    sink?.onUpstreamFailure('connect', 'connect-timeout', 'connect timeout');
  }

  /** Stops reading the server until resumeReading (the attached exchange's client is blocked). */
  pauseReading(): void {
    if (this.readingPaused || this.closed) return;
    this.readingPaused = true;
    this.socket.pause();
  }

  resumeReading(): void {
    if (!this.readingPaused) return;
    this.readingPaused = false;
    if (!this.closed) this.socket.resume();
  }

  /** Whether reading is paused (the pool checks it: a pooled connection must be flowing). */
  get isPaused(): boolean {
    return this.readingPaused || this.socket.isPaused();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs a socket event handler; an exception fails the attached exchange, never the thread. */
  private guarded(handler: (this: UpstreamConnection, error: NodeJS.ErrnoException | null) => void, error: NodeJS.ErrnoException | null): void {
    try {
      handler.call(this, error);
    } catch (thrown) {
      this.fault(thrown);
    }
  }

  private fault(error: unknown): void {
    const sink = this.sink;
    this.destroy();
    if (sink) sink.onUpstreamFault(error);
    else this.owner.fault(error);
  }

  private onConnect(): void {
    this.connected = true;
    this.connectDeadline = 0;
  }

  private onDrain(): void {
    this.sink?.onUpstreamDrain();
  }

  private onRead(buffer: Buffer, bytes: number): boolean {
    try {
      const sink = this.sink;
      if (!sink) {
        // An idle connection that speaks unasked: the server is broken or closing. Drop it.
        this.destroy();
        return false;
      }
      // The parser gets the buffer and the count (a subarray per read costs at saturation).
      this.readChunk = buffer;
      this.readBytes = bytes;
      sink.runCorked(this.parseReadChunk);
      this.readChunk = EMPTY;
      if (this.completed) this.afterResponse();
    } catch (error) {
      this.readChunk = EMPTY;
      this.fault(error);
    }
    return true;
  }

  private readChunk: Buffer = EMPTY;
  private readBytes = 0;
  private readonly parseReadChunk = (): void => this.parser.execute(this.readChunk, this.readBytes);
  private readonly parseEof = (): void => {
    this.parser.finish();
  };

  // ResponseEvents: the parser reports, the connection forwards to its exchange.
  onHead(status: number, head: Uint8Array, contentLength: number, bodyless: boolean): void {
    this.sink?.onResponseHead(status, head, contentLength, bodyless);
  }

  onBody(chunk: Uint8Array): void {
    this.sink?.onResponseBody(chunk);
  }

  onComplete(): void {
    this.completed = true;
    this.responses++;
    const sink = this.sink;
    this.sink = null;
    // The exchange's pause ends with its response: the connection must flow again before
    // anyone else gets it, whatever the exchange still owes its client.
    this.resumeReading();
    sink?.onResponseComplete();
  }

  onParseError(reason: string): void {
    const sink = this.sink;
    this.destroy();
    sink?.onUpstreamFailure(this.parser.status ? 'response' : 'before-response', 'bad-response', reason);
  }

  /** Called after the read that completed a response has been fully parsed. */
  private afterResponse(): void {
    this.completed = false;
    if (this.parser.keepAlive && this.parser.idle && this.requestSent && !this.closed) this.owner.release(this);
    else this.destroy();
  }

  /**
   * The server sent FIN. 'close' follows only after our side has shut down too, a loop turn or
   * two later; an idle connection must not be handed to a request in between (the request
   * would be written to a dead connection, and a POST could not be retried), so it goes now.
   */
  private onServerEnd(): void {
    if (this.sink === null && !this.closed) this.destroy();
  }

  private onSocketClosed(error: NodeJS.ErrnoException | null): void {
    if (this.closed) return;
    const sink = this.sink;
    this.socket.destroy();
    this.markClosed();
    if (!sink) return;
    // A close-delimited body ends here, successfully.
    if (this.connected && !error) {
      sink.runCorked(this.parseEof);
      if (this.completed) return;
    }
    this.sink = null;
    const reason = error ? error.code ?? error.message : 'connection closed by server';
    if (!this.connected && error && isTlsFailure(error)) sink.onUpstreamFailure('connect', 'tls', error.message);
    else if (!this.connected) sink.onUpstreamFailure('connect', 'refused', reason);
    else sink.onUpstreamFailure(this.parser.started ? 'response' : 'before-response', 'closed', reason);
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.forget(this);
  }
}
