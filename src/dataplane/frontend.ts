/**
 * The uWS front end of one virtual service in one thread: the request handler and the
 * listener. The handler copies what it needs from the request, attaches onAborted (and
 * onData when a body follows) before it returns, and hands over to an Exchange.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { Uws } from '../native';
import { Exchange } from './exchange';
import { copyRequest } from './request-head';
import type { ServiceRuntime } from './service';

const textDecoder = new TextDecoder();

/** The client's address as text; IPv4-mapped IPv6 addresses are shown as plain IPv4. */
export function clientAddress(res: HttpResponse): string {
  const text = textDecoder.decode(res.getRemoteAddressAsText());
  return text.startsWith('::ffff:') && text.includes('.') ? text.slice(7) : text;
}

function handleRequest(vs: ServiceRuntime, res: HttpResponse, req: HttpRequest): void {
  const request = copyRequest(req, clientAddress(res), vs.proto, vs.portText);
  const exchange = new Exchange(vs, res, request);
  res.onAborted(() => exchange.onClientAborted());
  if (request.chunked || request.contentLength > 0) res.onData((chunk, isLast) => exchange.onClientData(chunk, isLast));
  exchange.start();
}

/** Creates the uWS app for `vs` and listens; resolves false when the address cannot be bound. */
export function openFrontend(uws: Uws, vs: ServiceRuntime): Promise<boolean> {
  const app = uws.App();
  app.any('/*', (res, req) => handleRequest(vs, res, req));
  vs.app = app;
  return new Promise((resolve) => {
    app.listen(vs.config.listen.host, vs.config.listen.port, (listenSocket) => {
      vs.listenSocket = listenSocket || null;
      resolve(Boolean(listenSocket));
    });
  });
}

/** Stops accepting new connections; open ones keep being served. */
export function stopListening(uws: Uws, vs: ServiceRuntime): void {
  if (vs.listenSocket) {
    uws.us_listen_socket_close(vs.listenSocket);
    vs.listenSocket = null;
  }
}

/** Closes every socket of the service: listener, client connections and server connections. */
export function closeService(uws: Uws, vs: ServiceRuntime): void {
  stopListening(uws, vs);
  // App.close() exists in uWS v20.30 (closes the listener and every connection) but is missing from its typings.
  (vs.app as (TemplatedApp & { close(): void }) | null)?.close();
  vs.app = null;
  for (const server of vs.servers) server.pool.closeAll();
}
