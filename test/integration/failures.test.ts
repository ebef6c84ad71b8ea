/**
 * What carelb does when servers fail or are slow: retries, 502/503/504 with stable error
 * codes, and balancing away from a slow server. Real sockets, carelb in-process.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { startBackend, startRawBackend, type Handler, type TestBackend } from '../helpers/backend';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { request, requestMany } from '../helpers/client';
import { gate } from '../helpers/gate';
import { freePort } from '../helpers/ports';

interface ServerSpec {
  address: string;
  weight?: number;
}

async function proxyTo(t: TestContext, servers: ServerSpec[], extra: Record<string, unknown> = {}, workers = 1): Promise<InProcess & { port: number }> {
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers,
    pin_workers: false,
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${port}`,
        servers: servers.map((s, i) => ({ name: `s${i + 1}`, address: s.address, weight: s.weight ?? 1 })),
        ...extra,
      },
    ],
  });
  return { ...lb, port };
}

async function backend(t: TestContext, name: string, handler?: Handler, keepAliveTimeout?: number): Promise<TestBackend> {
  const b = await startBackend(name, handler, { keepAliveTimeout });
  t.after(() => b.close());
  return b;
}

/** An address where nothing listens (a port bound and released). */
async function deadAddress(): Promise<string> {
  return `127.0.0.1:${await freePort()}`;
}

function inflight(lb: InProcess): number {
  return lb.status()[0].servers.reduce((s, server) => s + server.active, 0);
}

test('no server available gives 503 with its error code', async (t) => {
  const dead = await deadAddress();
  const lb = await proxyTo(t, [{ address: dead, weight: 0 }]);
  const reply = await request(lb.port);
  assert.equal(reply.status, 503);
  assert.equal(reply.headers['x-carelb-error'], 'CLB_NO_SERVER');
  assert.match(reply.body.toString(), /no server/);
  assert.equal(lb.status()[0].errors.NO_SERVER, 1);
});

test('a refused connection is retried once on another server', async (t) => {
  const good = await backend(t, 'good');
  const dead = await deadAddress();
  // Round-robin puts the first request on the dead server.
  const lb = await proxyTo(t, [{ address: dead }, { address: good.address }], { balance: 'roundrobin' });
  for (let i = 0; i < 4; i++) {
    const reply = await request(lb.port, { method: 'POST', body: 'x', headers: { 'content-length': 1 } });
    assert.equal(reply.status, 200);
    assert.equal(JSON.parse(reply.body.toString()).server, 'good');
  }
  const [deadServer] = lb.status()[0].servers;
  assert.ok(deadServer.counters.connect_failures >= 1);
  assert.equal(deadServer.counters.retries, deadServer.counters.connect_failures);
  assert.equal(inflight(lb), 0);
});

test('when every server refuses, the client gets 502 CLB_CONNECT_FAILED', async (t) => {
  const lb = await proxyTo(t, [{ address: await deadAddress() }, { address: await deadAddress() }]);
  const reply = await request(lb.port);
  assert.equal(reply.status, 502);
  assert.equal(reply.headers['x-carelb-error'], 'CLB_CONNECT_FAILED');
  assert.equal(inflight(lb), 0);
});

test('a server that does not answer within timeouts.server gives 504 and its connection is dropped', async (t) => {
  let serverSawClose = false;
  const hang = await backend(t, 'hang', (req) => req.socket.on('close', () => (serverSawClose = true)));
  const lb = await proxyTo(t, [{ address: hang.address }], { timeouts: { server: '300ms' } });
  const reply = await request(lb.port);
  assert.equal(reply.status, 504);
  assert.equal(reply.headers['x-carelb-error'], 'CLB_SERVER_TIMEOUT');
  await eventually(() => serverSawClose, 5000, 'carelb to close the timed-out server connection');
  assert.equal(inflight(lb), 0);
});

test('a connect that hangs gives 504 CLB_CONNECT_TIMEOUT', async (t) => {
  // A listener with a full backlog and no accept: SYNs are not answered.
  const blackhole = net.createServer();
  await new Promise<void>((resolve) => blackhole.listen({ port: 0, host: '127.0.0.1', backlog: 0 }, resolve));
  t.after(() => blackhole.close());
  blackhole.on('connection', () => {});
  const address = `127.0.0.1:${(blackhole.address() as net.AddressInfo).port}`;
  const lb = await proxyTo(t, [{ address }], { timeouts: { connect: '300ms' } });
  // Fill the backlog so later connects hang.
  const fillers = Array.from({ length: 8 }, () => net.connect((blackhole.address() as net.AddressInfo).port, '127.0.0.1').on('error', () => {}));
  t.after(() => fillers.forEach((s) => s.destroy()));
  blackhole.close(); // stop accepting; the listening socket stays open until fillers go
  const reply = await request(lb.port);
  assert.ok(reply.status === 504 || reply.status === 502, `status ${reply.status}`);
  assert.match(String(reply.headers['x-carelb-error']), /CLB_CONNECT_(TIMEOUT|FAILED)/);
  assert.equal(inflight(lb), 0);
});

test('a server that closes without answering gives 502 CLB_SERVER_CLOSED', async (t) => {
  const raw = await startRawBackend((socket) => socket.once('data', () => socket.destroy()));
  t.after(() => raw.close());
  const lb = await proxyTo(t, [{ address: raw.address }]);
  const reply = await request(lb.port, { method: 'POST', body: 'a', headers: { 'content-length': 1 } });
  assert.equal(reply.status, 502);
  assert.equal(reply.headers['x-carelb-error'], 'CLB_SERVER_CLOSED');
});

test('an invalid server response gives 502 CLB_BAD_RESPONSE and the client connection stays in sync', async (t) => {
  let n = 0;
  const raw = await startRawBackend((socket) =>
    socket.on('data', () => {
      n++;
      socket.write(n === 1 ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok' : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    }),
  );
  t.after(() => raw.close());
  const lb = await proxyTo(t, [{ address: raw.address }]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const bad = await request(lb.port, { agent });
  assert.equal(bad.status, 502);
  assert.equal(bad.headers['x-carelb-error'], 'CLB_BAD_RESPONSE');
  const good = await request(lb.port, { agent });
  assert.equal(good.status, 200);
  assert.equal(good.body.toString(), 'ok');
  assert.equal(raw.received.length, 2, 'the bad connection was not reused');
});

/**
 * A deterministic stale keep-alive connection: the server answers the first request on its
 * first connection, then closes that connection when the next request arrives, unanswered.
 */
async function staleAfterFirst(t: TestContext) {
  const raw = await startRawBackend((socket, index) => {
    let requests = 0;
    socket.on('data', () => {
      requests++;
      if (index === 0 && requests === 2) socket.destroy();
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  t.after(() => raw.close());
  return raw;
}

test('a GET on a kept-alive connection the server closed meanwhile is retried on a fresh one', async (t) => {
  const raw = await staleAfterFirst(t);
  const lb = await proxyTo(t, [{ address: raw.address }]);
  assert.equal((await request(lb.port)).status, 200);
  const second = await request(lb.port);
  assert.equal(second.status, 200, 'GET retried on a fresh connection');
  assert.equal(lb.status()[0].servers[0].counters.retries, 1);
  assert.equal(raw.received.length, 2);
});

test('a POST on a reused connection that the server closes is not replayed (RFC 9112 §9.3.1)', async (t) => {
  const raw = await staleAfterFirst(t);
  const lb = await proxyTo(t, [{ address: raw.address }]);
  assert.equal((await request(lb.port)).status, 200);
  const post = await request(lb.port, { method: 'POST', body: 'order', headers: { 'content-length': 5 } });
  assert.equal(post.status, 502);
  assert.equal(post.headers['x-carelb-error'], 'CLB_SERVER_CLOSED');
  assert.equal(raw.received.length, 1, 'no second connection: the POST was not sent twice');
});

// The balancing arithmetic is unit-tested in test/unit/balance.test.ts. Here: that carelb's
// threads feed it the in-flight counts and weights it needs, judged on servers that hold
// their responses until the test releases them, so every in-flight count is exact.

test('least-connections sends nothing to a server holding a request while another has none in flight, across threads', async (t) => {
  const held = gate();
  t.after(() => held.open());
  const free = await backend(t, 'free');
  const holding = await backend(t, 'holding', held.handler);
  const lb = await proxyTo(t, [{ address: holding.address }, { address: free.address }], {}, 2);
  const pending: Promise<unknown>[] = [];
  for (let i = 1; i <= 20; i++) {
    // One at a time, fresh connections (so both threads pick): each pick sees the previous one's count.
    const heldBefore = held.arrived;
    const reply = request(lb.port);
    await eventually(() => held.arrived + free.seen.length === i, 5000, `request ${i} to reach a server`);
    if (held.arrived > heldBefore) {
      pending.push(reply);
      continue;
    }
    assert.equal((await reply).status, 200);
    await eventually(() => lb.status()[0].servers[1].active === 0, 5000, `request ${i} to leave the free server's count`);
  }
  assert.equal(held.arrived, 1, 'the first tie went to the holding server, nothing after it');
  assert.equal(free.seen.length, 19);
  assert.deepEqual(
    lb.status()[0].servers.map((s) => s.active),
    [1, 0],
  );
  held.open();
  await Promise.all(pending);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
});

test('least-connections with weights 1:3 keeps in flight 2 and 6 of 8 held requests, across threads', async (t) => {
  const light = gate();
  const heavy = gate();
  t.after(() => light.open());
  t.after(() => heavy.open());
  const lightServer = await backend(t, 'light', light.handler);
  const heavyServer = await backend(t, 'heavy', heavy.handler);
  const lb = await proxyTo(t, [{ address: lightServer.address, weight: 1 }, { address: heavyServer.address, weight: 3 }], {}, 2);
  const pending: Promise<unknown>[] = [];
  // Sent one at a time, each held where it lands: (in-flight + 1) / weight settles at 1:3
  // after every 4th request whichever way ties are broken (see balance.test.ts).
  for (let i = 1; i <= 8; i++) {
    pending.push(request(lb.port));
    await eventually(() => light.arrived + heavy.arrived === i, 5000, `request ${i} to reach a server`);
    if (i % 4 === 0) assert.deepEqual([light.held, heavy.held], [i / 4, (3 * i) / 4], `after ${i} requests`);
  }
  assert.deepEqual(
    lb.status()[0].servers.map((s) => s.active),
    [2, 6],
    'carelb counts in flight exactly what the servers hold',
  );
  light.open();
  heavy.open();
  await Promise.all(pending);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
});

test('round-robin with weights 1:3 splits 400 concurrent requests exactly 100:300', async (t) => {
  const light = await backend(t, 'light');
  const heavy = await backend(t, 'heavy');
  // One thread: round-robin keeps its position per thread (each thread alone splits exactly).
  const lb = await proxyTo(t, [{ address: light.address, weight: 1 }, { address: heavy.address, weight: 3 }], { balance: 'roundrobin' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  t.after(() => agent.destroy());
  const replies = await requestMany(400, 32, () => request(lb.port, { agent }));
  assert.ok(replies.every((r) => r.status === 200));
  assert.deepEqual([light.seen.length, heavy.seen.length], [100, 300]);
  assert.deepEqual(
    lb.status()[0].servers.map((s) => s.counters.requests),
    [100, 300],
  );
  assert.equal(inflight(lb), 0);
});

test('with 2 threads under load every in-flight counter returns to exactly 0', async (t) => {
  const a = await backend(t, 'a', (_req, res) => setTimeout(() => res.end('a'), Math.random() * 5));
  const b = await backend(t, 'b', (_req, res) => setTimeout(() => res.end('b'), Math.random() * 5));
  const lb = await proxyTo(t, [{ address: a.address }, { address: b.address }], {}, 2);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  t.after(() => agent.destroy());
  // Mix of completed requests and clients that give up midway.
  const replies = await requestMany(2000, 64, (i) =>
    i % 10 === 0
      ? new Promise((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: lb.port, path: '/', agent: false });
          req.on('error', () => resolve({ status: 0, headers: {}, body: Buffer.alloc(0) }));
          setImmediate(() => {
            req.destroy();
            resolve({ status: 0, headers: {}, body: Buffer.alloc(0) });
          });
        })
      : request(lb.port, { agent }),
  );
  assert.ok(replies.filter((r) => r.status === 200).length >= 1800);
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counters back to 0');
  const counted = lb.status()[0].servers.reduce((s, server) => s + server.counters.requests, 0);
  assert.ok(counted >= 1800);
});
