/**
 * Shared-memory layout: one SharedArrayBuffer that every data-plane thread and the primary map,
 * sized once at start for a fixed number of server and virtual-service slots, so a reload
 * never moves a server's counters (each server keeps its slot while it exists).
 *
 * Part 1, server slots (Int32, read and written with Atomics by every thread): one 64-byte
 * cache line per server (stride 16 Int32s) so two servers' hot counters never share a line.
 * Part 2, per-thread statistics (Float64): each thread adds only to its own region (a single
 * writer, so plain `+=` is safe and cheap); the primary sums the regions to report. A region
 * holds the server counters, the virtual-service counters and errors, then the invariant
 * violation counts (state/invariants.ts). A thread
 * that replaces a dead one takes over its region, so counts are never lost.
 *
 * No I/O here: the primary lays the buffer out, threads receive it with their task.
 */
import { ERROR_NAMES } from '../errors';
import { INVARIANT_KINDS } from './invariants';
import { SERVER_STATS, VS_STATS } from './stats';

export const SLOT_STRIDE = 16;
/** Server slot fields (Int32 index within a slot). */
export const F_INFLIGHT = 0;
export const F_HEALTH = 1;
export const F_ADMIN = 2;
export const F_WEIGHT = 3;
/** Consecutive failures (connect, timeout, TLS, bad response) seen by any thread: passive detection. */
export const F_FAIL_STREAK = 4;
/** Consecutive 5xx responses seen by any thread: passive detection. */
export const F_5XX_STREAK = 5;
/** max_conns of the server (0 = none): the balancer skips a server at its limit. */
export const F_MAXCONN = 6;

export const HEALTH_DOWN = 0;
export const HEALTH_UP = 1;
export const ADMIN_ONLINE = 0;
export const ADMIN_DRAIN = 1;
export const ADMIN_HALT = 2;

export interface LayoutShape {
  /** Server slots available; servers keep their slot across reloads (see primary/slots.ts). */
  serverCapacity: number;
  /** Virtual-service slots available. */
  vsCapacity: number;
  threadSlots: number;
}

export class SharedLayout {
  readonly threadStride: number;
  readonly vsStatsBase: number;
  readonly vsErrorsBase: number;
  readonly invariantsBase: number;
  readonly serverBytes: number;

  constructor(readonly shape: LayoutShape) {
    this.serverBytes = shape.serverCapacity * SLOT_STRIDE * 4;
    this.vsStatsBase = shape.serverCapacity * SERVER_STATS.length;
    this.vsErrorsBase = this.vsStatsBase + shape.vsCapacity * VS_STATS.length;
    this.invariantsBase = this.vsErrorsBase + shape.vsCapacity * ERROR_NAMES.length;
    // Each thread's region starts on its own 64-byte cache line (8 Float64s): threads write
    // their counters on every request, and two threads must never write to one line.
    this.threadStride = Math.ceil((this.invariantsBase + INVARIANT_KINDS.length) / 8) * 8;
  }

  byteLength(): number {
    return this.serverBytes + this.shape.threadSlots * this.threadStride * 8;
  }

  /** Index of a server slot's field in the Int32 view. */
  serverField(serverSlot: number, field: number): number {
    return serverSlot * SLOT_STRIDE + field;
  }

  /** Index in the Float64 stats view of a thread's server counter. */
  serverStat(thread: number, serverSlot: number, stat: number): number {
    return thread * this.threadStride + serverSlot * SERVER_STATS.length + stat;
  }

  vsStat(thread: number, vsSlot: number, stat: number): number {
    return thread * this.threadStride + this.vsStatsBase + vsSlot * VS_STATS.length + stat;
  }

  vsError(thread: number, vsSlot: number, error: number): number {
    return thread * this.threadStride + this.vsErrorsBase + vsSlot * ERROR_NAMES.length + error;
  }

  /** Index in the Float64 stats view of a thread's count of one invariant's violations. */
  invariant(thread: number, kind: number): number {
    return thread * this.threadStride + this.invariantsBase + kind;
  }
}

/** The two typed views over one buffer. */
export interface SharedViews {
  layout: SharedLayout;
  buffer: SharedArrayBuffer;
  servers: Int32Array;
  stats: Float64Array;
}

export function mapShared(buffer: SharedArrayBuffer, shape: LayoutShape): SharedViews {
  const layout = new SharedLayout(shape);
  return {
    layout,
    buffer,
    servers: new Int32Array(buffer, 0, layout.shape.serverCapacity * SLOT_STRIDE),
    stats: new Float64Array(buffer, layout.serverBytes, layout.shape.threadSlots * layout.threadStride),
  };
}

/** Allocates a zeroed buffer for `shape`; the primary sets each used server slot. */
export function createShared(shape: LayoutShape): SharedViews {
  const layout = new SharedLayout(shape);
  return mapShared(new SharedArrayBuffer(layout.byteLength()), shape);
}

/** Sum of one Float64 stat over all thread regions. */
export function sumOverThreads(views: SharedViews, indexForThread: (thread: number) => number): number {
  let total = 0;
  for (let t = 0; t < views.layout.shape.threadSlots; t++) total += views.stats[indexForThread(t)];
  return total;
}
