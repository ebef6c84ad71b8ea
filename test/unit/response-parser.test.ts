import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponseParser, type ResponseEvents } from '../../src/upstream/response-parser';

interface Parsed {
  heads: { status: number; statusLine: string; block: string; raw: Buffer; contentLength: number; bodyless: boolean }[];
  body: string;
  complete: number;
  error: string | null;
}

function parser(bodyless = false): { parser: ResponseParser; out: Parsed } {
  const out: Parsed = { heads: [], body: '', complete: 0, error: null };
  const events: ResponseEvents = {
    onHead: (status, head, contentLength, isBodyless) => {
      // The head is "status line" + "\r\nName: value..." lines, bytes for uWS's writeStatus,
      // valid only during the callback (the parser's scratch): copied here.
      const raw = Buffer.from(head);
      const text = raw.toString('latin1');
      const lineEnd = text.indexOf('\r\n');
      const statusLine = lineEnd === -1 ? text : text.slice(0, lineEnd);
      out.heads.push({ status, statusLine, block: lineEnd === -1 ? '' : text.slice(lineEnd), raw, contentLength, bodyless: isBodyless });
    },
    onBody: (chunk) => (out.body += Buffer.from(chunk).toString('latin1')),
    onComplete: () => out.complete++,
    onParseError: (reason) => (out.error = reason),
  };
  const p = new ResponseParser(events, 1024);
  p.expect(bodyless);
  return { parser: p, out };
}

/** Feeds `text` split at every possible position (and whole), checking the same result each time. */
function feedEverySplit(text: string, check: (out: Parsed, p: ResponseParser) => void, bodyless = false): void {
  const bytes = Buffer.from(text, 'latin1');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { parser: p, out } = parser(bodyless);
    p.execute(Buffer.from(bytes.subarray(0, cut)));
    p.execute(Buffer.from(bytes.subarray(cut)));
    check(out, p);
  }
}

test('a Content-Length response is parsed whatever the read boundaries', () => {
  feedEverySplit('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello', (out, p) => {
    assert.equal(out.error, null);
    assert.equal(out.heads.length, 1);
    assert.equal(out.heads[0].status, 200);
    assert.equal(out.heads[0].statusLine, '200 OK');
    assert.equal(out.heads[0].block, '\r\nContent-Type: application/json\r\nX-A: 1');
    assert.equal(out.heads[0].contentLength, 5);
    assert.equal(out.body, 'hello');
    assert.equal(out.complete, 1);
    assert.equal(p.keepAlive, true);
  });
});

test('a chunked response with extensions and trailers is de-chunked, trailers dropped', () => {
  const text = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Checksum: abc\r\n\r\n';
  feedEverySplit(text, (out, p) => {
    assert.equal(out.error, null);
    assert.equal(out.heads[0].contentLength, -1);
    assert.equal(out.heads[0].block, '');
    assert.equal(out.body, 'hello, world!!!');
    assert.equal(out.complete, 1);
    assert.equal(p.keepAlive, true);
  });
});

test('a response without framing is read until the server closes', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, '));
  p.execute(Buffer.from('part two'));
  assert.equal(out.complete, 0);
  assert.equal(p.keepAlive, false);
  assert.equal(p.finish(), true);
  assert.equal(out.body, 'part one, part two');
  assert.equal(out.complete, 1);
});

test('a truncated Content-Length body is not complete when the server closes', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
  assert.equal(p.finish(), false);
  assert.equal(out.complete, 0);
});

test('HEAD, 204 and 304 responses have no body whatever their Content-Length says', () => {
  const head = parser(true);
  head.parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n'));
  assert.deepEqual([head.out.heads[0].contentLength, head.out.heads[0].bodyless, head.out.complete], [1234, true, 1]);
  for (const status of ['204 No Content', '304 Not Modified']) {
    const { parser: p, out } = parser();
    p.execute(Buffer.from(`HTTP/1.1 ${status}\r\nETag: "x"\r\n\r\n`));
    assert.equal(out.heads[0].bodyless, true);
    assert.equal(out.complete, 1);
    assert.equal(p.keepAlive, true);
  }
});

test('1xx interim responses are swallowed and the final response follows', () => {
  feedEverySplit('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok', (out) => {
    assert.equal(out.error, null);
    assert.equal(out.heads.length, 1);
    assert.equal(out.heads[0].status, 201);
    assert.equal(out.body, 'ok');
  });
});

test('hop-by-hop fields and those named by Connection are removed; Connection: close ends reuse', () => {
  const { parser: p, out } = parser();
  p.execute(
    Buffer.from(
      'HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: secret\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nTrailer: X-Sum\r\nX-Public: yes\r\nContent-Length: 0\r\n\r\n',
    ),
  );
  assert.equal(out.heads[0].block, '\r\nX-Public: yes');
  assert.equal(p.keepAlive, false);
});

test('HTTP/1.0 responses are not kept alive unless they ask for it', () => {
  const plain = parser();
  plain.parser.execute(Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'));
  assert.equal(plain.parser.keepAlive, false);
  const ka = parser();
  ka.parser.execute(Buffer.from('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n'));
  assert.equal(ka.parser.keepAlive, true);
});

test('malformed responses are errors, never passed on', () => {
  const cases: [string, RegExp][] = [
    ['HTTP/2.0 200 OK\r\n\r\n', /status line|version/],
    ['HTTP/1.2 200 OK\r\n\r\n', /version/],
    ['HTTP/1.1 2000 OK\r\n\r\n', /status/],
    ['HTTP/1.1 600 Nope\r\n\r\n', /status/],
    ['SSH-2.0-OpenSSH\r\n\r\n', /status line/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', /conflicting Content-Length/],
    ['HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', /invalid Content-Length/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', /both Transfer-Encoding and Content-Length/],
    ['HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n', /folding/],
    ['HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n', /header name/],
    ['HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n', /bare CR/],
    ['HTTP/1.1 200 O\rK\r\nX-A: a\r\n\r\n', /bare CR/],
    ['HTTP/1.1 200 OK\r\nX-A: a\nb\r\n\r\n', /invalid character/],
    ['HTTP/1.1 200 OK\r\nX-A: a\u0000b\r\n\r\n', /invalid character/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /chunk size/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX', /CRLF/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n', /too large/],
    ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', /protocol switch/],
  ];
  for (const [text, reason] of cases) {
    const { parser: p, out } = parser();
    p.execute(Buffer.from(text, 'latin1'));
    assert.match(out.error ?? 'no error', reason, JSON.stringify(text));
    assert.equal(p.keepAlive, false);
    assert.equal(out.complete, 0);
  }
});

test('a response head larger than the limit is an error', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(2000)}`));
  assert.match(out.error ?? '', /too large/);
});

test('bytes after a complete response forbid reusing the connection', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n'));
  assert.equal(out.complete, 1);
  assert.equal(p.keepAlive, false);
});

test('data arriving with no request pending is an error', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\n'));
  assert.match(out.error ?? '', /without a pending request/);
});

test('a head holding bytes above 0x7f (obs-text) is handed on as those bytes, not as text to re-encode', () => {
  const { parser: p, out } = parser();
  p.execute(Buffer.from('HTTP/1.1 200 Ol\xe9\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n', 'latin1'));
  assert.equal(out.error, null);
  assert.deepEqual(out.heads[0].raw, Buffer.from('200 Ol\xe9\r\nX-Name: caf\xe9', 'latin1'));
});

test('a head is handed on as bytes, never as a string (uWS would convert a string to UTF-8)', () => {
  const { parser: p } = parser();
  let head: unknown = null;
  (p as unknown as { events: { onHead: (s: number, h: Uint8Array) => void } }).events.onHead = (_status, h) => (head = h);
  p.execute(Buffer.from('HTTP/1.1 200 OK\r\nX-Name: cafe\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n', 'latin1'));
  assert.ok(head instanceof Uint8Array);
  assert.equal(Buffer.from(head).toString('latin1'), '200 OK\r\nX-Name: cafe');
  assert.equal(p.keepAlive, true);
});

test('only the first `length` bytes of a reused read buffer are parsed: stale bytes after them are never read', () => {
  const stale = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloXXXXXXXXXXXXXXXX\r\n\r\n', 'latin1');
  const buffer = Buffer.alloc(stale.length, 0);
  stale.copy(buffer);
  const fresh = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n';
  buffer.write(fresh, 0, 'latin1');
  const { parser: p, out } = parser();
  // A head cut after its last field: the CRLFCRLF in the stale bytes must not complete it.
  p.execute(buffer, fresh.length);
  assert.equal(out.heads.length, 0);
  assert.equal(out.error, null);
  p.execute(Buffer.from('\r\nhel', 'latin1'));
  assert.equal(out.heads.length, 1);
  // A body cut short by `length`: only its valid bytes are delivered.
  buffer.write('lo-and-more', 0, 'latin1');
  p.execute(buffer, 2);
  assert.equal(out.body, 'hello');
  assert.equal(out.complete, 1);
});

test('Transfer-Encoding decides by its last coding, whatever the case and spacing', () => {
  for (const [value, chunked] of [['chunked', true], [' Chunked ', true], ['gzip, chunked', true], ['chunked, gzip', false], ['gzip', false]] as const) {
    const { parser: p, out } = parser();
    p.execute(Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${value}\r\n\r\n${chunked ? '2\r\nhi\r\n0\r\n\r\n' : 'hi'}`, 'latin1'));
    assert.equal(out.error, null, value);
    assert.equal(out.body, 'hi', value);
    assert.equal(out.complete, chunked ? 1 : 0, value);
    if (!chunked) assert.equal(p.keepAlive, false, value);
  }
});
