/**
 * Programmable API servers for tests, on real loopback sockets. Each records what it
 * received so tests can assert what reached the server (and what did not).
 */
import * as http from 'node:http';
import * as net from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

export interface TestBackend {
  name: string;
  port: number;
  address: string;
  seen: SeenRequest[];
  /** Connections accepted so far. */
  connections: number;
  server: http.Server;
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, seen: SeenRequest) => void;

/** Default handler: 200 JSON naming the server, after the request body was read. */
export const jsonHandler =
  (name: string): Handler =>
  (_req, res, seen) => {
    const body = JSON.stringify({ server: name, method: seen.method, url: seen.url, bodyBytes: seen.bodyBytes });
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

export async function startBackend(name: string, handler: Handler = jsonHandler(name), options: { keepAliveTimeout?: number } = {}): Promise<TestBackend> {
  const seen: SeenRequest[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const record: SeenRequest = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 };
    seen.push(record);
    req.on('data', (chunk: Buffer) => (record.bodyBytes += chunk.length));
    req.on('end', () => handler(req, res, record));
  });
  server.keepAliveTimeout = options.keepAliveTimeout ?? 30_000;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const backend: TestBackend = {
    name,
    port,
    address: `127.0.0.1:${port}`,
    seen,
    get connections() {
      return connections;
    },
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return backend;
}

export interface RawBackend {
  port: number;
  address: string;
  /** Raw bytes received, per connection. */
  received: Buffer[];
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/** A TCP server whose behaviour per connection is scripted by the test (for bad responses). */
export async function startRawBackend(onConnection: (socket: net.Socket, index: number) => void): Promise<RawBackend> {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const index = received.length;
    received.push(Buffer.alloc(0));
    sockets.add(socket);
    socket.on('data', (chunk) => (received[index] = Buffer.concat([received[index], chunk])));
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket, index);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    received,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
