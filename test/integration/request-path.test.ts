/**
 * The request path under the interleavings that used to strand or mangle requests (issue 11):
 * retries racing a queued request, exchanges that end while queued, refusals that must keep
 * the connection, chunked request bodies, obs-text in response heads, Connection naming
 * framing fields. Each race is forced: servers hold their answers until the test releases
 * them, and the test waits on carelb's own counters before it takes the next step.
 */
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { startBackend } from '../helpers/backend';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { RawConnection, rawSend } from '../helpers/raw-client';
import { startScriptedBackend, type Script, type ScriptedBackend, type ScriptedRequest } from '../helpers/raw-server';

const GET = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: api.example\r\n${extra}\r\n`;
const OK = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
/** A hang shows as carelb's 504 after this; every answer here comes in milliseconds once released. */
const SERVER_TIMEOUT = '3s';

function connect(t: TestContext, port: number): RawConnection {
  const connection = new RawConnection(port);
  t.after(() => connection.destroy());
  return connection;
}

async function lbWith(t: TestContext, vs: Record<string, unknown>): Promise<InProcess & { port: number }> {
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, timeouts: { server: SERVER_TIMEOUT, queue: '10s' }, ...vs }],
  });
  return { ...lb, port };
}

async function scripted(t: TestContext, script: Script): Promise<ScriptedBackend> {
  const backend = await startScriptedBackend(script);
  t.after(() => backend.close());
  return backend;
}

/** Requests a scripted server holds until the test answers them. */
class Held {
  private readonly held = new Map<string, net.Socket>();
  hold(request: ScriptedRequest, socket: net.Socket): void {
    this.held.set(request.path, socket);
  }
  has(path: string): boolean {
    return this.held.has(path);
  }
  answer(path: string, body = path.slice(1)): void {
    const socket = this.held.get(path);
    assert.ok(socket, `${path} reached the server`);
    this.held.delete(path);
    socket.write(OK(body));
  }
}

function noViolations(lb: InProcess): void {
  assert.deepEqual(
    Object.entries(lb.running.admin.invariants()).filter(([, n]) => n > 0),
    [],
    'no invariant violations',
  );
}

function inflight(lb: InProcess): number {
  return lb.status()[0].servers.reduce((sum, s) => sum + s.active, 0);
}

test('a stale keep-alive retry keeps its place on a full server: a queued request cannot take it and strand the retry', async (t) => {
  const held = new Held();
  let staleSocket: net.Socket | null = null;
  const backend = await scripted(t, (request, socket) => {
    if (request.path === '/warm') return void socket.write(OK('warm'));
    // On the kept-alive connection /stale gets no answer: the test closes that connection
    // (a server closing an idle keep-alive at the moment the request arrives) once /queued waits.
    if (request.path === '/stale' && request.nth > 0) staleSocket = socket;
    else held.hold(request, socket);
  });
  const lb = await lbWith(t, { servers: [{ name: 'one', address: backend.address, max_conns: 1 }] });
  const client = connect(t, lb.port);
  await client.ready;
  client.send(GET('/warm'));
  assert.equal((await client.response())?.status, 200);

  const first = connect(t, lb.port);
  await first.ready;
  first.send(GET('/stale'));
  await eventually(() => staleSocket !== null, 5000, '/stale to reach the server on the kept-alive connection');
  const second = connect(t, lb.port);
  await second.ready;
  second.send(GET('/queued'));
  // carelb counted /queued: it is waiting in the queue (the only server is at max_conns 1).
  await eventually(() => lb.status()[0].counters.requests === 3, 5000, '/queued to be queued');
  assert.equal(backend.requests.length, 2, '/queued has not reached the server');

  // Now the server closes the kept-alive connection without answering: carelb retries /stale on a new one.
  staleSocket!.destroy();
  await eventually(() => backend.requests.filter((r) => r.path === '/stale').length === 2, 5000, 'the retry of /stale to reach the server');
  const retry = backend.requests.filter((r) => r.path === '/stale')[1];
  assert.equal(retry.nth, 0, 'the retry went on a fresh connection');
  assert.ok(!backend.requests.some((r) => r.path === '/queued'), '/queued still waits: the retry kept the place');
  held.answer('/stale');
  const stale = await first.response();
  assert.equal(stale?.status, 200, `the retried request was answered: ${stale?.raw}`);
  await eventually(() => held.has('/queued'), 5000, '/queued to go out once /stale is done');
  held.answer('/queued');
  assert.equal((await second.response())?.status, 200);
  assert.equal(lb.status()[0].servers[0].counters.retries, 1);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
  noViolations(lb);
});

test('a connect retry that finds the other server at max_conns waits in the queue and is answered, not stranded', async (t) => {
  const held = new Held();
  const full = await scripted(t, (request, socket) => held.hold(request, socket));
  const refusing = await freePort(); // nothing listens there: connecting fails at once
  const lb = await lbWith(t, {
    servers: [
      { name: 'full', address: full.address, max_conns: 1 },
      { name: 'refusing', address: `127.0.0.1:${refusing}` },
    ],
  });
  const a = connect(t, lb.port);
  await a.ready;
  a.send(GET('/occupy'));
  await eventually(() => held.has('/occupy'), 5000, '/occupy to take the only place on "full"');
  // Least-connections now picks "refusing" (0 in flight); its connect fails; the retry goes to "full", which is at max_conns.
  const b = connect(t, lb.port);
  await b.ready;
  b.send(GET('/retried'));
  await eventually(() => lb.status()[0].servers[1].counters.connect_failures === 1, 5000, 'the connect to "refusing" to fail');
  assert.ok(!held.has('/retried'));
  held.answer('/occupy');
  assert.equal((await a.response())?.status, 200);
  await eventually(() => held.has('/retried'), 5000, 'the retried request to reach "full" once it has room');
  held.answer('/retried');
  const answer = await b.response();
  assert.equal(answer?.status, 200, `answered, not a 504: ${answer?.raw}`);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
  noViolations(lb);
});

test('a request that ends while queued leaves the queue: it no longer counts against max_queue', async (t) => {
  const held = new Held();
  const backend = await scripted(t, (request, socket) => held.hold(request, socket));
  const lb = await lbWith(t, { max_queue: 1, servers: [{ name: 'one', address: backend.address, max_conns: 1 }] });
  const a = connect(t, lb.port);
  await a.ready;
  a.send(GET('/occupy'));
  await eventually(() => held.has('/occupy'), 5000, '/occupy to reach the server');
  const gone = connect(t, lb.port);
  await gone.ready;
  gone.send(GET('/gone'));
  await eventually(() => lb.status()[0].counters.requests === 2, 5000, '/gone to be queued');
  gone.destroy();
  await eventually(() => lb.status()[0].errors.CLIENT_ABORTED === 1, 5000, 'carelb to see the queued client leave');
  const c = connect(t, lb.port);
  await c.ready;
  c.send(GET('/next'));
  await eventually(() => lb.status()[0].counters.requests === 3, 5000, '/next to be handled');
  assert.equal(lb.status()[0].errors.QUEUE_FULL, 0, 'the queue had room: the ended request had left it');
  held.answer('/occupy');
  await eventually(() => held.has('/next'), 5000, '/next to go out');
  assert.ok(!backend.requests.some((r) => r.path === '/gone'), 'the request of the client that left never reached the server');
  held.answer('/next');
  assert.equal((await c.response())?.status, 200);
  noViolations(lb);
});

test('a response header with latin-1 bytes reaches the client byte for byte (obs-text is not re-encoded)', async (t) => {
  const backend = await scripted(t, (_request, socket) => {
    socket.write(Buffer.from('HTTP/1.1 200 OK\r\nX-Name: caf\xe9 cr\xe8me\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
  });
  const lb = await lbWith(t, { servers: [{ name: 'raw', address: backend.address }] });
  const client = connect(t, lb.port);
  await client.ready;
  client.send(GET('/'));
  const response = await client.response();
  assert.ok(response);
  assert.equal(response.headers['x-name'], 'caf\xe9 cr\xe8me', `received ${JSON.stringify(response.raw)}`);
});

test('Connection cannot strip Host, Content-Length, Transfer-Encoding or X-Forwarded-*', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { servers: [{ name: 'api', address: api.address }] });
  const client = connect(t, lb.port);
  await client.ready;
  client.send('POST /x HTTP/1.1\r\nHost: api.example\r\nConnection: Host, Content-Length, X-Forwarded-For, X-Forwarded-Proto, X-Other\r\nX-Other: dropped\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nhi');
  assert.equal((await client.response())?.status, 200);
  const seen = api.seen[0];
  assert.equal(seen.headers.host, 'api.example');
  assert.equal(seen.headers['content-length'], '2');
  assert.equal(seen.bodyBytes, 2);
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-other'], undefined, 'a field Connection names is still removed');
  assert.equal(seen.headers['x-kept'], 'yes');
});

test('a 429 keeps the connection: the client goes on without reconnecting', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { rate_limit: { requests: 1, per: '1m', burst: 1 }, servers: [{ name: 'api', address: api.address }] });
  const client = connect(t, lb.port);
  await client.ready;
  client.send(GET('/first'));
  assert.equal((await client.response())?.status, 200);
  for (let i = 0; i < 3; i++) {
    client.send(GET(`/limited${i}`));
    const limited = await client.response();
    assert.ok(limited, `refusal ${i} arrived on the same connection`);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['x-carelb-error'], 'CLB_RATE_LIMITED');
    assert.equal(limited.headers.connection, undefined, 'no Connection: close');
  }
  // A refused POST with a body: uWS discards the body, the next request is read correctly.
  client.send('POST /limited HTTP/1.1\r\nHost: api.example\r\nContent-Length: 11\r\n\r\nhello world');
  assert.equal((await client.response())?.status, 429);
  client.send(GET('/after-body'));
  assert.equal((await client.response())?.status, 429, 'the body was not taken for a request');
  assert.equal(client.closed, false);
  assert.equal(api.seen.length, 1, 'no refused request reached the server');
});

test('a 403 keeps the connection when the request was read completely, and closes it after a chunked body', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { deny: ['127.0.0.1/32'], servers: [{ name: 'api', address: api.address }] });
  const client = connect(t, lb.port);
  await client.ready;
  for (const request of [GET('/a'), 'POST /b HTTP/1.1\r\nHost: api.example\r\nContent-Length: 3\r\n\r\nabc', GET('/c')]) {
    client.send(request);
    const refused = await client.response();
    assert.ok(refused, 'answered on the same connection');
    assert.equal(refused.status, 403);
  }
  assert.equal(client.closed, false);
  const chunked = await rawSend(lb.port, 'POST /d HTTP/1.1\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', 3000);
  assert.equal(chunked.status, 403);
  assert.equal(chunked.closed, true, 'a refused chunked request closes: uWS may have mis-read where its body ends');
  assert.equal(api.seen.length, 0);
});

const CHUNKED_POST = 'POST /upload HTTP/1.1\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';

test('chunked_requests: refuse answers 411 CLB_LENGTH_REQUIRED and closes; nothing reaches the server', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const lb = await lbWith(t, { chunked_requests: 'refuse', servers: [{ name: 'api', address: api.address }] });
  const outcome = await rawSend(lb.port, CHUNKED_POST, 3000);
  assert.equal(outcome.status, 411, outcome.text);
  assert.match(outcome.text, /x-carelb-error: CLB_LENGTH_REQUIRED/i);
  assert.equal(outcome.closed, true);
  assert.equal(api.seen.length, 0);
  assert.equal(lb.status()[0].errors.LENGTH_REQUIRED, 1);
  // A body with a Content-Length is still welcome.
  const sized = await rawSend(lb.port, 'POST /upload HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello', 3000);
  assert.equal(sized.status, 200);
});

test('chunked_requests defaults to refuse behind trusted proxies and to allow otherwise', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const behind = await lbWith(t, { trusted_proxies: ['10.0.0.0/8'], servers: [{ name: 'api', address: api.address }] });
  assert.equal(behind.config.virtual_services[0].chunked_requests, 'refuse');
  assert.equal((await rawSend(behind.port, CHUNKED_POST, 3000)).status, 411);
  const edge = await lbWith(t, { servers: [{ name: 'api', address: api.address }] });
  assert.equal(edge.config.virtual_services[0].chunked_requests, 'allow');
  const allowed = await rawSend(edge.port, CHUNKED_POST.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'), 3000);
  assert.equal(allowed.status, 200);
  assert.equal(api.seen.length, 1);
  assert.equal(api.seen[0].bodyBytes, 5);
  const explicit = await lbWith(t, { trusted_proxies: ['10.0.0.0/8'], chunked_requests: 'allow', servers: [{ name: 'api', address: api.address }] });
  assert.equal((await rawSend(explicit.port, CHUNKED_POST.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'), 3000)).status, 200);
});

test('a chunked response that ends before the request body was read announces the close in its head, and its body stays intact', async (t) => {
  const { startRawBackend } = await import('../helpers/backend');
  // Answers as soon as the head is in, without waiting for the body (a server refusing an upload early).
  const raw = await startRawBackend((socket) => {
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      if (seen.includes('\r\n\r\n') && !socket.destroyed) {
        socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n0\r\n\r\n');
        seen = '';
      }
    });
  });
  t.after(() => raw.close());
  const lb = await lbWith(t, { servers: [{ name: 'raw', address: raw.address }] });
  const client = connect(t, lb.port);
  await client.ready;
  client.send('POST /upload HTTP/1.1\r\nHost: api.example\r\nContent-Length: 100000\r\n\r\nonly a little');
  const answer = await client.response();
  assert.ok(answer, `a complete response, got ${JSON.stringify(client.pending)}`);
  assert.equal(answer.status, 200);
  assert.equal(answer.body.toString(), 'early');
  assert.equal(answer.headers.connection, 'close', 'the rest of the body would be read as the next request: the client must not reuse the connection');
  noViolations(lb);
});

/**
 * A POST whose server drops the connection after the head: carelb answers 502 while the
 * client is still sending its 8 MiB body. `connectionClose`: the client sends
 * `Connection: close` (node's `agent: false`) instead of keeping the connection alive.
 */
async function uploadAnsweredEarly(t: TestContext, connectionClose: boolean): Promise<void> {
  const { startRawBackend } = await import('../helpers/backend');
  const http = await import('node:http');
  let gotHead = false;
  // The server drops the connection as soon as the request head is in: carelb answers 502
  // CLB_SERVER_CLOSED (a POST is never replayed) while the client is still sending its body.
  const raw = await startRawBackend((socket) => {
    socket.on('data', () => {
      gotHead = true;
      socket.destroy();
    });
  });
  t.after(() => raw.close());
  const lb = await lbWith(t, { servers: [{ name: 'raw', address: raw.address }] });
  const size = 8 * 1024 * 1024;
  const outcome = await new Promise<{ status?: number; code?: string; connection?: string; error?: string }>((resolve) => {
    const agent = connectionClose ? false : new http.Agent({ keepAlive: true });
    if (agent) t.after(() => agent.destroy());
    const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'POST', path: '/upload', agent, headers: { 'content-length': size } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, code: res.headers['x-carelb-error'] as string, connection: res.headers.connection }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    req.write(Buffer.alloc(64 * 1024, 'a'));
    // Once carelb has answered, the client goes on sending the rest, as an upload does: a
    // connection closed under it now answers its writes with a reset (EPIPE / ECONNRESET).
    void eventually(() => gotHead && lb.status()[0].errors.SERVER_CLOSED === 1, 5000, 'carelb to answer the failed upload').then(() => {
      const piece = Buffer.alloc(256 * 1024, 'a');
      let sent = 64 * 1024;
      const pump = (): void => {
        while (sent < size) {
          sent += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
  });
  assert.deepEqual(outcome, { status: 502, code: 'CLB_SERVER_CLOSED', connection: 'close' }, 'the client got the 502 and was told to close, not reset while uploading');
  noViolations(lb);
}

test('an error answered while the client is still uploading reaches it: the connection is not reset under it (lingering close)', (t) => uploadAnsweredEarly(t, false));

test(
  'the same with Connection: close from the client',
  { todo: 'uWS v20.43 shuts down and closes a connection right after the response when the request carried Connection: close, even while the request body is still arriving ("to hinder clients from keeping to send their huge data"): the uploading client may get EPIPE before it reads the 502 (seen in 2 to 4 of 25 runs)' },
  (t) => uploadAnsweredEarly(t, true),
);
