/**
 * One keep-alive connection to a server, owned by one data-plane thread.
 *
 * Plain connections read into the thread's single shared read buffer (`onread`), so reading
 * a response allocates nothing; body slices of it are handed to uWS synchronously, and uWS
 * copies whatever it cannot send at once. The connection is attached to at most one
 * exchange at a time; it reports to it through `UpstreamSink` and never outlives a protocol
 * error (a connection that saw anything odd is destroyed, not reused).
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
  onResponseHead(status: number, statusLine: string, headerBlock: string, contentLength: number, bodyless: boolean): void;
  onResponseBody(chunk: Buffer): void;
  onResponseComplete(): void;
  /**
   * The connection failed before the response completed. `phase`: 'connect' (never
   * connected), 'before-response' (connected, not one response byte seen), 'response'
   * (the response had started). `reason` is for logs.
   */
  onUpstreamFailure(phase: FailurePhase, code: FailureCode, reason: string): void;
  onUpstreamDrain(): void;
  /** Runs `work` with the client response corked, so a read's writes leave in one syscall. */
  runCorked(work: () => void): void;
}

/** What the connection needs from its pool. */
export interface ConnectionOwner {
  /** A finished response left the connection reusable. */
  release(connection: UpstreamConnection): void;
  /** The connection is gone (closed by either side). */
  forget(connection: UpstreamConnection): void;
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
    this.socket.on('error', (error: NodeJS.ErrnoException) => this.onSocketClosed(error));
    this.socket.on('end', () => this.onServerEnd());
    this.socket.on('close', () => this.onSocketClosed(null));
    this.socket.on('drain', () => this.sink?.onUpstreamDrain());
  }

  /** Binds an exchange; the caller then writes the request. */
  attach(sink: UpstreamSink, bodyless: boolean): void {
    this.sink = sink;
    this.completed = false;
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

  get isClosed(): boolean {
    return this.closed;
  }

  private onConnect(): void {
    this.connected = true;
    this.connectDeadline = 0;
  }

  private onRead(buffer: Buffer, bytes: number): boolean {
    const sink = this.sink;
    if (!sink) {
      // An idle connection that speaks unasked: the server is broken or closing. Drop it.
      this.destroy();
      return false;
    }
    this.readChunk = bytes === buffer.length ? buffer : buffer.subarray(0, bytes);
    sink.runCorked(this.parseReadChunk);
    this.readChunk = EMPTY;
    if (this.completed) this.afterResponse();
    return true;
  }

  private readChunk: Buffer = EMPTY;
  private readonly parseReadChunk = (): void => this.parser.execute(this.readChunk);
  private readonly parseEof = (): void => {
    this.parser.finish();
  };

  // ResponseEvents: the parser reports, the connection forwards to its exchange.
  onHead(status: number, statusLine: string, headerBlock: string, contentLength: number, bodyless: boolean): void {
    this.sink?.onResponseHead(status, statusLine, headerBlock, contentLength, bodyless);
  }

  onBody(chunk: Buffer): void {
    this.sink?.onResponseBody(chunk);
  }

  onComplete(): void {
    this.completed = true;
    this.responses++;
    const sink = this.sink;
    this.sink = null;
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
    if (this.parser.keepAlive && this.parser.idle && !this.closed) this.owner.release(this);
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
