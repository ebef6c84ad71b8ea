/**
 * The health monitor (src/health/monitor.ts) against real loopback servers, writing verdicts
 * into a real shared buffer: down after `fall` failures, up after `rise` passes, flapping,
 * expect_body, TCP, spread first checks, reloads, passive mark-down, stop.
 * Counts are asserted at the moment a transition is logged (the test logger is synchronous),
 * so they do not depend on timing.
 */
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import { performance } from 'node:perf_hooks';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { HealthMonitor, type HealthMonitorDeps } from '../../src/health/monitor';
import { SlotAllocator } from '../../src/primary/slots';
import { createShared, F_HEALTH, HEALTH_DOWN, HEALTH_UP, type SharedViews } from '../../src/state/layout';
import type { SlotPlan } from '../../src/state/plan';
import { startBackend, startRawBackend, type RawBackend, type TestBackend } from '../helpers/backend';
import { eventually } from '../helpers/carelb';

interface LogEntry {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose lines land synchronously in `entries`; `onEntry` runs at that moment. */
function captureLog(onEntry: (entry: LogEntry) => void = () => {}) {
  const entries: LogEntry[] = [];
  const log = pino({ level: 'debug' }, {
    write(line: string) {
      const entry = JSON.parse(line) as LogEntry;
      entries.push(entry);
      onEntry(entry);
    },
  });
  return { log, entries, transitions: () => entries.filter((e) => e.msg === 'server down' || e.msg === 'server up') };
}

interface Harness {
  monitor: HealthMonitor;
  views: SharedViews;
  slots: SlotAllocator;
  plan: SlotPlan;
  /** Applies `document` as a reload would. */
  update(document: unknown): SlotPlan;
  /** F_HEALTH of server `s` of virtual service `v` in the current plan. */
  health(v: number, s: number): number;
}

function parse(document: unknown): Config {
  const result = validateConfig(document);
  assert.ok(result.ok, result.ok ? '' : result.errors.join('; '));
  return result.config;
}

/** A monitor over a zeroed shared buffer (every slot reads DOWN until the monitor writes it), stopped when the test ends. */
function startMonitor(t: TestContext, document: unknown, deps: Partial<HealthMonitorDeps> & Pick<HealthMonitorDeps, 'log'>): Harness {
  const views = createShared({ serverCapacity: 16, vsCapacity: 4, threadSlots: 1 });
  const monitor = new HealthMonitor({ views, ...deps });
  t.after(() => monitor.stop());
  const slots = new SlotAllocator(4, 16);
  const harness: Harness = {
    monitor,
    views,
    slots,
    plan: { vs: [] },
    update(doc) {
      const planned = slots.plan(parse(doc));
      assert.ok(!('error' in planned));
      harness.plan = planned.plan;
      monitor.update(parse(doc), planned.plan);
      return planned.plan;
    },
    health: (v, s) => Atomics.load(views.servers, views.layout.serverField(harness.plan.vs[v].servers[s], F_HEALTH)),
  };
  harness.update(document);
  return harness;
}

/** A server whose health the test switches; counts what it answered. */
interface Switchable {
  backend: TestBackend;
  failing: boolean;
  passes: number;
  fails: number;
  /** performance.now() of each request. */
  times: number[];
}

async function switchable(t: TestContext, options: { failing?: boolean; status?: number; body?: string; delayMs?: number } = {}): Promise<Switchable> {
  const state: Switchable = { backend: undefined as unknown as TestBackend, failing: options.failing ?? false, passes: 0, fails: 0, times: [] };
  state.backend = await startBackend('health', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    state.times.push(performance.now());
    const failing = state.failing;
    if (failing) state.fails++;
    else state.passes++;
    const body = options.body ?? (failing ? 'FAIL' : 'OK');
    const answer = () => {
      res.writeHead(failing ? 500 : (options.status ?? 200), { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (options.delayMs) setTimeout(answer, options.delayMs);
    else answer();
  });
  t.after(() => state.backend.close());
  return state;
}

async function rawBackend(t: TestContext): Promise<RawBackend> {
  const server = await startRawBackend(() => {});
  t.after(() => server.close());
  return server;
}

function service(servers: { name: string; address: string; health_check?: Record<string, unknown> }[], health_check?: Record<string, unknown>, name = 'api', port = 8000) {
  return { name, listen: `127.0.0.1:${port}`, ...(health_check ? { health_check } : {}), servers };
}

test('a server that starts failing goes down after fall failed checks and comes back after rise passes', async (t) => {
  const server = await switchable(t);
  const interval = 100;
  const [rise, fall] = [2, 3];
  let failsWhenDown = -1;
  let passesWhenUp = -1;
  let passesAtRecovery = 0;
  const { log, transitions } = captureLog((entry) => {
    if (entry.msg === 'server down') failsWhenDown = server.fails;
    if (entry.msg === 'server up') passesWhenUp = server.passes - passesAtRecovery;
  });
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval, timeout: 500, rise, fall })] }, { log });

  assert.equal(h.health(0, 0), HEALTH_UP, 'a checked server starts up');
  await eventually(() => h.monitor.lastCheck('api', 'a') !== null, 2000, 'the first check');
  const first = h.monitor.lastCheck('api', 'a')!;
  assert.equal(first.result, 'pass');
  assert.equal(first.reason, 'HTTP 200');
  assert.ok(!Number.isNaN(Date.parse(first.time)));
  assert.equal(typeof first.duration_ms, 'number');

  const failingSince = performance.now();
  server.failing = true;
  await eventually(() => h.health(0, 0) === HEALTH_DOWN, fall * interval + 2000, 'the server to go down');
  t.diagnostic(`down ${Math.round(performance.now() - failingSince)} ms after it started failing (fall × interval = ${fall * interval} ms)`);
  assert.equal(failsWhenDown, fall, 'down on exactly the fall-th failed check');
  assert.deepEqual(
    transitions().map((e) => [e.level, e.msg, e.vs, e.server, e.reason]),
    [[40, 'server down', 'api', 'a', 'HTTP 500']],
  );
  assert.equal(h.monitor.lastCheck('api', 'a')!.result, 'fail');
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, 'HTTP 500');

  passesAtRecovery = server.passes;
  server.failing = false;
  await eventually(() => h.health(0, 0) === HEALTH_UP, rise * interval + 2000, 'the server to come back');
  assert.equal(passesWhenUp, rise, 'up on exactly the rise-th passed check');
  assert.deepEqual(transitions().at(-1)!.msg, 'server up');
  assert.equal(transitions().at(-1)!.level, 30);
  assert.equal(transitions().at(-1)!.reason, 'HTTP 200');
});

test('a flapping server (pass and fail alternating, rise 2 fall 2) never changes state', async (t) => {
  let answered = 0;
  const server = await switchable(t);
  server.failing = true;
  const { log, transitions } = captureLog();
  // Alternate after every answer: fail, pass, fail, pass, ...
  server.backend.server.prependListener('request', (_req, res: http.ServerResponse) => res.once('finish', () => ((server.failing = !server.failing), answered++)));
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: 30, timeout: 500, rise: 2, fall: 2 })] }, { log });
  await eventually(() => answered >= 10, 5000, '10 checks');
  assert.equal(h.health(0, 0), HEALTH_UP);
  assert.deepEqual(transitions(), [], 'an up server that flaps stays up');

  h.monitor.markDown(h.plan.vs[0].servers[0], 'test');
  const after = answered;
  await eventually(() => answered >= after + 10, 5000, '10 more checks');
  assert.equal(h.health(0, 0), HEALTH_DOWN, 'a down server that flaps stays down');
  assert.deepEqual(
    transitions().map((e) => e.msg),
    ['server down'],
  );
});

test('a 200 whose body lacks expect_body marks the server down with that reason', async (t) => {
  const server = await switchable(t, { body: 'DEGRADED' });
  const { log, transitions } = captureLog();
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: 50, timeout: 500, expect_body: 'OK', fall: 2 })] }, { log });
  await eventually(() => h.health(0, 0) === HEALTH_DOWN, 3000, 'the server to go down');
  assert.equal(server.passes, 2, 'two 200 answers that lacked the body');
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, 'HTTP 200 but body lacks "OK"');
  assert.equal(transitions()[0].reason, 'HTTP 200 but body lacks "OK"');
});

test('tcp checks keep a listening server up and take it down when it stops listening', async (t) => {
  const server = await rawBackend(t);
  const { log } = captureLog();
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.address }], { type: 'tcp', interval: 50, timeout: 500, fall: 2 })] }, { log });
  await eventually(() => server.received.length >= 2, 3000, 'two tcp checks');
  assert.equal(h.health(0, 0), HEALTH_UP);
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, 'connected');
  await server.close();
  await eventually(() => h.health(0, 0) === HEALTH_DOWN, 3000, 'the server to go down');
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, 'connection refused');
});

test('first checks are spread over the interval, not sent in one burst', async (t) => {
  const servers = await Promise.all([0, 1, 2, 3].map(() => switchable(t)));
  const { log } = captureLog();
  startMonitor(t, { virtual_services: [service(servers.map((s, i) => ({ name: `s${i}`, address: s.backend.address })), { interval: 400, timeout: 500 })] }, { log });
  await eventually(() => servers.every((s) => s.times.length >= 1), 3000, 'every server to be checked once');
  const firsts = servers.map((s) => s.times[0]);
  t.diagnostic(`first checks at +${firsts.map((f) => Math.round(f - firsts[0])).join(', +')} ms`);
  assert.ok(Math.max(...firsts) - Math.min(...firsts) > 20, 'not all within 20 ms');
  assert.deepEqual(
    [...firsts].sort((a, b) => a - b),
    firsts,
    'in config order, each (i / n) × interval after the start',
  );
});

test('a check never overlaps the previous one of the same server, even when it is slower than the interval', async (t) => {
  let open = 0;
  let most = 0;
  const server = await switchable(t, { delayMs: 80 });
  server.backend.server.prependListener('request', (_req, res: http.ServerResponse) => {
    most = Math.max(most, ++open);
    res.once('close', () => open--);
  });
  const { log } = captureLog();
  startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: 20, timeout: 1000 })] }, { log });
  await eventually(() => server.passes >= 5, 5000, 'five checks');
  assert.equal(most, 1);
});

test('update() keeps the state and last check of a kept server, stops checking a removed one, starts a new one', async (t) => {
  const kept = await switchable(t, { failing: true });
  const removed = await switchable(t);
  const added = await switchable(t);
  const { log } = captureLog();
  const check = { interval: 50, timeout: 500, fall: 1, rise: 2 };
  const h = startMonitor(t, { virtual_services: [service([{ name: 'kept', address: kept.backend.address }, { name: 'removed', address: removed.backend.address }], check)] }, { log });
  await eventually(() => h.health(0, 0) === HEALTH_DOWN && removed.passes >= 1, 3000, 'kept down and removed checked');
  const keptLast = h.monitor.lastCheck('api', 'kept');

  h.update({ virtual_services: [service([{ name: 'added', address: added.backend.address }, { name: 'kept', address: kept.backend.address }], check)] });
  assert.equal(h.health(0, 1), HEALTH_DOWN, 'the kept server is still down');
  assert.deepEqual(h.monitor.lastCheck('api', 'kept'), keptLast, 'and keeps its last check');
  assert.equal(h.health(0, 0), HEALTH_UP, 'a new server starts up');
  assert.equal(h.monitor.lastCheck('api', 'removed'), null);

  // Let any check of the removed server that was already on the wire land, then watch.
  const kept0 = kept.fails;
  await eventually(() => kept.fails >= kept0 + 2, 3000, 'two more checks of the kept server');
  const removedCount = removed.passes;
  await eventually(() => kept.fails >= kept0 + 5 && added.passes >= 3, 3000, 'more checks of the kept and new servers');
  assert.equal(removed.passes, removedCount, 'the removed server is no longer checked');

  kept.failing = false;
  await eventually(() => h.health(0, 1) === HEALTH_UP, 3000, 'the kept server to come back with its kept rise/fall');
});

test('update() applies a changed interval to the pending check', async (t) => {
  const server = await switchable(t);
  const { log } = captureLog();
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: '60s', timeout: 500 })] }, { log });
  await eventually(() => server.passes === 1, 2000, 'the first check');
  h.update({ virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: 30, timeout: 500 })] });
  await eventually(() => server.passes >= 4, 3000, 'checks at the new interval, not 60 s later');
});

test('servers of a virtual service without health_check are left up and never checked', async (t) => {
  const unchecked = await switchable(t, { failing: true });
  const checked = await switchable(t);
  const { log } = captureLog();
  const h = startMonitor(
    t,
    {
      virtual_services: [
        service([{ name: 'u', address: unchecked.backend.address }], undefined, 'plain', 8000),
        service([{ name: 'c', address: checked.backend.address }], { interval: 30, timeout: 500 }, 'checked', 8001),
      ],
    },
    { log },
  );
  assert.equal(h.health(0, 0), HEALTH_UP, 'written up over the zeroed slot');
  await eventually(() => checked.passes >= 3, 3000, 'three checks of the other service');
  assert.equal(unchecked.fails + unchecked.passes, 0);
  assert.equal(h.monitor.lastCheck('plain', 'u'), null);

  h.monitor.markDown(h.plan.vs[0].servers[0], '5xx');
  assert.equal(h.health(0, 0), HEALTH_UP, 'a passive mark-down is ignored when no active check could bring the server back');
});

test('a passive mark-down takes the server down at once and rise active passes bring it back', async (t) => {
  const rise = 3;
  let h: Harness | undefined;
  let markedAt = -1;
  let passesWhenUp = -1;
  let healthRightAfter = -1;
  const server = await switchable(t);
  // Mark down from inside the 3rd request, so that check (a pass) is the first one after it.
  server.backend.server.prependListener('request', () => {
    if (server.passes === 2 && markedAt < 0) {
      h!.monitor.markDown(h!.plan.vs[0].servers[0], '3 consecutive connection failures');
      markedAt = server.passes + 1;
      healthRightAfter = h!.health(0, 0);
    }
  });
  const { log, transitions } = captureLog((entry) => {
    if (entry.msg === 'server up') passesWhenUp = server.passes - markedAt + 1;
  });
  h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { interval: 30, timeout: 500, rise })] }, { log });
  await eventually(() => markedAt > 0, 3000, 'the mark-down');
  assert.equal(healthRightAfter, HEALTH_DOWN, 'down at once');
  await eventually(() => h!.health(0, 0) === HEALTH_UP, 3000, 'the server to come back');
  assert.equal(passesWhenUp, rise);
  const [down, up] = transitions();
  assert.deepEqual([down.msg, down.level, down.vs, down.server, down.reason, down.passive], ['server down', 40, 'api', 'a', '3 consecutive connection failures', true]);
  assert.equal(up.msg, 'server up');
});

test('https checks use the TLS options the caller gives for that server', async (t) => {
  const server = await switchable(t); // plain HTTP: the handshake fails, which is all this needs
  const asked: string[] = [];
  const { log } = captureLog();
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.backend.address }], { type: 'https', interval: 50, timeout: 500 })] }, {
    log,
    tlsOptionsFor: (vs, s) => {
      asked.push(`${vs.name}/${s.name}`);
      return { servername: 'localhost' };
    },
  });
  await eventually(() => h.monitor.lastCheck('api', 'a') !== null, 3000, 'the first check');
  assert.deepEqual(asked, ['api/a']);
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, 'TLS: wrong version number');
});

test('https checks fail with the reason when the TLS options cannot be built, without breaking update()', async (t) => {
  const server = await switchable(t);
  const other = await switchable(t);
  const { log, entries } = captureLog();
  const h = startMonitor(
    t,
    {
      virtual_services: [
        service([{ name: 'a', address: server.backend.address, health_check: { type: 'https' } }, { name: 'b', address: other.backend.address }], { interval: 50, timeout: 500, fall: 1 }),
      ],
    },
    {
      log,
      tlsOptionsFor: () => {
        throw new Error("ENOENT: no such file or directory, open '/etc/carelb/ca.pem'");
      },
    },
  );
  await eventually(() => h.health(0, 0) === HEALTH_DOWN, 3000, 'the server to go down');
  assert.equal(h.monitor.lastCheck('api', 'a')!.reason, "TLS: cannot load options: ENOENT: no such file or directory, open '/etc/carelb/ca.pem'");
  assert.equal(server.passes, 0, 'no connection made');
  await eventually(() => other.passes >= 1, 3000, 'the other server still checked');
  assert.ok(entries.some((e) => e.msg === 'health check TLS options failed' && e.level === 50));
});

test('stop() clears the timers and closes the connections of checks in flight', async (t) => {
  const server = await rawBackend(t);
  const { log } = captureLog();
  const h = startMonitor(t, { virtual_services: [service([{ name: 'a', address: server.address }], { interval: 50, timeout: '10s' })] }, { log });
  await eventually(() => server.sockets.size === 1, 3000, 'a check to connect');
  const stopped = h.monitor.stop();
  // Well before the check's own 10 s timeout would close it.
  await eventually(() => server.sockets.size === 0, 2000, 'the in-flight check connection to close');
  await stopped;
  assert.equal(server.received.length, 1, 'no check started after stop');
  assert.equal(h.monitor.lastCheck('api', 'a'), null);
});
