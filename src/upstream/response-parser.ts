/**
 * Incremental HTTP/1.1 response parser for server connections (RFC 9112).
 *
 * One parser per server connection, reused for every response on it. `execute` is called
 * with each chunk read from the socket; body bytes are handed on as views of that chunk
 * (never copied, never concatenated), valid only during the callback. Only an incomplete
 * response head that spans reads is copied, and it is bounded by `maxHeadBytes`.
 *
 * Views are plain Uint8Arrays made directly on the read buffer's memory: `Buffer#subarray`
 * goes through the species constructor of Buffer's subclass, a measurable cost per response
 * at saturation (perf: FindNonDefaultConstructorOrConstruct under the read callback).
 *
 * The head is reduced to what the client should see: hop-by-hop headers (RFC 9110 §7.6.1)
 * and the framing headers the front end writes itself (Content-Length, Transfer-Encoding,
 * Date) are dropped; everything else is joined into one `Name: value\r\n...` block so the
 * front end can hand it to uWS in a single call.
 */

export interface ResponseEvents {
  /**
   * A final (non-1xx) response head. `head` is the status line without its version and the
   * kept fields, as `200 OK\r\nName: value\r\n...` (no final CRLF), ready for uWS's
   * writeStatus, as bytes: uWS takes a typed array as it is, while a string would be
   * converted to UTF-8 (an allocation and two passes per response, and obs-text bytes above
   * 0x7f, RFC 9110 §5.5, would be re-encoded). The view is on the thread's scratch buffer:
   * it is valid until the next response head is parsed on this thread, so the caller writes
   * it (or copies it) before the read that brought it ends.
   * `contentLength` is -1 when the body is chunked or close-delimited.
   */
  onHead(status: number, head: Uint8Array, contentLength: number, bodyless: boolean): void;
  /** Body bytes (de-chunked). The view is only valid during the call. */
  onBody(chunk: Uint8Array): void;
  /** The response is complete. */
  onComplete(): void;
  /** The response is malformed; the connection must not be reused. */
  onParseError(reason: string): void;
}

const enum State {
  Head,
  BodyLength,
  ChunkSize,
  ChunkExtension,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  Trailers,
  BodyUntilClose,
  Done,
  Failed,
}

const CR = 13;
const LF = 10;
const CRLFCRLF = Buffer.from('\r\n\r\n');

const enum Field {
  Keep,
  /** Hop-by-hop, or written by uWS itself (Date). */
  Drop,
  ContentLength,
  TransferEncoding,
  Connection,
}

/** Case-insensitive match of head[at, at+name.length) against a lowercase name. */
function nameIs(head: Buffer, at: number, name: string): boolean {
  for (let k = 0; k < name.length; k++) if ((head[at + k] | 0x20) !== name.charCodeAt(k)) return false;
  return true;
}

/**
 * What to do with a response field, from its name's bytes: hop-by-hop fields (RFC 9110
 * §7.6.1) and those uWS writes itself (Content-Length, Date) are not passed to the client.
 * Dispatching on length first keeps the common case (a field to keep) to one switch.
 */
function framingField(head: Buffer, at: number, length: number): Field {
  switch (length) {
    case 2:
      return nameIs(head, at, 'te') ? Field.Drop : Field.Keep;
    case 4:
      return nameIs(head, at, 'date') ? Field.Drop : Field.Keep;
    case 7:
      return nameIs(head, at, 'trailer') || nameIs(head, at, 'upgrade') ? Field.Drop : Field.Keep;
    case 10:
      if (nameIs(head, at, 'connection')) return Field.Connection;
      return nameIs(head, at, 'keep-alive') ? Field.Drop : Field.Keep;
    case 14:
      return nameIs(head, at, 'content-length') ? Field.ContentLength : Field.Keep;
    case 16:
      return nameIs(head, at, 'proxy-connection') ? Field.Drop : Field.Keep;
    case 17:
      return nameIs(head, at, 'transfer-encoding') ? Field.TransferEncoding : Field.Keep;
    default:
      return Field.Keep;
  }
}

/** Digits only, at most 15 of them; -1 otherwise. */
function parseDecimal(head: Buffer, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = head[i] - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** Removes the named fields from a `status text\r\nName: value...` block (the status text is kept). */
function removeFields(block: string, names: string[]): string {
  return block
    .split('\r\n')
    .filter((line, index) => index === 0 || !names.includes(line.slice(0, line.indexOf(':')).trim().toLowerCase()))
    .join('\r\n');
}

/** Whether head[start, end) is `name` (lowercase), ignoring case. */
function bytesAre(head: Buffer, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let k = 0; k < name.length; k++) if ((head[start + k] | 0x20) !== name.charCodeAt(k)) return false;
  return true;
}

/** RFC 9112 §6.3: whether the last transfer coding of the value in head[start, end) is chunked. */
function lastCodingIsChunked(head: Buffer, start: number, end: number): boolean {
  let from = start;
  for (let i = end - 1; i >= start; i--) {
    if (head[i] === 0x2c /* , */) {
      from = i + 1;
      break;
    }
  }
  while (from < end && (head[from] === 0x20 || head[from] === 0x09)) from++;
  return bytesAre(head, from, end, 'chunked');
}

/** Per-thread scratch for building a response head (status text + kept lines); grows for a large head. */
let scratch = Buffer.allocUnsafe(16 * 1024);
function scratchFor(size: number): Buffer {
  // The output is never longer than the head plus a reason phrase.
  if (scratch.length < size + 16) scratch = Buffer.allocUnsafe(size + 16);
  return scratch;
}

/** RFC 9110 §5.6.2 tchar, as a lookup table. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = 1;
for (let c = 97; c <= 122; c++) TCHAR[c] = 1;

/**
 * Field-value bytes (RFC 9110 §5.5): 1 = visible ASCII, SP, HTAB and obs-text (passed on as
 * bytes, unchanged); 0 = anything else (CR included).
 */
const VALUE = new Uint8Array(256);
VALUE[0x09] = 1;
for (let c = 0x20; c < 0x7f; c++) VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;

/** A view of `length` bytes of `bytes` from `at`: a plain Uint8Array, not a Buffer subarray (see the header). */
function view(bytes: Uint8Array, at: number, length: number): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset + at, length);
}

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[65 + c] = 10 + c;
  HEX[97 + c] = 10 + c;
}

const STATUS_LINE_PREFIX = Buffer.from('HTTP/1.');

/** Whether `head[start, limit)` (possibly incomplete) can still be the start of a status line. */
function startsLikeStatusLine(head: Buffer, start: number, limit: number): boolean {
  const n = Math.min(STATUS_LINE_PREFIX.length, limit - start);
  for (let i = 0; i < n; i++) if (head[start + i] !== STATUS_LINE_PREFIX[i]) return false;
  return true;
}

export class ResponseParser {
  private state = State.Done;
  private pendingHead: Buffer | null = null;
  private remaining = 0;
  private chunkSizeDigits = 0;
  private trailerLineLength = 0;
  private expectBodyless = false;
  /** Whether the connection may carry another request after this response. */
  keepAlive = false;
  /** Whether any byte of the current response has been seen. */
  started = false;
  /** Final status of the current response, 0 before its head. */
  status = 0;

  constructor(
    private readonly events: ResponseEvents,
    private readonly maxHeadBytes = 64 * 1024,
  ) {}

  /** Prepares for the response to a new request. `bodyless`: the request was HEAD. */
  expect(bodyless: boolean): void {
    this.state = State.Head;
    this.expectBodyless = bodyless;
    this.pendingHead = null;
    this.started = false;
    this.status = 0;
    this.keepAlive = false;
  }

  /** Done or failed: nothing more to read for this request. */
  private get settled(): boolean {
    return this.state === State.Done || this.state === State.Failed;
  }

  /** True once a response has completed and nothing unexpected followed. */
  get idle(): boolean {
    return this.state === State.Done;
  }

  /** Feeds the first `length` bytes of `data`, read from the socket. */
  execute(data: Buffer, length = data.length): void {
    if (length === 0) return;
    if (this.state === State.Done || this.state === State.Failed) {
      // Bytes nobody asked for: the server is confused, the connection cannot be trusted.
      this.fail('data received without a pending request');
      return;
    }
    this.started = true;
    this.limit = length;
    let pos = 0;
    while (pos < length && !this.settled) pos = this.step(data, pos);
    if (pos < length && (this.state as State) === State.Done) {
      this.keepAlive = false; // extra bytes after a complete response: never reuse this connection
    }
  }

  /** The server closed its side. Completes a close-delimited body, otherwise reports truncation. */
  finish(): boolean {
    if (this.state === State.BodyUntilClose) {
      this.state = State.Done;
      this.events.onComplete();
      return true;
    }
    return this.state === State.Done;
  }

  private fail(reason: string): void {
    this.state = State.Failed;
    this.keepAlive = false;
    this.events.onParseError(reason);
  }

  /** Bytes of the current `execute` call's data that are valid (the rest of the buffer is not). */
  private limit = 0;

  private step(data: Buffer, pos: number): number {
    switch (this.state) {
      case State.Head:
        return this.readHead(data, pos);
      case State.BodyLength: {
        const take = Math.min(this.remaining, this.limit - pos);
        this.remaining -= take;
        const end = pos + take;
        this.events.onBody(view(data, pos, take));
        if (this.remaining === 0) this.complete();
        return end;
      }
      case State.BodyUntilClose:
        this.events.onBody(view(data, pos, this.limit - pos));
        return this.limit;
      case State.ChunkData: {
        const take = Math.min(this.remaining, this.limit - pos);
        this.remaining -= take;
        if (take > 0) this.events.onBody(view(data, pos, take));
        if (this.remaining === 0) this.state = State.ChunkDataCr;
        return pos + take;
      }
      default:
        return this.readChunkFraming(data, pos);
    }
  }

  private complete(): void {
    this.state = State.Done;
    this.events.onComplete();
  }

  /** Chunk-size lines, the CRLF after chunk data, and trailers: byte by byte, they are short. */
  private readChunkFraming(data: Buffer, pos: number): number {
    const limit = this.limit;
    while (pos < limit) {
      const byte = data[pos++];
      switch (this.state) {
        case State.ChunkSize: {
          const digit = HEX[byte];
          if (digit >= 0) {
            if (++this.chunkSizeDigits > 13) return this.failAt('chunk size too large');
            this.remaining = this.remaining * 16 + digit;
          } else if (this.chunkSizeDigits === 0) {
            return this.failAt('invalid chunk size');
          } else if (byte === CR) {
            this.state = State.ChunkSizeLf;
          } else if (byte === 0x3b /* ; */ || byte === 0x20 || byte === 0x09) {
            this.state = State.ChunkExtension;
          } else {
            return this.failAt('invalid chunk size');
          }
          break;
        }
        case State.ChunkExtension:
          if (byte === CR) this.state = State.ChunkSizeLf;
          else if (byte === LF || byte === 0) return this.failAt('invalid chunk extension');
          break;
        case State.ChunkSizeLf:
          if (byte !== LF) return this.failAt('invalid chunk size line ending');
          if (this.remaining === 0) {
            this.state = State.Trailers;
            this.trailerLineLength = 0;
          } else {
            this.state = State.ChunkData;
          }
          return pos;
        case State.ChunkDataCr:
          if (byte !== CR) return this.failAt('chunk data not followed by CRLF');
          this.state = State.ChunkDataLf;
          break;
        case State.ChunkDataLf:
          if (byte !== LF) return this.failAt('chunk data not followed by CRLF');
          this.state = State.ChunkSize;
          this.remaining = 0;
          this.chunkSizeDigits = 0;
          return pos;
        case State.Trailers:
          // Trailer fields are read and dropped: uWS cannot send trailers to the client.
          if (byte === LF) {
            if (this.trailerLineLength === 0) {
              this.complete();
              return pos;
            }
            this.trailerLineLength = 0;
          } else if (byte !== CR) {
            if (++this.trailerLineLength > this.maxHeadBytes) return this.failAt('trailers too large');
          }
          break;
        default:
          return this.failAt('parser in an unexpected state');
      }
    }
    return pos;
  }

  private failAt(reason: string): number {
    this.fail(reason);
    return Number.MAX_SAFE_INTEGER;
  }

  private readHead(data: Buffer, pos: number): number {
    let head = data;
    let start = pos;
    let limit = this.limit;
    // Where this read's bytes begin in `head` (less 3, so a CRLFCRLF split across reads is found).
    let searchFrom = pos;
    if (this.pendingHead) {
      head = Buffer.concat([this.pendingHead, data.subarray(pos, limit)]);
      start = 0;
      limit = head.length;
      searchFrom = Math.max(0, this.pendingHead.length - 3);
    }
    let end = head.indexOf(CRLFCRLF, searchFrom);
    if (end + 4 > limit) end = -1; // found in stale bytes past this read (the buffer is reused)
    if (end === -1) {
      if (limit - start > this.maxHeadBytes) return this.failAt('response head too large');
      // A head that can never complete must fail now, not when the server timeout expires:
      // bytes that do not begin "HTTP/1.", or a line ended by a bare LF (RFC 9112 §2.2).
      if (!startsLikeStatusLine(head, start, limit)) return this.failAt('invalid status line');
      for (let i = head.indexOf(LF, Math.max(start, searchFrom)); i !== -1 && i < limit; i = head.indexOf(LF, i + 1)) {
        if (i === start || head[i - 1] !== CR) return this.failAt('bare LF in response head');
      }
      // Rare: the head spans reads. Keep a copy, the read buffer is reused.
      this.pendingHead = Buffer.from(head.subarray(start, limit));
      return this.limit;
    }
    if (end - start > this.maxHeadBytes) return this.failAt('response head too large');
    const consumedFromHead = end + 4;
    const pendingLength = this.pendingHead ? this.pendingHead.length : 0;
    this.pendingHead = null;
    const error = this.parseHead(head, start, end);
    if (error) return this.failAt(error);
    // Translate the position back into `data`.
    return pendingLength ? consumedFromHead - pendingLength + pos : consumedFromHead;
  }

  /**
   * Parses `head[start, end)` (status line + fields, without the final CRLFCRLF). The
   * status text and the kept field lines are copied byte by byte into the thread's scratch
   * buffer and become one string with a single latin1 decode: no string per field.
   */
  private parseHead(head: Buffer, start: number, end: number): string | null {
    // Status line: HTTP/1.x SP 3DIGIT SP reason
    if (end - start < 12) return 'invalid status line';
    for (let k = 0; k < 7; k++) if (head[start + k] !== STATUS_LINE_PREFIX[k]) return 'invalid status line';
    const minor = head[start + 7];
    if ((minor !== 0x30 && minor !== 0x31) || head[start + 8] !== 0x20) return 'unsupported HTTP version';
    const d0 = head[start + 9] - 48;
    const d1 = head[start + 10] - 48;
    const d2 = head[start + 11] - 48;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return 'invalid status code';
    const status = d0 * 100 + d1 * 10 + d2;
    let lineEnd = head.indexOf(CR, start + 12);
    if (lineEnd === -1 || lineEnd > end) lineEnd = end;
    if (lineEnd < end && head[lineEnd + 1] !== LF) return 'bare CR in status line';
    if (lineEnd > start + 12 && head[start + 12] !== 0x20) return 'invalid status line';
    for (let i = start + 12; i < lineEnd; i++) {
      const c = head[i];
      if (c === LF || c === 0 || (c < 0x20 && c !== 0x09) || c === 0x7f) return 'invalid character in status line';
    }
    const out = scratchFor(end - start);
    let n = 0;
    if (lineEnd > start + 13) {
      for (let i = start + 9; i < lineEnd; i++) out[n++] = head[i];
    } else {
      // No reason phrase: uWS needs one ("200" alone is not a status line it writes well).
      for (let i = start + 9; i < start + 12; i++) out[n++] = head[i];
      const reason = status === 200 ? ' OK' : ' Unknown';
      for (let k = 0; k < reason.length; k++) out[n++] = reason.charCodeAt(k);
    }

    let contentLength = -1;
    let chunked = false;
    let hasTransferEncoding = false;
    let connectionClose = minor === 0x30;
    /** Connection values other than a plain keep-alive or close, joined (rare: the slow path below). */
    let connectionTokens: string | null = null;

    let line = lineEnd + 2;
    while (line < end) {
      let i = line;
      // The name: tchars up to the colon.
      for (; i < end; i++) {
        const c = head[i];
        if (TCHAR[c] === 0) break;
      }
      if (i === end || head[i] !== 0x3a) {
        const c = head[i];
        return i === line && (c === 0x20 || c === 0x09) ? 'obsolete line folding' : i === end || c === CR ? 'invalid header line' : 'invalid header name';
      }
      const colon = i;
      if (colon === line) return 'invalid header line';
      const kind = framingField(head, line, colon - line);
      // The value: one table lookup per byte (VALUE: 0 invalid, 1 allowed, obs-text
      // included), CR ends it; a line to keep is copied out in the same pass.
      if (kind === Field.Keep) {
        out[n++] = CR;
        out[n++] = LF;
        for (let k = line; k <= colon; k++) out[n++] = head[k];
        for (i++; i < end; i++) {
          const c = head[i];
          if (VALUE[c] === 0) {
            if (c === CR) break;
            return 'invalid character in header value';
          }
          out[n++] = c;
        }
      } else {
        for (i++; i < end; i++) {
          if (VALUE[head[i]] === 1) continue;
          if (head[i] === CR) break;
          return 'invalid character in header value';
        }
      }
      if (i < end && head[i + 1] !== LF) return 'bare CR in header field';
      if (kind !== Field.Keep && kind !== Field.Drop) {
        let valueStart = colon + 1;
        let valueEnd = i;
        while (valueStart < valueEnd && (head[valueStart] === 0x20 || head[valueStart] === 0x09)) valueStart++;
        while (valueEnd > valueStart && (head[valueEnd - 1] === 0x20 || head[valueEnd - 1] === 0x09)) valueEnd--;
        if (kind === Field.ContentLength) {
          const length = parseDecimal(head, valueStart, valueEnd);
          if (length < 0) return 'invalid Content-Length';
          if (contentLength !== -1 && contentLength !== length) return 'conflicting Content-Length values';
          contentLength = length;
        } else if (kind === Field.TransferEncoding) {
          hasTransferEncoding = true;
          // RFC 9112 §6.3: the last coding decides; anything but a final chunked is close-delimited.
          chunked = lastCodingIsChunked(head, valueStart, valueEnd);
        } else if (bytesAre(head, valueStart, valueEnd, 'keep-alive')) {
          if (minor === 0x30) connectionClose = false; // HTTP/1.0 asks to keep the connection
        } else if (bytesAre(head, valueStart, valueEnd, 'close')) {
          connectionClose = true;
        } else {
          const value = head.toString('latin1', valueStart, valueEnd);
          connectionTokens = connectionTokens ? `${connectionTokens},${value}` : value;
        }
      }
      line = i + 2;
    }
    if (hasTransferEncoding && contentLength !== -1) return 'both Transfer-Encoding and Content-Length';
    let text = view(out, 0, n);

    if (connectionTokens !== null) {
      const tokens = connectionTokens.toLowerCase().split(',').map((t) => t.trim());
      if (tokens.includes('close')) connectionClose = true;
      else if (minor === 0x30 && tokens.includes('keep-alive')) connectionClose = false;
      const nominated = tokens.filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive');
      // RFC 9110 §7.6.1: drop the fields the Connection header names (rare: the slow path is fine).
      if (nominated.length > 0) text = Buffer.from(removeFields(out.toString('latin1', 0, n), nominated), 'latin1');
    }

    if (status < 200) {
      // 1xx interim response (e.g. 100 Continue): uWS cannot forward it; swallow and wait for the final one.
      if (status === 101) return 'unexpected protocol switch';
      this.state = State.Head;
      return null;
    }
    this.status = status;
    const bodyless = this.expectBodyless || status === 204 || status === 304;
    this.keepAlive = !connectionClose;
    if (bodyless) {
      this.events.onHead(status, text, contentLength, true);
      this.complete();
    } else if (hasTransferEncoding) {
      if (chunked) {
        this.state = State.ChunkSize;
        this.remaining = 0;
        this.chunkSizeDigits = 0;
      } else {
        this.state = State.BodyUntilClose;
        this.keepAlive = false;
      }
      this.events.onHead(status, text, -1, false);
    } else if (contentLength >= 0) {
      this.events.onHead(status, text, contentLength, false);
      if (contentLength === 0) this.complete();
      else {
        this.state = State.BodyLength;
        this.remaining = contentLength;
      }
    } else {
      this.state = State.BodyUntilClose;
      this.keepAlive = false;
      this.events.onHead(status, text, -1, false);
    }
    return null;
  }
}
