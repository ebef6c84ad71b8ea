/**
 * carelb's own error answers, from the one error catalogue: status, a short text body, the
 * `x-carelb-error` code header; counted per virtual service. Used before an exchange exists
 * (limits, access control, rate limits) and by exchanges that fail. Bodies never carry
 * internal detail (a server's TLS error, a stack): that goes to the logs.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { ERRORS, errorIndex, type ErrorName } from '../errors';
import { statusClassOffset, V } from '../state/stats';
import type { ServiceRuntime } from './service';
import { CloseMode, endsWithClose } from './close-mode';

/** Counts `name` for the service (also for failures that send nothing, such as a client abort). */
export function countError(vs: ServiceRuntime, name: ErrorName): void {
  vs.views.stats[vs.errorBase + errorIndex(name)]++;
}

/**
 * Answers with error `name`. `close` (close-mode.ts): close the connection after it (a limit
 * that makes the rest of the connection untrustworthy), or only advise it (a request body
 * still arriving). `detail`: what was wrong with the client's own request (a 400), never
 * internal detail.
 */
export function respondError(vs: ServiceRuntime, res: HttpResponse, name: ErrorName, close: CloseMode, head: boolean, detail?: string, headers?: [string, string][]): void {
  const error = ERRORS[name];
  countError(vs, name);
  vs.views.stats[vs.statBase + V.responses_1xx + statusClassOffset(error.status)]++;
  res.cork(() => {
    res.writeStatus(`${error.status} ${error.reason}`).writeHeader('content-type', 'text/plain; charset=utf-8').writeHeader('x-carelb-error', error.code);
    if (headers) for (const [key, value] of headers) res.writeHeader(key, value);
    const local = vs.rules?.localHeaders;
    if (local) for (const [key, value] of local) res.writeHeader(key, value);
    if (close === CloseMode.Advise) res.writeHeader('connection', 'close');
    // RFC 9110 §9.3.2: no body in an answer to HEAD, or a kept-alive client reads it as the next response.
    if (head) res.endWithoutBody(0, endsWithClose(close));
    else res.end(detail ? `${error.message}: ${detail}\n` : `${error.message}\n`, endsWithClose(close));
  });
}

/**
 * Refuses a request that was read completely and framed soundly (403, 429): answered now,
 * inside the handler, and the connection stays open, as NGINX does. A rate-limited client
 * that had to reconnect (and re-handshake TLS) for every refusal would turn the limit into a
 * CPU amplifier. A Content-Length body not read yet is discarded by uWS, which frames it.
 */
export function refuseKeepingConnection(vs: ServiceRuntime, res: HttpResponse, name: ErrorName, head: boolean, headers?: [string, string][]): void {
  respondError(vs, res, name, CloseMode.Keep, head, undefined, headers);
}

/**
 * Refuses a request after which the connection cannot be trusted (400, 411, 413 on an unread
 * body, 414, 431) and closes it. The answer is written on the next turn of the loop, not in
 * the handler: uWS v20.30 goes on parsing requests it has already read after `end(…, close)`,
 * so a request pipelined behind a refused one (a smuggling attempt) would be handled. With the
 * answer pending, uWS closes the connection when it meets that pipelined request instead —
 * nothing behind a refusal is served.
 */
export function refuseAndClose(vs: ServiceRuntime, res: HttpResponse, name: ErrorName, head: boolean, detail?: string, headers?: [string, string][]): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
    countError(vs, name);
  });
  setImmediate(() => {
    if (aborted) return;
    try {
      respondError(vs, res, name, CloseMode.AfterResponse, head, detail, headers);
    } catch (error) {
      vs.events.report('fault', `refusal ${ERRORS[name].code}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    }
  });
}
