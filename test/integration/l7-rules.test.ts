/**
 * L7 rules of issue 14 on real sockets: HSTS, request ids, header rules, cookie persistence.
 * carelb runs in-process (real worker threads and uWS) or as `carelb check`; servers are real
 * HTTP servers or scripted raw ones that record the bytes carelb sent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { test, type TestContext } from 'node:test';
import { startBackend, type Handler, type TestBackend } from '../helpers/backend';
import { CLI, startInProcess, tempDir, writeConfig, type InProcess } from '../helpers/carelb';
import { makeCa, makeCert, type Pair } from '../helpers/certs';
import { request, type Reply } from '../helpers/client';
import { freePort } from '../helpers/ports';

async function backend(t: TestContext, name: string, handler?: Handler): Promise<TestBackend> {
  const b = await startBackend(name, handler);
  t.after(() => b.close());
  return b;
}

/** `carelb check -c` on `document`: exit status and what it printed. */
function check(t: TestContext, document: unknown): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [CLI, 'check', '-c', writeConfig(t, document)], { encoding: 'utf8', timeout: 15_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

interface Pki {
  ca: Pair;
  localhost: Pair;
}

function pki(t: TestContext): Pki {
  const dir = tempDir(t);
  const ca = makeCa(dir);
  return { ca, localhost: makeCert(dir, ca, 'localhost', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] }) };
}

/** One HTTPS request on a new connection. */
function httpsRequest(port: number, ca: string, path = '/', headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, headers, ca: readFileSync(ca), servername: 'localhost', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function start(t: TestContext, services: Record<string, unknown>[], top: Record<string, unknown> = {}): Promise<InProcess> {
  return startInProcess(t, { workers: 1, pin_workers: false, ...top, virtual_services: services });
}

// ---- HSTS ----

test('HSTS is on every response of a TLS service, replacing the server’s own, and never on a plain one', async (t) => {
  const { ca, localhost } = pki(t);
  const api = await backend(t, 'api', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'strict-transport-security': 'max-age=1', 'x-served-by': 'api' });
    res.end('ok');
  });
  const tlsPort = await freePort();
  const plainPort = await freePort();
  const downPort = await freePort();
  await start(t, [
    { name: 'secure', listen: `127.0.0.1:${tlsPort}`, tls: { cert: localhost.cert, key: localhost.key }, hsts: { max_age: '180d', include_subdomains: true }, servers: [{ name: 'api', address: api.address }] },
    { name: 'plain', listen: `127.0.0.1:${plainPort}`, servers: [{ name: 'api', address: api.address }] },
    // A TLS service whose only server refuses connections: carelb's own 502 must carry HSTS too.
    { name: 'down', listen: `127.0.0.1:${downPort}`, tls: { cert: localhost.cert, key: localhost.key }, hsts: { max_age: 3600 * 1000 }, servers: [{ name: 'gone', address: `127.0.0.1:${await freePort()}` }] },
  ]);
  const secure = await httpsRequest(tlsPort, ca.cert);
  assert.equal(secure.status, 200);
  assert.equal(secure.body.toString(), 'ok');
  assert.equal(secure.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains', '180 days in seconds; the server’s max-age=1 is replaced, not repeated');
  assert.equal(secure.headers['x-served-by'], 'api', 'the server’s other fields are kept');
  const plain = await request(plainPort);
  assert.equal(plain.status, 200);
  assert.equal(plain.headers['strict-transport-security'], 'max-age=1', 'a plain service passes the server’s field on untouched and adds none');
  const failed = await httpsRequest(downPort, ca.cert);
  assert.equal(failed.headers['x-carelb-error'], 'CLB_CONNECT_FAILED');
  assert.equal(failed.headers['strict-transport-security'], 'max-age=3600', 'carelb’s own error answer carries HSTS');
});

test('carelb check refuses hsts on a plain-HTTP virtual service, naming the key and the reason', async (t) => {
  const result = check(t, { virtual_services: [{ name: 'plain', listen: '127.0.0.1:8080', hsts: { max_age: '180d' }, servers: [{ name: 'a', address: '127.0.0.1:9000' }] }] });
  assert.equal(result.status, 1);
  assert.match(result.output, /virtual_services\[0\]\.hsts: needs tls: Strict-Transport-Security over plain HTTP is ignored by browsers/);
});
