/**
 * Messages between the primary and a data-plane thread, over the MessagePort handed to the
 * thread with its serve task. Nothing here is sent per request.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Config } from '../config/schema';
import type { LayoutShape } from '../state/layout';
import type { SlotPlan } from '../state/plan';
import type { ObserveBatch } from './observe';

export interface ServeTask {
  /** Thread slot: index of this thread's statistics region, and its CPU when pinning. */
  slot: number;
  config: Config;
  shared: SharedArrayBuffer;
  shape: LayoutShape;
  plan: SlotPlan;
  /** Per-client rate-limit buckets shared by all threads. */
  rates: SharedArrayBuffer;
  port: MessagePort;
}

export type ToThread =
  | { type: 'stop'; graceMs: number }
  /** Apply a new config in place; answered with 'reloaded'. */
  | { type: 'reload'; config: Config; plan: SlotPlan; generation: number }
  /** Fault injection for tests (only honoured when CARELB_FAULT_INJECTION=1). */
  | { type: 'crash' };

export type FromThread =
  | { type: 'started'; slot: number; tid: number }
  | { type: 'listening'; slot: number }
  | { type: 'listen-failed'; slot: number; service: string; address: string }
  | { type: 'crashed'; slot: number; error: string }
  /** A throttled line for the log (faults.ts): `suppressed` like it were dropped since the last one. */
  | { type: 'report'; slot: number; kind: string; message: string; suppressed: number }
  /** Latency histograms and access-log lines of the last interval. */
  | { type: 'observe'; slot: number; batch: ObserveBatch }
  /** Passive detection marked server `serverSlot` down. */
  | { type: 'passive-down'; slot: number; serverSlot: number; reason: string }
  /** `failed`: virtual services whose new listener could not be opened. */
  | { type: 'reloaded'; slot: number; generation: number; failed: string[] };
