/**
 * The uWS front end of one virtual service in one thread: the request handler and the
 * listener. The handler copies what it needs from the request, attaches onAborted (and
 * onData when a body follows) before it returns, and hands over to an Exchange.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Uws } from '../native';
import { Exchange } from './exchange';
import { copyRequest } from './request-head';
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

function handleRequest(vs: ServiceRuntime, res: HttpResponse, req: HttpRequest): void {
  const request = copyRequest(req, clientAddress(res), vs.proto, vs.portText);
  const exchange = new Exchange(vs, res, request);
  res.onAborted(() => exchange.onClientAborted());
  if (request.chunked || request.contentLength > 0) res.onData((chunk, isLast) => exchange.onClientData(chunk, isLast));
  exchange.start();
}

/**
 * The listening side of one virtual service in one thread: its uWS app and listen socket.
 * It outlives config reloads that keep its address: requests go to `current`, the service
 * runtime of the config in force, so a reload swaps that and keeps the listener open.
 */
export class Frontend {
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;

  constructor(
    private readonly uws: Uws,
    public current: ServiceRuntime,
  ) {
    this.app = uws.App();
    this.app.any('/*', (res, req) => handleRequest(this.current, res, req));
  }

  /** What must stay equal for a reload to keep this listener. */
  static identity(vs: ServiceRuntime): string {
    return `${vs.config.listen.host}:${vs.config.listen.port}`;
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
    this.stopListening();
    // App.close() exists in uWS v20.30 (closes the listener and every connection) but is missing from its typings.
    (this.app as TemplatedApp & { close(): void }).close();
  }
}
