/**
 * The request body of one exchange on its way from the client to a server: copies of the
 * chunks uWS hands over, kept while small so a retry can send them again (replay), written
 * to the server connection with carelb's own framing, and the client held back while the
 * server (or the wait for one) is slower than the client. Thread-local.
 *
 * uWS detaches the chunk's ArrayBuffer when onData returns, and a socket write may complete
 * later, so every chunk is copied once, here (DESIGN.md, hot path).
 *
 * Holding the client back uses res.pause()/resume(). uWS's resume() arms its 10 s socket
 * timeout, and only incoming body bytes or the response's final write re-arm or clear it. So
 * the client is paused only while more body is expected, and a client that is still paused
 * when its last body bytes arrive (the chunks of one read keep coming after a pause) stays
 * paused until the write that finishes its response: a resume in between would cut a slow
 * server's answer, or a long download, after 10 s.
 */
import type { HttpResponse } from 'uWebSockets.js';
import type { UpstreamConnection } from '../upstream/connection';
import { writeAtEndOfTurn } from '../upstream/write-batch';

/** Request bodies up to this size are kept until the response starts, so the request can be replayed. */
export const REPLAY_LIMIT = 64 * 1024;
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const CRLF = Buffer.from('\r\n');

export class RequestBody {
  /** Every body byte has arrived from the client (or there is no body). */
  done: boolean;
  /** Body bytes received so far. */
  received = 0;
  /** Chunks received so far, kept while small enough to resend (created with the first chunk). */
  private replay: Buffer[] | null = null;
  /** False once the copies were given up: a retry can no longer send the request again. */
  private keepsReplay = true;
  private replayBytes = 0;
  /** The client is paused (res.pause) until the server side can take more. */
  private clientPaused = false;

  constructor(
    private readonly res: HttpResponse,
    /** Once the client response is finished, `res` must not be touched (not even resumed). */
    private readonly response: { readonly finished: boolean },
    /** Sent re-chunked (the client sent chunked, or its length is unknown). */
    readonly chunked: boolean,
    hasBody: boolean,
  ) {
    this.done = !hasBody;
  }

  /** Whether the request can still be sent again from the start (nothing was given up). */
  get replayable(): boolean {
    return this.keepsReplay;
  }

  /** The server has answered: a retry is no longer possible, the copies can go. */
  dropReplay(): void {
    this.keepsReplay = false;
    this.replay = null;
  }

  /**
   * Takes one chunk from uWS onData; returns the copy to forward (null for an empty chunk).
   * `waiting`: no server connection yet (queued), so the chunk is only kept.
   */
  accept(chunk: ArrayBuffer, isLast: boolean, waiting: boolean): Buffer | null {
    if (isLast) this.done = true;
    const size = chunk.byteLength;
    if (size === 0) return null;
    this.received += size;
    const copy = Buffer.allocUnsafe(size);
    copy.set(new Uint8Array(chunk));
    if (this.keepsReplay) {
      this.replayBytes += size;
      if (waiting) {
        // Waiting for a server: keep everything, but stop reading the client past the limit.
        (this.replay ??= []).push(copy);
        if (this.replayBytes > REPLAY_LIMIT && !isLast) this.pauseClient();
      } else if (this.replayBytes <= REPLAY_LIMIT) (this.replay ??= []).push(copy);
      else this.dropReplay();
    }
    return copy;
  }

  /**
   * Writes the request head and every body byte received so far to a new connection (first
   * send or retry), then marks the request sent if the body is complete. The copies are kept
   * for a further retry only while within REPLAY_LIMIT.
   */
  sendTo(connection: UpstreamConnection, head: string, asciiHead: boolean): void {
    const socket = connection.socket;
    if (this.replayBytes === 0 && !this.chunked) {
      if (this.done) {
        // The common case, a request without a body: its head is the only write (write-batch.ts).
        writeAtEndOfTurn(socket, head, asciiHead);
        connection.requestSent = true;
      } else {
        socket.write(head); // the body follows as it arrives
      }
      return;
    }
    socket.cork();
    socket.write(head);
    let ok = true;
    if (this.replay !== null) for (const chunk of this.replay) ok = this.writeFramed(connection, chunk);
    if (this.done && this.chunked) ok = socket.write(LAST_CHUNK);
    socket.uncork();
    if (this.done) connection.requestSent = true;
    if (this.replayBytes > REPLAY_LIMIT) this.dropReplay(); // held only while waiting; too big to replay
    // Held back while queued: let the client go on, unless the new connection is already full
    // (then its 'drain' resumes the client).
    if (!ok && !this.done) this.pauseClient();
    else if (!this.done) this.resumeClient();
  }

  /** Forwards one copied chunk to the attached connection; holds the client back when the server is slower. */
  forward(connection: UpstreamConnection, copy: Buffer | null): void {
    let ok = true;
    if (copy !== null) ok = this.writeFramed(connection, copy);
    if (this.done) {
      if (this.chunked) ok = connection.socket.write(LAST_CHUNK);
      connection.requestSent = true;
    }
    if (!ok && !this.done) this.pauseClient();
  }

  /** The server connection drained its write buffer: the client may send again. */
  onServerDrain(): void {
    if (!this.done) this.resumeClient();
  }

  /** The response has begun: a client still sending may go on (the server answered early, or streams while it reads). */
  onResponseBegun(): void {
    if (!this.done) this.resumeClient();
  }

  /**
   * The client must not stay paused once its response ends (uWS leaves a paused socket
   * stuck): the exchange calls this before the write that finishes the response.
   */
  releaseClient(): void {
    this.resumeClient();
  }

  private writeFramed(connection: UpstreamConnection, chunk: Buffer): boolean {
    const socket = connection.socket;
    if (!this.chunked) return socket.write(chunk);
    socket.cork();
    socket.write(`${chunk.length.toString(16)}\r\n`);
    socket.write(chunk);
    const ok = socket.write(CRLF);
    socket.uncork();
    return ok;
  }

  private pauseClient(): void {
    if (this.clientPaused || this.response.finished) return;
    this.clientPaused = true;
    this.res.pause();
  }

  private resumeClient(): void {
    if (!this.clientPaused) return;
    this.clientPaused = false;
    if (!this.response.finished) this.res.resume();
  }
}
