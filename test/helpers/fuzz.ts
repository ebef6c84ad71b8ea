/**
 * Seeded generators for the fuzz tests: random and mutated HTTP/1.1 requests (for carelb's
 * front end) and responses (for a fake server behind it). Everything derives from one seed
 * (`CARELB_FUZZ_SEED`, else random and printed by the test), and each request or response
 * from (seed, index) alone, so one case can be regenerated without replaying the run even
 * though many run concurrently.
 */

/** mulberry32: a small, fast 32-bit PRNG; plenty for fuzzing. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of case `index` of a run with seed `seed` (a 32-bit mix, so neighbours differ). */
export function caseSeed(seed: number, stream: number, index: number): number {
  let h = (seed ^ Math.imul(stream + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The run's seed: `CARELB_FUZZ_SEED` when set, else a random one (to print). */
export function fuzzSeed(): number {
  const fromEnv = process.env.CARELB_FUZZ_SEED;
  if (fromEnv !== undefined && fromEnv !== '') {
    const value = Number(fromEnv);
    if (!Number.isInteger(value) || value < 0) throw new Error(`CARELB_FUZZ_SEED must be a non-negative integer, got ${fromEnv}`);
    return value >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** [0, 1) */
  float(): number {
    return this.next();
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** `n` letters and digits. */
  text(n: number): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    let out = '';
    for (let i = 0; i < n; i++) out += alphabet[this.int(alphabet.length)];
    return out;
  }
  /** `n` arbitrary bytes, as latin1 text. */
  bytes(n: number): string {
    let out = '';
    for (let i = 0; i < n; i++) out += String.fromCharCode(this.int(256));
    return out;
  }
}

/** Bytes that break parsers: line ends, NUL, separators, DEL, high bytes. */
const SPECIAL = ['\r', '\n', '\r\n', '\0', ' ', '\t', ':', ',', ';', '"', '\x7f', '\xff', '\x80', '\x01', '#', '%', '/', '?'];

/** Applies 1–3 byte-level mutations (flip, insert a special byte, delete, truncate, duplicate a line). */
export function mutateBytes(rng: Rng, text: string): string {
  let out = text;
  const count = rng.range(1, 3);
  for (let k = 0; k < count && out.length > 0; k++) {
    const at = rng.int(out.length);
    switch (rng.int(6)) {
      case 0:
        out = out.slice(0, at) + String.fromCharCode(rng.int(256)) + out.slice(at + 1);
        break;
      case 1:
        out = out.slice(0, at) + rng.pick(SPECIAL) + out.slice(at);
        break;
      case 2:
        out = out.slice(0, at) + out.slice(at + rng.range(1, 10));
        break;
      case 3:
        out = out.slice(0, Math.max(1, at));
        break;
      case 4: {
        // Duplicate one line (a header field, usually).
        const lines = out.split('\r\n');
        const line = rng.int(lines.length);
        lines.splice(line, 0, lines[line]);
        out = lines.join('\r\n');
        break;
      }
      default:
        // Flip the case of a letter (methods and versions are case-sensitive, names are not).
        out = out.slice(0, at) + (out[at] === out[at].toUpperCase() ? out[at].toLowerCase() : out[at].toUpperCase()) + out.slice(at + 1);
        break;
    }
  }
  return out;
}

/** Inserts `fields` (each ending CRLF) right after the first line. */
function withFields(text: string, fields: string): string {
  const end = text.indexOf('\r\n');
  return end === -1 ? text + '\r\n' + fields : text.slice(0, end + 2) + fields + text.slice(end + 2);
}

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const BAD_METHODS = ['get', 'G@T', 'G ET', '', 'CONNECT', 'TRACE', 'PRI', 'PROPFIND', '\0GET', 'GETT', 'HEAD\t'];
const VERSIONS = ['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1.10', ''];
const LENGTHS = ['0', '1', '-1', '1e3', '18446744073709551617', '5, 5', '5, 6', ' 7 ', '0x10', '', '+3', '99999999'];
const CODINGS = ['chunked', 'gzip', 'chunked, gzip', 'gzip, chunked', 'identity', 'xchunked', ' chunked', 'chunked\t', 'CHUNKED', 'chunked;q=1', ''];
const EXTRA_FIELDS = [
  'Accept: application/fhir+json',
  'User-Agent: fuzz/1.0',
  'Authorization: Bearer abc.def.ghi',
  'Cookie: session=xyz; theme=dark',
  'Content-Type: application/json',
  'Connection: keep-alive',
  'Connection: close',
  'X-Request-Id: 7f3a',
  'X-Forwarded-For: 203.0.113.7',
  'Accept-Encoding: gzip, br',
  'Cache-Control: no-cache',
  'If-None-Match: "v1"',
];

/** A request carelb's backend must never see (it is only ever inside a body or after another request). */
export function smuggledRequest(index: number): string {
  return `GET /smuggled/${index} HTTP/1.1\r\nHost: api.example\r\n\r\n`;
}

export interface FuzzRequest {
  bytes: Buffer;
  /** Written in pieces (each a separate write) to exercise partial reads. */
  pieces: Buffer[];
  /** The request line starts with HEAD (its response has no body). */
  head: boolean;
  kind: string;
}

/** A valid request: random method, target, fields and a Content-Length or chunked body. */
function validRequest(rng: Rng, index: number): { text: string; method: string } {
  const method = rng.pick(METHODS);
  let target = `/fz/${index}`;
  for (let s = rng.int(3); s > 0; s--) target += `/${rng.text(rng.range(1, 12))}`;
  if (rng.chance(0.4)) target += `?q=${rng.text(rng.range(0, 20))}&n=${rng.int(1000)}`;
  let fields = rng.chance(0.97) ? 'Host: api.example\r\n' : '';
  for (let f = rng.int(8); f > 0; f--) fields += `${rng.pick(EXTRA_FIELDS)}\r\n`;
  let body = '';
  if (method === 'POST' || method === 'PUT' || method === 'PATCH' || rng.chance(0.05)) {
    body = rng.text(rng.int(3000));
    if (rng.chance(0.2)) body = body.slice(0, rng.int(body.length + 1)) + smuggledRequest(index) + body;
    if (rng.chance(0.7)) {
      fields += `Content-Length: ${body.length}\r\n`;
    } else {
      fields += 'Transfer-Encoding: chunked\r\n';
      let chunked = '';
      for (let at = 0; at < body.length; ) {
        const size = Math.min(body.length - at, rng.range(1, 1200));
        const sizeText = size.toString(16);
        chunked += `${rng.chance(0.5) ? sizeText.toUpperCase() : sizeText}\r\n${body.slice(at, at + size)}\r\n`;
        at += size;
      }
      body = `${chunked}0\r\n\r\n`;
    }
    if (rng.chance(0.05)) fields += 'Expect: 100-continue\r\n';
  }
  return { text: `${method} ${target} HTTP/1.1\r\n${fields}\r\n${body}`, method };
}

/** A request for carelb's front end: valid (about a third), mutated, or random bytes. */
export function fuzzRequest(seed: number, index: number): FuzzRequest {
  const rng = new Rng(caseSeed(seed, 1, index));
  const { text: valid } = validRequest(rng, index);
  let text = valid;
  let kind = 'valid';
  const roll = rng.float();
  if (roll < 0.05) {
    text = rng.bytes(rng.range(1, 300));
    kind = 'random bytes';
  } else if (roll < 0.35) {
    text = mutateBytes(rng, text);
    kind = 'byte mutation';
  } else if (roll < 0.65) {
    switch (rng.int(8)) {
      case 0:
        text = withFields(text, `Content-Length: ${rng.pick(LENGTHS)}\r\n`);
        kind = 'content-length';
        break;
      case 1:
        text = withFields(text, `Transfer-Encoding: ${rng.pick(CODINGS)}\r\n`);
        kind = 'transfer-encoding';
        break;
      case 2:
        text = rng.pick(BAD_METHODS) + text.slice(text.indexOf(' '));
        kind = 'method';
        break;
      case 3: {
        const lineEnd = text.indexOf('\r\n');
        text = text.slice(0, text.lastIndexOf(' ', lineEnd) + 1) + rng.pick(VERSIONS) + text.slice(lineEnd);
        kind = 'version';
        break;
      }
      case 4:
        text += smuggledRequest(index);
        kind = 'pipelined';
        break;
      case 5: {
        let many = '';
        for (let n = rng.range(30, 80); n > 0; n--) many += `X-F${n}: ${rng.text(rng.range(0, 30))}\r\n`;
        text = withFields(text, many);
        kind = 'many fields';
        break;
      }
      case 6:
        text = withFields(text, `X-Big: ${rng.text(rng.pick([9000, 20_000, 70_000, 120_000]))}\r\n`);
        kind = 'big field';
        break;
      default:
        text = withFields(text, `${rng.pick(['X-A : 1', ' folded', 'X-A:\x7f', ': nameless', 'X-A\0: 1', 'Host: other.example', 'X-A: a\rb', 'X-A: a\nb'])}\r\n`);
        kind = 'bad field';
        break;
    }
    if (rng.chance(0.2)) text = mutateBytes(rng, text);
  }
  const bytes = Buffer.from(text, 'latin1');
  const pieces: Buffer[] = [];
  if (bytes.length > 1 && rng.chance(0.2)) {
    const cut = rng.range(1, bytes.length - 1);
    pieces.push(bytes.subarray(0, cut), bytes.subarray(cut));
  } else {
    pieces.push(bytes);
  }
  return { bytes, pieces, head: text.startsWith('HEAD '), kind };
}

/** The body token a fake server puts in the response to request `index` (with a check value, so a mutated digit cannot pass for another index). */
export function idToken(index: number): string {
  return `id=${index}-${caseSeed(0, 9, index) % 100_000};`;
}

/** Finds the valid id tokens in a body: the indexes whose responses these bytes claim to be. */
export function idsIn(body: string): number[] {
  const ids: number[] = [];
  for (const match of body.matchAll(/id=(\d+)-(\d+);/g)) {
    const index = Number(match[1]);
    if (idToken(index) === match[0]) ids.push(index);
  }
  return ids;
}

export interface FuzzResponse {
  /** What to write, in order: each piece is one write; pieces after the first go out on later turns. */
  pieces: Buffer[];
  /** After writing: keep the connection open, end it (FIN), destroy it, or write nothing at all. */
  after: 'keep' | 'end' | 'destroy';
  /** A valid, unmutated response: the client must get exactly this status and body. */
  expect: { status: number; body: string } | null;
  /** Bytes sent later on the same connection, with no request pending. */
  late: Buffer | null;
  /**
   * The server sends bytes beyond this response (late, or after it in the same write): if they
   * arrive after carelb has written the next request on that connection, no proxy can tell them
   * from the next response, and every later answer on the connection may be shifted by one.
   */
  taints: boolean;
  kind: string;
}

const STATUSES = [200, 200, 200, 201, 202, 203, 206, 400, 401, 403, 404, 409, 410, 418, 429, 500, 503];
const RESPONSE_FIELDS = ['Content-Type: application/fhir+json', 'ETag: "v2"', 'Cache-Control: no-store', 'Set-Cookie: a=b; HttpOnly', 'X-Trace: 1', 'Vary: Accept', 'Server: fake'];

/** A response from the fake server to request `index` (`method` as the server received it). */
export function fuzzResponse(seed: number, index: number, method: string): FuzzResponse {
  const rng = new Rng(caseSeed(seed, 2, index));
  const head = method === 'HEAD';
  const status = rng.pick(STATUSES);
  let fields = '';
  for (let f = rng.int(5); f > 0; f--) fields += `${rng.pick(RESPONSE_FIELDS)}\r\n`;
  const body = idToken(index) + rng.text(rng.int(3000));
  const framing = rng.float();
  let text: string;
  let after: FuzzResponse['after'] = 'keep';
  let expectBody = head ? '' : body;
  let expectStatus = status;
  if (framing < 0.08) {
    text = `HTTP/1.1 ${rng.pick([204, 304])} ${'No Content'}\r\n${fields}\r\n`;
    expectStatus = Number(text.slice(9, 12));
    expectBody = '';
  } else if (framing < 0.4 && !head) {
    let chunked = '';
    for (let at = 0; at < body.length; ) {
      const size = Math.min(body.length - at, rng.range(1, 1000));
      const sizeText = size.toString(16);
      chunked += `${rng.chance(0.3) ? sizeText.toUpperCase() : sizeText}${rng.chance(0.1) ? ';ext=1' : ''}\r\n${body.slice(at, at + size)}\r\n`;
      at += size;
    }
    text = `HTTP/1.1 ${status} Fuzz\r\n${fields}Transfer-Encoding: chunked\r\n\r\n${chunked}0\r\n${rng.chance(0.1) ? 'X-Trailer: 1\r\n' : ''}\r\n`;
  } else if (framing < 0.48 && !head) {
    text = `HTTP/1.1 ${status} Fuzz\r\n${fields}\r\n${body}`;
    after = 'end';
  } else {
    text = `HTTP/1.1 ${status} Fuzz\r\n${fields}Content-Length: ${body.length}\r\n\r\n${head ? '' : body}`;
  }
  if (rng.chance(0.05)) text = `HTTP/1.1 100 Continue\r\n\r\n${text}`;

  let expect: FuzzResponse['expect'] = { status: expectStatus, body: expectBody };
  let late: Buffer | null = null;
  let kind = 'valid';
  const roll = rng.float();
  if (roll < 0.3) {
    text = mutateBytes(rng, text);
    expect = null;
    kind = 'byte mutation';
    if (rng.chance(0.3)) after = rng.pick(['end', 'destroy'] as const);
  } else if (roll < 0.55) {
    expect = null;
    switch (rng.int(11)) {
      case 0:
        text = withFields(text, `Content-Length: ${rng.pick(LENGTHS)}\r\n`);
        kind = 'content-length';
        break;
      case 1:
        text = withFields(text, `Transfer-Encoding: ${rng.pick(CODINGS)}\r\n`);
        kind = 'transfer-encoding';
        break;
      case 2:
        text = withFields(text, `X-Big: ${rng.text(rng.pick([20_000, 70_000]))}\r\n`);
        kind = 'big head';
        break;
      case 3:
        text = text.replace(/\r\n/g, '\n');
        kind = 'bare LF';
        break;
      case 4:
        text = text.slice(0, rng.int(text.length));
        after = rng.pick(['keep', 'end', 'destroy'] as const);
        kind = `truncated, then ${after}`;
        break;
      case 5:
        text += rng.pick(['garbage', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale', '\r\n']);
        kind = 'bytes after the response';
        break;
      case 6:
        text = `HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n${rng.chance(0.5) ? 'Upgrade: websocket\r\n' : ''}\r\n`;
        kind = '101';
        break;
      case 7:
        text = '';
        after = rng.pick(['keep', 'end', 'destroy'] as const);
        kind = `no response, then ${after}`;
        break;
      case 8:
        text = rng.bytes(rng.range(1, 200));
        kind = 'random bytes';
        break;
      case 9:
        text = text.replace(/^HTTP\/1\.1 \d{3}/, `HTTP/1.1 ${rng.pick(['2000', '99', '600', 'abc', '20'])}`);
        kind = 'status code';
        break;
      default:
        text = `HTTP/1.1 200 OK\r\nContent-Length: ${rng.pick(['1000000', '999999999999999'])}\r\n\r\n${body}`;
        after = rng.pick(['keep', 'end'] as const);
        kind = `huge Content-Length, then ${after}`;
        break;
    }
  } else if (roll < 0.6) {
    late = Buffer.from(rng.pick(['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale', 'unsolicited', '\r\n']), 'latin1');
    kind = 'valid, then unsolicited bytes';
  }
  const bytes = Buffer.from(text, 'latin1');
  const pieces: Buffer[] = [];
  if (expect !== null && bytes.length > 2 && rng.chance(0.25)) {
    // Valid responses only: a mutated one split across reads could leave bytes no parser can attribute.
    let at = 0;
    while (at < bytes.length) {
      const size = Math.min(bytes.length - at, rng.range(1, Math.max(1, Math.floor(bytes.length / 2))));
      pieces.push(bytes.subarray(at, at + size));
      at += size;
    }
    kind += ', split';
  } else if (bytes.length > 0) {
    pieces.push(bytes);
  }
  const taints = late !== null || kind === 'bytes after the response' || (head && /^HTTP\/1\.1 200 OK\r\nContent-Length: \d{7,}/.test(text));
  return { pieces, after, expect, late, taints, kind };
}
