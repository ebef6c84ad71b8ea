/**
 * Backpressure on both sides, forced deterministically (issue 11, point 1): a client with a
 * receive window of a few KB (test/helpers/tiny-window-client.py) makes carelb's write to it
 * fail at the one read the test chooses; raw servers write whole responses in a single write
 * so that the read which completes the response is the read whose write backs up.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { parseResponse, RawConnection } from '../helpers/raw-client';
import { startScriptedBackend, type Script, type ScriptedBackend } from '../helpers/raw-server';
import { TinyWindowClient, TinyWindowServer } from '../helpers/tiny-window';

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: api.example\r\n\r\n`;
/** A hang shows as carelb's own 504 after this; every answer here should take milliseconds. */
const SERVER_TIMEOUT = '3s';

async function stage(t: TestContext, script: Script): Promise<{ lb: InProcess; port: number; backend: ScriptedBackend }> {
  const backend = await startScriptedBackend(script);
  t.after(() => backend.close());
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'raw', address: backend.address }], timeouts: { server: SERVER_TIMEOUT } }],
  });
  return { lb, port, backend };
}

function connect(t: TestContext, port: number): RawConnection {
  const connection = new RawConnection(port);
  t.after(() => connection.destroy());
  return connection;
}

function invariants(lb: InProcess): Record<string, number> {
  return lb.running.admin.invariants();
}

/** A response whose head and whole body leave the server in one write (one read for carelb). */
function oneWrite(status: string, headers: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`HTTP/1.1 ${status}\r\n${headers}\r\n`, 'latin1'), body]);
}

for (const framing of ['content-length', 'chunked'] as const) {
  test(`a ${framing} response completed by the read whose write to the client backs up leaves its server connection flowing: the next request on it is answered at once`, async (t) => {
    const body = Buffer.alloc(48 * 1024, 'b');
    const { lb, port, backend } = await stage(t, (request, socket) => {
      if (request.path === '/big') {
        if (framing === 'content-length') socket.write(oneWrite('200 OK', `Content-Length: ${body.length}\r\n`, body));
        else socket.write(Buffer.concat([oneWrite('200 OK', 'Transfer-Encoding: chunked\r\n', Buffer.from(`${body.length.toString(16)}\r\n`)), body, Buffer.from('\r\n0\r\n\r\n')]));
      } else {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext');
      }
    });
    const slow = new TinyWindowClient(t, port);
    await slow.connected();
    await slow.send(GET('/big'));
    // carelb has read the whole response once it counted its body bytes out.
    await eventually(() => lb.status()[0].counters.bytes_out >= body.length, 5000, 'carelb to read the whole response');
    assert.equal(backend.requests.length, 1);

    // Another client: LIFO reuse hands it the server connection that carried /big.
    const next = connect(t, port);
    await next.ready;
    next.send(GET('/next'));
    const answer = await next.response(5000);
    assert.ok(answer, 'a response to /next');
    assert.equal(answer.status, 200, `/next answered ${answer.status} ${answer.headers['x-carelb-error'] ?? ''}`);
    assert.equal(answer.body.toString(), 'next');
    assert.equal(backend.requests[1].connection, backend.requests[0].connection, 'the pooled connection was reused');

    // The slow client still gets all of /big, intact: read until it parses as one complete response.
    let whole: ReturnType<typeof parseResponse> = null;
    for (let want = body.length; whole === null && want < body.length + 64 * 1024; want += 512) {
      const { closed } = await slow.readUntil(want);
      whole = parseResponse(Buffer.from(await slow.received(), 'latin1'));
      assert.ok(whole !== null || !closed, 'the connection closed before the whole response');
    }
    assert.ok(whole, 'a complete response');
    assert.equal(whole.response.status, 200);
    assert.deepEqual(whole.response.body, body);
    slow.close();
    assert.deepEqual(
      Object.entries(invariants(lb)).filter(([, n]) => n > 0),
      [],
    );
  });
}

test('an upload faster than its server is held back and resumed: every byte arrives in order and the answer comes', async (t) => {
  const server = new TinyWindowServer(t);
  const serverPort = await server.listening();
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'slow', address: `127.0.0.1:${serverPort}` }], timeouts: { server: SERVER_TIMEOUT } }],
  });
  const size = 4 * 1024 * 1024;
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31) & 0xff;
  const client = connect(t, port);
  await client.ready;
  client.send(Buffer.concat([Buffer.from(`POST /upload HTTP/1.1\r\nHost: api.example\r\nContent-Length: ${size}\r\n\r\n`, 'latin1'), body]));
  await server.accepted();
  // The server reads nothing: carelb must stop reading the client well short of the whole body.
  let last = -1;
  await eventually(
    () => {
      const now = lb.status()[0].counters.bytes_in;
      const stable = now === last && now > 0;
      last = now;
      return stable;
    },
    5000,
    'carelb to stop reading the client',
  );
  assert.ok(last < size / 2, `carelb held the client back after ${last} of ${size} bytes`);
  // The server reads it all: carelb resumes the client, and every byte arrives, in order.
  assert.equal(await server.drain(size), size);
  const received = await server.body();
  assert.equal(received.length, size);
  assert.equal(received.sha256, createHash('sha256').update(body).digest('hex'));
  await server.answer('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone');
  const answer = await client.response();
  assert.equal(answer?.status, 200);
  assert.equal(answer?.body.toString(), 'done');
  assert.deepEqual(
    Object.entries(invariants(lb)).filter(([, n]) => n > 0),
    [],
  );
  server.close();
});
