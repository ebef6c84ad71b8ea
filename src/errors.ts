/**
 * The error catalogue: every failure carelb answers on its own has a stable code (never
 * reused for another meaning), the HTTP status the client gets, and a short text. Codes are
 * sent in the `x-carelb-error` response header and counted per virtual service, so an
 * operator can grep logs and graph counters by the same name.
 */

export interface CarelbError {
  readonly code: string;
  readonly status: number;
  /** Status line text sent with `status`. */
  readonly reason: string;
  /** Body of the error response: short, no internal detail. */
  readonly message: string;
}

function define<K extends string>(entries: Record<K, Omit<CarelbError, 'code'> & { code: string }>) {
  return entries;
}

export const ERRORS = define({
  NO_SERVER: { code: 'CLB_NO_SERVER', status: 503, reason: 'Service Unavailable', message: 'no server is available to handle this request' },
  CONNECT_FAILED: { code: 'CLB_CONNECT_FAILED', status: 502, reason: 'Bad Gateway', message: 'could not connect to a server' },
  CONNECT_TIMEOUT: { code: 'CLB_CONNECT_TIMEOUT', status: 504, reason: 'Gateway Timeout', message: 'timed out connecting to a server' },
  UPSTREAM_TLS: { code: 'CLB_UPSTREAM_TLS', status: 502, reason: 'Bad Gateway', message: 'TLS to the server failed' },
  SERVER_CLOSED: { code: 'CLB_SERVER_CLOSED', status: 502, reason: 'Bad Gateway', message: 'the server closed the connection before a complete response' },
  BAD_RESPONSE: { code: 'CLB_BAD_RESPONSE', status: 502, reason: 'Bad Gateway', message: 'the server sent an invalid response' },
  SERVER_TIMEOUT: { code: 'CLB_SERVER_TIMEOUT', status: 504, reason: 'Gateway Timeout', message: 'the server did not respond in time' },
  CLIENT_ABORTED: { code: 'CLB_CLIENT_ABORTED', status: 499, reason: 'Client Closed Request', message: 'the client went away' },
  BAD_REQUEST: { code: 'CLB_BAD_REQUEST', status: 400, reason: 'Bad Request', message: 'malformed request' },
  FORBIDDEN: { code: 'CLB_FORBIDDEN', status: 403, reason: 'Forbidden', message: 'this client address is not allowed' },
  BODY_TIMEOUT: { code: 'CLB_BODY_TIMEOUT', status: 408, reason: 'Request Timeout', message: 'the request body stalled' },
  BODY_TOO_LARGE: { code: 'CLB_BODY_TOO_LARGE', status: 413, reason: 'Content Too Large', message: 'the request body is larger than allowed' },
  URL_TOO_LONG: { code: 'CLB_URL_TOO_LONG', status: 414, reason: 'URI Too Long', message: 'the request target is longer than allowed' },
  RATE_LIMITED: { code: 'CLB_RATE_LIMITED', status: 429, reason: 'Too Many Requests', message: 'too many requests from this client address' },
  HEADERS_TOO_LARGE: { code: 'CLB_HEADERS_TOO_LARGE', status: 431, reason: 'Request Header Fields Too Large', message: 'the request headers are larger than allowed' },
  QUEUE_FULL: { code: 'CLB_QUEUE_FULL', status: 503, reason: 'Service Unavailable', message: 'every server is at its connection limit and the queue is full' },
  QUEUE_TIMEOUT: { code: 'CLB_QUEUE_TIMEOUT', status: 503, reason: 'Service Unavailable', message: 'every server stayed at its connection limit' },
  SHUTTING_DOWN: { code: 'CLB_SHUTTING_DOWN', status: 503, reason: 'Service Unavailable', message: 'carelb is shutting down' },
  /** An exception inside carelb on this request's path (a bug): only this request failed, the thread goes on. */
  INTERNAL: { code: 'CLB_INTERNAL', status: 502, reason: 'Bad Gateway', message: 'carelb failed to handle this request' },
  /** A chunked request body where the virtual service refuses them (chunked_requests: refuse). */
  LENGTH_REQUIRED: { code: 'CLB_LENGTH_REQUIRED', status: 411, reason: 'Length Required', message: 'send the request body with a Content-Length' },
  /** Content switching: no route matched the request and the virtual service has no default_pool (issue 14). */
  NO_ROUTE: { code: 'CLB_NO_ROUTE', status: 404, reason: 'Not Found', message: 'no route of this virtual service matches the request' },
});

export type ErrorName = keyof typeof ERRORS;

/** Error names in a fixed order: index i is the i-th error counter slot in shared state. */
export const ERROR_NAMES = Object.keys(ERRORS) as ErrorName[];

export function errorIndex(name: ErrorName): number {
  return ERROR_NAMES.indexOf(name);
}
