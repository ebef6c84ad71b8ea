/**
 * The demo's built-in client mix (`carelb demo --traffic`, and the dashboard's button): FHIR
 * searches, reads, POSTs and some slow calls against the three demo virtual services on
 * loopback, so a newcomer sees the charts move and can try drain, halt and online while
 * requests flow.
 *
 * Bounded on every side: at most MAX_RPS requests a second (a fixed number per 100 ms tick),
 * at most CONCURRENCY in flight (a tick skips while that many are pending), each request
 * abandoned after 10 s, and every run stops by itself RUN_MS after it was (re)started.
 * Loopback only: the targets are the demo's own listeners on 127.0.0.1.
 */
import * as http from 'node:http';
import * as https from 'node:https';

export interface TrafficTarget {
  port: number;
  /** The demo CA for a TLS listener; absent for plain HTTP. */
  ca?: Buffer;
}

export interface TrafficTargets {
  plain: TrafficTarget;
  offload: TrafficTarget;
  bridge: TrafficTarget;
}

export const MAX_RPS = 40;
export const CONCURRENCY = 8;
export const RUN_MS = 5 * 60_000;
const TICK_MS = 100;
const REQUEST_TIMEOUT_MS = 10_000;

type Call = { to: keyof TrafficTargets; method: 'GET' | 'POST'; path: (n: number) => string; body?: string };

const OBSERVATION = JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'Heart rate' }, valueQuantity: { value: 72, unit: 'beats/minute' } });
const NAMES = ['Al', 'Be', 'Cl', 'Da', 'El', 'Fi', 'Gr', 'Sa', 'Mo', 'De'];

/** One turn of the mix, sent in order and again: reads dominate, as on a real FHIR API. */
const MIX: Call[] = [
  { to: 'plain', method: 'GET', path: (n) => `/fhir/r4/Patient?name=${NAMES[n % NAMES.length]}&_count=5` },
  { to: 'plain', method: 'GET', path: (n) => `/fhir/r4/Patient/demo-${(n % 240) + 1}` },
  { to: 'offload', method: 'GET', path: (n) => `/fhir/r4/Patient/demo-${(n % 240) + 1}` },
  { to: 'plain', method: 'POST', path: () => '/echo', body: OBSERVATION },
  { to: 'bridge', method: 'GET', path: (n) => `/fhir/r4/Observation?patient=demo-${(n % 240) + 1}` },
  { to: 'plain', method: 'GET', path: (n) => `/fhir/r4/Observation?patient=demo-${(n % 240) + 1}` },
  { to: 'offload', method: 'GET', path: (n) => `/fhir/r4/Patient?name=${NAMES[(n + 3) % NAMES.length]}` },
  { to: 'bridge', method: 'GET', path: (n) => `/fhir/r4/Patient/demo-${(n % 240) + 1}` },
  // The slow calls: a few hundred ms, so p99 and in-flight show something.
  { to: 'plain', method: 'GET', path: (n) => `/delay/${250 + ((n * 37) % 550)}` },
  { to: 'offload', method: 'POST', path: () => '/echo', body: OBSERVATION },
];

export interface TrafficStatus {
  running: boolean;
  /** ms since the epoch when this run stops by itself; null when stopped. */
  ends_at: number | null;
  sent: number;
  failed: number;
  max_rps: number;
  run_ms: number;
}

export class DemoTraffic {
  private readonly agents: { http: http.Agent; https: https.Agent };
  private timer: NodeJS.Timeout | null = null;
  private endsAt: number | null = null;
  private inFlight = 0;
  private sent = 0;
  private failed = 0;
  private turn = 0;

  constructor(private readonly targets: TrafficTargets) {
    this.agents = { http: new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY }), https: new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY }) };
  }

  /** Starts a run, or extends the running one to RUN_MS from now. */
  start(now = Date.now()): void {
    this.endsAt = now + RUN_MS;
    this.timer ??= setInterval(() => this.tick(), TICK_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.endsAt = null;
  }

  status(): TrafficStatus {
    return { running: this.timer !== null, ends_at: this.endsAt, sent: this.sent, failed: this.failed, max_rps: MAX_RPS, run_ms: RUN_MS };
  }

  /** Stops and closes every kept-alive connection (the demo's shutdown). */
  close(): void {
    this.stop();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private tick(): void {
    if (this.endsAt !== null && Date.now() >= this.endsAt) return this.stop();
    const perTick = (MAX_RPS * TICK_MS) / 1000;
    for (let i = 0; i < perTick && this.inFlight < CONCURRENCY; i++) this.send(MIX[this.turn % MIX.length], this.turn++);
  }

  private send(call: Call, n: number): void {
    const target = this.targets[call.to];
    const body = call.body === undefined ? undefined : Buffer.from(call.body);
    const options: https.RequestOptions = {
      host: '127.0.0.1',
      port: target.port,
      method: call.method,
      path: call.path(n),
      headers: { accept: 'application/fhir+json', ...(body ? { 'content-type': 'application/fhir+json', 'content-length': body.length } : {}) },
      timeout: REQUEST_TIMEOUT_MS,
    };
    this.inFlight++;
    this.sent++;
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      this.inFlight--;
      if (!ok) this.failed++;
    };
    const req = target.ca
      ? https.request({ ...options, ca: target.ca, servername: 'localhost', agent: this.agents.https })
      : http.request({ ...options, agent: this.agents.http });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode !== undefined && res.statusCode < 500));
      res.on('error', () => done(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(false));
    req.end(body);
  }
}
