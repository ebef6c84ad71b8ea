/**
 * Forwarding through carelb on real sockets: bodies, framing, special statuses, headers.
 * carelb runs in-process (real worker threads and uWS), backends are real HTTP servers.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { startBackend, startRawBackend, type Handler, type TestBackend } from '../helpers/backend';
import { eventually, procStatusKb, startChild, startInProcess, type InProcess } from '../helpers/carelb';
import { rawExchange, request } from '../helpers/client';
import { gate } from '../helpers/gate';
import { freePort } from '../helpers/ports';

async function proxyTo(t: TestContext, backends: { address: string }[], extra: Record<string, unknown> = {}): Promise<InProcess & { port: number }> {
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${port}`,
        servers: backends.map((b, i) => ({ name: `s${i + 1}`, address: b.address })),
        ...extra,
      },
    ],
  });
  return { ...lb, port };
}

async function backend(t: TestContext, name: string, handler?: Handler): Promise<TestBackend> {
  const b = await startBackend(name, handler);
  t.after(() => b.close());
  return b;
}

function inflight(lb: InProcess): number {
  return lb.status().reduce((sum, vs) => sum + vs.servers.reduce((s, server) => s + server.active, 0), 0);
}

/** Echo server: answers with the sha256 and length of the body it read. */
const echoHandler: Handler = (req, res) => {
  void req;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end();
};

test('GET and POST bodies of 0 B, 1 B and 64 KiB arrive intact in both directions', async (t) => {
  const echo = await backend(t, 'echo', (req, res, seen) => {
    void seen;
    const size = Number(new URL(req.url!, 'http://x').searchParams.get('size') ?? 0);
    const body = Buffer.alloc(size, 'r');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'x-got-bytes': String(seen.bodyBytes) });
    res.end(body);
  });
  const lb = await proxyTo(t, [echo]);
  for (const size of [0, 1, 64 * 1024]) {
    const get = await request(lb.port, { path: `/get?size=${size}` });
    assert.equal(get.status, 200);
    assert.equal(get.body.length, size);
    assert.equal(get.headers['content-length'], String(size));
    const body = randomBytes(size);
    const post = await request(lb.port, { method: 'POST', path: `/post?size=${size}`, body, headers: { 'content-length': size } });
    assert.equal(post.status, 200);
    assert.equal(post.headers['x-got-bytes'], String(size));
    assert.equal(post.body.length, size);
  }
  assert.equal(inflight(lb), 0);
  void echoHandler;
});

test('a chunked request body is re-chunked to the server and arrives whole', async (t) => {
  let digest = '';
  const echo = await backend(t, 'echo', (req, res) => {
    void req;
    res.writeHead(200, { 'x-sha256': digest });
    res.end();
  });
  echo.server.prependListener('request', (req: http.IncomingMessage) => {
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => hash.update(c));
    req.on('end', () => (digest = hash.digest('hex')));
  });
  const lb = await proxyTo(t, [echo]);
  const parts = [randomBytes(10), randomBytes(70_000), randomBytes(3)];
  const reply = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'PUT', path: '/chunked', agent: false }, resolve);
    req.on('error', reject);
    for (const p of parts) req.write(p);
    req.end();
  });
  reply.resume();
  assert.equal(reply.statusCode, 200);
  assert.equal(reply.headers['x-sha256'], createHash('sha256').update(Buffer.concat(parts)).digest('hex'));
  assert.equal(echo.seen[0].headers['transfer-encoding'], 'chunked');
});

test('chunked and close-delimited responses reach the client complete', async (t) => {
  const raw = await startRawBackend((socket) => {
    socket.on('data', (request) => {
      if (request.toString().startsWith('GET /chunked')) {
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n');
        setImmediate(() => socket.write('7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n'));
      } else {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ');
        setImmediate(() => socket.end('the end'));
      }
    });
  });
  t.after(() => raw.close());
  const lb = await proxyTo(t, [raw]);
  const chunked = await request(lb.port, { path: '/chunked' });
  assert.equal(chunked.status, 200);
  assert.equal(chunked.body.toString(), 'hello, world');
  const closeDelimited = await request(lb.port, { path: '/close' });
  assert.equal(closeDelimited.status, 200);
  assert.equal(closeDelimited.body.toString(), 'until the end');
  assert.equal(inflight(lb), 0);
});

test('HEAD keeps Content-Length without a body; 204 and 304 have neither; the connection stays usable', async (t) => {
  const api = await backend(t, 'api', (req, res) => {
    if (req.url === '/204') res.writeHead(204).end();
    else if (req.url === '/304') res.writeHead(304, { etag: '"v1"' }).end();
    else res.writeHead(200, { 'content-length': 11, 'content-type': 'text/plain' }).end(req.method === 'HEAD' ? undefined : 'hello world');
  });
  const lb = await proxyTo(t, [api]);
  const { text } = await rawExchange(
    lb.port,
    'HEAD /doc HTTP/1.1\r\nHost: a\r\n\r\n',
  );
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /Content-Length: 11\r\n/i);
  assert.ok(text.endsWith('\r\n\r\n'), 'no body after a HEAD response');
  for (const status of [204, 304]) {
    const { text: reply } = await rawExchange(lb.port, `GET /${status} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assert.match(reply, new RegExp(`^HTTP/1\\.1 ${status} `));
    assert.doesNotMatch(reply, /content-length|transfer-encoding/i);
    assert.ok(reply.endsWith('\r\n\r\n'));
  }
  // Same connection: HEAD then GET both answered correctly (no desync).
  const { text: both } = await rawExchange(lb.port, 'HEAD /doc HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.match(both, /^HTTP\/1\.1 200/);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const head = await request(lb.port, { method: 'HEAD', path: '/doc', agent });
  const get = await request(lb.port, { path: '/doc', agent });
  assert.equal(head.body.length, 0);
  assert.equal(get.body.toString(), 'hello world');
});

test('Expect: 100-continue gets a 100 from carelb and the body reaches the server', async (t) => {
  const api = await backend(t, 'api');
  const lb = await proxyTo(t, [api]);
  const reply = await new Promise<{ status: number; sawContinue: boolean; body: string }>((resolve, reject) => {
    let sawContinue = false;
    const req = http.request({ host: '127.0.0.1', port: lb.port, method: 'POST', path: '/upload', agent: false, headers: { expect: '100-continue', 'content-length': 5 } });
    req.on('continue', () => {
      sawContinue = true;
      req.end('12345');
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, sawContinue, body }));
    });
    req.on('error', reject);
  });
  assert.equal(reply.status, 200);
  assert.ok(reply.sawContinue);
  assert.equal(JSON.parse(reply.body).bodyBytes, 5);
  assert.equal(api.seen[0].headers.expect, undefined);
});

test('hop-by-hop headers are stripped and X-Forwarded-* are set', async (t) => {
  const api = await backend(t, 'api', (_req, res) => {
    res.writeHead(200, { 'content-length': 2, connection: 'keep-alive, x-server-hop', 'keep-alive': 'timeout=5', 'x-server-hop': 'secret', 'x-kept': 'yes' });
    res.end('ok');
  });
  const lb = await proxyTo(t, [api]);
  const { text } = await rawExchange(
    lb.port,
    'GET /h?q=1 HTTP/1.1\r\nHost: ehr.example.org\r\nConnection: keep-alive, X-Client-Hop\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n' +
      'X-Client-Hop: secret\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nX-Custom: kept\r\n\r\n',
  );
  const seen = api.seen[0];
  assert.equal(seen.url, '/h?q=1');
  assert.equal(seen.headers.host, 'ehr.example.org');
  assert.equal(seen.headers['x-custom'], 'kept');
  for (const name of ['keep-alive', 'proxy-connection', 'te', 'upgrade', 'x-client-hop']) assert.equal(seen.headers[name], undefined, name);
  // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], 'ehr.example.org');
  assert.equal(seen.headers['x-forwarded-port'], String(lb.port));
  assert.match(text, /x-kept: yes/i);
  assert.doesNotMatch(text, /x-server-hop|keep-alive: timeout/i);
});

test('Connection: close from the client closes after a complete response; from the server the connection is not reused', async (t) => {
  let count = 0;
  const api = await backend(t, 'api', (_req, res) => {
    count++;
    res.writeHead(200, { 'content-length': 2, ...(count === 1 ? { connection: 'close' } : {}) });
    res.end('ok');
  });
  const lb = await proxyTo(t, [api]);
  const client = await rawExchange(lb.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 2000);
  assert.match(client.text, /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok$/);
  assert.equal(client.closed, true);
  const second = await request(lb.port);
  assert.equal(second.status, 200);
  assert.equal(api.connections, 2, 'the server closed the first connection, so a new one was opened');
});

test('a pipelining client is closed cleanly: nothing leaks and the next client is served', async (t) => {
  // The server holds its answer until released, so the pipelined requests always arrive while
  // the first response is pending (what uWS refuses), however fast or slow the machine.
  const server = gate(() => 'late');
  t.after(() => server.open());
  const api = await backend(t, 'holding', server.handler);
  const lb = await proxyTo(t, [api]);
  let bound: NodeJS.Timeout | undefined;
  t.after(() => clearTimeout(bound));
  const result = await Promise.race([
    rawExchange(lb.port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n', 2000),
    new Promise<never>((_resolve, reject) => (bound = setTimeout(() => reject(new Error('the pipelining client was not closed within 10 s')), 10_000))),
  ]);
  assert.equal(result.closed, true);
  assert.equal(result.text, '', 'closed before any response');
  // Freed by the client's going away, not by the server's answer (still held).
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
  server.open();
  const after = await request(lb.port);
  assert.equal(after.status, 200);
  assert.equal(after.body.toString(), 'late');
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight back to 0');
});

test('the server sees one kept-alive connection for many sequential requests', async (t) => {
  const api = await backend(t, 'api');
  const lb = await proxyTo(t, [api]);
  for (let i = 0; i < 20; i++) assert.equal((await request(lb.port)).status, 200);
  assert.equal(api.connections, 1);
});

/** How far a sender got, and whether it waits for 'drain' (and how many it had). */
interface Sender {
  sent: number;
  waiting: boolean;
  drains: number;
  done: boolean;
}

function sender(): Sender {
  return { sent: 0, waiting: false, drains: 0, done: false };
}

/** Writes `size` bytes of `chunk` into `stream`, honouring its backpressure, recording progress. */
function pumpInto(stream: http.ServerResponse | http.ClientRequest, size: number, chunk: Buffer, progress: Sender): void {
  const pump = () => {
    while (progress.sent < size) {
      progress.sent += chunk.length;
      if (!stream.write(chunk)) {
        progress.waiting = true;
        stream.once('drain', () => {
          progress.waiting = false;
          progress.drains++;
          pump();
        });
        return;
      }
    }
    progress.done = true;
    stream.end();
  };
  pump();
}

/** Resolves once `progress` has waited for the same 'drain' for 100 ms, or wrote everything. */
function heldBack(progress: Sender): Promise<void> {
  let since = 0;
  let drains = -1;
  return eventually(
    () => {
      if (progress.done) return true; // the assertions after the transfer say what that means
      if (!progress.waiting) since = 0;
      else if (since === 0 || progress.drains !== drains) [since, drains] = [Date.now(), progress.drains];
      return since !== 0 && Date.now() - since >= 100;
    },
    30_000,
    'the sender to be held back',
  );
}

test('a 50 MiB upload and a 50 MiB download stream through with carelb memory bounded', async (t) => {
  const size = 50 * 1024 * 1024;
  // Backpressure is judged on the senders (the server downloading, the client uploading): a
  // sender is held back once its write() has waited for 'drain' for 100 ms on end while its
  // receiver reads nothing (a bounded poll of that state, not a sleep). A carelb that buffered
  // instead would let the sender write all 50 MiB.
  const downloader = sender();
  const uploader = sender();
  let downloadedWhenHeld = -1;
  let uploadedWhenHeld = -1;
  const api = await backend(t, 'big', (req, res, seen) => {
    if (req.method === 'POST') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(String(seen.bodyBytes));
      return;
    }
    res.writeHead(200, { 'content-length': size });
    pumpInto(res, size, Buffer.alloc(256 * 1024, 'd'), downloader);
  });
  // The server reads nothing of the upload until carelb has held the client back.
  api.server.prependListener('request', (req: http.IncomingMessage) => {
    if (req.method !== 'POST') return;
    req.pause();
    void heldBack(uploader).then(
      () => {
        uploadedWhenHeld = uploader.sent;
        req.resume();
      },
      (error: Error) => req.destroy(error),
    );
  });
  const port = await freePort();
  const child = await startChild(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'big', address: api.address }] }],
  });
  const pid = child.process.pid!;
  const before = procStatusKb(pid, 'VmHWM');
  // Download, read nothing until carelb has held the server back.
  const downloaded = await new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/download', agent: false }, (res) => {
      let bytes = 0;
      res.pause();
      void heldBack(downloader).then(() => {
        downloadedWhenHeld = downloader.sent;
        res.resume();
      }, reject);
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve(bytes));
      res.on('error', reject);
    });
  });
  assert.equal(downloaded, size);
  const uploaded = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false, headers: { 'content-length': size } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    pumpInto(req, size, Buffer.alloc(256 * 1024, 'u'), uploader);
  });
  assert.equal(uploaded, String(size));
  t.diagnostic(`held back after writing ${(downloadedWhenHeld / 1048576).toFixed(1)} MiB (download) and ${(uploadedWhenHeld / 1048576).toFixed(1)} MiB (upload) of 50`);
  assert.ok(downloadedWhenHeld >= 0 && downloadedWhenHeld < size, 'the server could write the whole download while the client read nothing');
  assert.ok(uploadedWhenHeld >= 0 && uploadedWhenHeld < size, 'the client could write the whole upload while the server read nothing');
  const grownMiB = (procStatusKb(pid, 'VmHWM') - before) / 1024;
  // A buffered body would show as 50 MiB or more of peak growth.
  assert.ok(grownMiB < 40, `carelb peak RSS grew by ${grownMiB.toFixed(1)} MiB`);
});

test('a client abort mid-response frees the server connection and the in-flight counter', async (t) => {
  let serverSocketClosed = false;
  const api = await backend(t, 'stream', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part');
    res.on('close', () => (serverSocketClosed = true));
  });
  const lb = await proxyTo(t, [api]);
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(lb.port, '127.0.0.1');
    socket.on('data', (d) => {
      if (d.toString().includes('first part')) {
        socket.destroy();
        resolve();
      }
    });
    socket.on('error', reject);
    socket.write('GET /stream HTTP/1.1\r\nHost: a\r\n\r\n');
  });
  await eventually(() => serverSocketClosed, 5000, 'server side of the aborted exchange to close');
  await eventually(() => inflight(lb) === 0, 5000, 'in-flight counter back to 0');
  assert.equal(lb.status()[0].errors.CLIENT_ABORTED, 1);
  assert.equal(lb.status()[0].counters.client_aborts, 1);
});
