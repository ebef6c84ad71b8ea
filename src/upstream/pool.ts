/**
 * Per-thread pool of keep-alive connections to one server. LIFO reuse keeps the most
 * recently used (warmest) connections busy and lets the others age out after `idleMs`.
 * Owned and called by one data-plane thread only.
 *
 * A connection enters the idle list only if it is detached, flowing (not paused) and has
 * nothing unfinished on it (DESIGN.md invariants). The checks run at every release; one
 * that fails counts a violation and the connection is destroyed instead of pooled.
 */
import type * as tls from 'node:tls';
import type { InvariantCounter } from '../state/invariants';
import { coarseClock } from '../state/coarse-clock';
import { UpstreamConnection, type ConnectionOwner } from './connection';

export interface PoolOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  idleMs: number;
  maxIdle: number;
  /** TLS to the server, or null for plain TCP. */
  tls: tls.ConnectionOptions | null;
  invariants: InvariantCounter;
  /** Reports an exception from a connection that had no exchange attached. */
  onFault: (error: unknown) => void;
}

export class ServerPool implements ConnectionOwner {
  private readonly idle: UpstreamConnection[] = [];
  tlsSession: Buffer | null = null;
  /** Every open connection, idle or busy or connecting. */
  readonly open = new Set<UpstreamConnection>();

  constructor(readonly options: PoolOptions) {}

  /** An idle connection (reused) if one is left, else a new one (connecting). */
  acquire(): UpstreamConnection {
    while (this.idle.length > 0) {
      const connection = this.idle.pop()!;
      connection.idle = false;
      if (!connection.isClosed) return connection;
    }
    return this.connectFresh();
  }

  /** A new connection regardless of idle ones: for the retry after a stale keep-alive. */
  connectFresh(): UpstreamConnection {
    const connection = new UpstreamConnection(this, this.options.host, this.options.port, this.options.connectTimeoutMs, this.options.tls);
    this.open.add(connection);
    return connection;
  }

  release(connection: UpstreamConnection): void {
    if (!this.poolable(connection) || this.retired || this.idle.length >= this.options.maxIdle) {
      connection.destroy();
      return;
    }
    connection.idle = true;
    connection.idleSince = coarseClock.now; // idle expiry is seconds long: the thread's coarse clock will do
    this.idle.push(connection);
  }

  /** The invariants of a pooled connection; a broken one is counted (a bug) and the connection not reused. */
  private poolable(connection: UpstreamConnection): boolean {
    const invariants = this.options.invariants;
    if (connection.sink !== null) invariants.count('pooled_with_sink');
    else if (connection.isPaused) invariants.count('pooled_paused');
    else if (!connection.parser.idle || !connection.requestSent) invariants.count('pooled_unread');
    else return true;
    return false;
  }

  forget(connection: UpstreamConnection): void {
    this.open.delete(connection);
    if (connection.idle) {
      connection.idle = false;
      const at = this.idle.indexOf(connection);
      if (at !== -1) this.idle.splice(at, 1);
    }
  }

  fault(error: unknown): void {
    this.options.onFault(error);
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Closes idle connections older than idleMs and fails connects past their deadline. */
  sweep(now: number): void {
    // The oldest idle connections are at the bottom of the stack.
    while (this.idle.length > 0 && now - this.idle[0].idleSince >= this.options.idleMs) {
      this.idle[0].destroy();
    }
    for (const connection of this.open) {
      if (!connection.connected && connection.connectDeadline !== 0 && now >= connection.connectDeadline) connection.timeoutConnect();
    }
  }

  /** Closes every connection: idle ones at once, busy ones too (used on thread exit). */
  closeAll(): void {
    for (const connection of [...this.open]) connection.destroy();
    this.idle.length = 0;
  }

  /** The server left the config: close idle connections, and busy ones as they finish. */
  retire(): void {
    this.retired = true;
    this.closeIdle();
  }

  private retired = false;

  /** Closes idle connections only (drain on shutdown: busy ones finish first). */
  closeIdle(): void {
    while (this.idle.length > 0) this.idle[0].destroy();
  }
}
