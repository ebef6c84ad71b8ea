/**
 * The admin server runs in the primary, beside the health checks, so it must stay well-behaved
 * under bad input (issue 13): a body over the limit gets its 413 before the socket closes;
 * /api/ha/config bodies are bounded and read at most two at a time (a third gets 503); bad
 * requests, such as a malformed percent-encoding, get 4xx, never 500. Real carelb, real sockets.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { startWithAdmin, type AdminHarness } from '../helpers/admin-context';
import { fuzzSeed, Rng } from '../helpers/fuzz';
import { rawSend } from '../helpers/raw-client';

const haBlock = (dir: string) => ({
  node_name: 'lb1',
  interface: 'lo',
  virtual_router_id: 51,
  peer: '127.0.0.1',
  sync_token_file: join(dir, 'secrets', 'sync.token'),
  // The harness speaks plain HTTP; these tests are about the server, not the transport.
  allow_plaintext_sync: true,
  vips: [{ address: '127.0.0.250/32' }],
});

const syncTokenOf = (lb: AdminHarness) => readFileSync(join(lb.dir, 'secrets', 'sync.token'), 'utf8').trim();

interface Upload {
  /** The final status, or null when the connection ended without one. */
  status: Promise<number | null>;
  /** The final answer's headers, once `status` resolved with one. */
  headers: http.IncomingHttpHeaders | null;
  /** Resolves true when the server sent `100 Continue` (it is reading the body), false when it answered first. */
  continued: Promise<boolean>;
  req: http.ClientRequest;
}

/** A POST declaring `length` body bytes (or chunked), with `Expect: 100-continue` when asked; the caller writes the body. */
function upload(port: number, path: string, token: string, length: number | 'chunked', options: { expect?: boolean } = {}): Upload {
  const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  if (length === 'chunked') headers['transfer-encoding'] = 'chunked';
  else headers['content-length'] = length;
  if (options.expect) headers.expect = '100-continue';
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers, agent: false });
  let settleContinue: (value: boolean) => void = () => {};
  const continued = new Promise<boolean>((resolve) => (settleContinue = resolve));
  req.on('continue', () => settleContinue(true));
  const result: Upload = { status: Promise.resolve(null), headers: null, continued, req };
  result.status = new Promise<number | null>((resolve) => {
    req.on('response', (res) => {
      settleContinue(false);
      result.headers = res.headers;
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? null));
      res.on('error', () => resolve(res.statusCode ?? null));
    });
    // EPIPE/ECONNRESET while still writing a body the server refused: the status (if any) decides.
    req.on('error', () => {
      settleContinue(false);
      resolve(null);
    });
    req.on('close', () => {
      settleContinue(false);
      resolve(null);
    });
  });
  return result;
}

/** Writes `total` bytes of `x` in 64 KiB pieces, honouring backpressure, stopping when the request ends. */
async function pump(req: http.ClientRequest, total: number): Promise<void> {
  const piece = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  while (sent < total && !req.destroyed) {
    const n = Math.min(piece.length, total - sent);
    sent += n;
    if (!req.write(piece.subarray(0, n))) await new Promise((resolve) => req.once('drain', resolve).once('close', resolve));
  }
  if (!req.destroyed) req.end();
}

test('a body over the limit gets its 413 before the connection closes, declared or chunked', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ ha: haBlock(dir) }) });
  // Declared too large: answered at once, before any body byte.
  const declared = upload(lb.adminPort, '/api/reload', lb.token, 10 * 1024 * 1024);
  void pump(declared.req, 10 * 1024 * 1024);
  assert.equal(await declared.status, 413, 'the client received the 413');
  // Chunked, growing past the limit while it streams.
  const chunked = upload(lb.adminPort, '/api/servers/api/b1/drain', lb.token, 'chunked');
  void pump(chunked.req, 2 * 1024 * 1024);
  assert.equal(await chunked.status, 413);
  // The sync endpoint has its own, larger bound (4 MiB).
  const sync = upload(lb.adminPort, '/api/ha/config', syncTokenOf(lb), 4 * 1024 * 1024 + 1);
  void pump(sync.req, 4 * 1024 * 1024 + 1);
  assert.equal(await sync.status, 413);
  // With Expect: 100-continue the client learns it before sending anything.
  const polite = upload(lb.adminPort, '/api/reload', lb.token, 1024 * 1024, { expect: true });
  assert.equal(await polite.continued, false, 'no 100 Continue for a body that will be refused');
  assert.equal(await polite.status, 413);
  polite.req.destroy();
  assert.equal((await lb.call('GET', '/api/status')).json.virtual_services[0].servers[0].admin, 'online', 'nothing was done');
  assert.equal((await lb.call('GET', '/healthz', null)).status, 200, 'still serving');
});

test('/api/ha/config reads at most two bodies at a time: a third gets 503 with Retry-After, and a slot frees when one ends', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ ha: haBlock(dir) }) });
  const token = syncTokenOf(lb);
  const uploads: Upload[] = [];
  t.after(() => uploads.forEach((u) => u.req.destroy()));
  const open = () => {
    const u = upload(lb.adminPort, '/api/ha/config', token, 1000, { expect: true });
    uploads.push(u);
    u.req.flushHeaders();
    return u;
  };
  const [first, second] = [open(), open()];
  assert.equal(await first.continued, true, 'the first push is being read');
  assert.equal(await second.continued, true, 'the second push is being read');
  const third = open();
  assert.equal(await third.continued, false, 'the third is not read');
  assert.equal(await third.status, 503);
  assert.equal(third.headers?.['retry-after'], '1');

  // The first finishes (its body is not JSON: 400); its slot is free again.
  first.req.end('x'.repeat(1000));
  assert.equal(await first.status, 400);
  const fourth = open();
  assert.equal(await fourth.continued, true, 'a slot freed by a finished push');
  // A push whose client goes away mid-body frees its slot too.
  second.req.write('{"config_text":');
  second.req.destroy();
  fourth.req.destroy();
  // The server learns of the two aborts on its own schedule: probe (each probe a real push) until one is read.
  let reading = false;
  const deadline = Date.now() + 5000;
  while (!reading && Date.now() < deadline) {
    const probe = open();
    reading = await probe.continued;
    probe.req.destroy();
    if (!reading) assert.equal(await probe.status, 503);
  }
  assert.equal(reading, true, 'aborted pushes released their slots within 5 s');
});

test('malformed percent-encoding and odd request targets get 400, never 500', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ ha: haBlock(dir) }) });
  for (const path of ['/api/servers/%E0%A4%A/b1/drain', '/api/servers/api/%zz/drain', '/api/servers/api/b1/%']) {
    const reply = await lb.call('POST', path);
    assert.equal(reply.status, 400, `${path}: ${reply.text}`);
    assert.match(reply.json.error, /percent-encoding|encoded/);
  }
  const auth = `Authorization: Bearer ${lb.token}\r\n`;
  const raw: [string, number][] = [
    [`OPTIONS * HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`, 400],
    [`GET //api/status HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`, 404],
    [`GET http://elsewhere/api/status HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`, 200],
    [`GET /api/status?%zz HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`, 200],
  ];
  for (const [bytes, status] of raw) {
    const outcome = await rawSend(lb.adminPort, bytes, 5000);
    assert.equal(outcome.status, status, `${JSON.stringify(bytes.split('\r\n')[0])}:\n${outcome.text}`);
  }
});

test('fuzzed admin requests (paths, methods, tokens, sync bodies) never get a 500', async (t) => {
  const lb = await startWithAdmin(t, { extra: (dir) => ({ ha: haBlock(dir) }) });
  const seed = fuzzSeed();
  t.diagnostic(`CARELB_FUZZ_SEED=${seed}`);
  const rng = new Rng(seed);
  const sync = syncTokenOf(lb);
  const parts = ['api', 'servers', 'api', 'b1', 'b2', 'drain', 'halt', 'online', 'reload', 'status', 'ha', 'peer', 'config', 'metrics', '%', '%2', '%zz', '%2F', '%00', '%E0%A4%A', '%C3%28', '..', '.', '', '~', 'x'.repeat(300)];
  const bodies = ['', '{', 'null', '[]', '"x"', '{"config_text":1}', '{"config_text":"x","files":[null]}', '{"config_text":"x","files":[{"path":{},"content_base64":"@@"}]}', '{"config_text":"ha: [\\n","files":[]}', '{"config_text":"workers: 1\\n","files":[{"path":"/etc/passwd","content_base64":"","mode":1e400}]}'];
  for (let i = 0; i < 150; i++) {
    const segments = Array.from({ length: rng.range(1, 5) }, () => rng.pick(parts));
    const path = `/${segments.join('/')}${rng.chance(0.2) ? `?${rng.pick(parts)}` : ''}`;
    const method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH']);
    const token = rng.pick([lb.token, sync, null, 'wrong-token-0123456789']);
    const body = method === 'POST' ? rng.pick(bodies) : '';
    const status = await new Promise<number>((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { 'content-length': Buffer.byteLength(body) };
      if (token) headers.authorization = `Bearer ${token}`;
      const req = http.request({ host: '127.0.0.1', port: lb.adminPort, method, path, headers, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end(body);
    });
    assert.ok(status < 500, `case ${i}: ${method} ${path} (${token === lb.token ? 'operate' : token === sync ? 'sync' : 'bad'} token) body ${JSON.stringify(body)}: ${status}`);
  }
  assert.equal((await lb.call('GET', '/healthz', null)).status, 200);
});
