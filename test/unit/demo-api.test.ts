/**
 * The demo EHR API server (src/demo/ehr-api.ts), on real sockets on port 0.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import { startDemoApiServer, type DemoApiOptions, type DemoApiServer } from '../../src/demo/ehr-api';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  /** Written in 64 KiB chunks, so the server sees a streamed body. */
  body?: Buffer;
  ca?: Buffer;
}

/** One request to the server; resolves with status, headers and the parsed JSON body. */
function request(server: DemoApiServer, target: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const common = { host: server.host, port: server.port, path: target, method: options.method ?? 'GET', headers: options.headers };
    const onResponse = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    };
    const req = options.ca
      ? https.request({ ...common, ca: options.ca, servername: 'localhost' }, onResponse)
      : http.request(common, onResponse);
    req.on('error', reject);
    const body = options.body;
    if (!body) return void req.end();
    const chunkSize = 64 * 1024;
    let offset = 0;
    const pump = (): void => {
      while (offset < body.length) {
        const chunk = body.subarray(offset, offset + chunkSize);
        offset += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

async function start(t: TestContext, options: Partial<DemoApiOptions> = {}): Promise<DemoApiServer> {
  const server = await startDemoApiServer({ name: 'ehr-api-test', ...options });
  t.after(() => server.close());
  return server;
}

/**
 * libuv computes timer deadlines from a loop time cached in whole milliseconds, so a timer can
 * appear to fire up to 1 ms early against a finer clock; this is a lower bound only.
 */
function assertWaited(startedAt: number, ms: number): void {
  const elapsed = performance.now() - startedAt;
  assert.ok(elapsed >= ms - 1, `answered after ${elapsed.toFixed(1)} ms, expected at least ${ms} ms`);
}

test('GET /health answers 200 {"status":"UP"} with X-Served-By and keep-alive', async (t) => {
  const server = await start(t, { name: 'ehr-api-7' });
  const reply = await request(server, '/health');
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.json, { status: 'UP' });
  assert.equal(reply.headers['x-served-by'], 'ehr-api-7');
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  assert.equal(reply.headers['keep-alive'], 'timeout=5');
  assert.equal(server.host, '127.0.0.1');
  assert.equal(server.name, 'ehr-api-7');
  assert.ok(server.port > 0);
});

test('a sick server answers 503 to everything but /admin/*, /health included, until it is made well', async (t) => {
  const server = await start(t, { name: 'ehr-api-sick' });
  server.setSick(true);
  assert.equal(server.sick, true);
  for (const path of ['/health', '/fhir/r4/Patient/1', '/fhir/r4/metadata']) {
    const reply = await request(server, path);
    assert.equal(reply.status, 503, path);
    assert.equal((reply.json as { resourceType: string }).resourceType, 'OperationOutcome');
    assert.equal(reply.headers['x-served-by'], 'ehr-api-sick');
  }
  assert.equal((await request(server, '/echo', { method: 'POST', body: Buffer.from('x') })).status, 503);
  assert.equal((await request(server, '/admin/delay/0', { method: 'POST' })).status, 200);
  server.setSick(false);
  assert.equal((await request(server, '/health')).status, 200);
});

test('GET /fhir/r4/metadata answers a FHIR R4 CapabilityStatement', async (t) => {
  const server = await start(t);
  const reply = await request(server, '/fhir/r4/metadata');
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^application\/fhir\+json/);
  assert.equal(reply.headers['x-served-by'], 'ehr-api-test');
  assert.equal(reply.json.resourceType, 'CapabilityStatement');
  assert.equal(reply.json.fhirVersion, '4.0.1');
  const types = reply.json.rest[0].resource.map((r: { type: string }) => r.type);
  assert.deepEqual(types, ['Patient', 'Observation']);
});

test('GET /fhir/r4/Patient/{id} answers the same synthetic Patient from every server', async (t) => {
  const one = await start(t, { name: 'ehr-api-1' });
  const two = await start(t, { name: 'ehr-api-2' });
  const a = await request(one, '/fhir/r4/Patient/abc-123');
  const b = await request(two, '/fhir/r4/Patient/abc-123');
  assert.equal(a.status, 200);
  assert.match(String(a.headers['content-type']), /^application\/fhir\+json/);
  assert.equal(a.headers['x-served-by'], 'ehr-api-1');
  assert.equal(b.headers['x-served-by'], 'ehr-api-2');
  assert.equal(a.text, b.text);
  assert.equal(a.json.resourceType, 'Patient');
  assert.equal(a.json.id, 'abc-123');
  assert.equal(typeof a.json.name[0].family, 'string');
  assert.ok(['female', 'male'].includes(a.json.gender));
  assert.match(a.json.birthDate, /^\d{4}-\d{2}-\d{2}$/);
  assert.equal(a.json.meta.tag[0].code, 'synthetic');

  const other = await request(one, '/fhir/r4/Patient/xyz-999');
  assert.equal(other.json.id, 'xyz-999');
  assert.notEqual(other.text, a.text);
});

test('GET /fhir/r4/Patient/{id} answers 404 OperationOutcome for ids that are not letters, digits or "-"', async (t) => {
  const server = await start(t);
  for (const id of ['bad$id', 'a.b', 'a%20b', 'x'.repeat(65), '%E0%A4%A', 'a/b']) {
    const reply = await request(server, `/fhir/r4/Patient/${id}`);
    assert.equal(reply.status, 404, id);
    assert.equal(reply.json.resourceType, 'OperationOutcome', id);
    assert.equal(reply.json.issue[0].severity, 'error', id);
    assert.equal(reply.headers['x-served-by'], 'ehr-api-test', id);
  }
});

test('GET /fhir/r4/Patient?name= answers a searchset Bundle of patients whose name starts with the term', async (t) => {
  const server = await start(t);
  const reply = await request(server, '/fhir/r4/Patient?name=de');
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^application\/fhir\+json/);
  assert.equal(reply.json.resourceType, 'Bundle');
  assert.equal(reply.json.type, 'searchset');
  assert.ok(reply.json.entry.length > 0);
  assert.ok(reply.json.total >= reply.json.entry.length);
  assert.ok(reply.json.entry.length <= 10);
  for (const entry of reply.json.entry) {
    assert.equal(entry.resource.resourceType, 'Patient');
    const parts: string[] = [entry.resource.name[0].family, ...entry.resource.name[0].given];
    assert.ok(parts.some((p) => p.toLowerCase().startsWith('de')), parts.join(' '));
    // A search hit reads back as the same resource.
    const read = await request(server, `/fhir/r4/Patient/${entry.resource.id}`);
    assert.deepEqual(read.json, entry.resource);
  }

  const none = await request(server, '/fhir/r4/Patient?name=zzzz');
  assert.equal(none.status, 200);
  assert.equal(none.json.total, 0);
  assert.deepEqual(none.json.entry, []);

  const counted = await request(server, '/fhir/r4/Patient?_count=3');
  assert.equal(counted.json.entry.length, 3);

  const bad = await request(server, '/fhir/r4/Patient?_count=lots');
  assert.equal(bad.status, 400);
  assert.equal(bad.json.resourceType, 'OperationOutcome');
});

test('GET /fhir/r4/Observation?patient= answers a searchset Bundle of that patient\'s observations', async (t) => {
  const server = await start(t);
  const reply = await request(server, '/fhir/r4/Observation?patient=abc-123');
  assert.equal(reply.status, 200);
  assert.equal(reply.json.resourceType, 'Bundle');
  assert.equal(reply.json.type, 'searchset');
  assert.ok(reply.json.entry.length > 0);
  assert.equal(reply.json.total, reply.json.entry.length);
  for (const entry of reply.json.entry) {
    assert.equal(entry.resource.resourceType, 'Observation');
    assert.equal(entry.resource.subject.reference, 'Patient/abc-123');
    assert.equal(typeof entry.resource.valueQuantity.value, 'number');
  }
  const byReference = await request(server, '/fhir/r4/Observation?patient=Patient/abc-123');
  assert.equal(byReference.text, reply.text.replace('patient=abc-123', 'patient=Patient/abc-123'));

  const missing = await request(server, '/fhir/r4/Observation');
  assert.equal(missing.status, 400);
  assert.equal(missing.json.resourceType, 'OperationOutcome');
});

test('unknown paths and methods answer an OperationOutcome with X-Served-By', async (t) => {
  const server = await start(t);
  const unknown = await request(server, '/nowhere');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.resourceType, 'OperationOutcome');
  assert.equal(unknown.headers['x-served-by'], 'ehr-api-test');

  const post = await request(server, '/fhir/r4/Patient/abc', { method: 'POST', body: Buffer.from('{}') });
  assert.equal(post.status, 405);
  assert.equal(post.json.resourceType, 'OperationOutcome');
  assert.equal(post.headers.allow, 'GET, HEAD');
});

test('/echo streams a 1 MiB body through sha256 and echoes method, url and headers', async (t) => {
  const server = await start(t);
  const body = randomBytes(1024 * 1024);
  const reply = await request(server, '/echo?x=1', {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', 'X-Trace': 'abc' },
    body,
  });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-served-by'], 'ehr-api-test');
  assert.equal(reply.json.method, 'POST');
  assert.equal(reply.json.url, '/echo?x=1');
  assert.equal(reply.json.headers['x-trace'], 'abc');
  assert.equal(reply.json.body.length, body.length);
  assert.equal(reply.json.body.sha256, createHash('sha256').update(body).digest('hex'));
});

test('/echo answers any method, with or without a chunked body', async (t) => {
  const server = await start(t);
  const empty = createHash('sha256').digest('hex');
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    const reply = await request(server, '/echo', { method });
    assert.equal(reply.status, 200, method);
    assert.equal(reply.json.method, method);
    assert.deepEqual(reply.json.body, { length: 0, sha256: empty });
  }
  // No Content-Length: Node sends the body chunked.
  const body = Buffer.from('chunked body');
  const chunked = await request(server, '/echo', { method: 'PUT', body, headers: { 'Transfer-Encoding': 'chunked' } });
  assert.equal(chunked.json.headers['transfer-encoding'], 'chunked');
  assert.equal(chunked.json.body.sha256, createHash('sha256').update(body).digest('hex'));
});

test('GET /delay/{ms} answers after at least ms milliseconds', async (t) => {
  const server = await start(t);
  const startedAt = performance.now();
  const reply = await request(server, '/delay/150');
  assertWaited(startedAt, 150);
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-served-by'], 'ehr-api-test');

  const tooLong = await request(server, '/delay/600000');
  assert.equal(tooLong.status, 400);
});

test('delayMs delays every request, and POST /admin/delay/{ms} changes it at runtime', async (t) => {
  const server = await start(t, { delayMs: 120 });
  let startedAt = performance.now();
  assert.equal((await request(server, '/health')).status, 200);
  assertWaited(startedAt, 120);

  const set = await request(server, '/admin/delay/200', { method: 'POST' });
  assert.equal(set.status, 200);
  assert.deepEqual(set.json, { delayMs: 200 });
  startedAt = performance.now();
  assert.equal((await request(server, '/fhir/r4/metadata')).status, 200);
  assertWaited(startedAt, 200);

  assert.equal((await request(server, '/admin/delay/0', { method: 'POST' })).status, 200);
  assert.equal((await request(server, '/admin/delay/0')).status, 405);
});

test('serves HTTPS with a certificate given as PEM', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'carelb-demo-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  const cert = readFileSync(certFile);
  const server = await start(t, { name: 'ehr-api-tls', tls: { cert, key: readFileSync(keyFile, 'utf8') } });

  const reply = await request(server, '/fhir/r4/Patient/tls-1', { ca: cert });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-served-by'], 'ehr-api-tls');
  assert.equal(reply.json.id, 'tls-1');

  const body = randomBytes(256 * 1024);
  const echo = await request(server, '/echo', { method: 'POST', body, ca: cert });
  assert.equal(echo.json.body.sha256, createHash('sha256').update(body).digest('hex'));

  // Plain HTTP to the HTTPS port does not get an answer from the API.
  await assert.rejects(request({ ...server }, '/health'));
});

test('close() destroys idle keep-alive connections and requests still waiting, then resolves', async () => {
  const server = await startDemoApiServer({ name: 'ehr-api-close' });
  const agent = new http.Agent({ keepAlive: true });
  try {
    // An idle kept-alive connection ...
    await new Promise<void>((resolve, reject) => {
      http.get({ host: server.host, port: server.port, path: '/health', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    });
    // ... and a request the server is still delaying.
    const pending = new Promise<Error>((resolve) => {
      http.get({ host: server.host, port: server.port, path: '/delay/30000', agent: false }, () => resolve(new Error('answered'))).on('error', resolve);
    });
    // Close only once the server holds the delayed request.
    while (server.delayed === 0) await new Promise((resolve) => setImmediate(resolve));
    await server.close();
    const error = await pending;
    assert.notEqual(error.message, 'answered');
    await assert.rejects(request(server, '/health'), { code: 'ECONNREFUSED' });
    await server.close(); // a second close is harmless
  } finally {
    agent.destroy();
  }
});

test('ehr-api-main starts a server from the command line and prints a ready line', async (t) => {
  const main = path.resolve(__dirname, '../../src/demo/ehr-api-main.js');
  const child = spawn(process.execPath, [main, '--port', '0', '--name', 'ehr-api-cli', '--delay', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  while (!out.includes('\n')) {
    const [chunk] = (await once(child.stdout, 'data')) as [string];
    out += chunk;
  }
  const ready = JSON.parse(out.split('\n')[0]);
  assert.equal(ready.msg, 'ready');
  assert.ok(ready.port > 0);

  const reply = await request({ name: 'ehr-api-cli', host: '127.0.0.1', port: ready.port, delayed: 0, sick: false, setSick: () => undefined, close: async () => undefined }, '/health');
  assert.equal(reply.headers['x-served-by'], 'ehr-api-cli');

  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0);
});

test('ehr-api-main rejects a bad option', () => {
  const main = path.resolve(__dirname, '../../src/demo/ehr-api-main.js');
  assert.throws(() => execFileSync(process.execPath, [main, '--port', 'eighty'], { stdio: 'pipe' }), (error: { status: number; stderr: Buffer }) => {
    assert.equal(error.status, 2);
    assert.match(error.stderr.toString(), /--port must be a non-negative integer/);
    return true;
  });
});
