/**
 * Streaming HTTP/1.1 message readers for the raw sides of the soak: the raw servers read
 * what carelb sends them, the raw client reads what carelb answers. Bodies are handed on as
 * they arrive (slices of the socket's chunks), never collected, so 20 MiB costs nothing.
 * Strict enough to notice carelb framing something wrong: any malformed byte is an error the
 * harness reports.
 */

export interface Head {
  /** Request: method; response: status text. */
  method: string;
  path: string;
  status: number;
  headers: Map<string, string>;
}

const enum State {
  Head,
  Fixed,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailer,
  UntilClose,
  Done,
}

export interface ReaderEvents {
  /** 1xx interim response (response reader only). */
  onInfo?(status: number): void;
  onHead(head: Head): void;
  onBody(chunk: Buffer): void;
  onEnd(): void;
  onError(message: string): void;
}

const MAX_HEAD = 64 * 1024;

abstract class Reader {
  protected state = State.Head;
  private head = Buffer.alloc(0);
  private remaining = 0;
  private line = '';
  protected failed = false;
  /** Body bytes so far and the last chunk size line: where a framing error happened. */
  private bodyOffset = 0;
  private lastChunk = '';

  constructor(protected readonly events: ReaderEvents) {}

  /** How the body after `head` is framed: a byte count, 'chunked', or 'close' (response only). */
  protected abstract framing(head: Head): number | 'chunked' | 'close' | 'info';
  protected abstract parseStart(line: string): { method: string; path: string; status: number } | null;

  get idle(): boolean {
    return this.state === State.Head && this.head.length === 0;
  }

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.failed) {
      switch (this.state) {
        case State.Head: {
          const joined = this.head.length ? Buffer.concat([this.head, chunk.subarray(at)]) : chunk.subarray(at);
          const end = joined.indexOf('\r\n\r\n');
          if (end === -1) {
            if (joined.length > MAX_HEAD) return this.fail('head too long');
            this.head = Buffer.from(joined);
            return;
          }
          const consumed = end + 4 - this.head.length;
          const text = joined.subarray(0, end).toString('latin1');
          this.head = Buffer.alloc(0);
          at += consumed;
          this.startBody(text);
          break;
        }
        case State.Fixed: {
          const n = Math.min(this.remaining, chunk.length - at);
          this.events.onBody(chunk.subarray(at, at + n));
          at += n;
          this.remaining -= n;
          if (this.remaining === 0) this.finish();
          break;
        }
        case State.ChunkSize:
        case State.ChunkDataEnd:
        case State.Trailer: {
          const nl = chunk.indexOf(10, at);
          const piece = chunk.subarray(at, nl === -1 ? chunk.length : nl + 1).toString('latin1');
          this.line += piece;
          if (this.line.length > 4096) return this.fail('chunk line too long');
          at += piece.length;
          if (nl === -1) return;
          const line = this.line;
          this.line = '';
          if (!line.endsWith('\r\n')) return this.fail(`bare LF in chunked framing ${this.where()}: ${JSON.stringify(line.slice(0, 60))}`);
          this.chunkLine(line.slice(0, -2));
          break;
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, chunk.length - at);
          this.events.onBody(chunk.subarray(at, at + n));
          at += n;
          this.bodyOffset += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          break;
        }
        case State.UntilClose:
          this.events.onBody(chunk.subarray(at));
          return;
        case State.Done:
          return this.fail(`bytes after the end of the message: ${JSON.stringify(chunk.subarray(at, at + 40).toString('latin1'))}`);
      }
    }
  }

  /** The connection ended: completes a close-delimited body; anything else unfinished is the caller's to judge. */
  close(): boolean {
    if (this.state === State.UntilClose) {
      this.finish();
      return true;
    }
    return false;
  }

  /** Ready for the next message on the same connection (keep-alive). */
  protected finish(): void {
    this.state = this.reuse() ? State.Head : State.Done;
    this.events.onEnd();
  }

  protected reuse(): boolean {
    return true;
  }

  private where(): string {
    return `after body byte ${this.bodyOffset} (last chunk size line ${JSON.stringify(this.lastChunk)} = ${Number.parseInt(this.lastChunk || '0', 16)} B)`;
  }

  private fail(message: string): void {
    this.failed = true;
    this.events.onError(message);
  }

  private startBody(text: string): void {
    const lines = text.split('\r\n');
    const start = this.parseStart(lines[0]);
    if (!start) return this.fail(`bad start line ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0 || line[colon - 1] === ' ') return this.fail(`bad header line ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    const head: Head = { ...start, headers };
    const framing = this.framing(head);
    if (framing === 'info') {
      this.events.onInfo?.(head.status);
      return;
    }
    this.events.onHead(head);
    if (framing === 'chunked') this.state = State.ChunkSize;
    else if (framing === 'close') this.state = State.UntilClose;
    else if (framing > 0) {
      this.state = State.Fixed;
      this.remaining = framing;
    } else this.finish();
  }

  private chunkLine(line: string): void {
    if (this.state === State.ChunkDataEnd) {
      if (line !== '') return this.fail(`chunk data longer than its size ${this.where()}: ${JSON.stringify(line.slice(0, 40))}`);
      this.state = State.ChunkSize;
      return;
    }
    if (this.state === State.Trailer) {
      if (line === '') this.finish();
      return;
    }
    if (!/^[0-9a-fA-F]{1,8}$/.test(line)) return this.fail(`bad chunk size line ${this.where()}: ${JSON.stringify(line.slice(0, 60))}`);
    const size = Number.parseInt(line, 16);
    this.lastChunk = line;
    if (size === 0) this.state = State.Trailer;
    else {
      this.state = State.ChunkData;
      this.remaining = size;
    }
  }

  protected bodyFraming(head: Head, closeAllowed: boolean): number | 'chunked' | 'close' | null {
    const te = head.headers.get('transfer-encoding');
    const cl = head.headers.get('content-length');
    if (te !== undefined) {
      if (cl !== undefined) return null;
      return te.toLowerCase() === 'chunked' ? 'chunked' : null;
    }
    if (cl !== undefined) return /^\d{1,12}$/.test(cl) ? Number(cl) : null;
    return closeAllowed ? 'close' : 0;
  }
}

/** What carelb sends a raw server. */
export class RequestReader extends Reader {
  protected parseStart(line: string) {
    const match = /^([A-Z]+) (\S+) HTTP\/1\.1$/.exec(line);
    return match ? { method: match[1], path: match[2], status: 0 } : null;
  }

  protected framing(head: Head): number | 'chunked' {
    const framing = this.bodyFraming(head, false);
    if (framing === null || framing === 'close') {
      this.events.onError(`request ${head.method} ${head.path} has conflicting or invalid framing`);
      return 0;
    }
    return framing;
  }
}

/** What carelb answers the raw client: skips 1xx, knows HEAD has no body (RFC 9112 §6.3). */
export class ResponseReader extends Reader {
  private closesAfter = false;

  constructor(
    events: ReaderEvents,
    private readonly requestMethod: string,
  ) {
    super(events);
  }

  protected parseStart(line: string) {
    const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(line);
    return match ? { method: '', path: '', status: Number(match[1]) } : null;
  }

  protected framing(head: Head): number | 'chunked' | 'close' | 'info' {
    if (head.status >= 100 && head.status < 200 && head.status !== 101) return 'info';
    this.closesAfter = (head.headers.get('connection') ?? '').toLowerCase().includes('close');
    if (this.requestMethod === 'HEAD' || head.status === 204 || head.status === 304) return 0;
    const framing = this.bodyFraming(head, true);
    if (framing === null) {
      this.events.onError(`response ${head.status} has conflicting or invalid framing`);
      return 0;
    }
    return framing;
  }

  /** Whether the response said Connection: close. */
  get saidClose(): boolean {
    return this.closesAfter;
  }

  protected override reuse(): boolean {
    return false;
  }
}
