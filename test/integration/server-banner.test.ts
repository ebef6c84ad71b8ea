/**
 * No server banner (issue 13): uWS v20.30 adds `uWebSockets: 20` to every response unless
 * `_cfg('silent')` runs before any app exists. Scanners flag such banners. Checked on the raw
 * bytes of proxied responses and of answers carelb gives itself (400, 431, 502, 503, redirect),
 * through carelb running as a process, the way clients see it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBackend } from '../helpers/backend';
import { startChild } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { rawSend, RawConnection } from '../helpers/raw-client';

const BANNER = /^uwebsockets\s*:/im;

test('no uWebSockets header on proxied responses nor on carelb’s own error and redirect answers', async (t) => {
  const api = await startBackend('api');
  t.after(() => api.close());
  const [port, downPort, redirectPort, closedPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  await startChild(t, {
    workers: 1,
    pin_workers: false,
    virtual_services: [
      { name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] },
      // Nothing listens on closedPort: every request there is a 502.
      { name: 'down', listen: `127.0.0.1:${downPort}`, servers: [{ name: 'gone', address: `127.0.0.1:${closedPort}` }] },
      { name: 'redirect', listen: `127.0.0.1:${redirectPort}`, redirect_https: true },
    ],
  });

  const connection = new RawConnection(port);
  t.after(() => connection.destroy());
  await connection.ready;
  connection.send('GET /fhir/r4/metadata HTTP/1.1\r\nHost: api\r\n\r\n');
  const proxied = await connection.response();
  assert.equal(proxied?.status, 200);
  assert.doesNotMatch(proxied!.raw, BANNER, `proxied response:\n${proxied!.raw}`);

  const answers = [
    { what: '400 malformed request', port, bytes: 'GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', status: 400 },
    { what: '431 headers too large', port, bytes: `GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431 },
    { what: '502 server unreachable', port: downPort, bytes: 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', status: 502 },
    { what: '301 redirect to https', port: redirectPort, bytes: 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', status: 301 },
  ];
  for (const answer of answers) {
    const outcome = await rawSend(answer.port, answer.bytes, 5000);
    assert.equal(outcome.status, answer.status, `${answer.what}:\n${outcome.text}`);
    assert.doesNotMatch(outcome.text, BANNER, `${answer.what}:\n${outcome.text}`);
  }
});
