/**
 * One active health check of one server, on its own connection (never a data-plane pooled
 * one), run by the primary. Resolves — never rejects — with a verdict and the reason an
 * operator reads in the status API: "HTTP 200", "HTTP 500", `HTTP 200 but body lacks "OK"`,
 * "timeout after 1s", "connection refused", "connection reset", "TLS: certificate has expired".
 *
 * HTTP goes through node:http / node:https with `agent: false` rather than a hand-written
 * reader on node:net: the response framing (Content-Length, chunked bodies where the expected
 * substring may straddle two chunks, HEAD/204/304 without a body, servers that ignore
 * `Connection: close`) is already solved by llhttp, and a raw reader would otherwise have to
 * wait for the server's close or the timeout to know the body ended. `agent: false` gives one
 * fresh connection per check, nothing pooled or kept alive, and node:https gives the standard
 * certificate and hostname verification with its stable error codes.
 *
 * Every check has one overall timer covering connect, TLS handshake, response head and body;
 * the socket is destroyed when the verdict is known, whatever it is.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type * as tls from 'node:tls';
import { formatDuration } from '../config/units';
import type { ResolvedHealthCheck } from './check-config';

/** Most body bytes read when looking for `expect_body`; a health page is small. */
export const BODY_LIMIT = 64 * 1024;

export interface ProbeTarget {
  host: string;
  port: number;
}

/**
 * TLS settings for `https` checks, supplied by the caller (the primary knows the certificates;
 * upstream/tls-options.ts builds the same object for bridging). Passed to node:tls as they are.
 */
export type TlsProbeOptions = Pick<tls.ConnectionOptions, 'rejectUnauthorized' | 'ca' | 'servername' | 'cert' | 'key' | 'passphrase' | 'minVersion' | 'ALPNProtocols'>;

export type ProbeCheck = Pick<ResolvedHealthCheck, 'type' | 'method' | 'path' | 'host' | 'expect_status' | 'expect_body' | 'timeout'>;

export interface ProbeOptions {
  tlsOptions?: TlsProbeOptions;
  /** Aborting ends the check at once (socket destroyed) with reason "check stopped". */
  signal?: AbortSignal;
}

export interface ProbeResult {
  ok: boolean;
  reason: string;
  durationMs: number;
}

/** "host:port", IPv6 literals in brackets (RFC 9110 §7.2 Host = uri-host [ ":" port ]). */
export function hostHeader(target: ProbeTarget): string {
  return net.isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

function statusAccepted(status: number, ranges: ProbeCheck['expect_status']): boolean {
  for (const [low, high] of ranges) if (status >= low && status <= high) return true;
  return false;
}

/** Names of socket-level errors; everything else that fails before the handshake completes is TLS. */
const SOCKET_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
};

type NodeError = Error & { code?: string; reason?: string };

/** The operator-facing reason for a failed connection or exchange. */
export function reasonFor(error: NodeError, host: string, tlsPending: boolean): string {
  const code = error.code ?? '';
  // node:http reports a server that closes before any response as ECONNRESET "socket hang up":
  // not a reset, and the difference matters when reading a server's logs.
  if (error.message === 'socket hang up') return 'connection closed without a response';
  if (code === 'ENOTFOUND' || code.startsWith('EAI_')) return `DNS: cannot resolve ${host}`;
  if (code.startsWith('HPE_')) return 'invalid HTTP response';
  if (SOCKET_REASONS[code]) return SOCKET_REASONS[code];
  if (tlsPending || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'TLS: hostname mismatch';
    // OpenSSL verification errors carry OpenSSL's own text ("certificate has expired",
    // "unable to verify the first certificate"); protocol errors carry it in `reason`, or only
    // inside an OpenSSL error string ("write EPROTO ...:SSL routines:ssl3_get_record:wrong
    // version number:..." when the server answers in plain HTTP).
    const openssl = /:SSL routines:[^:]*:([^:]+):/.exec(error.message);
    return `TLS: ${error.reason ?? openssl?.[1] ?? error.message}`;
  }
  return code || error.message;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/**
 * Runs one check of `check.type` against `target`. Primary thread; holds one socket until
 * it resolves. Never rejects.
 */
export function probe(target: ProbeTarget, check: ProbeCheck, options: ProbeOptions = {}): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const { signal } = options;
    let settled = false;
    let connection: { destroy(): void } | undefined;

    const finish = (ok: boolean, reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      connection?.destroy();
      resolve({ ok, reason, durationMs: round(performance.now() - started) });
    };
    const onAbort = () => finish(false, 'check stopped');
    const timer = setTimeout(() => finish(false, `timeout after ${formatDuration(check.timeout)}`), check.timeout);

    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    connection = check.type === 'tcp' ? tcpCheck(target, finish) : httpCheck(target, check, options.tlsOptions, finish);
    // A synchronous failure settled before `connection` was known: destroy it now.
    if (settled) connection.destroy();
  });
}

type Finish = (ok: boolean, reason: string) => void;

/** tcp: the server accepted a connection. */
function tcpCheck(target: ProbeTarget, finish: Finish): net.Socket {
  const socket = net.connect({ host: target.host, port: target.port });
  socket.once('connect', () => finish(true, 'connected'));
  socket.on('error', (error: NodeError) => finish(false, reasonFor(error, target.host, false)));
  return socket;
}

/** http/https: request `check.method check.path`, then judge the status and, if asked, the body. */
function httpCheck(target: ProbeTarget, check: ProbeCheck, tlsOptions: TlsProbeOptions | undefined, finish: Finish): http.ClientRequest {
  const secure = check.type === 'https';
  const requestOptions: https.RequestOptions = {
    host: target.host,
    port: target.port,
    method: check.method,
    path: check.path,
    headers: { Host: check.host ?? hostHeader(target), 'User-Agent': 'carelb-health', Connection: 'close' },
    agent: false,
    // rejectUnauthorized defaults to true; without a servername node:https takes SNI and the
    // verified name from the Host header (no SNI for an IP address, RFC 6066 §3).
    ...(secure ? tlsOptions : undefined),
  };
  const req = (secure ? https : http).request(requestOptions);
  let tlsPending = secure;
  if (secure) req.once('socket', (socket) => socket.once('secureConnect', () => (tlsPending = false)));

  req.on('error', (error: NodeError) => finish(false, reasonFor(error, target.host, tlsPending)));
  req.on('response', (res) => {
    const status = res.statusCode ?? 0;
    res.on('error', (error: NodeError) => finish(false, reasonFor(error, target.host, false)));
    if (!statusAccepted(status, check.expect_status)) return finish(false, `HTTP ${status}`);
    if (check.expect_body === undefined) return finish(true, `HTTP ${status}`);

    const needle = Buffer.from(check.expect_body);
    const lacks = `HTTP ${status} but body lacks ${JSON.stringify(check.expect_body)}`;
    let body = Buffer.alloc(0);
    res.on('data', (chunk: Buffer) => {
      // Bounded: the whole body is kept (≤ 64 KiB) so a needle split across chunks is found.
      body = Buffer.concat([body, chunk]).subarray(0, BODY_LIMIT);
      if (body.includes(needle)) finish(true, `HTTP ${status}`);
      else if (body.length >= BODY_LIMIT) finish(false, lacks);
    });
    res.on('end', () => finish(body.includes(needle), body.includes(needle) ? `HTTP ${status}` : lacks));
    res.on('close', () => {
      if (!res.complete) finish(false, 'connection closed mid-response');
    });
  });
  req.end();
  return req;
}
