/**
 * L7 rules of issue 14 on real sockets: HSTS, request ids, header rules, cookie persistence.
 * carelb runs in-process (real worker threads and uWS) or as `carelb check`; servers are real
 * HTTP servers or scripted raw ones that record the bytes carelb sent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as http from 'node:http';
import * as https from 'node:https';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb } from '../../src/primary/run';
import { startBackend, type Handler, type TestBackend } from '../helpers/backend';
import { CLI, eventually, startInProcess, tempDir, writeConfig, type InProcess } from '../helpers/carelb';
import { adminCall } from '../helpers/admin-context';
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

// ---- request ids ----

const ID_SHAPE = /^[0-9a-f]{12}-[0-9a-z]+$/;

test('request_id: a missing or invalid id is generated, a valid one kept; the server and the access log get the same id', async (t) => {
  const api = await backend(t, 'api', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(String(req.headers['x-trace-id'] ?? ''));
  });
  const dir = tempDir(t);
  const log = join(dir, 'access.log');
  const port = await freePort();
  const lb = await start(t, [{ name: 'api', listen: `127.0.0.1:${port}`, request_id: { header: 'X-Trace-Id' }, servers: [{ name: 'api', address: api.address }] }], { access_log: { path: log } });
  const generated = await request(port, { path: '/none' });
  const kept = await request(port, { path: '/valid', headers: { 'x-trace-id': 'c0ffee-0123:abc/DEF+=@_.' } });
  const tooLong = await request(port, { path: '/long', headers: { 'x-trace-id': 'a'.repeat(129) } });
  const badChars = await request(port, { path: '/bad', headers: { 'x-trace-id': 'a"b\\c' } });
  const second = await request(port, { path: '/again' });
  await lb.stop();
  assert.match(generated.body.toString(), ID_SHAPE);
  assert.equal(kept.body.toString(), 'c0ffee-0123:abc/DEF+=@_.');
  assert.match(tooLong.body.toString(), ID_SHAPE, 'a 129-character id is replaced');
  assert.match(badChars.body.toString(), ID_SHAPE, 'an id with a quote or backslash is replaced');
  assert.notEqual(generated.body.toString(), second.body.toString(), 'each request gets its own id');
  // The server saw exactly one id field per request (the client's invalid one never reached it).
  for (const seen of api.seen) assert.equal(seen.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-trace-id').length, 1);
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; request_id: string });
  const byPath = new Map(lines.map((line) => [line.path, line.request_id]));
  assert.equal(byPath.get('/none'), generated.body.toString());
  assert.equal(byPath.get('/valid'), 'c0ffee-0123:abc/DEF+=@_.');
  assert.equal(byPath.get('/long'), tooLong.body.toString());
  assert.equal(byPath.get('/bad'), badChars.body.toString());
  assert.equal(byPath.get('/again'), second.body.toString());
});

test('request_id: a retry on another server sends the same id; a service without request_id logs no request_id field', async (t) => {
  const api = await backend(t, 'api', (req, res) => res.end(String(req.headers['x-request-id'] ?? '')));
  const dir = tempDir(t);
  const log = join(dir, 'access.log');
  const port = await freePort();
  const plainPort = await freePort();
  const lb = await start(
    t,
    [
      // The first server refuses connections: the request is retried on the second with its id.
      { name: 'api', listen: `127.0.0.1:${port}`, balance: 'roundrobin', request_id: {}, servers: [{ name: 'gone', address: `127.0.0.1:${await freePort()}` }, { name: 'api', address: api.address }] },
      { name: 'plain', listen: `127.0.0.1:${plainPort}`, servers: [{ name: 'api', address: api.address }] },
    ],
    { access_log: { path: log } },
  );
  const ids = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const reply = await request(port, { path: `/r${i}` });
    assert.equal(reply.status, 200);
    ids.add(reply.body.toString());
  }
  const plain = await request(plainPort, { path: '/plain', headers: { 'x-request-id': 'client-id' } });
  assert.equal(plain.body.toString(), 'client-id', 'without request_id the client’s field passes as any other');
  await lb.stop();
  assert.equal(ids.size, 4);
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; vs: string; request_id?: string });
  for (const line of lines.filter((l) => l.vs === 'api')) assert.ok(ids.has(line.request_id!), `logged id ${line.request_id} is one the server saw`);
  assert.equal(lines.find((l) => l.vs === 'plain')!.request_id, undefined);
});

// ---- header rules ----

test('request_headers and response_headers set, add and remove fields on both sides, with templates expanded', async (t) => {
  const api = await backend(t, 'api', (_req, res) => {
    res.setHeader('Server', 'ehr-app/9.1');
    res.setHeader('X-Powered-By', 'internals');
    res.setHeader('X-Kept', 'yes');
    res.setHeader('Content-Type', 'application/fhir+json');
    res.end('{}');
  });
  const port = await freePort();
  await start(t, [
    {
      name: 'fhir',
      listen: `127.0.0.1:${port}`,
      request_id: {},
      request_headers: {
        set: { 'X-Env': 'prod', 'X-Origin': '{virtual_service} via {server} for {client_ip}' },
        add: { 'X-Via': 'carelb', 'X-Trace': 'id={request_id}' },
        remove: ['X-Internal-Debug'],
      },
      response_headers: {
        set: { Server: 'carelb', 'X-Request-Id': '{request_id}' },
        add: { 'X-Served-Through': '{server} of {virtual_service}', 'X-Api-Version': 4 },
        remove: ['x-powered-by'],
      },
      servers: [{ name: 'api-1', address: api.address }],
    },
  ]);
  const reply = await request(port, { path: '/Patient/1', headers: { 'X-Env': 'dev', 'X-Via': 'client-proxy', 'X-Internal-Debug': 'on', 'X-Other': 'kept' } });
  assert.equal(reply.status, 200);
  const seen = api.seen[0];
  const fields = (name: string) => seen.rawHeaders.filter((_h, i) => i % 2 === 1 && seen.rawHeaders[i - 1].toLowerCase() === name);
  assert.deepEqual(fields('x-env'), ['prod'], 'set replaces the client’s value');
  assert.deepEqual(fields('x-origin'), ['fhir via api-1 for 127.0.0.1']);
  assert.deepEqual(fields('x-via'), ['client-proxy', 'carelb'], 'add keeps the client’s value and appends');
  assert.deepEqual(fields('x-internal-debug'), [], 'removed');
  assert.deepEqual(fields('x-other'), ['kept']);
  const id = fields('x-request-id')[0];
  assert.match(id, /^[0-9a-f]{12}-[0-9a-z]+$/);
  assert.deepEqual(fields('x-trace'), [`id=${id}`]);
  assert.equal(reply.headers.server, 'carelb', 'set replaces the server’s value');
  assert.equal(reply.headers['x-request-id'], id, 'the id the server got is echoed to the client');
  assert.equal(reply.headers['x-served-through'], 'api-1 of fhir');
  assert.equal(reply.headers['x-api-version'], '4');
  assert.equal(reply.headers['x-powered-by'], undefined, 'removed, whatever its case');
  assert.equal(reply.headers['x-kept'], 'yes');
  assert.equal(reply.headers['content-type'], 'application/fhir+json');
  assert.equal(reply.body.toString(), '{}');
  // Framing is carelb's own: a POST body arrives and the response length is right.
  const post = await request(port, { method: 'POST', path: '/Observation', body: 'x'.repeat(1000), headers: { 'content-length': 1000 } });
  assert.equal(post.status, 200);
  assert.equal(api.seen[1].bodyBytes, 1000);
  assert.equal(post.headers['content-length'], '2');
});

test('carelb check refuses CR/LF and control characters in values, framing fields, unknown templates and bad names, each with its key', async (t) => {
  const result = check(t, {
    virtual_services: [
      {
        name: 'api',
        listen: '127.0.0.1:8080',
        request_headers: {
          set: { 'X-Evil': 'a\r\nHost: attacker', 'Content-Length': '0', 'X-Tab': 'a\tb' },
          add: { 'X-Bell': 'ding\u0007', 'X-Who': '{client_ip} {user}', 'X-Id': '{request_id}', 'Bad Name': 'x' },
          remove: ['Host', 'X-Forwarded-For', 'Transfer-Encoding'],
        },
        response_headers: {
          set: { Connection: 'close', 'X-Lf': 'a\nb', 'X-Both': '1' },
          remove: ['content-length', 'x-both'],
        },
        servers: [{ name: 'a', address: '127.0.0.1:9000' }],
      },
    ],
  });
  assert.equal(result.status, 1);
  const expected = [
    /request_headers\.set\.X-Evil: contains CR or LF/,
    /request_headers\.set\.Content-Length: Content-Length cannot be changed by a rule: carelb frames the request body itself/,
    /request_headers\.add\.X-Bell: contains the control character 0x07/,
    /request_headers\.add\.X-Who: uses \{user\}: only \{client_ip\}, \{virtual_service\}, \{server\}, \{request_id\} exist/,
    /request_headers\.add\.X-Id: uses \{request_id\}: add request_id to the virtual service/,
    /request_headers\.add\.Bad Name: "Bad Name" is not a header name/,
    /request_headers\.remove\[0\]: Host cannot be changed by a rule/,
    /request_headers\.remove\[1\]: X-Forwarded-For cannot be changed by a rule/,
    /request_headers\.remove\[2\]: Transfer-Encoding cannot be changed by a rule/,
    /response_headers\.set\.Connection: Connection cannot be changed by a rule/,
    /response_headers\.set\.X-Lf: contains CR or LF/,
    /response_headers\.remove\[0\]: content-length cannot be changed by a rule: carelb frames the response body itself/,
    /response_headers\.remove\[1\]: x-both is already in set/,
  ];
  for (const pattern of expected) assert.match(result.output, pattern);
  assert.doesNotMatch(result.output, /X-Tab/, 'a tab is a valid value character');
  // Fields other rules own cannot be touched either.
  const owned = check(t, {
    virtual_services: [
      {
        name: 'api',
        listen: '127.0.0.1:8443',
        tls: { cert: '/nonexistent.pem', key: '/nonexistent.key' },
        hsts: { max_age: '1d' },
        request_id: { header: 'X-Correlation-Id' },
        request_headers: { remove: ['x-correlation-id'] },
        response_headers: { set: { 'Strict-Transport-Security': 'max-age=0' } },
        servers: [{ name: 'a', address: '127.0.0.1:9000' }],
      },
    ],
  });
  assert.equal(owned.status, 1);
  assert.match(owned.output, /request_headers\.remove\[0\]: x-correlation-id cannot be changed by a rule: it is the request_id field/);
  assert.match(owned.output, /response_headers\.set\.Strict-Transport-Security: Strict-Transport-Security cannot be changed by a rule: hsts sets it/);
});

test('a reload replaces the compiled header rules: the next request gets the new ones, and a refused reload keeps the old', async (t) => {
  const api = await backend(t, 'api', (req, res) => res.end(String(req.headers['x-env'] ?? '')));
  const port = await freePort();
  const doc = (value: string) => ({ workers: 2, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, request_headers: { set: { 'X-Env': value } }, servers: [{ name: 'api', address: api.address }] }] });
  const path = writeConfig(t, doc('blue'));
  const loaded = loadConfigText(stringify(doc('blue')), path);
  assert.ok(loaded.ok);
  const running = await runCarelb(loaded.config, { configPath: path, configText: stringify(doc('blue')), log: createLogger('silent') });
  t.after(() => running.stop());
  assert.equal((await request(port)).body.toString(), 'blue');
  writeFileSync(path, stringify(doc('green')));
  assert.equal((await running.reload('test')).ok, true);
  for (let i = 0; i < 10; i++) assert.equal((await request(port)).body.toString(), 'green', 'every thread has the new rules');
  writeFileSync(path, stringify(doc('red\r\nX-Injected: 1')));
  const refused = await running.reload('test');
  assert.equal(refused.ok, false);
  for (let i = 0; i < 4; i++) assert.equal((await request(port)).body.toString(), 'green');
});

// ---- cookie persistence ----

/** A server that answers with its name and reports its health as the test sets it; records the Cookie fields it got. */
async function switchable(t: TestContext, name: string) {
  const state = { healthy: true, cookies: [] as string[] };
  const b = await backend(t, name, (req, res) => {
    if (req.url === '/health') return void res.writeHead(state.healthy ? 200 : 500).end(state.healthy ? 'OK' : 'down');
    state.cookies.push(String(req.headers.cookie ?? ''));
    res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': name }).end(name);
  });
  return { backend: b, state, name };
}

/** The CARELBSRV pair of a reply's Set-Cookie, or null. */
function persistenceCookie(reply: Reply): { pair: string; attributes: string } | null {
  const line = (reply.headers['set-cookie'] ?? []).find((c) => c.startsWith('CARELBSRV='));
  if (!line) return null;
  const semi = line.indexOf(';');
  return { pair: line.slice(0, semi), attributes: line.slice(semi) };
}

test('cookie persistence: 200 requests stay on one server, the cookie never reaches it; a down server’s clients move; drain keeps them, halt moves them', async (t) => {
  const servers = await Promise.all(['alpha', 'bravo', 'charlie'].map((name) => switchable(t, name)));
  const secretDir = tempDir(t);
  const secretFile = join(secretDir, 'cookie.secret');
  writeFileSync(secretFile, 'a-test-secret-of-enough-length\n');
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 2,
    pin_workers: false,
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${port}`,
        balance: 'roundrobin',
        persistence: 'cookie',
        cookie: { name: 'CARELBSRV', max_idle: '30m', max_life: '12h', httponly: true, samesite: 'lax', secret_file: secretFile },
        health_check: { interval: '50ms', rise: 1, fall: 1 },
        servers: servers.map((s) => ({ name: s.name, address: s.backend.address })),
      },
    ],
  });
  const status = () => lb.status()[0].servers;
  await eventually(() => status().every((s) => s.health === 'up'), 3000, 'servers up');

  // Without a cookie: balanced, and the response sets one (with nocache's Cache-Control: private).
  const first = await request(port, { headers: { cookie: 'session=abc' } });
  const cookie = persistenceCookie(first);
  assert.ok(cookie, 'the first response sets the persistence cookie');
  assert.equal(cookie.attributes, '; Path=/; HttpOnly; SameSite=Lax', 'no Secure on a plain service by default');
  assert.equal(first.headers['cache-control'], 'private');
  const home = String(first.headers['x-served-by']);
  const value = cookie.pair.slice('CARELBSRV='.length);
  assert.match(value, /^[0-9a-f]{16}\.[0-9a-z]+\.[0-9a-z]+$/, 'an opaque token and two dates');
  for (const s of servers) assert.ok(!value.includes(s.name) && !value.includes(String(s.backend.port)), 'the token reveals neither name nor address');

  // 200 requests with the cookie: all on the same server, none sent the cookie again (indirect).
  const mine = servers.find((s) => s.name === home)!;
  mine.state.cookies.length = 0;
  for (let i = 0; i < 200; i++) {
    const reply = await request(port, { path: `/r${i}`, headers: { cookie: `session=abc; ${cookie.pair}; theme=dark` } });
    assert.equal(reply.headers['x-served-by'], home, `request ${i} stays on ${home}`);
    assert.equal(persistenceCookie(reply), null, 'a client with the right cookie is not sent it again');
    assert.equal(reply.headers['cache-control'], undefined);
  }
  assert.equal(mine.state.cookies.length, 200);
  assert.ok(mine.state.cookies.every((c) => c === 'session=abc; theme=dark'), `the server never sees CARELBSRV: ${mine.state.cookies[0]}`);
  // Without the cookie, round robin spreads the requests.
  const spread = new Set<string>();
  for (let i = 0; i < 6; i++) spread.add(String((await request(port)).headers['x-served-by']));
  assert.equal(spread.size, 3);

  // Down: the client moves, gets a new cookie, and stays on the new server.
  mine.state.healthy = false;
  const homeIndex = servers.indexOf(mine);
  await eventually(() => status()[homeIndex].health === 'down', 3000, 'home server down');
  const moved = await request(port, { headers: { cookie: cookie.pair } });
  assert.notEqual(moved.headers['x-served-by'], home);
  const movedCookie = persistenceCookie(moved);
  assert.ok(movedCookie, 'the moved client gets the new server’s cookie');
  const newHome = String(moved.headers['x-served-by']);
  for (let i = 0; i < 20; i++) assert.equal((await request(port, { headers: { cookie: movedCookie.pair } })).headers['x-served-by'], newHome);
  // Back up: the old cookie leads home again (tokens are stable).
  mine.state.healthy = true;
  await eventually(() => status()[homeIndex].health === 'up', 3000, 'home server up');
  assert.equal((await request(port, { headers: { cookie: cookie.pair } })).headers['x-served-by'], home);

  // Drain: clients with its cookie keep reaching it, new clients never do.
  lb.running.admin.setAdminState('api', home, 'drain');
  for (let i = 0; i < 20; i++) assert.equal((await request(port, { headers: { cookie: cookie.pair } })).headers['x-served-by'], home, 'drain keeps cookie clients');
  for (let i = 0; i < 12; i++) assert.notEqual((await request(port)).headers['x-served-by'], home, 'no new client on a drained server');
  // Halt: its cookie clients move.
  lb.running.admin.setAdminState('api', home, 'halt');
  const halted = await request(port, { headers: { cookie: cookie.pair } });
  assert.notEqual(halted.headers['x-served-by'], home);
  assert.ok(persistenceCookie(halted));
});

test('cookie persistence: tokens are stable across restarts and a reordered server list, expire with max_life and max_idle, and forged values are ignored', async (t) => {
  const servers = await Promise.all(['alpha', 'bravo'].map((name) => switchable(t, name)));
  const doc = (port: number, cookie: Record<string, unknown>) => ({
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, balance: 'roundrobin', persistence: 'cookie', cookie, servers: servers.map((s) => ({ name: s.name, address: s.backend.address })) }],
  });
  const port = await freePort();
  const first = await startInProcess(t, doc(port, {}));
  const reply = await request(port);
  const cookie = persistenceCookie(reply)!;
  assert.match(cookie.pair, /^CARELBSRV=[0-9a-f]{16}$/, 'without max_idle/max_life the value is the token alone');
  const home = String(reply.headers['x-served-by']);
  await first.stop();
  // Another instance with the servers listed in the other order: the same token names the same server.
  const port2 = await freePort();
  const reversed = doc(port2, {});
  (reversed.virtual_services[0].servers as unknown[]).reverse();
  await startInProcess(t, reversed);
  for (let i = 0; i < 6; i++) {
    const again = await request(port2, { headers: { cookie: cookie.pair } });
    assert.equal(again.headers['x-served-by'], home);
    assert.equal(persistenceCookie(again), null);
  }
  // A forged or unknown token is ignored: balanced, and given a real cookie.
  const forged = await request(port2, { headers: { cookie: 'CARELBSRV=alpha' } });
  assert.ok(persistenceCookie(forged));
  // max_life: a cookie whose first date is older than max_life no longer counts.
  const port3 = await freePort();
  await startInProcess(t, doc(port3, { max_life: '90m', max_idle: '30m' }));
  const dated = persistenceCookie(await request(port3))!;
  const [token, , last] = dated.pair.slice('CARELBSRV='.length).split('.');
  const now = Math.floor(Date.now() / 1000);
  const old = `CARELBSRV=${token}.${(now - 7200).toString(36)}.${last}`;
  const expired = await request(port3, { headers: { cookie: old } });
  const fresh = persistenceCookie(expired);
  assert.ok(fresh, 'an expired cookie is replaced');
  assert.notEqual(fresh.pair.split('.')[1], (now - 7200).toString(36), 'with a new first date');
  const idle = `CARELBSRV=${token}.${(now - 4000).toString(36)}.${(now - 3600).toString(36)}`;
  const live = `CARELBSRV=${token}.${(now - 4000).toString(36)}.${(now - 60).toString(36)}`;
  const kept = await request(port3, { headers: { cookie: live } });
  assert.equal(persistenceCookie(kept), null, 'a cookie within max_life and max_idle is kept (seen 60 s ago: no refresh yet)');
  assert.ok(persistenceCookie(await request(port3, { headers: { cookie: idle } })), 'a cookie idle past max_idle is replaced');
});

test('carelb check: cookie options need persistence: cookie, Secure needs tls, and a secret file must hold a secret', async (t) => {
  const base = { name: 'api', listen: '127.0.0.1:8080', servers: [{ name: 'a', address: '127.0.0.1:9000' }] };
  const wrong = check(t, { virtual_services: [{ ...base, cookie: { name: 'X' } }, { ...base, name: 'b', listen: '127.0.0.1:8081', persistence: 'cookie', cookie: { secure: true } }] });
  assert.equal(wrong.status, 1);
  assert.match(wrong.output, /virtual_services\[0\]\.cookie: is for persistence: cookie/);
  assert.match(wrong.output, /virtual_services\[1\]\.cookie\.secure: needs tls/);
  const dir = tempDir(t);
  const short = join(dir, 'short.secret');
  writeFileSync(short, 'tiny\n');
  const weak = check(t, { virtual_services: [{ ...base, persistence: 'cookie', cookie: { secret_file: short } }] });
  assert.equal(weak.status, 1);
  assert.match(weak.output, /virtual_services\[0\]\.cookie\.secret_file: .* holds no usable secret/);
});

test('on a TLS service the persistence cookie is Secure by default and the response carries HSTS as well', async (t) => {
  const { ca, localhost } = pki(t);
  const api = await backend(t, 'api');
  const port = await freePort();
  await start(t, [{ name: 'secure', listen: `127.0.0.1:${port}`, tls: { cert: localhost.cert, key: localhost.key }, hsts: { max_age: '1d' }, persistence: 'cookie', cookie: { samesite: 'none' }, servers: [{ name: 'api', address: api.address }] }]);
  const reply = await httpsRequest(port, ca.cert);
  assert.equal(reply.status, 200);
  assert.equal(persistenceCookie(reply)?.attributes, '; Path=/; HttpOnly; Secure; SameSite=None');
  assert.equal(reply.headers['strict-transport-security'], 'max-age=86400');
});

// ---- content switching ----

test('routes pick pools by path prefix, host (exact and *.suffix) and method in order; default_pool takes the rest; pools balance on their own', async (t) => {
  const names = ['api1', 'api2', 'oauth1', 'fhir1', 'tenant1', 'write1'];
  const bs = new Map<string, TestBackend>();
  for (const name of names) bs.set(name, await backend(t, name));
  const port = await freePort();
  const adminPort = await freePort();
  const dir = tempDir(t);
  const lb = await start(
    t,
    [
      {
        name: 'ehr',
        listen: `127.0.0.1:${port}`,
        pools: {
          api: { balance: 'roundrobin', servers: [{ name: 'api1', address: bs.get('api1')!.address }, { name: 'api2', address: bs.get('api2')!.address }] },
          oauth: { servers: [{ name: 'oauth1', address: bs.get('oauth1')!.address }] },
          fhir: { servers: [{ name: 'fhir1', address: bs.get('fhir1')!.address }] },
          tenants: { servers: [{ name: 'tenant1', address: bs.get('tenant1')!.address }] },
          writes: { servers: [{ name: 'write1', address: bs.get('write1')!.address }] },
        },
        routes: [
          { path_prefix: '/oauth2/', pool: 'oauth' },
          { host: 'fhir.example.org', pool: 'fhir' },
          { host: '*.tenants.example.org', pool: 'tenants' },
          { method: ['POST', 'PUT'], path_prefix: '/api/', pool: 'writes' },
        ],
        default_pool: 'api',
      },
    ],
    { admin: { listen: `127.0.0.1:${adminPort}`, token_file: join(dir, 'admin.token'), metrics_public: true } },
  );
  const servedBy = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const reply = await request(port, { path, headers, method, ...(method === 'GET' ? {} : { body: '{}', headers: { ...headers, 'content-length': '2' } }) });
    assert.equal(reply.status, 200, `${method} ${path}`);
    return String(reply.headers['x-served-by']);
  };
  assert.equal(await servedBy('/oauth2/token'), 'oauth1', 'path prefix');
  assert.equal(await servedBy('/oauth2/token', { host: 'fhir.example.org' }), 'oauth1', 'the first matching route wins');
  assert.equal(await servedBy('/Patient/1', { host: 'FHIR.Example.org:443' }), 'fhir1', 'host: exact, without port and case');
  assert.equal(await servedBy('/x', { host: 'st-mary.tenants.example.org' }), 'tenant1', 'host suffix');
  assert.equal(await servedBy('/x', { host: 'tenants.example.org' }), 'api1', '*.suffix needs a label before the suffix');
  assert.equal(await servedBy('/api/orders', {}, 'POST'), 'write1', 'method and path together');
  assert.equal(await servedBy('/api/orders', {}, 'PUT'), 'write1');
  const spread = new Set<string>();
  for (let i = 0; i < 6; i++) spread.add(await servedBy('/api/orders'));
  assert.deepEqual([...spread].sort(), ['api1', 'api2'], 'GET /api/ falls to the default pool, round robin over its two servers');
  assert.equal(bs.get('oauth1')!.seen[0].url, '/oauth2/token', 'the target is passed on unchanged');

  // Status groups servers by pool; metrics carry a pool label.
  const status = lb.status()[0];
  assert.deepEqual(status.pools, [
    { name: 'api', balance: 'roundrobin', servers: ['api1', 'api2'] },
    { name: 'oauth', balance: 'leastconn', servers: ['oauth1'] },
    { name: 'fhir', balance: 'leastconn', servers: ['fhir1'] },
    { name: 'tenants', balance: 'leastconn', servers: ['tenant1'] },
    { name: 'writes', balance: 'leastconn', servers: ['write1'] },
  ]);
  assert.equal(status.servers.find((s) => s.name === 'oauth1')!.pool, 'oauth');
  const metrics = (await adminCall(adminPort, 'GET', '/metrics', null)).text;
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  const api = (await adminCall(adminPort, 'GET', '/api/status', token)).json as { virtual_services: { pools: { name: string }[]; servers: { name: string; pool: string }[] }[] };
  assert.deepEqual(api.virtual_services[0].pools.map((p) => p.name), ['api', 'oauth', 'fhir', 'tenants', 'writes'], 'the status API lists the pools');
  assert.equal(api.virtual_services[0].servers.find((s) => s.name === 'write1')!.pool, 'writes');
  assert.match(metrics, /carelb_server_requests_total\{vs="ehr",pool="oauth",server="oauth1"\} 2/);
  assert.match(metrics, /carelb_server_up\{vs="ehr",pool="api",server="api2"\} 1/);
});

test('a request no route matches gets 404 CLB_NO_ROUTE without a default_pool, reaches no server and is counted', async (t) => {
  const oauth = await backend(t, 'oauth1');
  const port = await freePort();
  const lb = await start(t, [{ name: 'ehr', listen: `127.0.0.1:${port}`, pools: { oauth: { servers: [{ name: 'oauth1', address: oauth.address }] } }, routes: [{ path_prefix: '/oauth2/', pool: 'oauth' }] }]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const missed = await request(port, { path: '/Patient/1', agent });
  assert.equal(missed.status, 404);
  assert.equal(missed.headers['x-carelb-error'], 'CLB_NO_ROUTE');
  assert.equal(missed.body.toString(), 'no route of this virtual service matches the request\n');
  const hit = await request(port, { path: '/oauth2/token', agent });
  assert.equal(hit.status, 200);
  assert.equal(oauth.seen.length, 1, 'the unrouted request reached no server');
  assert.equal(lb.status()[0].errors.NO_ROUTE, 1, 'counted');
});

test('a pool’s health check marks its servers down and routes still reach the pool’s other server', async (t) => {
  const healthy = { a: true };
  const a = await backend(t, 'a', (req, res) => (req.url === '/health' ? res.writeHead(healthy.a ? 200 : 500).end() : res.writeHead(200, { 'x-served-by': 'a' }).end('a')));
  const b = await backend(t, 'b', (req, res) => res.writeHead(200, { 'x-served-by': 'b' }).end('b'));
  const port = await freePort();
  const lb = await start(t, [
    {
      name: 'ehr',
      listen: `127.0.0.1:${port}`,
      pools: { checked: { health_check: { interval: '50ms', rise: 1, fall: 1 }, servers: [{ name: 'a', address: a.address }, { name: 'b', address: b.address }] } },
      default_pool: 'checked',
    },
  ]);
  healthy.a = false;
  await eventually(() => lb.status()[0].servers[0].health === 'down', 3000, 'a down by its pool’s check');
  for (let i = 0; i < 6; i++) assert.equal((await request(port)).headers['x-served-by'], 'b');
});

test('cookie persistence with pools: a cookie holds within its pool, and one naming another pool’s server is ignored', async (t) => {
  const bs = await Promise.all(['a1', 'a2', 'o1', 'o2'].map((name) => backend(t, name)));
  const port = await freePort();
  await start(t, [
    {
      name: 'ehr',
      listen: `127.0.0.1:${port}`,
      balance: 'roundrobin',
      persistence: 'cookie',
      pools: { api: { servers: [bs[0], bs[1]].map((b) => ({ name: b.name, address: b.address })) }, oauth: { servers: [bs[2], bs[3]].map((b) => ({ name: b.name, address: b.address })) } },
      routes: [{ path_prefix: '/oauth2/', pool: 'oauth' }],
      default_pool: 'api',
    },
  ]);
  const first = await request(port, { path: '/api/x' });
  const apiCookie = persistenceCookie(first)!;
  const apiHome = String(first.headers['x-served-by']);
  assert.ok(['a1', 'a2'].includes(apiHome));
  for (let i = 0; i < 10; i++) assert.equal((await request(port, { path: '/api/x', headers: { cookie: apiCookie.pair } })).headers['x-served-by'], apiHome);
  // The api cookie on an oauth request: balanced within oauth, and a new cookie for the oauth server.
  const oauth = await request(port, { path: '/oauth2/token', headers: { cookie: apiCookie.pair } });
  assert.ok(['o1', 'o2'].includes(String(oauth.headers['x-served-by'])));
  const oauthCookie = persistenceCookie(oauth)!;
  assert.ok(oauthCookie && oauthCookie.pair !== apiCookie.pair);
  for (let i = 0; i < 6; i++) assert.equal((await request(port, { path: '/oauth2/token', headers: { cookie: oauthCookie.pair } })).headers['x-served-by'], oauth.headers['x-served-by']);
});

test('a pool’s own timeouts apply to its requests only: the same slow server times out in one pool and answers in the other', async (t) => {
  const slow = await backend(t, 'slow', (_req, res) => setTimeout(() => res.writeHead(200, { 'x-served-by': 'slow' }).end('late'), 600));
  const port = await freePort();
  await start(t, [
    {
      name: 'ehr',
      listen: `127.0.0.1:${port}`,
      timeouts: { server: '10s' },
      pools: {
        impatient: { timeouts: { server: '150ms' }, servers: [{ name: 'slow-a', address: slow.address }] },
        patient: { servers: [{ name: 'slow-b', address: slow.address }] },
      },
      routes: [{ path_prefix: '/quick/', pool: 'impatient' }],
      default_pool: 'patient',
    },
  ]);
  const [quick, patient] = await Promise.all([request(port, { path: '/quick/x' }), request(port, { path: '/slow/x' })]);
  assert.equal(quick.status, 504);
  assert.equal(quick.headers['x-carelb-error'], 'CLB_SERVER_TIMEOUT');
  assert.equal(patient.status, 200);
  assert.equal(patient.body.toString(), 'late');
});

test('carelb check refuses routes to unknown pools, servers beside pools, duplicate server names across pools and routes without a matcher', async (t) => {
  const server = (name: string) => ({ name, address: '127.0.0.1:9000' });
  const result = check(t, {
    virtual_services: [
      {
        name: 'ehr',
        listen: '127.0.0.1:8080',
        servers: [server('x')],
        pools: { api: { servers: [server('a')] }, oauth: { servers: [server('a')] } },
        routes: [{ path_prefix: '/oauth2/', pool: 'oath' }, { pool: 'api' }],
        default_pool: 'nope',
      },
      { name: 'plain', listen: '127.0.0.1:8081', servers: [server('y')], routes: [{ path_prefix: '/', pool: 'api' }] },
    ],
  });
  assert.equal(result.status, 1);
  for (const pattern of [
    /virtual_services\[0\]\.servers: give servers either here or in pools, not both/,
    /virtual_services\[0\]\.pools\.oauth\.servers\[0\]\.name: duplicate server name "a"/,
    /virtual_services\[0\]\.routes\[0\]\.pool: no pool named "oath" \(pools: api, oauth\)/,
    /virtual_services\[0\]\.routes\[1\]: needs host, path_prefix or method/,
    /virtual_services\[0\]\.default_pool: no pool named "nope"/,
    /virtual_services\[1\]\.routes: needs pools/,
  ])
    assert.match(result.output, pattern);
});
