/**
 * Certificate rotation without cutting anyone (issue 11, point 3). A reload with new
 * certificates opens a new listener beside the old one; the old one must tell each of its
 * clients to leave (`Connection: close` on the next complete response, whatever its framing),
 * close the idle ones once nothing is in flight on it, and never cut a request in flight.
 *
 * Clients are raw TLS sockets so the test sees exactly what happens on each connection:
 * which certificate it was served, every response, and how the connection ended.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import type * as net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as tls from 'node:tls';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import { eventually, tempDir } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';
import { parseResponse, type RawResponse } from '../helpers/raw-client';
import { startScriptedBackend } from '../helpers/raw-server';

/** One TLS client connection: requests one at a time, responses parsed strictly. */
class TlsClient {
  readonly socket: tls.TLSSocket;
  readonly ready: Promise<void>;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint = '';
  closed = false;
  /** The connection ended by an error or reset rather than an orderly close. */
  error: string | null = null;
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;

  constructor(port: number, ca: Buffer) {
    this.socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('secureConnect', () => {
        this.fingerprint = this.socket.getPeerCertificate().fingerprint256;
        resolve();
      });
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) => (this.error = error.code ?? error.message));
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  /** Sends a GET and resolves with its response, or null if the connection closed first (a cut). */
  async get(path: string, maxMs = 10_000): Promise<RawResponse | null> {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const deadline = Date.now() + maxMs;
    for (;;) {
      let parsed: ReturnType<typeof parseResponse>;
      try {
        parsed = parseResponse(this.buffer);
      } catch (error) {
        throw new Error(`${(error as Error).message} in ${JSON.stringify(this.buffer.toString('latin1'))}`);
      }
      if (parsed) {
        this.buffer = this.buffer.subarray(parsed.consumed);
        return parsed.response;
      }
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error(`no response to ${path} within ${maxMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  whenClosed(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

interface Stage {
  running: Running;
  port: number;
  ca: Buffer;
  /** Fingerprints of the first and second certificate. */
  before: string;
  after: string;
  /** Switches the config file to the second certificate and reloads. */
  rotate(): Promise<void>;
  /** Answers the held /slow request. */
  releaseSlow(): void;
  slowArrived(): boolean;
}

function fingerprintOf(pem: string): string {
  return new (require('node:crypto').X509Certificate)(readFileSync(pem)).fingerprint256;
}

async function stage(t: TestContext, workers: number): Promise<Stage> {
  const dir = tempDir(t);
  const ca = makeCa(dir);
  const first = makeCert(dir, ca, 'first', { cn: 'localhost', sans: ['DNS:localhost'] });
  const second = makeCert(dir, ca, 'second', { cn: 'localhost', sans: ['DNS:localhost'] });
  // The file paths stay; their contents change, as when an operator drops in renewed files.
  const certPath = join(dir, 'api.pem');
  const keyPath = join(dir, 'api.key');
  copyFileSync(first.cert, certPath);
  copyFileSync(first.key, keyPath);
  let slow: net.Socket | null = null;
  const backend = await startScriptedBackend((request, socket) => {
    if (request.path === '/slow') slow = socket;
    else if (request.path.startsWith('/chunked')) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    else if (request.path.startsWith('/empty')) socket.write('HTTP/1.1 204 No Content\r\n\r\n');
    else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  t.after(() => backend.close());
  const port = await freePort();
  const document = {
    workers,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, tls: { cert: certPath, key: keyPath }, servers: [{ name: 'raw', address: backend.address }] }],
  };
  const configPath = join(dir, 'carelb.yaml');
  const text = stringify(document);
  writeFileSync(configPath, text);
  const loaded = loadConfigText(text, configPath);
  assert.ok(loaded.ok);
  const running = await runCarelb(loaded.config, { configPath, configText: text, log: createLogger('warn') });
  t.after(() => running.stop());
  return {
    running,
    port,
    ca: readFileSync(ca.cert),
    before: fingerprintOf(first.cert),
    after: fingerprintOf(second.cert),
    rotate: async () => {
      copyFileSync(second.cert, certPath);
      copyFileSync(second.key, keyPath);
      const result = await running.reload('test');
      assert.ok(result.ok, JSON.stringify(result));
    },
    releaseSlow: () => slow!.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow'),
    slowArrived: () => slow !== null,
  };
}

test('rotating the certificate under keep-alive load fails nothing: every old connection leaves after a complete response', async (t) => {
  const lb = await stage(t, 2);
  const outcome = { ok: 0, failed: [] as string[], closeTold: 0, connections: 0, newCert: 0 };
  let rotatedAt = 0;
  let stop = false;
  const paths = ['/sized', '/chunked', '/empty'];
  const lane = async (index: number) => {
    let n = 0;
    while (!stop) {
      const client = new TlsClient(lb.port, lb.ca);
      t.after(() => client.destroy());
      await client.ready;
      outcome.connections++;
      const connectedAfterRotation = rotatedAt !== 0;
      if (client.fingerprint === lb.after) outcome.newCert++;
      else if (connectedAfterRotation) outcome.failed.push(`lane ${index}: a connection made after the reload got the old certificate`);
      // Keep-alive requests on this connection until carelb says close (or the lane stops).
      for (;;) {
        const path = paths[n++ % paths.length];
        const response = await client.get(path);
        if (response === null) {
          outcome.failed.push(`lane ${index}: ${path} cut (connection closed before a complete response; ${client.error ?? 'no error'})`);
          break;
        }
        if (response.status !== 200 && response.status !== 204) outcome.failed.push(`lane ${index}: ${path} got ${response.status}`);
        else outcome.ok++;
        if (response.headers.connection === 'close') {
          // As HTTP clients do (RFC 9112 §9.6): no further request on it; reconnect.
          outcome.closeTold++;
          if (client.error !== null) outcome.failed.push(`lane ${index}: ${client.error} on a connection told to close`);
          break;
        }
        if (stop) break;
      }
      client.destroy();
    }
  };
  const lanes = Array.from({ length: 12 }, (_, i) => lane(i));
  await eventually(() => outcome.ok >= 200, 20_000, 'traffic on the first certificate');
  await lb.rotate();
  rotatedAt = Date.now();
  const okAtRotation = outcome.ok;
  await eventually(() => outcome.ok >= okAtRotation + 400, 20_000, 'traffic after the rotation');
  stop = true;
  await Promise.all(lanes);
  t.diagnostic(`${outcome.ok} answers, ${outcome.connections} connections, ${outcome.closeTold} told to close, ${outcome.newCert} on the new certificate`);
  assert.deepEqual(outcome.failed, []);
  // Each of the 12 lanes had an open connection on the old listener and was told to leave.
  assert.ok(outcome.closeTold >= 12, `${outcome.closeTold} connections were told to close`);
  assert.ok(outcome.newCert >= 12, 'every lane moved to the new certificate');
});

test('an idle connection on the replaced listener is closed once nothing is in flight; a request in flight across the rotation completes', async (t) => {
  const lb = await stage(t, 1);
  const idle = new TlsClient(lb.port, lb.ca);
  const busy = new TlsClient(lb.port, lb.ca);
  t.after(() => {
    idle.destroy();
    busy.destroy();
  });
  await Promise.all([idle.ready, busy.ready]);
  assert.equal((await idle.get('/first'))?.status, 200);
  const slow = busy.get('/slow');
  await eventually(lb.slowArrived, 5000, '/slow to reach the server');
  await lb.rotate();
  // While /slow is in flight on the old listener, nothing of it closes.
  const fresh = new TlsClient(lb.port, lb.ca);
  t.after(() => fresh.destroy());
  await fresh.ready;
  assert.equal(fresh.fingerprint, lb.after);
  assert.equal((await fresh.get('/new'))?.status, 200);
  assert.equal(idle.closed, false, 'the idle connection waits while a request is in flight on its listener');
  lb.releaseSlow();
  const answer = await slow;
  assert.ok(answer, 'the request in flight across the rotation was not cut');
  assert.equal(answer.status, 200);
  assert.equal(answer.body.toString(), 'slow');
  assert.equal(answer.headers.connection, 'close', 'and its client is told to leave');
  await busy.whenClosed();
  await idle.whenClosed(); // closed by carelb (no request on it), within LINGER_QUIET_MS
  assert.equal(idle.error, null, 'an orderly close, not a reset');
  assert.equal(busy.error, null);
});
