/**
 * Server responses (issue 6): a raw server sends invalid status lines, conflicting framing,
 * bad chunk encoding, oversized heads, premature closes, bytes nobody asked for and a 101
 * without an upgrade. The client must get a 502 (or, when the response had already started,
 * see its connection closed), the server connection must not be reused (the next request
 * arrives on a new server connection) and the next request is answered correctly: on the
 * same client connection after a 502, on a new one after a cut.
 *
 * Each scenario first sends a good request so carelb has a warm, idle server connection: the
 * bad response then arrives on a connection carelb would otherwise reuse.
 */
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { RawConnection, type RawResponse } from '../helpers/raw-client';
import { startScriptedBackend, type ScriptedBackend } from '../helpers/raw-server';

const OK = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';
const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: api.example\r\n\r\n`;
/** Longer than any answer should take; a hang shows as carelb's 504 after `timeouts.server`. */
const SERVER_TIMEOUT = '3s';

type Expect =
  /** carelb answers 502 with this error code, the client connection stays open. */
  | { kind: '502'; code: 'CLB_BAD_RESPONSE' | 'CLB_SERVER_CLOSED' }
  /**
   * The response had started: the client connection is closed before the response is
   * complete. `seen`: the client had received its start (else it may have received nothing:
   * carelb's writes from the read that failed are dropped with the connection).
   */
  | { kind: 'cut'; seen: boolean }
  /** The response is fine for the client (`status`, `body`); `reused`: may carelb reuse the server connection. */
  | { kind: 'ok'; status: number; body: string; reused: boolean };

interface Scenario {
  name: string;
  /** What the server does when carelb's request for /bad arrives. */
  respond: (socket: net.Socket) => void;
  /** Written on the same server connection once the client has received the start of the response. */
  afterHead?: (socket: net.Socket) => void;
  expect: Expect;
}

interface Stage {
  lb: InProcess & { port: number };
  backend: ScriptedBackend;
  /** The server socket that received /bad. */
  badSocket(): net.Socket;
}

async function stage(t: TestContext, respond: (socket: net.Socket) => void): Promise<Stage> {
  let bad: net.Socket | null = null;
  const backend = await startScriptedBackend((request, socket) => {
    if (request.path === '/close-after') return void socket.end(OK);
    if (request.path !== '/bad') return void socket.write(OK);
    bad = socket;
    respond(socket);
  });
  t.after(() => backend.close());
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'raw', address: backend.address }], timeouts: { server: SERVER_TIMEOUT } }],
  });
  return { lb: { ...lb, port }, backend, badSocket: () => bad! };
}

function inflight(lb: InProcess): number {
  return lb.status()[0].servers.reduce((sum, server) => sum + server.active, 0);
}

function connect(t: TestContext, port: number): RawConnection {
  const connection = new RawConnection(port);
  t.after(() => connection.destroy());
  return connection;
}

async function exchange(connection: RawConnection, path: string): Promise<RawResponse | null> {
  connection.send(GET(path));
  return connection.response(10_000);
}

function assertGood(response: RawResponse | null, what: string): void {
  assert.ok(response, `${what}: the connection closed instead of answering`);
  assert.equal(response.status, 200, `${what}: ${response.raw}`);
  assert.equal(response.body.toString(), 'ok', what);
}

/** Runs one scenario end to end on a fresh carelb and server. */
async function play(t: TestContext, scenario: Scenario): Promise<void> {
  const { lb, backend, badSocket } = await stage(t, scenario.respond);
  const client = connect(t, lb.port);
  await client.ready;
  assertGood(await exchange(client, '/good'), 'warm-up request');
  client.send(GET('/bad'));
  if (scenario.afterHead) {
    // uWS sends the status line at once but holds the fields of a chunked response until its first body bytes.
    await eventually(() => client.pending.length > 0 || client.closed, 5000, 'the response to reach the client');
    scenario.afterHead(badSocket());
  }
  const bad = await client.response(10_000);
  const badRequest = backend.requests.find((r) => r.path === '/bad');
  assert.ok(badRequest, 'the request reached the server');
  assert.equal(badRequest.connection, 0, 'the bad response came on the warm, reused server connection');

  let next = client;
  const expect = scenario.expect;
  if (expect.kind === '502') {
    assert.ok(bad, `expected a 502, but the client connection was closed (received ${JSON.stringify(client.pending.slice(0, 120))})`);
    assert.equal(bad.status, 502, bad.raw);
    assert.equal(bad.headers['x-carelb-error'], expect.code, bad.raw);
    assert.equal(client.closed, false, 'the client connection stays open after a 502');
  } else if (expect.kind === 'cut') {
    assert.equal(bad, null, `expected the client connection to be cut, got a complete response: ${bad?.raw}`);
    if (expect.seen) assert.match(client.pending, /^HTTP\/1\.1 200 /, 'the client had the response start before the cut');
    else assert.match(client.pending, /^(HTTP\/1\.1 200 |$)/, 'a cut response, if anything arrived');
    next = connect(t, lb.port);
  } else {
    assert.ok(bad, 'the client connection was closed');
    assert.equal(bad.status, expect.status, bad.raw);
    assert.equal(bad.body.toString(), expect.body);
  }

  // The server connection that carried the bad response is closed, not pooled...
  if (!(expect.kind === 'ok' && expect.reused)) await backend.whenClosed(badRequest.connection);
  // ...so the next request goes out on a new server connection and is answered correctly.
  assertGood(await exchange(next, '/good'), 'the next request');
  const last = backend.requests[backend.requests.length - 1];
  assert.equal(last.path, '/good');
  if (expect.kind === 'ok' && expect.reused) {
    assert.equal(last.connection, badRequest.connection, 'a valid response leaves the connection reusable');
  } else {
    assert.notEqual(last.connection, badRequest.connection, 'the bad server connection was not reused');
    assert.equal(backend.received.length, 2, 'exactly one new server connection');
  }
  assert.deepEqual(backend.garbage, [], 'carelb sent only well-formed requests');
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
  if (expect.kind === '502') {
    const errors = lb.status()[0].errors;
    assert.equal(expect.code === 'CLB_BAD_RESPONSE' ? errors.BAD_RESPONSE : errors.SERVER_CLOSED, 1);
  }
}

/** Writes `bytes` (latin1) and keeps the connection open. */
const send = (bytes: string) => (socket: net.Socket) => void socket.write(Buffer.from(bytes, 'latin1'));
/** Writes `bytes` and closes (FIN). */
const sendAndClose = (bytes: string) => (socket: net.Socket) => void socket.end(Buffer.from(bytes, 'latin1'));
const BAD = { kind: '502', code: 'CLB_BAD_RESPONSE' } as const;
const CLOSED = { kind: '502', code: 'CLB_SERVER_CLOSED' } as const;
/** Cut, where the bad bytes came in the same read as the head. */
const CUT = { kind: 'cut', seen: false } as const;
/** Cut after the client had received the start of the response. */
const CUT_SEEN = { kind: 'cut', seen: true } as const;

async function playAll(t: TestContext, scenarios: Scenario[]): Promise<void> {
  for (const scenario of scenarios) await t.test(scenario.name, (st) => play(st, scenario));
}

test('an invalid status line gives 502 and the server connection is dropped', async (t) => {
  await playAll(t, [
    { name: 'no status code ("HTTP/1.1 OK")', respond: send('HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'HTTP/2 version', respond: send('HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'HTTP/1.2 version', respond: send('HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'a four-digit status (2000)', respond: send('HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'status 600', respond: send('HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'not HTTP at all', respond: send('SSH-2.0-OpenSSH_9.2\r\n\r\n'), expect: BAD },
    { name: 'bare LF line ends', respond: send('HTTP/1.1 200 OK\nContent-Length: 2\n\nok'), expect: BAD },
    { name: 'a TLS alert (a TLS server on a plain-HTTP address)', respond: send('\x15\x03\x03\x00\x02\x02\x46'), expect: BAD },
    { name: 'NUL in the reason phrase', respond: send('HTTP/1.1 200 O\0K\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
  ]);
});

test('malformed header fields in a response give 502', async (t) => {
  await playAll(t, [
    { name: 'obsolete line folding', respond: send('HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'a space before the colon', respond: send('HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'), expect: BAD },
    { name: 'NUL in a value', respond: send('HTTP/1.1 200 OK\r\nX-A: o\0ne\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'a bare CR in a value', respond: send('HTTP/1.1 200 OK\r\nX-A: o\rne\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'a bare LF ending a field line', respond: send('HTTP/1.1 200 OK\r\nX-A: one\nContent-Length: 2\r\n\r\nok'), expect: BAD },
    { name: 'a line without a colon', respond: send('HTTP/1.1 200 OK\r\nX-A one\r\nContent-Length: 2\r\n\r\nok'), expect: BAD },
  ]);
});

test('conflicting or invalid response framing gives 502', async (t) => {
  await playAll(t, [
    { name: 'Content-Length and Transfer-Encoding together', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'), expect: BAD },
    { name: 'two differing Content-Length fields', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!'), expect: BAD },
    { name: 'a Content-Length list (2, 3)', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!'), expect: BAD },
    { name: 'Content-Length: -2', respond: send('HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok'), expect: BAD },
    { name: 'Content-Length: 0x2', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok'), expect: BAD },
    { name: 'an empty Content-Length', respond: send('HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok'), expect: BAD },
  ]);
});

test('bad chunk encoding: 502 while nothing of the response was sent, a cut once it had started', async (t) => {
  const head = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
  // Bad before the first body byte: carelb holds the head until the end of the read, so a
  // server that breaks in the same read as its head gets the client a clean 502 (as HAProxy does).
  const badFirstChunk: [string, string][] = [
    ['a chunk size that is not hex', 'zz\r\nok\r\n0\r\n\r\n'],
    ['a chunk-size line ended by a bare LF', '2\nok\r\n0\r\n\r\n'],
    ['a chunk size of 16 hex digits', 'ffffffffffffffff\r\nok\r\n0\r\n\r\n'],
    ['NUL in a chunk extension', '2;a\0\r\nok\r\n0\r\n\r\n'],
  ];
  // Bad after body bytes: in the same read as the head the body is still held (streamed bytes
  // leave after the read's cork), so the client gets a 502; once bytes went out, only a cut can
  // tell it the response is broken.
  const badAfterData: [string, string] = ['chunk data longer than its size', '1\r\nok\r\n0\r\n\r\n'];
  await playAll(t, [
    ...[...badFirstChunk, badAfterData].map(([name, body]): Scenario => ({ name: `${name}, after the response reached the client`, respond: send(head), afterHead: send(body), expect: CUT_SEEN })),
    ...badFirstChunk.map(([name, body]): Scenario => ({ name: `${name}, in the same read as the head`, respond: send(head + body), expect: BAD })),
    { name: `${badAfterData[0]}, in the same read as the head`, respond: send(head + badAfterData[1]), expect: BAD },
  ]);
});

test('a response head over 64 KiB gives 502', async (t) => {
  await playAll(t, [
    { name: 'one 70 KB header value', respond: send(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\nContent-Length: 2\r\n\r\nok`), expect: BAD },
    {
      name: '2000 header lines (≈ 80 KB)',
      respond: send(`HTTP/1.1 200 OK\r\n${Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'v'.repeat(30)}\r\n`).join('')}Content-Length: 2\r\n\r\nok`),
      expect: BAD,
    },
    {
      name: 'a head that never ends (70 KB, no blank line, connection kept open)',
      respond: (socket) => {
        socket.write('HTTP/1.1 200 OK\r\n');
        for (let i = 0; i < 70; i++) socket.write(`X-H${i}: ${'v'.repeat(1000)}\r\n`);
      },
      expect: BAD,
    },
  ]);
});

test('a server that closes before the response is complete: 502, or a cut once the response started', async (t) => {
  await playAll(t, [
    { name: 'closed mid status line', respond: sendAndClose('HTTP/1.1 20'), expect: CLOSED },
    { name: 'closed mid headers', respond: sendAndClose('HTTP/1.1 200 OK\r\nContent-Type: text/pl'), expect: CLOSED },
    { name: 'closed after the head, before the blank line', respond: sendAndClose('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n'), expect: CLOSED },
    { name: 'closed mid body (Content-Length 10, 5 sent)', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello'), afterHead: (s) => s.end(), expect: CUT_SEEN },
    { name: 'closed mid chunk', respond: send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello'), afterHead: (s) => s.end(), expect: CUT_SEEN },
    { name: 'closed between chunks (no last chunk)', respond: send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n'), afterHead: (s) => s.end(), expect: CUT_SEEN },
    { name: 'reset mid body', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello'), afterHead: (s) => s.resetAndDestroy(), expect: CUT_SEEN },
    { name: 'closed mid body in the same read as the head', respond: sendAndClose('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello'), expect: CUT },
  ]);
});

test('a 101 without a requested upgrade gives 502', async (t) => {
  await playAll(t, [
    { name: '101 without Upgrade', respond: send('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n'), expect: BAD },
    { name: '101 with Upgrade: websocket (never asked for)', respond: send('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi'), expect: BAD },
  ]);
});

test('response bytes beyond the response: the client gets its answer, the server connection is dropped', async (t) => {
  await playAll(t, [
    { name: 'a second response in the same write', respond: send(`${OK}${OK}`), expect: { kind: 'ok', status: 200, body: 'ok', reused: false } },
    { name: 'garbage right after the body', respond: send(`${OK}garbage`), expect: { kind: 'ok', status: 200, body: 'ok', reused: false } },
    { name: 'a body longer than its Content-Length', respond: send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokay'), expect: { kind: 'ok', status: 200, body: 'ok', reused: false } },
    // Controls: interim responses and a valid response keep the connection reusable.
    { name: 'control: 100 Continue then 200 is forwarded and the connection reused', respond: send(`HTTP/1.1 100 Continue\r\n\r\n${OK}`), expect: { kind: 'ok', status: 200, body: 'ok', reused: true } },
    { name: 'control: a valid chunked response is forwarded and the connection reused', respond: send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'), expect: { kind: 'ok', status: 200, body: 'ok', reused: true } },
  ]);
});

test('bytes a server sends with no request pending close that connection; the next request goes to a new one', async (t) => {
  const { lb, backend } = await stage(t, send(OK));
  const client = connect(t, lb.port);
  await client.ready;
  assertGood(await exchange(client, '/good'), 'first request');
  assert.equal(backend.sockets.size, 1);
  // The connection now sits idle in carelb's pool; the server speaks unasked.
  const [idle] = backend.sockets;
  idle.write(OK);
  await backend.whenClosed(0);
  assertGood(await exchange(client, '/good'), 'the next request on the same client connection');
  assert.equal(backend.requests.length, 2);
  assert.equal(backend.requests[1].connection, 1, 'the next request arrived on a new server connection');
  assert.equal(backend.received.length, 2);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
});

test('a late second response (after carelb finished the first) closes that connection without reaching any client', async (t) => {
  const { lb, backend } = await stage(t, (socket) => {
    socket.write(OK);
    setImmediate(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstale!'));
  });
  const client = connect(t, lb.port);
  await client.ready;
  assertGood(await exchange(client, '/bad'), 'the first response');
  await backend.whenClosed(0);
  for (let i = 0; i < 3; i++) assertGood(await exchange(client, '/good'), `request ${i + 2} (never the stale response)`);
  assert.equal(backend.requests.filter((r) => r.connection === 0).length, 1);
  assert.equal(client.pending, '', 'nothing extra reached the client');
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
});

test('a server that closes its idle keep-alive connection: the next request, a POST that cannot be retried, goes to a new connection', async (t) => {
  // The server's FIN arrives with its response; the POST comes a client round trip later. 20
  // rounds, because handing out the half-closed connection was a race (lost about 1 in 4).
  const { lb, backend } = await stage(t, send(OK));
  backend.requests.length = 0;
  for (let round = 0; round < 20; round++) {
    const client = connect(t, lb.port);
    await client.ready;
    client.send(`GET /close-after HTTP/1.1\r\nHost: api.example\r\n\r\n`);
    assertGood(await client.response(5000), `round ${round}: first request`);
    client.send('POST /good HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\n\r\nhello');
    assertGood(await client.response(5000), `round ${round}: the POST after the server closed`);
    client.destroy();
  }
  assert.equal(lb.status()[0].errors.SERVER_CLOSED, 0);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
});

test('a 502 to a HEAD request has no body (RFC 9110 §9.3.2), so the next response on the connection is read correctly', async (t) => {
  const { lb } = await stage(t, send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n'));
  const client = connect(t, lb.port);
  await client.ready;
  client.send('HEAD /bad HTTP/1.1\r\nHost: api.example\r\n\r\n');
  const head = await client.response(5000, true);
  assert.ok(head);
  assert.equal(head.status, 502);
  assert.equal(head.headers['x-carelb-error'], 'CLB_BAD_RESPONSE');
  client.send(GET('/good'));
  // Body bytes after the HEAD answer would be read as the start of this response.
  assertGood(await client.response(5000), 'the request after the HEAD');
});

test('an upload that fails before reaching a server (40 KB body, server unreachable) leaves the client connection usable', async (t) => {
  // The body is written to a connection still connecting, which holds the client back
  // (backpressure); when the connect fails, the client must be let go again.
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'gone', address: `127.0.0.1:${await freePort()}` }] }],
  });
  const client = connect(t, port);
  await client.ready;
  const body = 'u'.repeat(40_000);
  client.send(`POST /upload HTTP/1.1\r\nHost: api.example\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const failed = await client.response(5000);
  assert.ok(failed);
  assert.equal(failed.status, 502);
  assert.equal(failed.headers['x-carelb-error'], 'CLB_CONNECT_FAILED');
  if (/close/i.test(failed.headers.connection ?? '')) return; // closing is an acceptable answer too
  client.send(GET('/next'));
  const next = await client.response(3000).catch((error: Error) => error);
  assert.ok(!(next instanceof Error), `the next request on the connection was never answered (${next instanceof Error ? next.message : ''})`);
  assert.ok(next === null || next.status === 502, `unexpected answer ${next?.raw}`);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
});
