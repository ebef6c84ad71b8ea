/**
 * Raw-socket HTTP/1.1 clients for hardening tests: bytes exactly as written, and what came
 * back exactly as received, with the connection's fate (closed by the peer, or still open
 * when the test stopped waiting). Every socket is destroyed before a helper resolves.
 */
import * as net from 'node:net';

export interface RawOutcome {
  /** Everything received, as latin1 text (byte-exact). */
  text: string;
  /** The peer closed (FIN or reset) before `maxMs` elapsed. */
  closed: boolean;
  /** The close was a reset (ECONNRESET/EPIPE) rather than an orderly FIN. */
  reset: boolean;
  /** Milliseconds from the write to the close, or to giving up. */
  ms: number;
  /** Status code of the first response line, or null when none arrived. */
  status: number | null;
}

/** The status code of the first `HTTP/1.x NNN` line of `text`, or null. */
export function statusOf(text: string): number | null {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return match ? Number(match[1]) : null;
}

/**
 * Writes `bytes` on a new connection and waits until the peer closes it or `maxMs` elapse
 * (never a fixed sleep: a close ends the wait at once). The socket is then destroyed.
 */
export function rawSend(port: number, bytes: string | Buffer, maxMs = 1000): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let reset = false;
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ text, closed, reset, ms: Date.now() - started, status: statusOf(text) });
    };
    const timer = setTimeout(() => finish(false), maxMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => (reset = true));
    socket.on('close', () => finish(true));
    socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}

export interface RawResponse {
  status: number;
  /** Lowercased names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The exact bytes of this response. */
  raw: string;
}

/**
 * Parses one complete response from the start of `buffer` (strictly: CRLF line ends,
 * Content-Length or chunked framing). Returns null when more bytes are needed, throws when
 * the bytes cannot be a response. `head`: the request was HEAD (no body follows).
 */
export function parseResponse(buffer: Buffer, head = false): { response: RawResponse; consumed: number } | null {
  const end = buffer.indexOf('\r\n\r\n');
  if (end === -1) {
    const start = buffer.subarray(0, 9).toString('latin1');
    if (!'HTTP/1.1 '.startsWith(start)) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(buffer.subarray(0, 60).toString('latin1'))}`);
    return null;
  }
  const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(lines[0]);
  if (!statusLine) throw new Error(`invalid status line ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (!match) throw new Error(`invalid header line ${JSON.stringify(line)}`);
    const name = match[1].toLowerCase();
    headers[name] = name in headers ? `${headers[name]}, ${match[2]}` : match[2];
  }
  const status = Number(statusLine[1]);
  let at = end + 4;
  const done = (body: Buffer) => ({ response: { status, headers, body, raw: buffer.subarray(0, at).toString('latin1') }, consumed: at });
  if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) return done(Buffer.alloc(0));
  if ('transfer-encoding' in headers) {
    if (headers['transfer-encoding'].toLowerCase() !== 'chunked') throw new Error(`unexpected transfer-encoding ${headers['transfer-encoding']}`);
    if ('content-length' in headers) throw new Error('both Content-Length and Transfer-Encoding');
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', at);
      if (lineEnd === -1) return null;
      const sizeText = buffer.subarray(at, lineEnd).toString('latin1');
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error(`invalid chunk size ${JSON.stringify(sizeText)}`);
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // No trailers expected from uWS: the last chunk ends with an empty line.
        if (buffer.length < lineEnd + 4) return null;
        if (buffer.subarray(lineEnd + 2, lineEnd + 4).toString('latin1') !== '\r\n') throw new Error('trailers or garbage after the last chunk');
        at = lineEnd + 4;
        return done(Buffer.concat(parts));
      }
      if (buffer.length < lineEnd + 2 + size + 2) return null;
      parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
      if (buffer.subarray(lineEnd + 2 + size, lineEnd + 4 + size).toString('latin1') !== '\r\n') throw new Error('chunk data not followed by CRLF');
      at = lineEnd + 4 + size;
    }
  }
  if (!('content-length' in headers) || !/^\d+$/.test(headers['content-length'])) throw new Error(`response without a valid Content-Length: ${JSON.stringify(lines[0])}`);
  const length = Number(headers['content-length']);
  if (buffer.length < at + length) return null;
  at += length;
  return done(buffer.subarray(end + 4, at));
}

/**
 * One client connection kept open across requests: send bytes, then read exactly one
 * response (or learn that the connection closed first). For "the next request on the same
 * connection" checks.
 */
export class RawConnection {
  readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  closed = false;
  private waiter: (() => void) | null = null;
  readonly ready: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  send(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /**
   * The next complete response; null when the connection closed before one was complete
   * (what had arrived is left in `pending`); throws when `maxMs` pass first or the bytes are
   * not a well-formed response.
   */
  async response(maxMs = 5000, head = false): Promise<RawResponse | null> {
    const deadline = Date.now() + maxMs;
    for (;;) {
      const parsed = parseResponse(this.buffer, head);
      if (parsed) {
        this.buffer = this.buffer.subarray(parsed.consumed);
        return parsed.response;
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no complete response within ${maxMs} ms; have ${JSON.stringify(this.pending.slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  /** Bytes received and not yet returned as a response. */
  get pending(): string {
    return this.buffer.toString('latin1');
  }

  /** Resolves when the peer has closed the connection (or at once if it has). */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  destroy(): void {
    this.socket.destroy();
  }
}
