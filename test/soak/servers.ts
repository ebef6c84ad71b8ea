/**
 * The API servers behind carelb, on loopback: node:http servers (service main and queue) and
 * raw net servers (service raw). Each request names its plan in its path (/soak/<index>); the
 * server looks the plan up in the registry the clients fill and plays the server side of it:
 * the response framing and size, and the chaos (slow, trickle, 1xx, reset, stall, early
 * answer, closing the idle connection). One script (`respond`) drives both kinds through a
 * small set of operations, so the chaos means the same on each.
 *
 * Every server also records what it saw (Observation): which server, how many body bytes,
 * whether they were the right ones. The checks use it, for example to notice a POST that
 * reached a server twice.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { Content } from './content';
import { RequestReader, type Head } from './http1';
import { Prng, Stream } from './prng';
import type { Plan } from './schedule';

export interface Observation {
  server: string;
  at: number;
  method: string;
  bodyBytes: number;
  bodyDone: boolean;
  /** The body bytes received so far are the planned ones (and all of them once bodyDone). */
  bodyOk: boolean;
  answered: boolean;
  /** drop-reused: the server closed the connection instead of answering. */
  dropped: boolean;
  /** When the server wrote the final response head (0: never). */
  headAt: number;
}

/** Shared between clients and servers: the plan of every request in flight, and what servers saw. */
export class Registry {
  readonly plans = new Map<number, Plan>();
  readonly seen = new Map<number, Observation[]>();
  /** Things servers noticed that only carelb can have caused (malformed requests, unknown paths). */
  readonly anomalies: string[] = [];

  observe(index: number, observation: Observation): void {
    const list = this.seen.get(index);
    if (list) list.push(observation);
    else this.seen.set(index, [observation]);
  }

  /** No server has seen this request yet: drop-reused hits only the first arrival (the race happens once). */
  firstArrival(index: number): boolean {
    return (this.seen.get(index)?.length ?? 0) === 0;
  }

  anomaly(text: string): void {
    if (this.anomalies.length < 200) this.anomalies.push(text);
  }

  /** When each finished request's client ended; its plan is kept a while for late arrivals. */
  private readonly ended = new Map<number, number>();

  /** A request starts (again, with --repeat): a clean record of what servers saw. */
  begin(plan: Plan): void {
    this.plans.set(plan.index, plan);
    this.seen.delete(plan.index);
    this.ended.delete(plan.index);
  }

  /** The plan of a request a server just received; notes one whose client ended long ago. */
  lookup(index: number, server: string): Plan | undefined {
    const plan = this.plans.get(index);
    const endedAt = this.ended.get(index);
    if (plan && endedAt !== undefined && Date.now() - endedAt > LATE_MS) {
      this.anomaly(`${server}: request #${index} arrived ${Date.now() - endedAt} ms after its client had ended (an exchange carelb should have dropped was sent on)`);
    }
    return plan;
  }

  /** The client of `index` ended. Plans are dropped 30 s later (memory stays flat over a long soak). */
  finish(index: number): void {
    const now = Date.now();
    this.ended.set(index, now);
    for (const [i, at] of this.ended) {
      if (now - at < 30_000) break;
      this.ended.delete(i);
      this.plans.delete(i);
      this.seen.delete(i);
    }
  }
}

/** A request reaching a server this long after its client ended was not dropped by carelb. */
const LATE_MS = 750;

function indexOf(path: string): number {
  const match = /^\/soak\/(\d+)$/.exec(path);
  return match ? Number(match[1]) : -1;
}

/** What a server does to answer; implemented over node:http and over a raw socket. */
interface ResponseOps {
  info(code: number): void;
  head(headers: [string, string][]): void;
  /** Resolves once the piece is taken (after 'drain' when the socket pushed back). */
  piece(chunk: Buffer): Promise<void>;
  finish(): void;
  reset(): void;
  /** False once the connection is gone: the script stops. */
  alive(): boolean;
  /** Sleeps `ms`, waking early when the connection closes. */
  sleep(ms: number): Promise<void>;
}

/** Piece sizes on the server side: from the plan's own generator, so they do not depend on timing. */
function pieceSizes(plan: Plan): () => number {
  const rng = new Prng(plan.pieceSeed, Stream.ServerSide, 0);
  return () => rng.logInt(512, 64 * 1024);
}

/** The server side of a plan: one script for both kinds of server. */
async function respond(plan: Plan, content: Content, ops: ResponseOps, name: string, read: Observation | null, closeAfter: boolean): Promise<void> {
  const chaos = plan.server;
  const delay = plan.baseDelayMs + (chaos.kind === 'slow' ? chaos.delayMs : 0);
  if (delay > 0) await ops.sleep(delay);
  if (!ops.alive() || chaos.kind === 'stall-head') return;
  if (chaos.kind === 'info') for (const code of chaos.codes) ops.info(code);
  const headers: [string, string][] = [
    ['content-type', 'application/octet-stream'],
    ['x-soak-id', String(plan.index)],
    ['x-soak-server', name],
  ];
  if (read) headers.push(['x-soak-req-bytes', String(read.bodyBytes)], ['x-soak-req-ok', read.bodyOk ? '1' : '0']);
  if (plan.respFraming === 'cl') headers.push(['content-length', String(plan.respSize)]);
  if (closeAfter) headers.push(['connection', 'close']);
  ops.head(headers);
  if (plan.method === 'HEAD') return ops.finish();

  const size = plan.respSize;
  const stopAt = chaos.kind === 'reset' || chaos.kind === 'stall-body' ? chaos.atByte : size;
  // Trickle: split the body into a few parts with a pause between them. Each part carries a
  // byte at least, so each pause is one gap between reads (a tiny body gets fewer parts).
  const parts = chaos.kind === 'trickle' ? Math.max(1, Math.min(chaos.pieces, size)) : 1;
  const salt = Content.salt(plan.index, 'response');
  const nextSize = pieceSizes(plan);
  let offset = 0;
  for (let part = 0; part < parts && ops.alive(); part++) {
    const partEnd = Math.min(stopAt, part === parts - 1 ? size : Math.floor(((part + 1) * size) / parts));
    while (offset < partEnd && ops.alive()) {
      const n = Math.min(nextSize(), partEnd - offset);
      await ops.piece(content.slice(salt, offset, n));
      offset += n;
    }
    if (offset >= stopAt) break;
    if (chaos.kind === 'trickle' && part < parts - 1) await ops.sleep(chaos.gapMs);
  }
  if (!ops.alive()) return;
  if (chaos.kind === 'reset') {
    if (chaos.afterMs > 0) await ops.sleep(chaos.afterMs);
    return ops.reset();
  }
  if (chaos.kind === 'stall-body') return;
  ops.finish();
}

export interface SoakServer {
  name: string;
  address: string;
  /** Most requests this server had in progress at once (checks max_conns from the outside). */
  readonly peak: number;
  close(): Promise<void>;
  /** Well-behaved from now on (the final probes): no idle closes of its own. */
  behave(): void;
  /** Refuses new connections for `ms` (open ones keep working), then listens again on the same port. */
  stopListening(ms: number): Promise<void>;
}

/** Closes the listener (not the connections) and listens again on the same port after `ms`. */
function relisten(server: net.Server, port: number, ms: number): Promise<void> {
  server.close();
  return new Promise((resolve, reject) => {
    setTimeout(() => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    }, ms);
  });
}

/** A sleep that a closing connection cuts short; timers are cleared so nothing outlives the socket. */
function sleeper(onClose: (wake: () => void) => void) {
  return (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      onClose(() => {
        clearTimeout(timer);
        resolve();
      });
    });
}

/** A node:http server (services main and queue). */
export async function startHttpServer(name: string, registry: Registry, content: Content): Promise<SoakServer> {
  const sockets = new Set<net.Socket>();
  let inProgress = 0;
  let peak = 0;
  /** Requests each connection has carried (drop-reused acts on the second and later). */
  const carried = new WeakMap<net.Socket, number>();
  const server = http.createServer((req, res) => {
    peak = Math.max(peak, ++inProgress);
    res.once('close', () => inProgress--);
    const nth = carried.get(req.socket) ?? 0;
    carried.set(req.socket, nth + 1);
    const index = indexOf(req.url ?? '');
    const plan = registry.lookup(index, name);
    if (!plan) {
      registry.anomaly(`${name}: request for an unknown plan: ${req.method} ${req.url}`);
      res.writeHead(404, { 'content-length': '0' });
      return res.end();
    }
    const observation: Observation = { server: name, at: Date.now(), method: req.method!, bodyBytes: 0, bodyDone: false, bodyOk: true, answered: false, dropped: false, headAt: 0 };
    const first = registry.firstArrival(index);
    registry.observe(index, observation);
    if (plan.server.kind === 'drop-reused' && nth > 0 && first) {
      observation.dropped = true;
      return req.socket.destroy();
    }
    if (req.method !== plan.method) registry.anomaly(`${name}: #${index} arrived as ${req.method}, sent as ${plan.method}`);
    const verifier = content.verifier(Content.salt(index, 'request'), plan.reqSize);
    let closed = false;
    const wakers: (() => void)[] = [];
    res.on('close', () => {
      closed = true;
      for (const wake of wakers.splice(0)) wake();
    });
    const ops: ResponseOps = {
      info: (code) => (code === 100 ? res.writeContinue() : res.writeEarlyHints({ link: '</soak.css>; rel=preload' })),
      head: (headers) => {
        observation.answered = true;
        observation.headAt = Date.now();
        res.writeHead(200, headers);
        // node:http holds the head until the first body write: send it now, as a slow body would.
        res.flushHeaders();
      },
      piece: (chunk) =>
        res.write(chunk) || closed
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              res.once('drain', resolve);
              wakers.push(resolve);
            }),
      finish: () => res.end(),
      reset: () => res.socket?.resetAndDestroy(),
      alive: () => !closed,
      sleep: sleeper((wake) => wakers.push(wake)),
    };
    const early = plan.server.kind === 'early';
    const go = (read: Observation | null) => void respond(plan, content, ops, name, read, early && plan.server.kind === 'early' && plan.server.close);
    req.on('data', (chunk: Buffer) => {
      verifier.feed(chunk);
      observation.bodyBytes = verifier.received;
      observation.bodyOk = verifier.firstBad === -1;
    });
    req.on('end', () => {
      observation.bodyDone = true;
      observation.bodyOk = verifier.ok;
      if (!early) go(observation);
    });
    if (early) go(null);
  });
  // Longer than carelb's upstream_idle: carelb, not this server, closes idle connections here.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 20_000;
  server.requestTimeout = 0;
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    name,
    address: `127.0.0.1:${port}`,
    get peak() {
      return peak;
    },
    behave: () => {},
    // node:http's close() also closes idle keep-alive connections: not the chaos wanted here.
    stopListening: () => Promise.reject(new Error('listener-down is for raw servers only')),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A raw net server (services raw and queue): close-delimited responses, real TCP resets, and
 * idle keep-alive connections closed after `idleCloseMs` (0: never) without notice, as many
 * servers do.
 */
export async function startRawServer(name: string, registry: Registry, content: Content, idleCloseMs: number): Promise<SoakServer> {
  const sockets = new Set<net.Socket>();
  let behaved = false;
  let inProgress = 0;
  let peak = 0;
  /** Armed idle closes, by connection: behave() cancels them all. */
  const idleTimers = new Map<net.Socket, NodeJS.Timeout>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let closed = false;
    /** Responses finished on this connection (drop-reused acts once it carried one). */
    let served = 0;
    /** A request is in progress on this connection (counted once in inProgress). */
    let busy = false;
    const idle = () => {
      if (busy) inProgress--;
      busy = false;
    };
    const wakers: (() => void)[] = [];
    const armIdleClose = (ms: number) => idleTimers.set(socket, setTimeout(() => socket.destroy(), ms));
    const disarm = () => {
      clearTimeout(idleTimers.get(socket));
      idleTimers.delete(socket);
    };
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      idle();
      disarm();
      sockets.delete(socket);
      for (const wake of wakers.splice(0)) wake();
    });
    /** One response at a time: a head that arrives while one is still being written is noted (carelb does not pipeline). */
    let responding = false;
    let current: { plan: Plan; observation: Observation; verifier: ReturnType<Content['verifier']>; early: boolean } | null = null;

    const answer = (plan: Plan, observation: Observation, read: Observation | null) => {
      const chaos = plan.server;
      const closeAfter = (chaos.kind === 'early' && chaos.close) || plan.respFraming === 'close';
      const chunked = plan.respFraming === 'chunked';
      const write = (data: Buffer | string) => socket.write(data);
      const ops: ResponseOps = {
        info: (code) => write(code === 100 ? 'HTTP/1.1 100 Continue\r\n\r\n' : 'HTTP/1.1 103 Early Hints\r\nlink: </soak.css>; rel=preload\r\n\r\n'),
        head: (headers) => {
          observation.answered = true;
          observation.headAt = Date.now();
          if (chunked) headers.push(['transfer-encoding', 'chunked']);
          write(`HTTP/1.1 200 OK\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
        },
        piece: (chunk) => {
          let ok: boolean;
          if (chunked && plan.method !== 'HEAD') {
            socket.cork();
            write(`${chunk.length.toString(16)}\r\n`);
            write(chunk);
            ok = write('\r\n');
            socket.uncork();
          } else ok = write(chunk);
          return ok || closed
            ? Promise.resolve()
            : new Promise<void>((resolve) => {
                socket.once('drain', resolve);
                wakers.push(resolve);
              });
        },
        finish: () => {
          if (chunked && plan.method !== 'HEAD') write('0\r\n\r\n');
          responding = false;
          served++;
          idle();
          if (closeAfter) {
            socket.end();
            return;
          }
          if (behaved) return;
          if (chaos.kind === 'close-after') armIdleClose(chaos.ms);
          else if (reader.idle && current === null && idleCloseMs > 0) armIdleClose(idleCloseMs);
        },
        reset: () => socket.resetAndDestroy(),
        alive: () => !closed,
        sleep: sleeper((wake) => wakers.push(wake)),
      };
      responding = true;
      void respond(plan, content, ops, name, read, closeAfter);
    };

    const reader = new RequestReader({
      onHead: (head: Head) => {
        disarm();
        const index = indexOf(head.path);
        const plan = registry.lookup(index, name);
        if (responding) registry.anomaly(`${name}: a new request (${head.method} ${head.path}) arrived while a response was being written`);
        if (!plan) {
          registry.anomaly(`${name}: request for an unknown plan: ${head.method} ${head.path}`);
          socket.destroy();
          return;
        }
        if (head.method !== plan.method) registry.anomaly(`${name}: #${index} arrived as ${head.method}, sent as ${plan.method}`);
        const observation: Observation = { server: name, at: Date.now(), method: head.method, bodyBytes: 0, bodyDone: false, bodyOk: true, answered: false, dropped: false, headAt: 0 };
        const first = registry.firstArrival(index);
        registry.observe(index, observation);
        if (plan.server.kind === 'drop-reused' && served > 0 && first && !behaved) {
          observation.dropped = true;
          socket.destroy();
          return;
        }
        if (!busy) peak = Math.max(peak, ++inProgress);
        busy = true;
        const early = plan.server.kind === 'early';
        current = { plan, observation, verifier: content.verifier(Content.salt(index, 'request'), plan.reqSize), early };
        if (early) answer(plan, observation, null);
      },
      onBody: (chunk) => {
        if (!current) return;
        current.verifier.feed(chunk);
        current.observation.bodyBytes = current.verifier.received;
        current.observation.bodyOk = current.verifier.firstBad === -1;
      },
      onEnd: () => {
        if (!current) return;
        const { plan, observation, verifier, early } = current;
        current = null;
        observation.bodyDone = true;
        observation.bodyOk = verifier.ok;
        if (!early) answer(plan, observation, observation);
      },
      onError: (message) => {
        registry.anomaly(`${name}: carelb sent a malformed request: ${message}`);
        socket.destroy();
      },
    });
    socket.on('data', (chunk: Buffer) => {
      disarm();
      reader.feed(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    name,
    address: `127.0.0.1:${port}`,
    get peak() {
      return peak;
    },
    behave: () => {
      behaved = true;
      for (const timer of idleTimers.values()) clearTimeout(timer);
      idleTimers.clear();
    },
    stopListening: (ms) => relisten(server, port, ms),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
