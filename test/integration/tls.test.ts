/**
 * TLS offload and bridging with certificates generated at test time: real handshakes, SNI,
 * protocol floor, server verification, mutual TLS, certificate reload, bad files.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import type * as net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as tls from 'node:tls';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { CLI, startInProcess, tempDir, type InProcess } from '../helpers/carelb';
import { makeCa, makeCert, type Pair } from '../helpers/certs';
import { rawExchange, request } from '../helpers/client';
import { freePort } from '../helpers/ports';

interface Pki {
  dir: string;
  ca: Pair;
  localhost: Pair;
}

function pki(t: TestContext): Pki {
  const dir = tempDir(t);
  const ca = makeCa(dir);
  return { dir, ca, localhost: makeCert(dir, ca, 'localhost', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] }) };
}

interface TlsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  peerCn: string;
  protocol: string | null;
}

/** One HTTPS request on a new connection (or on `agent`), reporting the certificate the server showed. */
function httpsGet(port: number, ca: string, options: { servername?: string; path?: string; agent?: https.Agent } = {}): Promise<TlsReply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: options.path ?? '/', ca: readFileSync(ca), servername: options.servername ?? 'localhost', agent: options.agent ?? false },
      (res) => {
        const socket = res.socket as tls.TLSSocket;
        const peerCn = String(socket.getPeerCertificate().subject?.CN ?? '');
        const protocol = socket.getProtocol();
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, peerCn, protocol }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function startTlsBackend(t: TestContext, pair: Pair, options: https.ServerOptions = {}) {
  const seen: { proto: string | undefined; resumed: boolean; clientCn: string | null }[] = [];
  const server = https.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key), ...options }, (req, res) => {
    const socket = req.socket as tls.TLSSocket;
    const peer = socket.getPeerCertificate();
    seen.push({ proto: req.headers['x-forwarded-proto'] as string, resumed: socket.isSessionReused(), clientCn: peer && peer.subject ? String(peer.subject.CN) : null });
    res.writeHead(200, { 'content-type': 'application/json', ...(req.url === '/close' ? { connection: 'close' } : {}) });
    res.end(JSON.stringify({ tls: true, url: req.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen };
}

async function lbWith(t: TestContext, vs: Record<string, unknown>): Promise<InProcess & { port: number }> {
  const port = await freePort();
  const lb = await startInProcess(t, { workers: 1, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, ...vs }] });
  return { ...lb, port };
}

test('TLS offload: clients speak TLS 1.3 to carelb, the server gets plain HTTP with X-Forwarded-Proto https', async (t) => {
  const certs = pki(t);
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { tls: { cert: certs.localhost.cert, key: certs.localhost.key }, servers: [{ name: 'api', address: api.address }] });
  const reply = await httpsGet(lb.port, certs.ca.cert);
  assert.equal(reply.status, 200);
  assert.equal(reply.protocol, 'TLSv1.3');
  assert.equal(reply.peerCn, 'localhost');
  assert.equal(api.seen[0].headers['x-forwarded-proto'], 'https');
});

test('TLS 1.2 is offered with the configured ciphers; TLS 1.0 and 1.1 clients are refused', async (t) => {
  const certs = pki(t);
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { tls: { cert: certs.localhost.cert, key: certs.localhost.key }, servers: [{ name: 'api', address: api.address }] });
  const handshake = (options: tls.ConnectionOptions) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: lb.port, ca: readFileSync(certs.ca.cert), servername: 'localhost', ...options }, () => {
        const protocol = socket.getProtocol() ?? '';
        socket.destroy();
        resolve(protocol);
      });
      socket.on('error', reject);
    });
  assert.equal(await handshake({ maxVersion: 'TLSv1.2' }), 'TLSv1.2');
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    // SECLEVEL=0 lets this client try the old protocols: the refusal must come from carelb.
    await assert.rejects(handshake({ minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' }), /protocol version|unsupported protocol/i, version);
  }
});

test('SNI picks the certificate for the name the client asks for; others get the default', async (t) => {
  const certs = pki(t);
  const records = makeCert(certs.dir, certs.ca, 'records', { cn: 'records.hospital.test', sans: ['DNS:records.hospital.test'] });
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, {
    tls: { cert: certs.localhost.cert, key: certs.localhost.key, sni: [{ hostname: 'records.hospital.test', cert: records.cert, key: records.key }] },
    servers: [{ name: 'api', address: api.address }],
  });
  const named = await httpsGet(lb.port, certs.ca.cert, { servername: 'records.hospital.test' });
  assert.equal(named.status, 200);
  assert.equal(named.peerCn, 'records.hospital.test');
  const fallback = await httpsGet(lb.port, certs.ca.cert, { servername: 'localhost' });
  assert.equal(fallback.peerCn, 'localhost');
});

test('TLS bridging: carelb verifies the server with the configured CA and resumes TLS sessions across its pool', async (t) => {
  const certs = pki(t);
  const backend = await startTlsBackend(t, certs.localhost);
  const lb = await lbWith(t, {
    tls: { cert: certs.localhost.cert, key: certs.localhost.key },
    backend_tls: { ca: certs.ca.cert, servername: 'localhost' },
    servers: [{ name: 'secure', address: backend.address }],
  });
  // The server closes the first connection, so the second request needs a new one: resumed.
  assert.equal((await httpsGet(lb.port, certs.ca.cert, { path: '/close' })).status, 200);
  const second = await httpsGet(lb.port, certs.ca.cert, { path: '/again' });
  assert.equal(second.status, 200);
  assert.equal(JSON.parse(second.body).tls, true);
  assert.equal(backend.seen[0].proto, 'https');
  assert.equal(backend.seen[0].resumed, false);
  assert.equal(backend.seen[1].resumed, true, 'second connection resumed the TLS session');
});

test('bridging to a server whose certificate cannot be verified gives 502 CLB_UPSTREAM_TLS; the reason goes to the access log, never to the client', async (t) => {
  const certs = pki(t);
  const expired = makeCert(certs.dir, certs.ca, 'expired', { cn: 'localhost', sans: ['DNS:localhost'], expired: true });
  const good = await startTlsBackend(t, certs.localhost);
  const old = await startTlsBackend(t, expired);
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ servername: 'localhost' }, good.address, /unable to verify|self.signed|local issuer/i], // system CAs do not know the test CA
    [{ ca: certs.ca.cert, servername: 'wrong.hospital.test' }, good.address, /does not match|altnames/i],
    [{ ca: certs.ca.cert, servername: 'localhost' }, old.address, /certificate has expired/i],
  ];
  for (const [backendTls, address, reason] of cases) {
    const accessLog = join(tempDir(t), 'access.log');
    const port = await freePort();
    const lb = await startInProcess(t, { workers: 1, pin_workers: false, access_log: { path: accessLog }, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, backend_tls: backendTls, servers: [{ name: 'strict', address }] }] });
    const plain = await request(port);
    assert.equal(plain.status, 502);
    assert.equal(plain.headers['x-carelb-error'], 'CLB_UPSTREAM_TLS');
    // Issue 13: OpenSSL's words are internal detail; the body carries the code and a short text only.
    assert.equal(plain.body.toString(), 'TLS to the server failed\n');
    assert.equal(lb.status()[0].errors.UPSTREAM_TLS, 1);
    await lb.stop();
    const line = JSON.parse(readFileSync(accessLog, 'utf8').trim().split('\n').pop()!);
    assert.equal(line.error, 'CLB_UPSTREAM_TLS');
    assert.match(line.detail, reason);
  }
});

test('mutual TLS: carelb presents its client certificate to a server that requires one', async (t) => {
  const certs = pki(t);
  const client = makeCert(certs.dir, certs.ca, 'carelb-client', { cn: 'carelb-client' });
  const backend = await startTlsBackend(t, certs.localhost, { requestCert: true, rejectUnauthorized: true, ca: readFileSync(certs.ca.cert) });
  const withCert = await lbWith(t, { backend_tls: { ca: certs.ca.cert, servername: 'localhost', cert: client.cert, key: client.key }, servers: [{ name: 'mtls', address: backend.address }] });
  assert.equal((await request(withCert.port)).status, 200);
  assert.equal(backend.seen[0].clientCn, 'carelb-client');
  const without = await lbWith(t, { backend_tls: { ca: certs.ca.cert, servername: 'localhost' }, servers: [{ name: 'mtls', address: backend.address }] });
  assert.equal((await request(without.port)).status, 502);
});

test('a reload with a new certificate keeps open TLS connections; new handshakes get the new certificate', async (t) => {
  const certs = pki(t);
  const renewed = makeCert(certs.dir, certs.ca, 'renewed', { cn: 'localhost-renewed', sans: ['DNS:localhost'] });
  const api = await startBackend('api');
  t.after(() => api.close());
  const live = { cert: join(certs.dir, 'live.pem'), key: join(certs.dir, 'live.key') };
  copyFileSync(certs.localhost.cert, live.cert);
  copyFileSync(certs.localhost.key, live.key);
  const port = await freePort();
  const document = { workers: 1, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, tls: live, servers: [{ name: 'api', address: api.address }] }] };
  const path = join(certs.dir, 'carelb.yaml');
  writeFileSync(path, stringify(document));
  const loaded = loadConfigText(stringify(document), path);
  assert.ok(loaded.ok);
  const running = await runCarelb(loaded.config, { configPath: path, log: createLogger('warn') });
  t.after(() => running.stop());
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const before = await httpsGet(port, certs.ca.cert, { agent });
  assert.equal(before.peerCn, 'localhost');
  copyFileSync(renewed.cert, live.cert);
  copyFileSync(renewed.key, live.key);
  assert.deepEqual(await running.reload('test'), { ok: true, config_hash: running.admin.configHash() });
  const sameConnection = await httpsGet(port, certs.ca.cert, { agent });
  assert.equal(sameConnection.status, 200);
  assert.equal(sameConnection.peerCn, 'localhost', 'the open connection keeps its session');
  const fresh = await httpsGet(port, certs.ca.cert);
  assert.equal(fresh.peerCn, 'localhost-renewed');
});

test('redirect_https answers 301 to the same URL on https and forwards nothing', async (t) => {
  const lb = await lbWith(t, { redirect_https: true, https_port: 8443 });
  const { text } = await rawExchange(lb.port, 'GET /fhir/r4/Patient/1?_format=json HTTP/1.1\r\nHost: ehr.hospital.test:8080\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 301 Moved Permanently\r\n/);
  assert.match(text, /location: https:\/\/ehr\.hospital\.test:8443\/fhir\/r4\/Patient\/1\?_format=json\r\n/i);
});

test('check and start name the file and the problem for bad certificate files; expiry is a warning', (t) => {
  const certs = pki(t);
  const other = makeCert(certs.dir, certs.ca, 'other', { cn: 'other' });
  const secret = makeCert(certs.dir, certs.ca, 'secret', { cn: 'localhost', passphrase: 'right horse' });
  const expired = makeCert(certs.dir, certs.ca, 'expired', { cn: 'localhost', expired: true });
  const wrongPass = join(certs.dir, 'wrong.pass');
  writeFileSync(wrongPass, 'wrong horse\n');
  const rightPass = join(certs.dir, 'right.pass');
  writeFileSync(rightPass, 'right horse\n');
  const notPem = join(certs.dir, 'not.pem');
  writeFileSync(notPem, 'hello');
  const check = (tlsSection: Record<string, unknown>) => {
    const path = join(certs.dir, `c${Math.random()}.yaml`);
    writeFileSync(path, stringify({ virtual_services: [{ name: 'api', listen: '127.0.0.1:1', tls: tlsSection, servers: [{ name: 'a', address: '127.0.0.1:2' }] }] }));
    return spawnSync(process.execPath, [CLI, 'check', '-c', path], { encoding: 'utf8' });
  };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ cert: join(certs.dir, 'missing.pem'), key: certs.localhost.key }, /tls\.cert: cannot read certificate .*missing\.pem: ENOENT/],
    [{ cert: certs.localhost.cert, key: other.key }, /tls\.key: key .*other\.key does not match the certificate/],
    [{ cert: secret.cert, key: secret.key, passphrase_file: wrongPass }, /tls\.key: key .*secret\.key could not be decrypted: wrong passphrase/],
    [{ cert: secret.cert, key: secret.key }, /tls\.key: key .*secret\.key is encrypted: set passphrase_file/],
    [{ cert: notPem, key: certs.localhost.key }, /tls\.cert: .*not\.pem is not a PEM file/],
  ];
  for (const [section, message] of cases) {
    const result = check(section);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, message);
    assert.doesNotMatch(result.stderr, /BEGIN|horse/, 'no key material or passphrase in messages');
  }
  const ok = check({ cert: secret.cert, key: secret.key, passphrase_file: rightPass });
  assert.equal(ok.status, 0, ok.stderr);
  const old = check({ cert: expired.cert, key: expired.key });
  assert.equal(old.status, 0);
  assert.match(old.stderr, /warning: .*expired on/);
});
