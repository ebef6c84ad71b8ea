/**
 * Hardening at the front: request limits, stalled bodies, access lists, trusted proxies and
 * X-Forwarded-For, per-client rate limits across threads, server connection limits with a
 * queue, and uWS's own slowloris guard. Raw bytes where framing matters; every rejected request
 * is checked to have reached no server.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { startBackend, type Handler, type TestBackend } from '../helpers/backend';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { rawExchange, request, requestMany } from '../helpers/client';
import { gate } from '../helpers/gate';
import { freePort } from '../helpers/ports';

async function setup(t: TestContext, extra: Record<string, unknown>, handler?: Handler, workers = 1): Promise<InProcess & { port: number; api: TestBackend }> {
  const api = await startBackend('api', handler);
  t.after(() => api.close());
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address, ...((extra.server as object) ?? {}) }], ...omit(extra, 'server') }],
  });
  return { ...lb, port, api };
}

function omit(object: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...object };
  delete copy[key];
  return copy;
}

/** A PROXY protocol v2 header saying the connection came from `source` (IPv4). */
function proxyV2(source: string): Buffer {
  const [a, b, c, d] = source.split('.').map(Number);
  return Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, a, b, c, d, 127, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90]);
}

test('too many or too large request headers get 431, a long URL 414, a declared body over max_body 413, each closing the connection', async (t) => {
  const lb = await setup(t, { limits: { header_count: 10, header_bytes: '1k', url_bytes: 100, max_body: 1000 } });
  const manyHeaders = Array.from({ length: 11 }, (_v, i) => `X-H${i}: v\r\n`).join('');
  const cases: [string, number][] = [
    [`GET / HTTP/1.1\r\nHost: a\r\n${manyHeaders}\r\n`, 431],
    [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(1100)}\r\n\r\n`, 431],
    [`GET /${'u'.repeat(120)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
    [`POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n${'x'.repeat(100)}`, 413],
  ];
  for (const [bytes, status] of cases) {
    const { text, closed } = await rawExchange(lb.port, bytes, 2000);
    assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), bytes.slice(0, 40));
    assert.equal(closed, true, `connection closed after ${status}`);
  }
  assert.equal(lb.api.seen.length, 0, 'nothing reached the server');
  const errors = lb.status()[0].errors;
  assert.equal(errors.HEADERS_TOO_LARGE, 2);
  assert.equal(errors.URL_TOO_LONG, 1);
  assert.equal(errors.BODY_TOO_LARGE, 1);
  assert.equal((await request(lb.port)).status, 200, 'normal requests still pass');
});

test('a chunked body that grows past max_body while streaming gets 413 and the server connection is dropped', async (t) => {
  const lb = await setup(t, { limits: { max_body: '10k' } });
  const reply = await new Promise<{ status: number; code: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'POST', path: '/upload', agent: false }, (res) => {
      res.resume();
      resolve({ status: res.statusCode!, code: String(res.headers['x-carelb-error']) });
    });
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write(Buffer.alloc(1024, 'c'));
    req.end();
  });
  assert.equal(reply.status, 413);
  assert.equal(reply.code, 'CLB_BODY_TOO_LARGE');
  await eventually(() => lb.status()[0].servers[0].active === 0, 5000, 'server released');
});

test('a request body that stalls longer than client_body_idle is aborted and the server connection freed', async (t) => {
  let serverSawClose = false;
  const lb = await setup(t, { timeouts: { client_body_idle: '300ms' } }, (req) => req.socket.on('close', () => (serverSawClose = true)));
  lb.api.server.prependListener('request', (req: http.IncomingMessage) => req.socket.on('close', () => (serverSawClose = true)));
  const result = await rawExchange(lb.port, 'POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly a little', 3000);
  assert.match(result.text, /^HTTP\/1\.1 408 /);
  assert.equal(result.closed, true);
  await eventually(() => serverSawClose, 5000, 'server connection closed');
  assert.equal(lb.status()[0].servers[0].active, 0);
});

test('deny and allow lists refuse clients with 403, or by closing the connection', async (t) => {
  const denied = await setup(t, { deny: ['127.0.0.0/8'] });
  const reply = await request(denied.port);
  assert.equal(reply.status, 403);
  assert.equal(reply.headers['x-carelb-error'], 'CLB_FORBIDDEN');
  const notAllowed = await setup(t, { allow: ['10.0.0.0/8', '::1/128'], deny_action: 'close' });
  const raw = await rawExchange(notAllowed.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', 2000);
  assert.equal(raw.text, '');
  assert.equal(raw.closed, true);
  const allowed = await setup(t, { allow: ['127.0.0.1/32'] });
  assert.equal((await request(allowed.port)).status, 200);
  assert.equal(denied.api.seen.length + notAllowed.api.seen.length, 0);
});

test('a PROXY header and X-Forwarded-For are believed only from trusted proxies', async (t) => {
  const untrusted = await setup(t, {});
  await rawExchange(untrusted.port, Buffer.concat([proxyV2('203.0.113.50'), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n')]));
  assert.equal(untrusted.api.seen[0].headers['x-forwarded-for'], '127.0.0.1', 'spoofed PROXY address and XFF ignored');
  const trusted = await setup(t, { trusted_proxies: ['127.0.0.1/32'], deny: ['192.0.2.0/24'] });
  await rawExchange(trusted.port, Buffer.concat([proxyV2('203.0.113.50'), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n')]));
  assert.equal(trusted.api.seen[0].headers['x-forwarded-for'], '198.51.100.1, 203.0.113.50');
  // The proxied address is the one access lists see.
  const refused = await rawExchange(trusted.port, Buffer.concat([proxyV2('192.0.2.9'), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')]));
  assert.match(refused.text, /^HTTP\/1\.1 403 /);
});

test('rate_limit gives 429 with Retry-After past the burst, counted across threads, per client address', async (t) => {
  const lb = await setup(t, { trusted_proxies: ['127.0.0.1/32'], rate_limit: { requests: 1, per: '1h', burst: 10 } }, undefined, 2);
  // One token an hour: however slow the machine, no token comes back while the test runs.
  // New connections land on either thread: the bucket is shared.
  const replies = await requestMany(20, 4, () => request(lb.port));
  const ok = replies.filter((r) => r.status === 200).length;
  const limited = replies.filter((r) => r.status === 429);
  assert.equal(ok, 10, 'exactly the burst passes');
  assert.equal(limited.length, 10);
  assert.equal(limited[0].headers['x-carelb-error'], 'CLB_RATE_LIMITED');
  assert.ok(Number(limited[0].headers['retry-after']) >= 1);
  // Another client address (through the trusted proxy) has its own bucket.
  const other = await rawExchange(lb.port, Buffer.concat([proxyV2('203.0.113.77'), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')]));
  assert.match(other.text, /^HTTP\/1\.1 200 /);
});

test('a flood of distinct client addresses cannot exhaust the rate-limit table', async (t) => {
  const lb = await setup(t, { trusted_proxies: ['127.0.0.1/32'], rate_limit: { requests: 1, per: '60s', burst: 1 } });
  const rssBefore = process.memoryUsage().rss;
  const sources = Array.from({ length: 3000 }, (_v, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  const replies = await requestMany(sources.length, 32, async (i) => {
    const { text } = await rawExchange(lb.port, Buffer.concat([proxyV2(sources[i]), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')]), 1000);
    return { status: Number(text.slice(9, 12)), headers: {}, body: Buffer.alloc(0) };
  });
  assert.ok(replies.every((r) => r.status === 200), 'each new address gets its first request');
  const again = await rawExchange(lb.port, Buffer.concat([proxyV2(sources[sources.length - 1]), Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')]));
  assert.match(again.text, /^HTTP\/1\.1 429 /, 'a recent client is still limited');
  t.diagnostic(`test process RSS grew ${((process.memoryUsage().rss - rssBefore) / 1048576).toFixed(1)} MiB over 3000 addresses (fixed 1 MiB table)`);
});

test('max_conns caps concurrent requests per server across threads; the others wait in the queue and are served in turn', async (t) => {
  // The server holds every response until the test releases it: what it has in flight is
  // exact at every step, whatever the machine's speed.
  const server = gate();
  t.after(() => server.open());
  const lb = await setup(t, { server: { max_conns: 2 }, max_queue: 100, timeouts: { queue: '30s' } }, server.handler, 2);
  const replies = requestMany(12, 12, () => request(lb.port));
  // Every request has its exchange (carelb counts it in the uWS callback that sends or queues it)...
  await eventually(() => lb.status()[0].counters.requests === 12, 5000, 'all 12 requests to reach carelb');
  await server.arrivals(2);
  // ...and nothing is released yet: the in-flight count is exact, not a sample of a moving value.
  assert.equal(lb.status()[0].servers[0].active, 2, 'two requests sent to the server, ten queued');
  assert.equal(server.held, 2);
  // Each release lets exactly one queued request through (on whichever thread queued it).
  for (let n = 3; n <= 12; n++) {
    assert.ok(server.releaseOne());
    await server.arrivals(n);
    assert.equal(server.held, 2, `after ${n - 2} releases`);
  }
  server.open();
  const done = await replies;
  assert.deepEqual(
    done.map((r) => r.status),
    Array(12).fill(200),
  );
  assert.equal(server.peak, 2, 'never more than max_conns at the server');
  assert.equal(server.arrived, 12);
  await eventually(() => lb.status()[0].servers[0].active === 0, 5000, 'in-flight back to 0');
});

test('with the server at max_conns, a request finding the queue full gets 503 CLB_QUEUE_FULL at once and is counted', async (t) => {
  const server = gate();
  t.after(() => server.open());
  const lb = await setup(t, { server: { max_conns: 1 }, max_queue: 1, timeouts: { queue: '60s' } }, server.handler);
  const first = request(lb.port);
  await server.arrivals(1);
  const queued = request(lb.port);
  // carelb counts a request when it starts its exchange, in the same uWS callback that queues it.
  await eventually(() => lb.status()[0].counters.requests === 2, 5000, 'the second request to reach carelb');
  const refused = await request(lb.port);
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['x-carelb-error'], 'CLB_QUEUE_FULL');
  assert.equal(lb.status()[0].errors.QUEUE_FULL, 1);
  assert.equal(server.arrived, 1, 'the refused request did not reach the server');
  // Released in turn: the held one, then the queued one.
  server.open();
  assert.deepEqual([(await first).status, (await queued).status], [200, 200]);
  assert.equal(server.arrived, 2);
  assert.equal(lb.status()[0].errors.QUEUE_TIMEOUT, 0);
  await eventually(() => lb.status()[0].servers[0].active === 0, 5000, 'in-flight back to 0');
});

test('with the server at max_conns, a queued request gets 503 CLB_QUEUE_TIMEOUT after timeouts.queue and is counted', async (t) => {
  const server = gate();
  t.after(() => server.open());
  const lb = await setup(t, { server: { max_conns: 1 }, max_queue: 10, timeouts: { queue: '200ms' } }, server.handler);
  const first = request(lb.port);
  await server.arrivals(1);
  // The server holds the first request until the second was answered: it cannot leave the queue.
  const sent = performance.now();
  const timedOut = await request(lb.port);
  const waited = performance.now() - sent;
  assert.equal(timedOut.status, 503);
  assert.equal(timedOut.headers['x-carelb-error'], 'CLB_QUEUE_TIMEOUT');
  assert.match(timedOut.body.toString(), /connection limit/);
  // 190: carelb's deadline is in whole milliseconds (Date.now), the test's clock is not.
  assert.ok(waited >= 190, `answered after ${waited.toFixed(0)} ms, before timeouts.queue`);
  const errors = lb.status()[0].errors;
  assert.equal(errors.QUEUE_TIMEOUT, 1);
  assert.equal(errors.QUEUE_FULL, 0);
  assert.equal(lb.status()[0].counters.responses_5xx, 1);
  assert.equal(server.arrived, 1, 'the timed-out request did not reach the server');
  server.open();
  const answered = await first;
  assert.equal(answered.status, 200);
  assert.equal(answered.body.toString(), 'released');
  await eventually(() => lb.status()[0].servers[0].active === 0, 5000, 'in-flight back to 0');
});

/** Opens a connection that sends an incomplete request head, then one more byte every 2 s. */
function trickle(t: TestContext, port: number): { socket: net.Socket; closed: Promise<{ afterMs: number; received: string }> } {
  const socket = net.connect(port, '127.0.0.1');
  const started = performance.now();
  const timer = setInterval(() => socket.write('X'), 2000);
  t.after(() => {
    clearInterval(timer);
    socket.destroy();
  });
  let received = '';
  socket.on('data', (d) => (received += d.toString('latin1')));
  socket.on('error', () => {});
  socket.write('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ');
  const closed = new Promise<{ afterMs: number; received: string }>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ afterMs: performance.now() - started, received });
    }),
  );
  return { socket, closed };
}

test('a request head that trickles in (slowloris) reaches no server, is not counted, and does not hold up other clients of its thread', async (t) => {
  const lb = await setup(t, {}); // one thread: the trickling connection and the others share it
  const slow = trickle(t, lb.port);
  await new Promise<void>((resolve) => slow.socket.once('connect', resolve));
  for (let i = 0; i < 3; i++) {
    const reply = await request(lb.port, { path: `/other/${i}` });
    assert.equal(reply.status, 200);
  }
  assert.deepEqual(
    lb.api.seen.map((s) => s.url),
    ['/other/0', '/other/1', '/other/2'],
    'only complete requests reached the server',
  );
  assert.equal(lb.status()[0].counters.requests, 3, 'the incomplete head is no request yet');
  slow.socket.destroy();
  await slow.closed;
  assert.equal(lb.status()[0].counters.client_aborts, 0);
  assert.equal(lb.status()[0].servers[0].active, 0);
  assert.equal((await request(lb.port)).status, 200);
});

test('uWS behaviour we rely on: a request head still incomplete 10-12 s after it began is closed without an answer, however often bytes arrive (README, limits of the front end)', async (t) => {
  // carelb has no header timeout of its own: this is uWS's (v20.30) slowloris guard, which the
  // README documents. If a uWS upgrade changes it, this check says so before the docs lie.
  const lb = await setup(t, {});
  const slow = trickle(t, lb.port);
  const deadline = new Promise<never>((_resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the trickling connection was still open after 30 s')), 30_000);
    t.after(() => clearTimeout(timer));
  });
  const { afterMs, received } = await Promise.race([slow.closed, deadline]);
  t.diagnostic(`closed after ${afterMs.toFixed(0)} ms`);
  assert.equal(received, '', 'closed without a response');
  // 10-12 s measured (uWS checks its 10 s idle timeout on a 4 s tick); 16 s leaves room for a busy machine.
  assert.ok(afterMs >= 9_500 && afterMs <= 16_000, `closed after ${afterMs.toFixed(0)} ms, outside 9.5-16 s`);
  assert.equal(lb.api.seen.length, 0, 'nothing was forwarded');
  assert.equal(lb.status()[0].counters.requests, 0);
});
