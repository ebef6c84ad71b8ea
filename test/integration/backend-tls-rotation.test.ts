/**
 * Backend TLS files rotated in place (same path, new contents) take effect on reload (issue
 * 11, point 7): new pooled connections to the server use the new CA, client certificate and
 * key, while a request in flight on an old connection finishes there and that connection is
 * closed after it. Real TLS with certificates generated at test time, carelb in-process
 * started from a config file so reload re-reads it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import type * as net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type * as tls from 'node:tls';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import { tempDir } from '../helpers/carelb';
import { makeCa, makeCert, type Pair } from '../helpers/certs';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

interface TlsBackend {
  address: string;
  server: https.Server;
  /** Client certificate CN per request, in order. */
  clientCns: (string | null)[];
  /** Resolves with the socket of the next request to `/slow`; its answer waits for release(). */
  nextSlow(): Promise<tls.TLSSocket>;
  release(): void;
}

async function startTlsBackend(t: TestContext, pair: Pair, options: https.ServerOptions = {}): Promise<TlsBackend> {
  const clientCns: (string | null)[] = [];
  let slowArrived: ((socket: tls.TLSSocket) => void) | null = null;
  let release: () => void = () => {};
  const server = https.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key), ...options }, (req, res) => {
    const socket = req.socket as tls.TLSSocket;
    const peer = socket.getPeerCertificate();
    clientCns.push(peer && peer.subject ? String(peer.subject.CN) : null);
    if (req.url === '/slow') {
      release = () => res.end('finished');
      slowArrived?.(socket);
      return;
    }
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    server,
    clientCns,
    nextSlow: () => new Promise((resolve) => (slowArrived = resolve)),
    release: () => release(),
  };
}

/** carelb bridging one plain virtual service to `backend` with `backendTls`, started from a config file. */
async function bridge(t: TestContext, dir: string, backend: TlsBackend, backendTls: Record<string, unknown>): Promise<{ running: Running; port: number }> {
  const port = await freePort();
  const document = { workers: 1, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, backend_tls: backendTls, servers: [{ name: 'secure', address: backend.address }] }] };
  const path = join(dir, 'carelb.yaml');
  const text = stringify(document);
  writeFileSync(path, text);
  const loaded = loadConfigText(text, path);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('; '));
  const running = await runCarelb(loaded.config, { configPath: path, configText: text, log: createLogger('warn') });
  t.after(() => running.stop());
  return { running, port };
}

/** The socket-level close of `socket`, as an event. */
const closed = (socket: net.Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

test('a backend CA file rewritten in place is used by new connections after reload; a request in flight finishes on its old connection', async (t) => {
  const dir = tempDir(t);
  const caOne = makeCa(dir, 'ca-one');
  const caTwo = makeCa(dir, 'ca-two');
  const sans = ['DNS:localhost', 'IP:127.0.0.1'];
  const certOne = makeCert(dir, caOne, 'server-one', { cn: 'localhost', sans });
  const certTwo = makeCert(dir, caTwo, 'server-two', { cn: 'localhost', sans });
  const liveCa = join(dir, 'backend-ca.pem');
  copyFileSync(caOne.cert, liveCa);
  const backend = await startTlsBackend(t, certOne);
  const lb = await bridge(t, dir, backend, { ca: liveCa, servername: 'localhost' });

  assert.equal((await request(lb.port)).status, 200);
  // A request held by the server on the pooled connection, across the rotation.
  const slowSocket = backend.nextSlow();
  const inFlight = request(lb.port, { path: '/slow' });
  const oldConnection = await slowSocket;

  // The server's certificate now comes from CA two; the CA file carelb reads is overwritten.
  backend.server.setSecureContext({ cert: readFileSync(certTwo.cert), key: readFileSync(certTwo.key) });
  copyFileSync(caTwo.cert, liveCa);
  const result = await lb.running.reload('test');
  assert.equal(result.ok, true, JSON.stringify(result));

  const after = await request(lb.port);
  assert.equal(after.status, 200, `${after.headers['x-carelb-error']}: ${after.body.toString()}`);

  backend.release();
  const held = await inFlight;
  assert.equal(held.status, 200);
  assert.equal(held.body.toString(), 'finished');
  // Its connection belonged to the retired pool: closed once its request was done, never reused.
  await closed(oldConnection);
  assert.equal((await request(lb.port)).status, 200);
});

test('a client certificate and key rewritten in place are presented on new connections after reload (mutual TLS)', async (t) => {
  const dir = tempDir(t);
  const serverCa = makeCa(dir, 'server-ca');
  const server = makeCert(dir, serverCa, 'server', { cn: 'localhost', sans: ['DNS:localhost'] });
  const clientCaOne = makeCa(dir, 'client-ca-one');
  const clientCaTwo = makeCa(dir, 'client-ca-two');
  const clientOne = makeCert(dir, clientCaOne, 'client-one', { cn: 'carelb-client-one' });
  const clientTwo = makeCert(dir, clientCaTwo, 'client-two', { cn: 'carelb-client-two' });
  const live = { cert: join(dir, 'carelb-client.pem'), key: join(dir, 'carelb-client.key') };
  copyFileSync(clientOne.cert, live.cert);
  copyFileSync(clientOne.key, live.key);
  const backend = await startTlsBackend(t, server, { requestCert: true, rejectUnauthorized: true, ca: readFileSync(clientCaOne.cert) });
  const lb = await bridge(t, dir, backend, { ca: serverCa.cert, servername: 'localhost', ...live });

  assert.equal((await request(lb.port)).status, 200);
  const slowSocket = backend.nextSlow();
  const inFlight = request(lb.port, { path: '/slow' });
  const oldConnection = await slowSocket;

  // The server now trusts only client CA two; carelb's certificate and key files are replaced.
  backend.server.setSecureContext({ cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(clientCaTwo.cert) });
  copyFileSync(clientTwo.cert, live.cert);
  copyFileSync(clientTwo.key, live.key);
  const result = await lb.running.reload('test');
  assert.equal(result.ok, true, JSON.stringify(result));

  const after = await request(lb.port);
  assert.equal(after.status, 200, `${after.headers['x-carelb-error']}: ${after.body.toString()}`);
  assert.equal(backend.clientCns.at(-1), 'carelb-client-two');

  backend.release();
  assert.equal((await inFlight).body.toString(), 'finished');
  await closed(oldConnection);
  assert.deepEqual(backend.clientCns, ['carelb-client-one', 'carelb-client-one', 'carelb-client-two']);
});
