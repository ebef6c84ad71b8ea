/**
 * Request framing (issue 6, anti-smuggling; RFC 9112 §2–§7, RFC 9110 §5, §8.6, §9.1): every
 * case is written as raw bytes to a real socket, to two virtual services of one carelb: one
 * in front of a node:http server (`seen`: what a real server took for a request) and one in
 * front of a raw TCP server (every byte carelb sent). A malformed request must be answered
 * 400 with the connection closed and reach neither server.
 *
 * uWS v20.30 parses the request before carelb sees it, and some cases never reach carelb's
 * JS at all. For those the test asserts what uWS actually does, and says so in its name:
 * - "closed by uWS": the connection is closed at once, with no response, nothing forwarded;
 * - "held by uWS": no response and nothing forwarded within 1 s; uWS closes such connections
 *   only at its ~12 s timeout (measured: 11.997 s), so the test stops waiting after 1 s and
 *   destroys the socket instead of slowing the suite.
 * Every case of a test is sent at the same time, each with its own marker (`kNNNk`) in the
 * target or an `X-Case` field, so "nothing forwarded" is checked per case, and once more for
 * anything forwarded without a marker.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { startBackend, startRawBackend, type RawBackend, type TestBackend } from '../helpers/backend';
import { startInProcess, type InProcess } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { rawSend, type RawOutcome } from '../helpers/raw-client';

/** How long "held by uWS" cases are watched (uWS itself would wait ~12 s). */
const WATCH_MS = 1000;

type Expect =
  /** carelb (or uWS) answers 400 and closes; nothing forwarded. The acceptance. */
  | 'reject'
  /** uWS closes the connection at once without a response; nothing forwarded. */
  | 'closed-by-uws'
  /** uWS neither answers nor closes within WATCH_MS; nothing forwarded. */
  | 'held-by-uws'
  /** A valid request (a control): forwarded, answered 200, connection kept. */
  | 'forward';

interface Case {
  name: string;
  /** The request bytes; `m` is this case's marker, to be placed in the target or a field. */
  bytes: (m: string) => string;
  expect: Expect;
  /** For 'reject': acceptable statuses (default 400). */
  statuses?: number[];
  /** For 'forward': the body the server must receive (de-chunked). */
  body?: string;
  /** A known failure carelb cannot fix on its own: the test still runs and reports, marked TODO. */
  todo?: string;
}

interface Stage {
  lb: InProcess;
  node: TestBackend;
  raw: RawBackend;
  nodePort: number;
  rawPort: number;
}

/** One carelb, two virtual services: one to a node:http server, one to a raw server answering 200 to every head. */
async function stage(t: TestContext): Promise<Stage> {
  const node = await startBackend('node');
  t.after(() => node.close());
  const raw = await startRawBackend((socket) => {
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        buffered = buffered.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  t.after(() => raw.close());
  const nodePort = await freePort();
  const rawPort = await freePort();
  const lb = await startInProcess(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [
      { name: 'to-node', listen: `127.0.0.1:${nodePort}`, servers: [{ name: 'node', address: node.address }] },
      { name: 'to-raw', listen: `127.0.0.1:${rawPort}`, servers: [{ name: 'raw', address: raw.address }] },
    ],
  });
  return { lb, node, raw, nodePort, rawPort };
}

function describe(outcome: RawOutcome): string {
  const first = outcome.text.split('\r\n')[0];
  const answer = outcome.text === '' ? 'no response' : JSON.stringify(first);
  return outcome.closed ? `${answer}, closed after ${outcome.ms} ms${outcome.reset ? ' (reset)' : ''}` : `${answer}, still open after ${outcome.ms} ms`;
}

function rawText(raw: RawBackend): string {
  return raw.received.map((b) => b.toString('latin1')).join('\n');
}

/** Sends every case to both services at once, then checks each case in its own subtest. */
async function runCases(t: TestContext, cases: Case[]): Promise<void> {
  const { node, raw, nodePort, rawPort } = await stage(t);
  const markers = cases.map((_, i) => `k${String(i).padStart(3, '0')}k`);
  const outcomes = await Promise.all(
    cases.map(async (c, i) => {
      const bytes = c.bytes(markers[i]);
      const [viaNode, viaRaw] = await Promise.all([rawSend(nodePort, bytes, WATCH_MS), rawSend(rawPort, bytes, WATCH_MS)]);
      return { viaNode, viaRaw };
    }),
  );
  // Everything has been answered, closed or watched for WATCH_MS: anything forwarded has arrived.
  const serverBytes = rawText(raw);
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, { todo: c.todo }, () => {
      const m = markers[i];
      const { viaNode, viaRaw } = outcomes[i];
      const bytes = JSON.stringify(c.bytes(m));
      const toNode = node.seen.filter((s) => s.url.includes(m) || s.rawHeaders.some((h) => h.includes(m)));
      const toRaw = raw.received.filter((b) => b.toString('latin1').includes(m));
      const forwarded = `node server saw ${toNode.length} request(s), raw server got ${toRaw.map((b) => JSON.stringify(b.toString('latin1').replace(/x-forwarded-[^\r]*\r\n/g, ''))).join(' ') || 'nothing'}`;
      const happened = `${bytes}\n  via node: ${describe(viaNode)}\n  via raw: ${describe(viaRaw)}\n  ${forwarded}`;
      for (const outcome of [viaNode, viaRaw]) {
        switch (c.expect) {
          case 'reject':
            assert.ok((c.statuses ?? [400]).includes(outcome.status ?? 0) && outcome.closed, `expected ${(c.statuses ?? [400]).join('/')} and close: ${happened}`);
            break;
          case 'closed-by-uws':
            assert.ok(outcome.text === '' && outcome.closed, `expected uWS to close without a response: ${happened}`);
            break;
          case 'held-by-uws':
            assert.ok(outcome.text === '' && !outcome.closed, `expected no response and an open connection for ${WATCH_MS} ms: ${happened}`);
            break;
          case 'forward':
            assert.ok(outcome.status === 200 && !outcome.closed, `expected 200 on a kept connection: ${happened}`);
            break;
        }
      }
      if (c.expect === 'forward') {
        assert.equal(toNode.length, 1, happened);
        assert.equal(toRaw.length, 1, happened);
        if (c.body !== undefined) assert.equal(toNode[0].bodyBytes, c.body.length, `body length at the server: ${happened}`);
      } else {
        assert.equal(toNode.length, 0, `forwarded to the node server: ${happened}`);
        assert.equal(toRaw.length, 0, `forwarded to the raw server: ${happened}`);
      }
    });
  }
  // Nothing without a marker reached a server either (e.g. a request smuggled in a body). The
  // controls and the known uWS failures (TODO) are the only requests a server may have seen.
  const allowed = markers.filter((_, i) => cases[i].expect === 'forward' || cases[i].todo !== undefined);
  await t.test('nothing but the valid controls reached a server', () => {
    // One "<target> HTTP/1.1<CRLF>" per request line, wherever it is (also inside a forwarded body).
    const targets = [...serverBytes.matchAll(/(\S*) HTTP\/1\.1\r\n/g)].map((match) => match[1]);
    const unexpected = targets.filter((target) => !allowed.some((m) => target.includes(m)));
    assert.deepEqual(unexpected, [], `raw server received: ${JSON.stringify(serverBytes.replace(/x-forwarded-[^\r]*\r\n/g, ''))}`);
    assert.deepEqual(
      node.seen.filter((seen) => !allowed.some((m) => seen.url.includes(m))).map((seen) => `${seen.method} ${seen.url}`),
      [],
    );
  });
}

const post = (m: string, fields: string, body: string) => `POST /${m} HTTP/1.1\r\nHost: api.example\r\n${fields}\r\n${body}`;
const get = (m: string, fields = '') => `GET /${m} HTTP/1.1\r\nHost: api.example\r\n${fields}\r\n`;
const chunked = (m: string, body: string) => post(m, 'Transfer-Encoding: chunked\r\n', body);
const CHUNKED_HELLO = '5\r\nhello\r\n0\r\n\r\n';
/** A complete request, to hide in a body or pipeline behind a rejected one. */
const smuggled = (m: string) => `GET /${m}/smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n`;

// Known uWS v20.30 behaviours carelb cannot see, let alone refuse (its handler gets the head as
// uWS parsed it and the body already de-chunked). Marked TODO: they still run and report.
const UWS_DECHUNKS =
  'uWS v20.30 de-chunks request bodies itself and does not validate chunk-size lines ("g" counts as hex 16, extension bytes as ' +
  'digits, a bare LF ends the line); carelb only sees the result, and forwards it re-chunked, so the server reads what uWS read';
const UWS_EXTENSIONS = 'uWS v20.30 has no chunk extensions: "5;a=b" is read as one huge size, the body runs into the following bytes and never ends';
const UWS_NAMELESS = 'uWS v20.30 ends the field list at a line with an empty name and drops it and every field after it; carelb never sees them';

test('Content-Length and Transfer-Encoding: conflicting, repeated or malformed framing is never forwarded', async (t) => {
  await runCases(t, [
    { name: 'Content-Length then Transfer-Encoding: chunked → closed by uWS', bytes: (m) => post(m, 'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\n'), expect: 'closed-by-uws' },
    { name: 'Transfer-Encoding: chunked then Content-Length → closed by uWS', bytes: (m) => post(m, 'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n', '0\r\n\r\n'), expect: 'closed-by-uws' },
    { name: 'two differing Content-Length fields (5, 6) → 400', bytes: (m) => post(m, 'Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'), expect: 'reject' },
    {
      name: 'two differing Content-Length fields (5, 0) with a request in the body → 400',
      bytes: (m) => post(m, 'Content-Length: 5\r\nContent-Length: 0\r\n', `GET /${m}/smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n`),
      expect: 'reject',
    },
    {
      // CL.CL desync: a front proxy that takes the last value forwards the second request as a
      // body; uWS takes the first (0) and parses it as a request of its own, pipelined behind
      // the 400. RFC 9112 §9.6: after a response with `close`, no further request is processed.
      // carelb answers refusals on the next loop turn: uWS meets the pipelined request while
      // the 400 is pending and closes the connection, so nothing behind a refusal is served.
      name: 'Content-Length: 0 then Content-Length: N, with an N-byte request as the body (CL.CL) → connection closed, the request never forwarded',
      bytes: (m) => post(m, `Content-Length: 0\r\nContent-Length: ${smuggled(m).length}\r\n`, smuggled(m)),
      expect: 'closed-by-uws',
    },
    {
      // uWS hands this request to carelb, whose 400 is then lost: uWS closes the connection as the handler returns.
      name: 'a Content-Length list of differing values (5, 6) → closed by uWS (carelb\'s 400 is dropped with it)',
      bytes: (m) => post(m, 'Content-Length: 5, 6\r\n', 'hello!'),
      expect: 'closed-by-uws',
    },
    { name: 'a Content-Length list of equal values (5, 5) → closed by uWS', bytes: (m) => post(m, 'Content-Length: 5, 5\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length: 1e3 → closed by uWS', bytes: (m) => post(m, 'Content-Length: 1e3\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length: -1 → closed by uWS', bytes: (m) => post(m, 'Content-Length: -1\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length: +5 → closed by uWS', bytes: (m) => post(m, 'Content-Length: +5\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length: " 5 5" → closed by uWS', bytes: (m) => post(m, 'Content-Length:  5 5\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length: 0x5 (hex) → closed by uWS', bytes: (m) => post(m, 'Content-Length: 0x5\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Content-Length of 23 digits → closed by uWS', bytes: (m) => post(m, 'Content-Length: 99999999999999999999999\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'an empty Content-Length → 400', bytes: (m) => post(m, 'Content-Length: \r\n', 'hello'), expect: 'reject' },
    { name: 'Transfer-Encoding: gzip → closed by uWS', bytes: (m) => post(m, 'Transfer-Encoding: gzip\r\n', 'hello'), expect: 'closed-by-uws' },
    { name: 'Transfer-Encoding: chunked, gzip (chunked not last) → 400', bytes: (m) => post(m, 'Transfer-Encoding: chunked, gzip\r\n', CHUNKED_HELLO), expect: 'reject' },
    { name: 'Transfer-Encoding: xchunked → 400', bytes: (m) => post(m, 'Transfer-Encoding: xchunked\r\n', CHUNKED_HELLO), expect: 'reject' },
    { name: 'Transfer-Encoding: chunked;foo → 400', bytes: (m) => post(m, 'Transfer-Encoding: chunked;foo\r\n', CHUNKED_HELLO), expect: 'reject' },
    { name: 'Transfer-Encoding: identity → 400', bytes: (m) => post(m, 'Transfer-Encoding: identity\r\n', ''), expect: 'reject' },
    { name: 'Transfer-Encoding: chunked in two fields (chunked applied twice) → 400', bytes: (m) => post(m, 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', CHUNKED_HELLO), expect: 'reject' },
    {
      // RFC 9112 §6.1: a coding carelb does not apply itself must not be dropped silently; 501 is the RFC's answer.
      name: 'Transfer-Encoding: gzip, chunked (a coding carelb would drop) → 400 or 501',
      bytes: (m) => post(m, 'Transfer-Encoding: gzip, chunked\r\n', CHUNKED_HELLO),
      expect: 'reject',
      statuses: [400, 501],
    },
    // Controls: valid framing is forwarded (so the checks above can tell "forwarded" apart).
    { name: 'control: Content-Length: 5 is forwarded', bytes: (m) => post(m, 'Content-Length: 5\r\n', 'hello'), expect: 'forward', body: 'hello' },
    { name: 'control: two equal Content-Length fields are forwarded as one (RFC 9110 §8.6)', bytes: (m) => post(m, 'Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'), expect: 'forward', body: 'hello' },
    { name: 'control: Transfer-Encoding: chunked is forwarded', bytes: (m) => chunked(m, CHUNKED_HELLO), expect: 'forward', body: 'hello' },
    { name: 'control: Transfer-Encoding: Chunked (codings are case-insensitive) is forwarded', bytes: (m) => post(m, 'Transfer-Encoding: Chunked\r\n', CHUNKED_HELLO), expect: 'forward', body: 'hello' },
  ]);
});

test('chunked request bodies: invalid chunk sizes or extensions are never forwarded', async (t) => {
  await runCases(t, [
    { name: 'chunk size "g" (not hex) → 400', bytes: (m) => chunked(m, 'g\r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk size "-5" → closed by uWS', bytes: (m) => chunked(m, '-5\r\nhello\r\n0\r\n\r\n'), expect: 'closed-by-uws' },
    { name: 'chunk size "0x5" → closed by uWS', bytes: (m) => chunked(m, '0x5\r\nhello\r\n0\r\n\r\n'), expect: 'closed-by-uws' },
    { name: 'chunk size of 20 hex digits → closed by uWS', bytes: (m) => chunked(m, 'ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n'), expect: 'closed-by-uws' },
    { name: 'an empty chunk-size line → 400', bytes: (m) => chunked(m, '\r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk size followed by a space ("5 ") → 400', bytes: (m) => chunked(m, '5 \r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk-size line ended by a bare LF → 400', bytes: (m) => chunked(m, '5\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk extension containing a bare LF → 400', bytes: (m) => chunked(m, '5;a\nb\r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk extension containing NUL → 400', bytes: (m) => chunked(m, '5;a\0\r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    { name: 'chunk data longer than its size (3, "hello") → 400', bytes: (m) => chunked(m, '3\r\nhello\r\n0\r\n\r\n'), expect: 'reject', todo: UWS_DECHUNKS },
    {
      name: 'chunk data longer than its size, with a request after it → closed by uWS',
      bytes: (m) => chunked(m, `3\r\nhelGET /${m}/smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n`),
      expect: 'closed-by-uws',
    },
    {
      name: 'chunk data not followed by CRLF, with a request after it → closed by uWS',
      bytes: (m) => chunked(m, `5\r\nhello0\r\n\r\nGET /${m}/smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n`),
      expect: 'closed-by-uws',
    },
    // Valid chunk extensions (RFC 9112 §7.1.1) must be ignored, the body forwarded intact.
    { name: 'control: a valid chunk extension (5;a=b) is forwarded with its 5-byte body', bytes: (m) => chunked(m, '5;a=b\r\nhello\r\n0\r\n\r\n'), expect: 'forward', body: 'hello', todo: UWS_EXTENSIONS },
    { name: 'control: upper-case hex and leading zeros are forwarded', bytes: (m) => chunked(m, '000A\r\n0123456789\r\n0\r\n\r\n'), expect: 'forward', body: '0123456789' },
    { name: 'control: a chunked body with a trailer field is forwarded', bytes: (m) => chunked(m, '5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n'), expect: 'forward', body: 'hello' },
  ]);
});

test('header fields: folding, bare CR/LF, NUL, spaces before the colon and invalid names are never forwarded', async (t) => {
  await runCases(t, [
    { name: 'obsolete line folding (SP) → held by uWS', bytes: (m) => get(m, 'X-A: one\r\n two\r\n'), expect: 'held-by-uws' },
    { name: 'obsolete line folding (HTAB) → held by uWS', bytes: (m) => get(m, 'X-A: one\r\n\ttwo\r\n'), expect: 'held-by-uws' },
    { name: 'folding on the first field line → held by uWS', bytes: (m) => `GET /${m} HTTP/1.1\r\n X-A: one\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'bare CR inside a value → held by uWS', bytes: (m) => get(m, 'X-A: o\rne\r\n'), expect: 'held-by-uws' },
    { name: 'bare CR ending a field line → held by uWS', bytes: (m) => get(m, 'X-A: one\rX-B: two\r\n'), expect: 'held-by-uws' },
    { name: 'bare LF line ends throughout → held by uWS', bytes: (m) => `GET /${m} HTTP/1.1\nHost: api.example\nX-A: one\n\n`, expect: 'held-by-uws' },
    { name: 'bare LF inside a value → held by uWS', bytes: (m) => get(m, 'X-A: o\nne\r\n'), expect: 'held-by-uws' },
    { name: 'bare LF ending one field line → held by uWS', bytes: (m) => get(m, 'X-A: one\nX-B: two\r\n'), expect: 'held-by-uws' },
    { name: 'NUL in a value → held by uWS', bytes: (m) => get(m, 'X-A: o\0ne\r\n'), expect: 'held-by-uws' },
    { name: 'NUL in a name → held by uWS', bytes: (m) => get(m, 'X-\0A: one\r\n'), expect: 'held-by-uws' },
    { name: 'a control character (0x01) in a value → held by uWS', bytes: (m) => get(m, 'X-A: o\x01ne\r\n'), expect: 'held-by-uws' },
    { name: 'DEL (0x7f) in a value → 400', bytes: (m) => get(m, 'X-A: o\x7fne\r\n'), expect: 'reject' },
    { name: 'a space before the colon → held by uWS', bytes: (m) => get(m, 'X-A : one\r\n'), expect: 'held-by-uws' },
    { name: 'a space before the colon of Content-Length → held by uWS', bytes: (m) => post(m, 'Content-Length : 5\r\n', 'hello'), expect: 'held-by-uws' },
    { name: 'a tab before the colon → held by uWS', bytes: (m) => get(m, 'X-A\t: one\r\n'), expect: 'held-by-uws' },
    { name: 'a space inside a name → held by uWS', bytes: (m) => get(m, 'X A: one\r\n'), expect: 'held-by-uws' },
    { name: 'a non-token character (@) in a name → held by uWS', bytes: (m) => get(m, 'X@A: one\r\n'), expect: 'held-by-uws' },
    { name: 'a field line without a colon → held by uWS', bytes: (m) => get(m, 'X-A one\r\n'), expect: 'held-by-uws' },
    { name: 'an empty field name (": one") → 400', bytes: (m) => get(m, ': one\r\nX-After: dropped\r\n'), expect: 'reject', todo: UWS_NAMELESS },
    { name: 'two Host fields (RFC 9112 §3.2: MUST be 400) → 400', bytes: (m) => get(m, 'Host: other.example\r\n'), expect: 'reject' },
    {
      name: 'two Host fields with a request pipelined behind → connection closed, the pipelined request never forwarded (RFC 9112 §9.6)',
      bytes: (m) => get(m, 'Host: other.example\r\n') + smuggled(m),
      expect: 'closed-by-uws',
    },
    { name: 'HTTP/1.1 without Host, other fields present → closed by uWS', bytes: (m) => `GET /${m} HTTP/1.1\r\nX-A: one\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'HTTP/1.1 without any field (no Host) → held by uWS', bytes: (m) => `GET /${m} HTTP/1.1\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'control: a value with a tab and visible characters is forwarded', bytes: (m) => get(m, 'X-A: one\ttwo "three"\r\n'), expect: 'forward' },
  ]);
});

test('request line: invalid methods, targets and HTTP versions are never forwarded', async (t) => {
  // Methods are case-sensitive tokens (RFC 9110 §9.1): "get" is a valid token but not GET. uWS
  // v20.30 routes only the methods it knows and closes the connection for any other, valid
  // token or not, so "get" and extension methods are consistently refused, never forwarded.
  const many = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
  await runCases(t, [
    { name: 'method G@T (not a token) → closed by uWS', bytes: (m) => `G@T /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'method G(T (not a token) → closed by uWS', bytes: (m) => `G(T /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'an empty method → closed by uWS', bytes: (m) => ` /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'NUL in the method → held by uWS', bytes: (m) => `G\0T /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'method "get" (lower case: not GET) → closed by uWS', bytes: (m) => `get /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'an extension method (PROPFIND) → closed by uWS', bytes: (m) => `PROPFIND /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'closed-by-uws' },
    { name: 'two spaces after the method → held by uWS', bytes: (m) => `GET  /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'target "foo" (not origin-form) → held by uWS', bytes: (m) => `GET foo HTTP/1.1\r\nHost: api.example\r\nX-Case: ${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'target "/a b" (space in the target) → held by uWS', bytes: (m) => `GET /a b HTTP/1.1\r\nHost: api.example\r\nX-Case: ${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'a tab in the target → held by uWS', bytes: (m) => `GET /a\tb HTTP/1.1\r\nHost: api.example\r\nX-Case: ${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'a control character (0x01) in the target → held by uWS', bytes: (m) => `GET /a\x01b HTTP/1.1\r\nHost: api.example\r\nX-Case: ${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'DEL (0x7f) in the target → 400', bytes: (m) => `GET /${m}\x7f HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'reject' },
    { name: 'a non-ASCII byte (0xe9) in the target → 400', bytes: (m) => `GET /${m}\xe9 HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'reject' },
    { name: 'a fragment (#) in the target → 400', bytes: (m) => `GET /${m}#frag HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'reject' },
    {
      name: 'an invalid target with a request pipelined behind → connection closed, the pipelined request never forwarded (RFC 9112 §9.6)',
      bytes: (m) => `GET /${m}\xe9 HTTP/1.1\r\nHost: api.example\r\n\r\n${smuggled(m)}`,
      expect: 'closed-by-uws',
    },
    {
      // RFC 9112 §3.2.2 says a server MUST accept absolute-form; uWS v20.30 never hands it over.
      name: 'absolute-form target (http://x/) → held by uWS (a uWS limit: RFC 9112 §3.2.2 wants it accepted)',
      bytes: (m) => `GET http://api.example/${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`,
      expect: 'held-by-uws',
    },
    { name: 'asterisk-form (OPTIONS *) → held by uWS', bytes: (m) => `OPTIONS * HTTP/1.1\r\nHost: api.example\r\nX-Case: ${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/0.9 ("GET /x" CRLF) → held by uWS', bytes: (m) => `GET /${m}\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/0.9 followed by an empty line → held by uWS', bytes: (m) => `GET /${m}\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/1.0 (README: never handed to carelb) → held by uWS', bytes: (m) => `GET /${m} HTTP/1.0\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/1.2 → held by uWS', bytes: (m) => `GET /${m} HTTP/1.2\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/1.10 → held by uWS', bytes: (m) => `GET /${m} HTTP/1.10\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'HTTP/2.0 → held by uWS', bytes: (m) => `GET /${m} HTTP/2.0\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'the HTTP/2 preface (PRI * HTTP/2.0) → held by uWS', bytes: (m) => `PRI * HTTP/2.0\r\nX-Case: ${m}\r\n\r\nSM\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'a lower-case version (http/1.1) → held by uWS', bytes: (m) => `GET /${m} http/1.1\r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: 'a space after the version → held by uWS', bytes: (m) => `GET /${m} HTTP/1.1 \r\nHost: api.example\r\n\r\n`, expect: 'held-by-uws' },
    { name: '50 header lines (uWS limit: at most 49) → held by uWS', bytes: (m) => get(m, many(49)), expect: 'held-by-uws' },
    { name: '60 header lines → held by uWS', bytes: (m) => get(m, many(59)), expect: 'held-by-uws' },
    { name: 'control: GET with a query is forwarded', bytes: (m) => `GET /${m}?a=1&b=%20 HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'forward' },
    { name: 'control: DELETE is forwarded', bytes: (m) => `DELETE /${m} HTTP/1.1\r\nHost: api.example\r\n\r\n`, expect: 'forward' },
  ]);
});

test('a request hidden behind a nameless field line never reaches a server (uWS closes at the second request)', async (t) => {
  // uWS drops the nameless line and every field after it, Content-Length included, so the body
  // below is parsed as a second, pipelined request; uWS closes the connection there. The POST
  // itself may reach the server first, without its body (see the TODO case above).
  const { node, raw, nodePort, rawPort } = await stage(t);
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: api.example\r\n\r\n';
  const bytes = `POST /first HTTP/1.1\r\nHost: api.example\r\n: x\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`;
  const outcomes = await Promise.all([rawSend(nodePort, bytes, WATCH_MS), rawSend(rawPort, bytes, WATCH_MS)]);
  for (const outcome of outcomes) assert.ok(outcome.closed && outcome.text === '', `expected uWS to close without a response: ${describe(outcome)}`);
  assert.doesNotMatch(rawText(raw), /smuggled/);
  assert.deepEqual(node.seen.filter((seen) => seen.url.includes('smuggled')), []);
  t.diagnostic(`POST /first reached the node server ${node.seen.length} time(s), the raw server ${rawText(raw).split('POST /first').length - 1} time(s)`);
});
