/**
 * Handshake load: every request on a new TLS connection. autocannon cannot do this well (its
 * reconnectRate reconnects after a response but keeps its own bookkeeping per connection), so
 * this runs `--connections` concurrent loops of: tls.connect (full handshake: no session is
 * offered for resumption) → one GET → read the whole response → close (close_notify + FIN) →
 * wait for the socket to close → next. Each loop stops at the end of the window.
 *
 * The latency recorded is the whole connection: TCP connect + TLS handshake + request +
 * response, from tls.connect() to the last body byte.
 */
import * as tls from 'node:tls';
import { Measurement, type LoadResult, type LoadSpec } from './measure';

/** A connection that has not completed within this is a timeout. */
const CONNECTION_TIMEOUT_MS = 5000;
/** After the response, how long to wait for the proxy to close its side before giving up. */
const CLOSE_WAIT_MS = 1000;

/** Parses enough of a response to know when it is complete. */
class ResponseReader {
  private buf: Buffer = Buffer.alloc(0);
  private headEnd = -1;
  private contentLength = -1;
  status = 0;

  /** Feeds bytes; returns true once the whole response (head + Content-Length body) is in. */
  push(chunk: Buffer): boolean {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.headEnd < 0) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return false;
      this.headEnd = i + 4;
      const head = this.buf.subarray(0, i).toString('latin1');
      this.status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      // Every bench backend sends Content-Length; anything else reads until close.
      this.contentLength = m ? Number(m[1]) : -1;
    }
    return this.contentLength >= 0 && this.buf.length - this.headEnd >= this.contentLength;
  }
}

/** Resolves when the socket has closed: true when a complete response came back. */
function oneConnection(spec: LoadSpec, request: Buffer, m: Measurement): Promise<boolean> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const reader = new ResponseReader();
    let done = false;
    let failed = false;
    const socket = tls.connect({
      host: spec.host,
      port: spec.port,
      servername: 'localhost',
      // The bench CA is throw-away; what is measured is the server side of the handshake.
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      if (!done) {
        failed = true;
        m.error(true);
      }
      socket.destroy();
    }, CONNECTION_TIMEOUT_MS);
    socket.setNoDelay(true);
    socket.once('secureConnect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      if (done || !reader.push(chunk)) return;
      done = true;
      m.response(reader.status, Number(process.hrtime.bigint() - t0) / 1000);
      socket.end();
      timer.refresh();
      setTimeout(() => socket.destroy(), CLOSE_WAIT_MS).unref();
    });
    socket.on('end', () => {
      // A close-delimited response would end here; ours never are, so an early end is an error.
      if (!done && !failed) {
        failed = true;
        m.error(false);
      }
    });
    socket.on('error', () => {
      if (!done && !failed) {
        failed = true;
        m.error(false);
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(done);
    });
  });
}

export async function runHandshakeLoad(spec: LoadSpec): Promise<LoadResult> {
  const m = new Measurement();
  const request = Buffer.from(`GET /fhir/r4/Patient/example HTTP/1.1\r\nHost: localhost:${spec.port}\r\nUser-Agent: carelb-bench\r\nAccept: application/json\r\n\r\n`);
  let stopped = false;
  // Bounded in time and count whatever happens to the window timers.
  const hardDeadline = Date.now() + spec.warmupMs + spec.durationMs + 5000;
  const maxConnections = 10_000_000;
  let started = 0;
  const loop = async (): Promise<void> => {
    while (!stopped && Date.now() < hardDeadline && started < maxConnections) {
      started++;
      if (!(await oneConnection(spec, request, m))) {
        // A proxy refusing every connection would otherwise spin this loop flat out.
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const loops = Array.from({ length: spec.connections }, loop);
  await m.run(spec, () => (stopped = true));
  await Promise.all(loops);
  return m.result();
}
