/**
 * The builtin reference backend: a uWebSockets.js server (separate process, pinned by the
 * harness to the load generator's CPU) that answers every request with the same 55-byte JSON
 * body over keep-alive, so the proxy under test is what the measurement is about.
 *
 *   node dist/bench/backend-server.js --port 0 [--cert FILE --key FILE]
 *
 * Prints one JSON line {"msg":"listening","port":N,"tls":bool} when ready; exits on SIGTERM.
 */
import * as fs from 'node:fs';
import * as uws from 'uWebSockets.js';
import { BODY, BODY_BYTES } from './body';

// The package silently falls back to a slow pure-JS server when the native binary does not
// load; a reference backend that is 10x slower would make every number meaningless.
if (!fs.readFileSync('/proc/self/maps', 'utf8').includes('uws_linux_x64_')) {
  process.stderr.write('backend-server: the native uWebSockets.js binding did not load (pure-JS fallback); refusing to run\n');
  process.exit(1);
}
if (Buffer.byteLength(BODY) !== BODY_BYTES) {
  process.stderr.write(`backend-server: body is ${Buffer.byteLength(BODY)} bytes, expected ${BODY_BYTES}\n`);
  process.exit(1);
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(arg('--port') ?? '0');
const cert = arg('--cert');
const key = arg('--key');
const tls = cert !== undefined && key !== undefined;

const app = tls ? uws.SSLApp({ cert_file_name: cert, key_file_name: key }) : uws.App();
const body = Buffer.from(BODY);

app.any('/*', (res) => {
  // Synchronous handler: uWS corks the status, headers and body into one write.
  res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json').end(body);
});

let listenSocket: uws.us_listen_socket | undefined;
app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write(`backend-server: cannot listen on 127.0.0.1:${port}\n`);
    process.exit(1);
  }
  listenSocket = token;
  process.stdout.write(JSON.stringify({ msg: 'listening', port: uws.us_socket_local_port(token as unknown as uws.us_socket), tls }) + '\n');
});

function shutdown(): void {
  if (listenSocket) uws.us_listen_socket_close(listenSocket);
  listenSocket = undefined;
  // Open keep-alive connections would keep the loop alive; the harness is done with us.
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
