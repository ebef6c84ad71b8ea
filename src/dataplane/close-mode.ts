/**
 * How a client connection ends after a response, decided per response by the exchange.
 *
 * uWS closes a connection only at the end of a response written with `end(…, true)` (or
 * `endWithoutBody(n, true)`), and it closes at once: a client still sending its request
 * body then gets a reset, often before it has read the answer (RFC 9112 §9.6 asks for a
 * lingering close). So while the body is still arriving carelb only says `Connection: close`:
 * uWS goes on reading and discarding the rest of the body (it frames it), the client reads
 * the answer and closes.
 */
export const enum CloseMode {
  /** Keep-alive. */
  Keep,
  /** uWS closes the connection once the response is written (the request was read in full). */
  AfterResponse,
  /** `Connection: close` in the head only: the request body is still arriving. */
  Advise,
}

/** Applies a close mode to uWS's `end(…, close)` flag and a header to add, for answers written in one piece. */
export function endsWithClose(mode: CloseMode): boolean {
  return mode === CloseMode.AfterResponse;
}
