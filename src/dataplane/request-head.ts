/**
 * Copies a client request out of uWS and writes the request head carelb sends to a server.
 *
 * Runs inside the uWS request handler (the HttpRequest is only valid there). uWS hands header
 * names lowercased and has already rejected the worst framing (CL + TE together). Headers are
 * collected through one module-level callback, so copying a request allocates no closure, and
 * every syntax check is a char-code test against a lookup table: no regular expression runs
 * per request (DESIGN.md, hot path rules).
 *
 * RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Upgrade are hop-by-hop and removed; Transfer-Encoding and Content-Length are
 * re-framed by carelb; Expect is answered by uWS itself (it sends 100 Continue) so it is not
 * passed on. X-Forwarded-For gets the client's address appended; X-Forwarded-Proto, -Host and
 * -Port are set by carelb.
 */
import type { HttpRequest } from 'uWebSockets.js';
import type { L7Request, L7Rules } from './l7';

/** What copyRequest does with a request field, by name (names arrive lowercased from uWS). */
const enum Field {
  Keep,
  /** Hop-by-hop (RFC 9110 §7.6.1), or answered by uWS itself (Expect): not forwarded. */
  Drop,
  Host,
  ContentLength,
  TransferEncoding,
  Connection,
  ForwardedFor,
  /** X-Forwarded-Proto, -Host, -Port: carelb sets its own. */
  ForwardedOther,
}

/**
 * The field kind of a lowercase name; a switch on the length first keeps the common case (a
 * field to keep) to one comparison or two, and no hashing of a fresh string per field.
 */
function fieldKind(name: string): Field {
  switch (name.length) {
    case 2:
      return name === 'te' ? Field.Drop : Field.Keep;
    case 4:
      return name === 'host' ? Field.Host : Field.Keep;
    case 6:
      return name === 'expect' ? Field.Drop : Field.Keep;
    case 7:
      return name === 'trailer' || name === 'upgrade' ? Field.Drop : Field.Keep;
    case 10:
      if (name === 'connection') return Field.Connection;
      return name === 'keep-alive' ? Field.Drop : Field.Keep;
    case 14:
      return name === 'content-length' ? Field.ContentLength : Field.Keep;
    case 15:
      return name === 'x-forwarded-for' ? Field.ForwardedFor : Field.Keep;
    case 16:
      if (name === 'proxy-connection') return Field.Drop;
      return name === 'x-forwarded-host' || name === 'x-forwarded-port' ? Field.ForwardedOther : Field.Keep;
    case 17:
      if (name === 'transfer-encoding') return Field.TransferEncoding;
      return name === 'x-forwarded-proto' ? Field.ForwardedOther : Field.Keep;
    default:
      return Field.Keep;
  }
}

/**
 * Fields a `Connection` header can never remove: Host (an HTTP/1.1 request needs it), and the
 * fields carelb frames or sets itself. RFC 9110 §7.6.1 lets a proxy keep such fields; HAProxy
 * and NGINX do.
 */
const NEVER_NOMINATED = new Set(['host', 'content-length', 'transfer-encoding', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port']);

/** What the exchange needs to know about the request besides its head text. */
export interface RequestInfo {
  method: string;
  /** The client's address (TCP peer). */
  client: string;
  /** Path and query as received. */
  target: string;
  host: string;
  /** -1: no Content-Length. */
  contentLength: number;
  chunked: boolean;
  /** The head to send to the server, ending with the blank line. */
  head: string;
  /** Every char of `head` is ASCII: it can be written as latin1 (one byte per char, no UTF-8 encoding pass). */
  asciiHead: boolean;
  /** Why the request must be refused with 400 (RFC 9112 framing, RFC 9110 syntax), or ''. */
  invalid: string;
  /** Header lines and their bytes as received, for the limits. */
  headerCount: number;
  headerBytes: number;
  /** What the service's L7 rules took from the request (request id, persistence cookie), or null without rules. */
  l7: L7Request | null;
}

// Per-thread scratch state for the header callback (one request is copied at a time).
let collected = '';
let forwardedFor = '';
let host = '';
let lengthText = '';
let transferEncoding = '';
let connection = '';
let headerCount = 0;
let headerBytes = 0;
let lengthFields = 0;
let lengthConflict = false;
let encodingFields = 0;
let hostFields = 0;
let malformed = '';
/** The char codes of every field value, OR-ed: 0x80 or above means a value is not ASCII. */
let valueBits = 0;
/** The L7 rules of the request being copied (only set while copying through collectRuledHeader). */
let rules: L7Rules | null = null;
/** The request id field's value as received ('' when absent). */
let incomingId = '';

/** RFC 9110 §5.6.2 tchar, as a lookup table (1 = allowed). */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = 1;
for (let c = 97; c <= 122; c++) TCHAR[c] = 1;

/** Whether `text` is a non-empty run of tchars. */
function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * Control characters other than HTAB are not allowed in field values (RFC 9110 §5.5). The
 * same pass ORs the char codes into `valueBits`, so the head's encoding is known for free.
 */
function hasControl(value: string): boolean {
  let bits = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    bits |= c;
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  valueBits |= bits;
  return false;
}

/** Origin-form target: visible ASCII, no fragment (RFC 9112 §3.2). */
function isOriginForm(target: string): boolean {
  if (target.charCodeAt(0) !== 0x2f /* / */) return false;
  for (let i = 1; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x23 /* # */) return false;
  }
  return true;
}

/** Plain digits, 1 to 15 of them: the only Content-Length carelb accepts (RFC 9110 §8.6). */
function isDecimal(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** One uWS header callback per field; the framing fields are kept aside, one pass over the head. */
function collectHeader(name: string, value: string): void {
  headerCount++;
  headerBytes += name.length + value.length + 4;
  if (!isToken(name)) malformed = `invalid header name ${JSON.stringify(name)}`;
  if (value.length > 0 && hasControl(value)) malformed = `control character in header ${name}`;
  switch (fieldKind(name)) {
    case Field.Keep:
      collected += `${name}: ${value}\r\n`;
      break;
    case Field.Host:
      host = value;
      hostFields++;
      collected += `host: ${value}\r\n`;
      break;
    case Field.ForwardedFor:
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
      break;
    case Field.ContentLength:
      // RFC 9110 §8.6: identical repeated values may be taken as one; differing ones are an error.
      if (lengthFields > 0 && value !== lengthText) lengthConflict = true;
      lengthText = value;
      lengthFields++;
      break;
    case Field.TransferEncoding:
      transferEncoding = value;
      encodingFields++;
      break;
    case Field.Connection:
      connection = connection ? `${connection}, ${value}` : value;
      break;
  }
}

/**
 * collectHeader for a service with L7 rules (l7.ts): the request id field is kept aside (a
 * valid one is passed on, an invalid one replaced), and fields the rules remove or set are
 * left out. Dropped fields still count toward the limits and are still syntax-checked.
 */
function collectRuledHeader(name: string, value: string): void {
  const hooks = rules!;
  if (name === hooks.requestIdName) {
    incomingId = value;
  } else if (name === 'cookie' && hooks.cookieName !== '') {
    // persistence: cookie: the persistence cookie never reaches the server; the others do.
    const rest = hooks.stripCookie(value);
    if (rest === value) {
      collectHeader(name, value);
      return;
    }
    if (rest !== '' && !hooks.dropsRequestField(name)) collected += `cookie: ${rest}\r\n`;
  } else if (!hooks.dropsRequestField(name)) {
    collectHeader(name, value);
    return;
  }
  headerCount++;
  headerBytes += name.length + value.length + 4;
  if (!isToken(name)) malformed = `invalid header name ${JSON.stringify(name)}`;
  if (value.length > 0 && hasControl(value)) malformed = `control character in header ${name}`;
}

/** Whether `encoding` is exactly the `chunked` coding, ignoring case and surrounding whitespace. */
function isChunkedOnly(encoding: string): boolean {
  let start = 0;
  let end = encoding.length;
  while (start < end && (encoding.charCodeAt(start) === 0x20 || encoding.charCodeAt(start) === 0x09)) start++;
  while (end > start && (encoding.charCodeAt(end - 1) === 0x20 || encoding.charCodeAt(end - 1) === 0x09)) end--;
  if (end - start !== 7) return false;
  const CHUNKED = 'chunked';
  for (let i = 0; i < 7; i++) if ((encoding.charCodeAt(start + i) | 0x20) !== CHUNKED.charCodeAt(i)) return false;
  return true;
}

/** Whether `method` is a token (RFC 9110 §9.1); the common ones skip the scan. */
function isMethod(method: string): boolean {
  return method === 'GET' || method === 'POST' || isToken(method);
}

/**
 * Request framing a server could read differently from carelb (RFC 9112 §6, request
 * smuggling): several Content-Length or Transfer-Encoding fields, a Content-Length that is not
 * plain digits, a transfer coding other than exactly `chunked`, several Host fields; and a
 * method or target that is not valid syntax. uWS has parsed the request already and rejects
 * CL + TE together itself.
 */
function framingProblem(method: string, target: string, length: string, encoding: string): string {
  if (lengthConflict) return 'differing Content-Length fields';
  if (lengthFields === 1 && !isDecimal(length)) return 'invalid Content-Length';
  if (encodingFields > 1) return 'several Transfer-Encoding fields';
  if (encodingFields === 1 && !isChunkedOnly(encoding)) return 'unsupported Transfer-Encoding';
  if (hostFields > 1) return 'several Host fields';
  if (!isMethod(method)) return 'invalid method';
  if (!isOriginForm(target)) return 'invalid request target';
  return '';
}

/**
 * RFC 9110 §7.6.1: removes the fields a Connection header names (rare, so not on the fast
 * path), except those in NEVER_NOMINATED.
 */
function withoutNominated(lines: string, connectionValue: string): string {
  const names = connectionValue
    .toLowerCase()
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '' && token !== 'close' && token !== 'keep-alive' && !NEVER_NOMINATED.has(token));
  if (names.length === 0) return lines;
  return lines
    .split('\r\n')
    .filter((line) => line === '' || !names.includes(line.slice(0, line.indexOf(':'))))
    .join('\r\n');
}

/**
 * Copies the request. `clientAddress` is appended to X-Forwarded-For; `proto` and `port` are
 * the virtual service's.
 */
export function copyRequest(req: HttpRequest, clientAddress: string, proto: string, port: string, trustForwarded: boolean, l7Rules: L7Rules | null = null): RequestInfo {
  const method = req.getCaseSensitiveMethod();
  const url = req.getUrl();
  const query = req.getQuery();
  const target = query ? `${url}?${query}` : url;
  collected = '';
  forwardedFor = '';
  host = '';
  lengthText = '';
  transferEncoding = '';
  connection = '';
  headerCount = 0;
  headerBytes = 0;
  lengthFields = 0;
  lengthConflict = false;
  encodingFields = 0;
  hostFields = 0;
  malformed = '';
  valueBits = 0;
  // One branch per request: a service without L7 rules copies exactly as before.
  let l7: L7Request | null = null;
  if (l7Rules === null) {
    req.forEach(collectHeader);
  } else {
    rules = l7Rules;
    incomingId = '';
    l7Rules.foundCookie = '';
    req.forEach(collectRuledHeader);
    rules = null;
    l7 = l7Rules.admit(incomingId);
  }
  if (connection !== '' && connection !== 'keep-alive' && connection !== 'close') collected = withoutNominated(collected, connection);
  const chunked = transferEncoding !== '';
  const contentLength = lengthText === '' ? -1 : Number(lengthText);
  let framing = '';
  if (chunked) framing = 'transfer-encoding: chunked\r\n';
  else if (contentLength > 0) framing = `content-length: ${contentLength}\r\n`;
  else if (method === 'POST' || method === 'PUT' || method === 'PATCH') framing = 'content-length: 0\r\n';
  // An X-Forwarded-For from the client is kept and extended only when it came through a
  // trusted proxy; from anyone else it is replaced (it could be forged).
  const xff = forwardedFor && trustForwarded ? `${forwardedFor}, ${clientAddress}` : clientAddress;
  const head =
    `${method} ${target} HTTP/1.1\r\n${collected}${framing}x-forwarded-for: ${xff}\r\n` +
    `x-forwarded-proto: ${proto}\r\nx-forwarded-host: ${host}\r\nx-forwarded-port: ${port}\r\n\r\n`;
  collected = '';
  const invalid = malformed || framingProblem(method, target, lengthText, transferEncoding);
  // Names, method and target are ASCII once valid (tokens, origin-form), and so is the address.
  const asciiHead = valueBits < 0x80;
  return { method, client: clientAddress, target, host, contentLength, chunked, head, asciiHead, headerCount, headerBytes, invalid, l7 };
}
