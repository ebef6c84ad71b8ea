/**
 * The schedule: what request i is (method, sizes, framing, which client, which chaos on each
 * side) and what control operation k is (reload, drain, online). Pure functions of the seed
 * and the index, through prng.ts: the same seed gives the same operations in the same order,
 * whatever the timing of the run.
 *
 * Three virtual services, so a plan can choose its kind of server without depending on the
 * balancer's pick:
 * - main: two node:http servers; chaos only ever touches the request that asked for it.
 * - raw: two raw net servers that also close idle keep-alive connections on their own, so
 *   a request there can meet a connection the server has just closed (a POST then may fail:
 *   RFC 9112 §9.3.1, it is never replayed).
 * - queue: two raw servers with max_conns, slow enough that requests wait in the queue;
 *   clients abort some of them while they wait, and retries (drop-reused, listener-down)
 *   have to find a place next to queued requests.
 */
import { Prng, Stream } from './prng';

export type Vs = 'main' | 'raw' | 'queue';
export type Method = 'GET' | 'HEAD' | 'POST';
export type ClientKind = 'agent' | 'noagent' | 'raw';
export type ReqFraming = 'none' | 'cl' | 'chunked';
export type RespFraming = 'cl' | 'chunked' | 'close';

export type ServerChaos =
  | { kind: 'none' }
  /** Waits before the response head (less than timeouts.server). */
  | { kind: 'slow'; delayMs: number }
  /** Sends the body in a few pieces with pauses (each less than timeouts.server). */
  | { kind: 'trickle'; pieces: number; gapMs: number }
  /** 100 Continue and/or 103 Early Hints before the final response. */
  | { kind: 'info'; codes: number[] }
  /** The response head and `atByte` body bytes, then a TCP reset (`afterMs` later: carelb has surely forwarded them). */
  | { kind: 'reset'; atByte: number; afterMs: number }
  /** Reads the request, never answers. */
  | { kind: 'stall-head' }
  /** The head and `atByte` body bytes, then silence. */
  | { kind: 'stall-body'; atByte: number }
  /** Answers right after the request head, before reading the body; `close`: then closes. */
  | { kind: 'early'; close: boolean }
  /** Answers normally, then closes the idle connection `ms` later without warning (raw only). */
  | { kind: 'close-after'; ms: number }
  /**
   * Arriving on a connection that already carried a response, the request is not answered:
   * the server closes the connection, as if its keep-alive timer had fired just then. carelb
   * must retry a GET or HEAD on a fresh connection (RFC 9112 §9.3.1), never a POST.
   */
  | { kind: 'drop-reused' };

export interface Pause {
  atByte: number;
  ms: number;
}

export type ClientChaos =
  | { kind: 'none' }
  /** Sends `atByte` bytes of the request head, waits `ms`, closes (raw client). */
  | { kind: 'abort-head'; atByte: number; ms: number }
  /** Closes after `atByte` body bytes were sent. */
  | { kind: 'abort-upload'; atByte: number }
  /** Closes after `atByte` response body bytes arrived. */
  | { kind: 'abort-download'; atByte: number }
  /** Closes `ms` after sending the request, whatever the state (queue: mostly while waiting). */
  | { kind: 'abort-wait'; ms: number }
  /** Stops reading the response for a while at some points (each pause < timeouts.server). */
  | { kind: 'slow-reader'; pauses: Pause[] }
  /** Sends the body in pieces with gaps (each < timeouts.client_body_idle). */
  | { kind: 'slow-upload'; pieces: number; gapMs: number }
  /** Stops sending the body for longer than client_body_idle: carelb must give up on it. */
  | { kind: 'stall-upload'; atByte: number; ms: number }
  /** Expect: 100-continue, waiting up to 1 s for the 100 before sending the body. */
  | { kind: 'expect' };

export interface Plan {
  index: number;
  vs: Vs;
  method: Method;
  client: ClientKind;
  reqSize: number;
  reqFraming: ReqFraming;
  respSize: number;
  respFraming: RespFraming;
  /** Server-side delay before the head that is not chaos (the queue service's servers are slow by design). */
  baseDelayMs: number;
  server: ServerChaos;
  clientChaos: ClientChaos;
  /** Raw client: ask for Connection: close. */
  closeHeader: boolean;
  /** Seed of this plan's own generator for piece sizes on each side (timing-independent). */
  pieceSeed: number;
}

/** Timeouts the schedule stays inside of; the carelb config uses the same numbers. */
export const TIMEOUTS = {
  serverMs: 3000,
  clientBodyIdleMs: 2000,
  queueMs: 2000,
  connectMs: 1000,
  upstreamIdleMs: 4000,
} as const;

const KiB = 1024;
const MiB = 1024 * 1024;
export const MAX_BODY = 20 * MiB;
/** A body of this size or more counts as large (their concurrency is bounded). */
export const LARGE = 1 * MiB;

function bodySize(rng: Prng, weights: Record<'zero' | 'small' | 'medium' | 'large', number>): number {
  switch (rng.weighted(weights)) {
    case 'zero':
      return 0;
    case 'small':
      return rng.logInt(1, 16 * KiB);
    case 'medium':
      return rng.logInt(16 * KiB, LARGE - 1);
    case 'large':
      return rng.chance(0.15) ? MAX_BODY : rng.logInt(LARGE, MAX_BODY);
  }
}

function serverChaos(rng: Prng, plan: Plan): ServerChaos {
  const hasBody = plan.method !== 'HEAD' && plan.respSize > 0;
  const hasUpload = plan.reqSize > 0;
  const weights =
    plan.vs === 'queue'
      ? { none: 85, slow: 0, trickle: 0, info: 0, reset: 0, 'stall-head': 0, 'stall-body': 0, early: 0, 'close-after': 0, 'drop-reused': 15 }
      : { none: 60, slow: 7, trickle: 5, info: 7, reset: 5, 'stall-head': 2, 'stall-body': 2, early: 5, 'close-after': plan.vs === 'raw' ? 18 : 0, 'drop-reused': 5 };
  const kind = rng.weighted(weights);
  switch (kind) {
    case 'slow':
      return { kind, delayMs: rng.int(100, 2000) };
    case 'trickle':
      return hasBody ? { kind, pieces: rng.int(2, 5), gapMs: rng.int(100, 900) } : { kind: 'none' };
    case 'info':
      return { kind, codes: rng.pick([[100], [103], [100, 103], [103, 103]]) };
    case 'reset':
      return hasBody ? { kind, atByte: rng.int(0, plan.respSize - 1), afterMs: rng.chance(0.5) ? 0 : rng.int(5, 40) } : { kind: 'none' };
    case 'stall-head':
      return { kind };
    case 'stall-body':
      return hasBody ? { kind, atByte: rng.int(0, plan.respSize - 1) } : { kind: 'none' };
    case 'early':
      return hasUpload ? { kind, close: rng.chance(0.5) } : { kind: 'none' };
    case 'close-after':
      return { kind, ms: rng.int(0, 150) };
    case 'drop-reused':
      return { kind };
    default:
      return { kind: 'none' };
  }
}

function clientChaos(rng: Prng, plan: Plan): ClientChaos {
  const hasBody = plan.method !== 'HEAD' && plan.respSize > 0;
  const hasUpload = plan.reqSize > 0;
  const weights =
    plan.vs === 'queue'
      ? { none: 75, 'abort-wait': 25, 'abort-head': 0, 'abort-upload': 0, 'abort-download': 0, 'slow-reader': 0, 'slow-upload': 0, 'stall-upload': 0, expect: 0 }
      : { none: 62, 'abort-wait': 2, 'abort-head': 3, 'abort-upload': 4, 'abort-download': 5, 'slow-reader': 9, 'slow-upload': 6, 'stall-upload': 2, expect: 7 };
  const kind = rng.weighted(weights);
  switch (kind) {
    case 'abort-wait':
      return { kind, ms: rng.int(20, 1500) };
    case 'abort-head':
      return { kind, atByte: rng.int(0, 30), ms: rng.int(0, 300) };
    case 'abort-upload':
      return hasUpload ? { kind, atByte: rng.int(0, plan.reqSize - 1) } : { kind: 'none' };
    case 'abort-download':
      return hasBody ? { kind, atByte: rng.int(0, plan.respSize - 1) } : { kind: 'none' };
    case 'slow-reader': {
      if (!hasBody) return { kind: 'none' };
      const pauses = Array.from({ length: rng.int(1, 3) }, () => ({ atByte: rng.int(0, plan.respSize - 1), ms: rng.int(200, 2200) }));
      return { kind, pauses: pauses.sort((a, b) => a.atByte - b.atByte) };
    }
    case 'slow-upload':
      return hasUpload ? { kind, pieces: rng.int(2, 5), gapMs: rng.int(100, 1200) } : { kind: 'none' };
    case 'stall-upload':
      return hasUpload ? { kind, atByte: rng.int(0, plan.reqSize - 1), ms: TIMEOUTS.clientBodyIdleMs + 1500 } : { kind: 'none' };
    case 'expect':
      return plan.method === 'POST' ? { kind } : { kind: 'none' };
    default:
      return { kind: 'none' };
  }
}

/** Request i of the schedule. */
export function planFor(seed: number, index: number): Plan {
  const rng = new Prng(seed, Stream.Request, index);
  const vs = rng.weighted({ main: 55, raw: 35, queue: 10 } as Record<Vs, number>);
  const method = rng.weighted({ GET: 45, HEAD: 15, POST: 40 } as Record<Method, number>);
  const small = vs === 'queue';
  const reqSize = method === 'POST' ? (small ? rng.logInt(0, 4 * KiB) : bodySize(rng, { zero: 10, small: 60, medium: 26, large: 4 })) : 0;
  const reqFraming: ReqFraming = method === 'POST' ? (rng.chance(0.6) ? 'cl' : 'chunked') : 'none';
  const respSize = small ? rng.logInt(0, 4 * KiB) : bodySize(rng, { zero: 10, small: 62, medium: 25, large: 3 });
  const respFraming: RespFraming = vs === 'raw' ? rng.weighted({ cl: 40, chunked: 30, close: 30 }) : rng.chance(0.6) ? 'cl' : 'chunked';
  const plan: Plan = {
    index,
    vs,
    method,
    client: rng.weighted({ agent: 50, noagent: 15, raw: 35 } as Record<ClientKind, number>),
    reqSize,
    reqFraming,
    respSize,
    respFraming,
    baseDelayMs: vs === 'queue' ? rng.int(50, 300) : 0,
    server: { kind: 'none' },
    clientChaos: { kind: 'none' },
    closeHeader: rng.chance(0.3),
    pieceSeed: rng.next(),
  };
  plan.server = serverChaos(rng, plan);
  plan.clientChaos = clientChaos(rng, plan);
  // A partial request head can only be sent by the raw client.
  if (plan.clientChaos.kind === 'abort-head') plan.client = 'raw';
  return plan;
}

export function isLarge(plan: Plan): boolean {
  return plan.reqSize >= LARGE || (plan.method !== 'HEAD' && plan.respSize >= LARGE);
}

export type ControlKind = 'reload-api' | 'reload-sighup' | 'drain' | 'online' | 'listener-down';

export interface ControlOp {
  index: number;
  /** Pause before this operation (deliberate spacing, not a wait for a condition). */
  delayMs: number;
  kind: ControlKind;
  /** drain/online: main or raw; listener-down: raw or queue (raw servers keep their connections when they stop listening). */
  vs: 'main' | 'raw' | 'queue';
  server: 0 | 1;
  /** listener-down: how long the server refuses new connections (carelb must connect elsewhere). */
  downMs: number;
  /** Reloads: the new weights of main's and raw's two servers (a harmless change). */
  weights: { main: [number, number]; raw: [number, number] };
}

/** Control operation k of the schedule. */
export function controlFor(seed: number, index: number): ControlOp {
  const rng = new Prng(seed, Stream.Control, index);
  const kind = rng.weighted({ 'reload-api': 30, 'reload-sighup': 12, drain: 20, online: 20, 'listener-down': 18 } as Record<ControlKind, number>);
  const either = rng.chance(0.5);
  return {
    index,
    delayMs: rng.int(1000, 4000),
    kind,
    vs: kind === 'listener-down' ? (either ? 'raw' : 'queue') : either ? 'main' : 'raw',
    server: rng.chance(0.5) ? 0 : 1,
    downMs: rng.int(300, 3000),
    weights: { main: [rng.int(1, 4), rng.int(1, 4)], raw: [rng.int(1, 4), rng.int(1, 4)] },
  };
}

/** First index of the final probes: far from any scheduled request. */
export const PROBE_BASE = 1 << 30;

/**
 * The final check: every kind of request from a well-behaved client to a well-behaved server,
 * on each service: GET/HEAD/POST, Content-Length and chunked uploads, responses of each
 * framing, small and large, through each client.
 */
export function probePlans(): Plan[] {
  const plans: Plan[] = [];
  const add = (p: Omit<Plan, 'index' | 'baseDelayMs' | 'server' | 'clientChaos' | 'closeHeader' | 'pieceSeed'>) =>
    plans.push({ ...p, index: PROBE_BASE + plans.length, baseDelayMs: 0, server: { kind: 'none' }, clientChaos: { kind: 'none' }, closeHeader: false, pieceSeed: 7 + plans.length });
  const clients: ClientKind[] = ['agent', 'raw', 'noagent'];
  let c = 0;
  for (const vs of ['main', 'raw'] as const) {
    const framings: RespFraming[] = vs === 'raw' ? ['cl', 'chunked', 'close'] : ['cl', 'chunked'];
    for (const respFraming of framings) {
      for (const respSize of [0, 1500, 8 * MiB]) {
        for (const method of ['GET', 'HEAD'] as const) add({ vs, method, client: clients[c++ % 3], reqSize: 0, reqFraming: 'none', respSize, respFraming });
      }
      for (const reqFraming of ['cl', 'chunked'] as const) {
        for (const reqSize of [0, 3000, 8 * MiB]) add({ vs, method: 'POST', client: clients[c++ % 3], reqSize, reqFraming, respSize: 700, respFraming });
      }
    }
  }
  for (const method of ['GET', 'HEAD', 'POST'] as const) {
    for (const respFraming of ['cl', 'chunked'] as const) {
      add({ vs: 'queue', method, client: clients[c++ % 3], reqSize: method === 'POST' ? 900 : 0, reqFraming: method === 'POST' ? 'chunked' : 'none', respSize: 400, respFraming });
    }
  }
  return plans;
}

/** One line describing a plan, for reports. */
export function describe(plan: Plan): string {
  const chaos = (c: { kind: string }) => (c.kind === 'none' ? '' : ` ${JSON.stringify(c)}`);
  const body = plan.method === 'POST' ? ` body ${plan.reqSize} B ${plan.reqFraming}` : '';
  return `#${plan.index} ${plan.method} ${plan.vs} via ${plan.client}${body}, response ${plan.respSize} B ${plan.respFraming}` +
    `${plan.baseDelayMs ? ` after ${plan.baseDelayMs} ms` : ''}${plan.server.kind !== 'none' ? `; server${chaos(plan.server)}` : ''}` +
    `${plan.clientChaos.kind !== 'none' ? `; client${chaos(plan.clientChaos)}` : ''}`;
}
