/**
 * Copies a client request out of uWS and writes the request head carelb sends to a server.
 *
 * Runs inside the uWS request handler (the HttpRequest is only valid there). uWS hands header
 * names lowercased and has already rejected the worst framing (CL + TE together). Headers are
 * collected through one module-level callback, so copying a request allocates no closure.
 *
 * RFC 9110 §7.6.1: Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Upgrade are hop-by-hop and removed; Transfer-Encoding and Content-Length are
 * re-framed by carelb; Expect is answered by uWS itself (it sends 100 Continue) so it is not
 * passed on. X-Forwarded-For gets the client's address appended; X-Forwarded-Proto, -Host and
 * -Port are set by carelb.
 */
import type { HttpRequest } from 'uWebSockets.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'transfer-encoding',
  'content-length',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
]);

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
  /** Header lines and their bytes as received, for the limits. */
  headerCount: number;
  headerBytes: number;
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

/** One uWS header callback per field; the framing fields are kept aside, one pass over the head. */
function collectHeader(name: string, value: string): void {
  headerCount++;
  headerBytes += name.length + value.length + 4;
  if (!HOP_BY_HOP.has(name)) {
    if (name === 'host') host = value;
    collected += `${name}: ${value}\r\n`;
    return;
  }
  switch (name) {
    case 'x-forwarded-for':
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
      break;
    case 'content-length':
      lengthText = value;
      break;
    case 'transfer-encoding':
      transferEncoding = value;
      break;
    case 'connection':
      connection = connection ? `${connection}, ${value}` : value;
      break;
  }
}

/** RFC 9110 §7.6.1: removes the fields a Connection header names (rare, so not on the fast path). */
function withoutNominated(lines: string, connectionValue: string): string {
  const names = connectionValue
    .toLowerCase()
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '' && token !== 'close' && token !== 'keep-alive');
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
export function copyRequest(req: HttpRequest, clientAddress: string, proto: string, port: string, trustForwarded: boolean): RequestInfo {
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
  req.forEach(collectHeader);
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
  return { method, client: clientAddress, target, host, contentLength, chunked, head, headerCount, headerBytes };
}
