/**
 * Reading requests and writing JSON answers on the admin server (node:http in the primary),
 * shared by the API (server.ts) and the HA endpoints (sync.ts). The rules, issue 13:
 *
 * - A body is read only up to a limit. One declared larger is refused at once; one that grows
 *   larger while it streams is refused when it does. Either way the client gets its 413 before
 *   the connection closes (`Connection: close`, and the rest of the body is read and dropped
 *   by node:http meanwhile, so the close is not a reset that could destroy the answer).
 * - `Expect: 100-continue` (RFC 9110 §10.1.1): the server registers this module's handler for
 *   'checkContinue' too, and sends `100 Continue` only when it is going to read the body; a
 *   request refused earlier (401, 403, 413, 503) gets its final answer without the client
 *   ever sending the body.
 * - The request target is parsed without throwing: a bad one is the client's error (400).
 */
import type * as http from 'node:http';

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

/** Requests whose body this server has started to read (100 Continue sent, or never asked for). */
const reading = new WeakSet<http.IncomingMessage>();

/** True when the client waits for `100 Continue` before it sends its body. */
function awaitsContinue(req: http.IncomingMessage): boolean {
  return /^100-continue$/i.test(String(req.headers.expect ?? '')) && !reading.has(req);
}

/**
 * Sends `body` as JSON with `status`. When the request's body was not going to be read (the
 * client still waits for 100 Continue), the connection is closed after the answer: the bytes
 * that follow on it could be that body or a next request, and cannot be told apart.
 */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  const close = res.req && awaitsContinue(res.req) ? { connection: 'close' } : {};
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text), ...close, ...headers });
  res.end(text);
}

function tooLarge(res: http.ServerResponse, limit: number): void {
  if (res.headersSent) return;
  sendJson(res, 413, { ok: false, error: `request body too large (limit ${limit} bytes)`, errors: [`request body larger than ${limit} bytes`] }, { connection: 'close' });
}

/**
 * Reads the request body, at most `limit` bytes. Resolves with it, or with null when it has
 * already answered (413) or the client went away; never rejects. Sends `100 Continue` when the
 * client asked for it.
 */
export function readBody(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<Buffer | null> {
  const declared = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
  if (declared !== null && declared > limit) {
    tooLarge(res, limit);
    return Promise.resolve(null);
  }
  if (awaitsContinue(req)) res.writeContinue();
  reading.add(req);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (value: Buffer | null) => {
      if (done) return;
      done = true;
      resolve(value);
    };
    req.on('data', (chunk: Buffer) => {
      if (done) return; // past the limit: node:http keeps reading, the bytes are dropped
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        tooLarge(res, limit);
        finish(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => finish(Buffer.concat(chunks)));
    req.on('error', () => finish(null));
    req.on('close', () => finish(null));
  });
}

/**
 * The path of a request target, or null when it is not one this server takes: origin form
 * (`/path?query`), or absolute form (`http://host/path`, RFC 9112 §3.2.2). Never throws.
 */
export function targetPath(url: string | undefined): string | null {
  if (!url) return null;
  if (url.startsWith('/')) {
    const end = url.search(/[?#]/);
    return end === -1 ? url : url.slice(0, end);
  }
  if (/^https?:\/\//i.test(url)) {
    try {
      return new URL(url).pathname;
    } catch {
      return null;
    }
  }
  return null;
}

/** decodeURIComponent that answers null for a malformed percent-encoding instead of throwing. */
export function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}
