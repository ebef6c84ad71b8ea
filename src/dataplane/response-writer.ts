/**
 * Writes one server response to the uWS client response, with backpressure. Thread-local;
 * called by an Exchange from its server-side callbacks and by uWS's onWritable.
 *
 * Rules it keeps (DESIGN.md, hot path):
 * - the head waits until the first body bytes or the end of the read that brought it, so a
 *   malformed body in the same read (a bad chunk size) still becomes a clean 502 (issue 11,
 *   point 13), and the head, headers and first bytes leave in one corked write;
 * - a body slice goes to uWS as it is; only what uWS could not take is copied (the read
 *   buffer is reused), and it is kept in order until uWS is writable again;
 * - `res` is never touched once `finished`: uWS forbids it after the end or an abort.
 *
 * Body modes: `sized` (the server sent Content-Length: uWS's tryEnd writes it and reports
 * what it could not send), `streamed` (chunked or close-delimited: uWS re-chunks, buffering
 * what the socket did not take), and `sizedOrClose` (Content-Length, and the client
 * connection must close after it).
 *
 * Streamed bodies and uWS's cork (uWS v20.43, AsyncSocket::uncork): when a non-optional
 * write does not fit in the cork buffer, uWS flushes the cork buffer first, and if the socket
 * takes only part of it, it returns without writing the new data at all: a chunk's size line
 * goes out, its bytes never do (found by the soak: chunked responses of several MB to a
 * client that reads slower than the server sends). tryEnd is optional, so Content-Length
 * bodies only see a failed write and keep their tail; res.write has no such answer. So a
 * streamed body goes out in pieces that each fit whole in an empty cork buffer, each in a
 * cork of its own: uWS then only copies it and flushes at the end of the cork, where a short
 * write is buffered, never dropped. Bytes that come in the read that brought the head (whose
 * cork already holds other writes) are copied and written this way right after that cork;
 * later reads of the response are parsed without a read-level cork. A piece's res.write
 * reports the backpressure left by the pieces before it (uWS's buffer not drained), so the
 * server is paused at most one piece late.
 *
 * Closing after a response: uWS closes the connection itself only when the response is
 * ended by `end(…, true)` or `endWithoutBody(n, true)`, and it writes its `Connection: close`
 * header at that moment — into the body, if the head went out before (measured with uWS
 * v20.30). So a body that comes whole with its head is ended that way; any other response
 * that must close carries `Connection: close` in its head and its client closes (RFC 9112
 * §9.6); a replaced listener closes whatever connections are left once nothing is in flight.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { CloseMode } from './close-mode';

export const enum BodyMode {
  None,
  Sized,
  SizedOrClose,
  Streamed,
}

/** What the writer tells its exchange; both are called from uWS's onWritable. */
export interface WriterListener {
  /** uWS took what was held back: the server may be read again. */
  onClientWritable(): void;
  /** The last bytes of a response the server had completed reached uWS. */
  onClientFlushed(): void;
}

const EMPTY = Buffer.alloc(0);
const NOOP = (): void => {};
const CONNECTION_CLOSE = '\r\nConnection: close';

/** A copy of a head from the response parser (bytes) with a header line appended. */
function withLine(head: Uint8Array, line: string): Buffer {
  return Buffer.concat([head, Buffer.from(line, 'latin1')]);
}

// The writer whose piece or end is being written inside res.cork (one at a time per thread):
// module-level callbacks instead of closures made for every response.
let corkedWriter: ResponseWriter | null = null;
function writeCorkedPiece(): void {
  corkedWriter!.writePieceNow();
}
function endCorkedStream(): void {
  corkedWriter!.endStreamNow();
}

export class ResponseWriter {
  /**
   * Head not yet written: it goes with the first body bytes or at the end of the read that
   * brought it (the parser's view of it is valid only until then).
   */
  private pendingHead: Uint8Array | null = null;
  private mode = BodyMode.None;
  private contentLength = -1;
  /** Body bytes uWS did not take yet (a copy), and their offset in the body. */
  private tail: Buffer | null = null;
  private tailOffset = 0;
  /** Body bytes uWS has taken (its write offset, kept here to save a native call). */
  private offset = 0;
  private waitingForClient = false;
  private writableRegistered = false;
  /** Inside the exchange's read-level res.cork (set by the exchange around it). */
  inCork = false;
  /** Streamed body bytes of the current read kept for after its cork (copies), and whether the end follows them. */
  private deferred: Uint8Array[] | null = null;
  private endDeferred = false;
  /** Something has been written to `res`: a failure can only cut the connection now. */
  started = false;
  /** The response is complete or abandoned: `res` must not be touched again. */
  finished = false;

  constructor(
    private readonly res: HttpResponse,
    private readonly listener: WriterListener,
  ) {}

  /** Whether bytes are held back waiting for the client. */
  get blocked(): boolean {
    return this.waitingForClient;
  }

  /** A streamed body whose head is out: the exchange parses its reads without a cork (see the header comment). */
  get uncorkedReads(): boolean {
    return this.mode === BodyMode.Streamed && this.pendingHead === null && !this.finished;
  }

  /**
   * The server's response head. Returns true when the response is already complete (no
   * body: HEAD, 204, 304, or Content-Length: 0). `close`: how the client connection ends
   * after this response (close-mode.ts).
   */
  begin(status: number, head: Uint8Array, contentLength: number, bodyless: boolean, close: CloseMode): boolean {
    const res = this.res;
    if (bodyless) {
      // RFC 9112 §6.3: HEAD, 204 and 304 responses have no body; a HEAD response keeps the
      // Content-Length it would have had. uWS's endWithoutBody(length) waits for that many
      // bytes and then drops the connection, so the length goes in the head instead; and
      // endWithoutBody cannot close without writing its own Content-Length, so a closing
      // bodyless answer says `Connection: close` and the client closes (RFC 9112 §9.6).
      let out = contentLength >= 0 && status !== 204 && status !== 304 ? withLine(head, `\r\nContent-Length: ${contentLength}`) : head;
      if (close !== CloseMode.Keep) out = withLine(out, CONNECTION_CLOSE);
      this.started = true;
      this.finished = true;
      res.writeStatus(out);
      res.endWithoutBody();
      return true;
    }
    if (contentLength === 0) {
      this.started = true;
      this.finished = true;
      res.writeStatus(close === CloseMode.Advise ? withLine(head, CONNECTION_CLOSE) : head);
      res.end(EMPTY, close === CloseMode.AfterResponse);
      return true;
    }
    this.contentLength = contentLength;
    if (contentLength < 0) {
      this.mode = BodyMode.Streamed;
      this.pendingHead = close !== CloseMode.Keep ? withLine(head, CONNECTION_CLOSE) : head;
    } else {
      // uWS closes itself only after a body ended in one call (SizedOrClose); a body still
      // arriving from the client must not be cut by that close, so it is only advised.
      this.mode = close === CloseMode.AfterResponse ? BodyMode.SizedOrClose : BodyMode.Sized;
      this.pendingHead = close === CloseMode.Advise ? withLine(head, CONNECTION_CLOSE) : head;
    }
    return false;
  }

  /** Body bytes (valid only during the call). False when the client cannot take more: stop reading the server. */
  body(chunk: Uint8Array): boolean {
    if (this.finished) return true; // the client is gone: what the server still sends is dropped
    if (this.mode === BodyMode.Sized) return this.writeSized(chunk);
    if (this.mode === BodyMode.SizedOrClose) {
      if (this.pendingHead !== null && chunk.length === this.contentLength) {
        // The whole body in one piece: end() writes Content-Length and Connection: close, and closes after it.
        this.writeHead();
        this.finished = true;
        this.res.end(chunk, true);
        return true;
      }
      this.closeByHeader();
      return this.writeSized(chunk);
    }
    return this.writeStreamed(chunk);
  }

  /** Largest streamed piece: with its chunk framing it fits an empty uWS cork buffer (16 KiB). */
  private static readonly PIECE = 16 * 1024 - 64;

  private writeStreamed(chunk: Uint8Array): boolean {
    if (this.inCork) {
      (this.deferred ??= []).push(Buffer.from(chunk)); // a copy: the read buffer is reused
      return true;
    }
    const ok = this.writePieces(chunk);
    if (!ok) this.waitForClient();
    return ok;
  }

  /** Writes `chunk` as pieces, each in a cork of its own; false when uWS reported backpressure. */
  private writePieces(chunk: Uint8Array): boolean {
    let ok = true;
    for (let at = 0; at < chunk.length; at += ResponseWriter.PIECE) {
      this.piece = at === 0 && chunk.length <= ResponseWriter.PIECE ? chunk : chunk.subarray(at, at + ResponseWriter.PIECE);
      this.corked(writeCorkedPiece);
      ok = this.pieceOk && ok;
    }
    this.piece = EMPTY;
    return ok;
  }

  private piece: Uint8Array = EMPTY;
  private pieceOk = true;

  /** Runs `work` (one of the module-level callbacks above) inside res.cork for this writer. */
  private corked(work: () => void): void {
    corkedWriter = this;
    try {
      this.res.cork(work);
    } finally {
      corkedWriter = null;
    }
  }

  /** Inside res.cork: the current piece of a streamed body. */
  writePieceNow(): void {
    this.writeHead();
    this.pieceOk = this.res.write(this.piece);
  }

  /**
   * After the read-level cork: writes the streamed bytes that had to wait for it (and the end
   * of the response if it came in that read). Returns false when the client cannot take more.
   */
  afterCork(): boolean {
    const deferred = this.deferred;
    if (deferred === null || this.finished) return true;
    this.deferred = null;
    let ok = true;
    for (const chunk of deferred) ok = this.writePieces(chunk) && ok;
    if (this.endDeferred) {
      this.endDeferred = false;
      this.finished = true;
      this.corked(endCorkedStream);
      return true;
    }
    if (!ok) this.waitForClient();
    return ok;
  }

  /** Inside res.cork: the end of a streamed body (uWS writes its last chunk). */
  endStreamNow(): void {
    this.writeHead();
    this.res.end(EMPTY);
  }

  /**
   * End of one read from the server: a head still pending goes out now (the client sees the
   * headers as soon as the server sent them). False when the client cannot take more.
   */
  endOfRead(): boolean {
    if (this.pendingHead === null || this.finished) return true;
    if (this.mode === BodyMode.SizedOrClose) this.closeByHeader();
    this.writeHead();
    if (this.mode !== BodyMode.Sized) return true;
    // tryEnd with no data completes the head (uWS writes Content-Length with it).
    const [ok] = this.res.tryEnd(EMPTY, this.contentLength);
    if (ok) return true;
    this.waitForClient();
    return false;
  }

  /**
   * The server's response is complete. True when the client response is finished too; false
   * while body bytes are still held back for the client (they follow on onWritable).
   */
  complete(): boolean {
    if (this.finished) return true;
    if (this.mode === BodyMode.Sized) return false; // tryEnd finishes it when the last bytes go out
    if (this.deferred !== null) {
      // Bytes of this read wait for the end of the cork: the end goes after them (afterCork).
      this.endDeferred = true;
      return true;
    }
    this.finished = true;
    // Chunked or close-delimited body: uWS ends its own chunked encoding (a close was announced in the head).
    this.corked(endCorkedStream);
    return true;
  }

  /** A sized body that does not come whole: announce the close in the head, then relay it as sized. */
  private closeByHeader(): void {
    this.mode = BodyMode.Sized;
    if (this.pendingHead !== null) this.pendingHead = withLine(this.pendingHead, CONNECTION_CLOSE);
  }

  /** Ends a response that cannot be completed: the client connection is closed, so the client sees it was cut. */
  cut(): void {
    if (this.finished) return;
    this.finished = true;
    this.tail = null;
    this.deferred = null;
    this.res.close();
  }

  /** uWS aborted the response (the client is gone): nothing may be written any more. */
  abandon(): void {
    this.finished = true;
    this.tail = null;
    this.deferred = null;
    this.waitingForClient = false;
  }

  private writeHead(): void {
    if (this.pendingHead === null) return;
    this.started = true;
    this.res.writeStatus(this.pendingHead);
    this.pendingHead = null;
  }

  /** Content-Length body: tryEnd lets uWS write Content-Length and tells us what it could not send. */
  private writeSized(chunk: Uint8Array): boolean {
    this.writeHead();
    if (this.tail !== null) {
      // Still waiting on the client (bytes of the same read): keep the rest in order.
      this.tail = Buffer.concat([this.tail, chunk]);
      return false;
    }
    const offset = this.offset;
    if (offset === 0 && chunk.length === this.contentLength && !this.waitingForClient) {
      // The whole body at once (the common case): end() takes it in one call, buffering what
      // the socket does not take (at most this one read), and returns no [ok, done] array.
      this.finished = true;
      this.res.end(chunk);
      return true;
    }
    const [ok, done] = this.res.tryEnd(chunk, this.contentLength);
    if (done) {
      this.finished = true;
      return true;
    }
    if (ok) {
      this.offset += chunk.length;
      return true;
    }
    this.tail = Buffer.from(chunk); // a copy: the read buffer is reused
    this.tailOffset = offset;
    this.waitForClient();
    return false;
  }

  private waitForClient(): void {
    this.waitingForClient = true;
    if (!this.writableRegistered) {
      // Made here, not per response: most responses never wait for their client.
      this.writableRegistered = true;
      this.res.onWritable((writeOffset) => this.onWritable(writeOffset));
    }
  }

  /** uWS onWritable (also called spuriously): write what was held back; true when done with it. */
  private onWritable(writeOffset: number): boolean {
    if (this.finished || !this.waitingForClient) return true;
    if (this.mode === BodyMode.Sized) {
      const rest = this.tail === null ? EMPTY : this.tail.subarray(writeOffset - this.tailOffset);
      const [ok, done] = this.res.tryEnd(rest, this.contentLength);
      if (done) {
        this.finished = true;
        this.tail = null;
        this.waitingForClient = false;
        this.listener.onClientFlushed();
        return true;
      }
      if (!ok) return false;
      if (this.tail !== null) this.offset = this.tailOffset + this.tail.length;
      this.tail = null;
    } else {
      // Streamed: uWS holds the bytes itself, but with an onWritable handler it leaves them
      // for our next write; an empty cork pushes them out now, so a server that pauses does
      // not leave the client waiting for bytes carelb already has.
      this.res.cork(NOOP);
    }
    this.waitingForClient = false;
    this.listener.onClientWritable();
    return true;
  }
}
