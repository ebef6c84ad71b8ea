/**
 * One active health check against real loopback servers (src/health/probe.ts): tcp, http and
 * https verdicts and every failure reason an operator reads in the status API. Certificates
 * are generated with openssl at test time.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { probe, type ProbeCheck, type ProbeTarget } from '../../src/health/probe';
import { startBackend, startRawBackend, type Handler, type RawBackend, type TestBackend } from '../helpers/backend';
import { eventually } from '../helpers/carelb';
import { freePort } from '../helpers/ports';

const HTTP: ProbeCheck = { type: 'http', method: 'GET', path: '/health', expect_status: [[200, 399]], timeout: 1000 };

function target(port: number): ProbeTarget {
  return { host: '127.0.0.1', port };
}

async function backend(t: TestContext, handler: Handler): Promise<TestBackend> {
  const b = await startBackend('health', handler);
  t.after(() => b.close());
  return b;
}

async function raw(t: TestContext, onConnection: (socket: net.Socket) => void): Promise<RawBackend> {
  const b = await startRawBackend(onConnection);
  t.after(() => b.close());
  return b;
}

const reply =
  (status: number, body = '') =>
  (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

// ---- certificates -------------------------------------------------------------------------

interface Pem {
  key: Buffer;
  cert: Buffer;
}
let certDir = '';
let selfSigned: Pem;
let caCert: Buffer;
let leaf: Pem;
let expired: Pem;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certDir, stdio: 'ignore' });
}

before(() => {
  certDir = mkdtempSync(join(tmpdir(), 'carelb-health-certs-'));
  const read = (name: string) => readFileSync(join(certDir, name));
  // A self-signed server certificate, as a server without a proper PKI would present.
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', 'self.key', '-out', 'self.crt');
  // A CA and a leaf it signed: once valid, once already expired. `openssl x509 -req -days -1`
  // (Debian 12's OpenSSL 3.0) sets notBefore = now and notAfter = now - 1 day, which OpenSSL's
  // verifier reports as "certificate has expired" (notBefore is not in the future).
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=carelb test CA', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.crt');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'leaf.key', '-out', 'leaf.csr');
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '1', '-days', '1', '-out', 'leaf.crt');
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '2', '-days', '-1', '-out', 'expired.crt');
  selfSigned = { key: read('self.key'), cert: read('self.crt') };
  caCert = read('ca.crt');
  leaf = { key: read('leaf.key'), cert: read('leaf.crt') };
  expired = { key: read('leaf.key'), cert: read('expired.crt') };
});

after(() => {
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

/** An HTTPS server presenting `pem` (leaf only, no chain) and answering 200 "OK". */
async function httpsBackend(t: TestContext, pem: Pem): Promise<number> {
  const server = https.createServer({ key: pem.key, cert: pem.cert }, reply(200, 'OK'));
  server.on('tlsClientError', () => {}); // the client refusing our certificate is the point
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

const HTTPS: ProbeCheck = { ...HTTP, type: 'https' };

// ---- tcp ----------------------------------------------------------------------------------

test('a tcp check passes when the server accepts a connection, and closes it', async (t) => {
  const server = await raw(t, () => {});
  const result = await probe(target(server.port), { ...HTTP, type: 'tcp' });
  assert.equal(result.ok, true);
  assert.equal(result.reason, 'connected');
  assert.ok(result.durationMs >= 0 && result.durationMs < 1000);
  await eventually(() => server.received.length === 1 && server.sockets.size === 0, 2000, 'the check connection to close');
});

test('a tcp check fails with "connection refused" when nothing listens', async () => {
  const result = await probe(target(await freePort()), { ...HTTP, type: 'tcp' });
  assert.deepEqual([result.ok, result.reason], [false, 'connection refused']);
});

// ---- http ---------------------------------------------------------------------------------

test('an http check sends METHOD path with Host, User-Agent and Connection: close, and passes on a 2xx', async (t) => {
  const server = await backend(t, reply(200, 'fine'));
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 200']);
  assert.equal(server.seen.length, 1);
  const [seen] = server.seen;
  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, '/health');
  assert.equal(seen.headers.host, `127.0.0.1:${server.port}`);
  assert.equal(seen.headers['user-agent'], 'carelb-health');
  assert.equal(seen.headers.connection, 'close');
});

test('an http check uses the configured method, path and Host header', async (t) => {
  const server = await backend(t, reply(204));
  const result = await probe(target(server.port), { ...HTTP, method: 'HEAD', path: '/status?deep=1', host: 'api.example.org' });
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 204']);
  assert.equal(server.seen[0].method, 'HEAD');
  assert.equal(server.seen[0].url, '/status?deep=1');
  assert.equal(server.seen[0].headers.host, 'api.example.org');
});

test('an http check fails with "HTTP 500" when the server answers 500', async (t) => {
  const server = await backend(t, reply(500, 'broken'));
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'HTTP 500']);
});

test('expect_status ranges decide which statuses pass', async (t) => {
  const notFound = await backend(t, reply(404));
  const ok = await backend(t, reply(200));
  const only404: ProbeCheck = { ...HTTP, expect_status: [[404, 404]] };
  assert.deepEqual(await probe(target(notFound.port), only404).then((r) => [r.ok, r.reason]), [true, 'HTTP 404']);
  assert.deepEqual(await probe(target(ok.port), only404).then((r) => [r.ok, r.reason]), [false, 'HTTP 200']);
  assert.deepEqual(await probe(target(notFound.port), HTTP).then((r) => [r.ok, r.reason]), [false, 'HTTP 404']);
});

test('expect_body passes when the body contains the substring, even split across chunks', async (t) => {
  const server = await backend(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }); // chunked
    res.write('status: O');
    setImmediate(() => res.end('K, all good'));
  });
  const result = await probe(target(server.port), { ...HTTP, expect_body: 'OK' });
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 200']);
});

test('expect_body fails with "HTTP 200 but body lacks ..." when the substring is missing', async (t) => {
  const server = await backend(t, reply(200, 'DEGRADED'));
  const result = await probe(target(server.port), { ...HTTP, expect_body: 'OK' });
  assert.deepEqual([result.ok, result.reason], [false, 'HTTP 200 but body lacks "OK"']);
});

test('expect_body reads at most 64 KiB and does not wait for the rest of the body', async (t) => {
  const server = await backend(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('x'.repeat(70 * 1024) + 'OK'); // the body never ends: only the cap can conclude
  });
  const result = await probe(target(server.port), { ...HTTP, expect_body: 'OK', timeout: 5000 });
  assert.deepEqual([result.ok, result.reason], [false, 'HTTP 200 but body lacks "OK"']);
});

test('a check of a server that accepts and never answers fails with "timeout after 1s" and closes the connection', async (t) => {
  const server = await raw(t, () => {});
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'timeout after 1s']);
  assert.ok(result.durationMs >= 990, `took ${result.durationMs} ms`);
  await eventually(() => server.sockets.size === 0, 2000, 'the timed-out connection to close');
});

test('the timeout in the reason is the configured one, formatted like the config', async (t) => {
  const server = await raw(t, () => {});
  const result = await probe(target(server.port), { ...HTTP, timeout: 150 });
  assert.deepEqual([result.ok, result.reason], [false, 'timeout after 150ms']);
});

test('an http check fails with "connection refused" when nothing listens', async () => {
  const result = await probe(target(await freePort()), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'connection refused']);
});

test('an http check fails with "connection reset" when the server resets the connection', async (t) => {
  const server = await raw(t, (socket) => socket.once('data', () => socket.resetAndDestroy()));
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'connection reset']);
});

test('an http check fails when the server closes without answering', async (t) => {
  const server = await raw(t, (socket) => socket.once('data', () => socket.end()));
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'connection closed without a response']);
});

test('an http check fails with "invalid HTTP response" when the server does not speak HTTP', async (t) => {
  const server = await raw(t, (socket) => socket.once('data', () => socket.write('SSH-2.0-OpenSSH_9.2\r\n')));
  const result = await probe(target(server.port), HTTP);
  assert.deepEqual([result.ok, result.reason], [false, 'invalid HTTP response']);
});

test('aborting a check ends it at once with "check stopped" and closes its connection', async (t) => {
  const server = await raw(t, () => {});
  const controller = new AbortController();
  const pending = probe(target(server.port), { ...HTTP, timeout: 10_000 }, { signal: controller.signal });
  await eventually(() => server.sockets.size === 1, 2000, 'the check to connect');
  controller.abort();
  const result = await pending;
  assert.deepEqual([result.ok, result.reason], [false, 'check stopped']);
  await eventually(() => server.sockets.size === 0, 2000, 'the aborted connection to close');
});

// ---- https --------------------------------------------------------------------------------

test('an https check passes against a certificate verified with the given CA and servername', async (t) => {
  const port = await httpsBackend(t, selfSigned);
  const result = await probe(target(port), { ...HTTPS, expect_body: 'OK' }, { tlsOptions: { ca: selfSigned.cert, servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 200']);
});

test('an https check takes SNI and the verified name from the configured Host header', async (t) => {
  const port = await httpsBackend(t, leaf);
  const result = await probe(target(port), { ...HTTPS, host: `localhost:${port}` }, { tlsOptions: { ca: caCert } });
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 200']);
});

test('an https check of a self-signed certificate fails verification without its CA', async (t) => {
  const port = await httpsBackend(t, selfSigned);
  const result = await probe(target(port), HTTPS, { tlsOptions: { servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [false, 'TLS: self-signed certificate']);
});

test('an https check fails with "TLS: unable to verify the first certificate" when the issuing CA is unknown', async (t) => {
  const port = await httpsBackend(t, leaf);
  const result = await probe(target(port), HTTPS, { tlsOptions: { servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [false, 'TLS: unable to verify the first certificate']);
});

test('an https check fails with "TLS: hostname mismatch" when the certificate names another host', async (t) => {
  const port = await httpsBackend(t, leaf);
  const result = await probe(target(port), HTTPS, { tlsOptions: { ca: caCert, servername: 'ehr.example.org' } });
  assert.deepEqual([result.ok, result.reason], [false, 'TLS: hostname mismatch']);
});

test('an https check fails with "TLS: certificate has expired" for an expired certificate', async (t) => {
  const port = await httpsBackend(t, expired);
  const result = await probe(target(port), HTTPS, { tlsOptions: { ca: caCert, servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [false, 'TLS: certificate has expired']);
});

test('an https check passes an unverifiable certificate when rejectUnauthorized is false', async (t) => {
  const port = await httpsBackend(t, expired);
  const result = await probe(target(port), HTTPS, { tlsOptions: { rejectUnauthorized: false } });
  assert.deepEqual([result.ok, result.reason], [true, 'HTTP 200']);
});

test('an https check of a plain-HTTP server fails with OpenSSL\'s short reason', async (t) => {
  const server = await backend(t, reply(200));
  const result = await probe(target(server.port), HTTPS, { tlsOptions: { servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [false, 'TLS: wrong version number']);
});

test('an https check judges the status like an http check', async (t) => {
  const server = https.createServer({ key: leaf.key, cert: leaf.cert }, reply(503));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  const port = (server.address() as net.AddressInfo).port;
  const result = await probe(target(port), HTTPS, { tlsOptions: { ca: caCert, servername: 'localhost' } });
  assert.deepEqual([result.ok, result.reason], [false, 'HTTP 503']);
});
