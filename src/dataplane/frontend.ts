/**
 * The uWS front end of one virtual service in one thread: the request handler and the
 * listener. The handler copies what it needs from the request, attaches onAborted (and
 * onData when a body follows) before it returns, and hands over to an Exchange.
 */
import { readFileSync } from 'node:fs';
import type { AppOptions, HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Uws } from '../native';
import { Exchange, type ClientListener } from './exchange';
import { copyRequest, type RequestInfo } from './request-head';
import { countError, refuseAndClose, refuseKeepingConnection, respondError } from './respond';
import { CloseMode } from './close-mode';
import { describeThrown, FAULT_HEADER, FAULT_INJECTION, faultPoint, FaultPoint, injectFault } from './faults';
import type { ErrorName } from '../errors';
import type { ServiceRuntime } from './service';

const textDecoder = new TextDecoder();
/** IPv4 client addresses already formatted, keyed by their 32-bit value (bounded). */
const ipv4Text = new Map<number, string>();
const IPV4_CACHE_LIMIT = 65_536;

/**
 * The client's address as text; IPv4-mapped IPv6 addresses are shown as plain IPv4.
 * IPv4 text is cached: formatting it per request was a measurable share of the hot path.
 */
export function clientAddress(res: HttpResponse): string {
  const raw = new Uint8Array(res.getRemoteAddress());
  let at = -1;
  if (raw.length === 4) at = 0;
  else if (raw.length === 16 && raw[10] === 0xff && raw[11] === 0xff && isZeroPrefix(raw)) at = 12;
  if (at === -1) return textDecoder.decode(res.getRemoteAddressAsText());
  const key = ((raw[at] << 24) | (raw[at + 1] << 16) | (raw[at + 2] << 8) | raw[at + 3]) >>> 0;
  let text = ipv4Text.get(key);
  if (text === undefined) {
    text = `${raw[at]}.${raw[at + 1]}.${raw[at + 2]}.${raw[at + 3]}`;
    if (ipv4Text.size >= IPV4_CACHE_LIMIT) ipv4Text.clear();
    ipv4Text.set(key, text);
  }
  return text;
}

function isZeroPrefix(raw: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (raw[i] !== 0) return false;
  return true;
}

/** uWS SSL options from config paths; the passphrase is read here and never logged. */
function sslOptions(cert: string, key: string, passphraseFile: string | undefined, ciphers: string): AppOptions {
  const options: AppOptions = { cert_file_name: cert, key_file_name: key, ssl_ciphers: ciphers };
  if (passphraseFile) options.passphrase = readFileSync(passphraseFile, 'utf8').replace(/\r?\n$/, '');
  return options;
}

/**
 * Refuses a request before any exchange exists. The connection stays open when the request
 * was read completely and framed soundly; a chunked body (uWS's de-chunking cannot be trusted
 * to find its end, docs/uws.md) or a replaced listener closes it.
 */
function refuse(vs: ServiceRuntime, res: HttpResponse, name: ErrorName, head: boolean, keep: boolean, headers?: [string, string][]): void {
  if (keep) refuseKeepingConnection(vs, res, name, head, headers);
  else refuseAndClose(vs, res, name, head, undefined, headers);
}

const NOOP = (): void => {};

/**
 * An exception in the request handler: the exchange fails alone if it exists; otherwise the
 * request gets 502 CLB_INTERNAL. uWS aborts the whole process when a handler returns without
 * answering or attaching onAborted, so one of the two happens whatever state `res` is in.
 */
function handlerFault(vs: ServiceRuntime, res: HttpResponse, exchange: Exchange | null, error: unknown): void {
  if (exchange !== null) return exchange.fault(error);
  vs.events.report('fault', `request handler: ${describeThrown(error)}`);
  try {
    res.onAborted(NOOP);
    respondError(vs, res, 'INTERNAL', CloseMode.AfterResponse, false);
  } catch {
    try {
      res.close();
    } catch {
      /* already answered: nothing is owed */
    }
  }
}

/** Proxies one request: called by uWS for every request of the service. */
export function proxyRequest(vs: ServiceRuntime, res: HttpResponse, req: HttpRequest, listener: ClientListener): void {
  let exchange: Exchange | null = null;
  try {
    const peer = clientAddress(res);
    let client = peer;
    const trusted = vs.admission.trusts(peer);
    if (trusted) {
      // uWS always parses a PROXY v2 header; its address is believed only from trusted proxies.
      const proxied = textDecoder.decode(res.getProxiedRemoteAddressAsText());
      if (proxied !== '') client = proxied;
    }
    if (!vs.admission.admits(client)) {
      if (vs.config.deny_action === 'close') {
        countError(vs, 'FORBIDDEN');
        res.close();
      } else {
        refuse(vs, res, 'FORBIDDEN', req.getMethod() === 'head', !listener.lingering && req.getHeader('transfer-encoding') === '');
      }
      return;
    }
    const request = copyRequest(req, client, vs.proto, vs.portText, trusted, vs.rules);
    const head = request.method === 'HEAD';
    if (request.invalid !== '') return refuseAndClose(vs, res, 'BAD_REQUEST', head, request.invalid);
    const refusal = checkLimits(vs, request);
    if (refusal !== null) return refuseAndClose(vs, res, refusal, head);
    // uWS mis-sizes chunks with extensions (docs/uws.md): behind another proxy that shares
    // connections between users, a chunked body could carry someone else's request.
    if (request.chunked && vs.config.chunked_requests === 'refuse') return refuseAndClose(vs, res, 'LENGTH_REQUIRED', head);
    const wait = vs.admission.rateWait(client);
    if (wait > 0) return refuse(vs, res, 'RATE_LIMITED', head, !listener.lingering && !request.chunked, [['retry-after', String(Math.ceil(wait / 1000))]]);
    // Content switching (issue 14): one null check for services without routes.
    const pool = vs.routes === null ? vs.defaultPool : vs.route(request.method, request.target, request.host);
    if (pool === null) return refuse(vs, res, 'NO_ROUTE', head, !listener.lingering && !request.chunked);
    const faultAt = FAULT_INJECTION ? faultPoint(req.getHeader(FAULT_HEADER)) : FaultPoint.None;
    const started = new Exchange(vs, res, request, listener, pool, faultAt);
    exchange = started;
    res.onAborted(() => started.onClientAborted());
    if (request.chunked || request.contentLength > 0) res.onData((chunk, isLast) => started.onClientData(chunk, isLast));
    if (faultAt === FaultPoint.Handler) injectFault(faultAt);
    started.start();
  } catch (error) {
    handlerFault(vs, res, exchange, error);
  }
}

/** Request limits (431, 414, 413 for a declared length; a chunked body is checked as it streams). */
function checkLimits(vs: ServiceRuntime, request: RequestInfo): ErrorName | null {
  const limits = vs.config.limits;
  if (request.headerCount > limits.header_count || request.headerBytes > limits.header_bytes) return 'HEADERS_TOO_LARGE';
  if (request.target.length > limits.url_bytes) return 'URL_TOO_LONG';
  if (limits.max_body > 0 && request.contentLength > limits.max_body) return 'BODY_TOO_LARGE';
  return null;
}

/** `host` without a trailing `:port` (an IPv6 literal keeps its brackets). */
export function hostWithoutPort(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon === -1 || host.indexOf(']', colon) !== -1) return host;
  for (let i = colon + 1; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c < 48 || c > 57) return host;
  }
  return host.slice(0, colon);
}

/** `redirect_https`: 301 to the same URL on https, nothing forwarded. */
export function redirectToHttps(vs: ServiceRuntime, res: HttpResponse, req: HttpRequest): void {
  const host = hostWithoutPort(req.getHeader('host')) || vs.config.listen.host;
  const query = req.getQuery();
  const port = vs.config.https_port === 443 ? '' : `:${vs.config.https_port}`;
  const location = `https://${host}${port}${req.getUrl()}${query ? `?${query}` : ''}`;
  res.cork(() => {
    res.writeStatus('301 Moved Permanently').writeHeader('location', location).writeHeader('content-type', 'text/plain').end(`moved to ${location}\n`);
  });
}

/**
 * How long a replaced listener waits, once no request is in flight on it, before it closes
 * the connections it still has (idle keep-alive ones). A request already on its way on such
 * a connection gets served (with `Connection: close`) and restarts the wait.
 */
export const LINGER_QUIET_MS = 1000;

/**
 * The listening side of one virtual service in one thread: its uWS app and listen socket.
 * It outlives config reloads that keep its address: requests go to `current`, the service
 * runtime of the config in force, so a reload swaps that and keeps the listener open.
 *
 * It counts the exchanges in flight on its connections (ClientListener), so a listener
 * replaced by one with new certificates can close its connections without cutting anything:
 * every response on it says `Connection: close`, and once nothing is in flight for
 * LINGER_QUIET_MS the remaining idle connections are closed (issue 11, point 3).
 */
export class Frontend implements ClientListener {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  /** Replaced by a new listener: serves the connections it has, each closed after its next response. */
  lingering = false;
  /** Exchanges in flight on this listener's connections. */
  inflight = 0;
  /** Called when a lingering listener has had nothing in flight for LINGER_QUIET_MS. */
  onQuiet: (() => void) | null = null;
  private quietTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly uws: Uws,
    public current: ServiceRuntime,
  ) {
    const handler = (res: HttpResponse, req: HttpRequest) => this.current.handle(res, req, this);
    const tls = current.config.tls;
    if (!tls) {
      this.app = uws.App().any('/*', handler);
      return;
    }
    this.app = uws.SSLApp(sslOptions(tls.cert, tls.key, tls.passphrase_file, tls.ciphers)).any('/*', handler);
    for (const entry of tls.sni) {
      // uWS gives every server name its own router: the handler is attached per name.
      this.app.addServerName(entry.hostname, sslOptions(entry.cert, entry.key, entry.passphrase_file, tls.ciphers));
      this.app.domain(entry.hostname).any('/*', handler);
    }
  }

  exchangeStarted(): void {
    this.inflight++;
    if (this.quietTimer !== null) {
      clearTimeout(this.quietTimer);
      this.quietTimer = null;
    }
  }

  exchangeEnded(): void {
    this.inflight--;
    if (this.lingering && this.inflight === 0) this.waitForQuiet();
  }

  /** Starts lingering: no new connections; `onQuiet` once nothing has been in flight for a while. */
  linger(onQuiet: () => void): void {
    this.stopListening();
    this.lingering = true;
    this.onQuiet = onQuiet;
    if (this.inflight === 0) this.waitForQuiet();
  }

  private waitForQuiet(): void {
    if (this.quietTimer !== null) return;
    this.quietTimer = setTimeout(() => {
      this.quietTimer = null;
      if (this.inflight === 0) this.onQuiet?.();
    }, LINGER_QUIET_MS);
    this.quietTimer.unref();
  }

  /**
   * What must stay equal for a reload to keep this listener: the address and, for TLS, the
   * certificates (uWS loads them once per app, so new certificates mean a new app on the
   * same port; the kernel shares the port between old and new listener, SO_REUSEPORT).
   */
  static identity(vs: ServiceRuntime): string {
    return `${vs.config.listen.host}:${vs.config.listen.port}/${vs.plan.tlsFingerprint ?? 'plain'}`;
  }

  /** Resolves false when the address cannot be bound. */
  listen(): Promise<boolean> {
    const { host, port } = this.current.config.listen;
    return new Promise((resolve) => {
      this.app.listen(host, port, (listenSocket) => {
        this.listenSocket = listenSocket || null;
        resolve(Boolean(listenSocket));
      });
    });
  }

  /** Stops accepting new connections; open ones keep being served. */
  stopListening(): void {
    if (this.listenSocket) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }

  /** Closes the listener and every client connection still open. */
  close(): void {
    if (this.quietTimer !== null) clearTimeout(this.quietTimer);
    this.quietTimer = null;
    this.onQuiet = null;
    this.stopListening();
    // App.close() exists in uWS v20.30 (closes the listener and every connection) but is missing from its typings.
    (this.app as TemplatedApp & { close(): void }).close();
  }
}
