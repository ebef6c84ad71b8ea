/**
 * Fault containment (issue 11, point 8): an exception anywhere on one request's path fails
 * that request alone — 502 CLB_INTERNAL — is counted and logged with its stack at most once
 * a second, and the thread goes on serving, including the other request in flight on it.
 *
 * The exceptions are injected through the test-only `x-carelb-fault` header, honoured only
 * with CARELB_FAULT_INJECTION=1 in the environment (set here, before the threads start;
 * node:test runs each file in its own process).
 */
process.env.CARELB_FAULT_INJECTION = '1';

import assert from 'node:assert/strict';
import type * as net from 'node:net';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { configFrom, eventually } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { RawConnection } from '../helpers/raw-client';
import { startScriptedBackend } from '../helpers/raw-server';
import { runCarelb, type Running } from '../../src/primary/run';

const OK = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

interface Stage {
  running: Running;
  port: number;
  logs: Record<string, unknown>[];
  /** Answers the held /slow request. */
  releaseSlow(): void;
  slowArrived(): boolean;
}

async function stage(t: TestContext): Promise<Stage> {
  let slow: net.Socket | null = null;
  const backend = await startScriptedBackend((request, socket) => {
    if (request.path === '/slow') slow = socket;
    else socket.write(OK(request.path.slice(1)));
  });
  t.after(() => backend.close());
  const port = await freePort();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logs.push(JSON.parse(line));
      done();
    },
  });
  const config = configFrom({
    workers: 1,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, timeouts: { server: '5s' }, servers: [{ name: 'raw', address: backend.address }] }],
  });
  const running = await runCarelb(config, { log: pino({ level: 'info' }, sink) });
  t.after(() => running.stop());
  return {
    running,
    port,
    logs,
    releaseSlow: () => slow!.write(OK('slow')),
    slowArrived: () => slow !== null,
  };
}

function connect(t: TestContext, port: number): RawConnection {
  const connection = new RawConnection(port);
  t.after(() => connection.destroy());
  return connection;
}

const POINTS: [string, string][] = [
  ['handler', 'GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: handler\r\n\r\n'],
  ['request-body', 'POST /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: request-body\r\nContent-Length: 5\r\n\r\nhello'],
  ['response-head', 'GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: response-head\r\n\r\n'],
  ['response-body', 'GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: response-body\r\n\r\n'],
  ['upstream-read', 'GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: upstream-read\r\n\r\n'],
];

for (const [point, bytes] of POINTS) {
  test(`an exception at "${point}" fails that request alone with 502 CLB_INTERNAL; the request beside it and the thread go on`, async (t) => {
    const lb = await stage(t);
    const beside = connect(t, lb.port);
    await beside.ready;
    beside.send('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    await eventually(lb.slowArrived, 5000, '/slow to reach the server');

    const faulty = connect(t, lb.port);
    await faulty.ready;
    faulty.send(bytes);
    const answer = await faulty.response();
    assert.ok(answer, 'an answer, not a cut connection');
    assert.equal(answer.status, 502);
    assert.equal(answer.headers['x-carelb-error'], 'CLB_INTERNAL');
    assert.doesNotMatch(answer.body.toString(), /fault injection|at /, 'no internal detail in the body');

    lb.releaseSlow();
    const slow = await beside.response();
    assert.equal(slow?.status, 200, 'the request in flight beside the fault completed');
    assert.equal(slow?.body.toString(), 'slow');
    const after = connect(t, lb.port);
    await after.ready;
    after.send('GET /after HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal((await after.response())?.status, 200, 'the thread still serves');

    const status = lb.running.status()[0];
    assert.equal(status.errors.INTERNAL, 1);
    assert.equal(lb.running.supervisor.restarts, 0, 'no thread died');
    await eventually(() => status.servers.every((s) => s.active === 0) && lb.running.status()[0].servers[0].active === 0, 5000, 'in-flight back to 0');
    await eventually(() => lb.logs.some((line) => line.msg === 'request failed on an internal error (CLB_INTERNAL)'), 5000, 'the fault to be logged');
    const logged = lb.logs.find((line) => line.msg === 'request failed on an internal error (CLB_INTERNAL)')!;
    assert.match(String(logged.err), /fault injection: exception at point/);
    assert.match(String(logged.err), /\n\s+at /, 'with its stack');
    assert.deepEqual(
      Object.entries(lb.running.admin.invariants()).filter(([, n]) => n > 0),
      [],
    );
  });
}

test('a burst of faults is logged at most once a second, the rest counted', async (t) => {
  const lb = await stage(t);
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const connection = connect(t, lb.port);
      await connection.ready;
      connection.send('GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: response-head\r\n\r\n');
      return connection.response();
    }),
  );
  const elapsed = Date.now() - started;
  assert.ok(answers.every((answer) => answer?.status === 502));
  assert.equal(lb.running.status()[0].errors.INTERNAL, 20);
  await eventually(() => lb.logs.some((line) => line.msg === 'request failed on an internal error (CLB_INTERNAL)'), 5000, 'the first fault to be logged');
  const lines = lb.logs.filter((line) => line.msg === 'request failed on an internal error (CLB_INTERNAL)').length;
  // One line per started second of the burst at most (20 faults would be 20 lines unthrottled).
  assert.ok(lines <= Math.ceil(elapsed / 1000) + 1, `${lines} log lines for 20 faults in ${elapsed} ms`);
});

test('without CARELB_FAULT_INJECTION the fault header is an ordinary header', async (t) => {
  // A child process without the variable: the header reaches the server and nothing fails.
  const { startChild } = await import('../helpers/carelb');
  const backend = await startScriptedBackend((request, socket) => socket.write(OK(/x-carelb-fault: handler/.test(request.head) ? 'forwarded' : 'missing')));
  t.after(() => backend.close());
  const port = await freePort();
  await startChild(
    t,
    { workers: 1, pin_workers: false, virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'raw', address: backend.address }] }] },
    { CARELB_FAULT_INJECTION: '' },
  );
  const connection = connect(t, port);
  await connection.ready;
  connection.send('GET /x HTTP/1.1\r\nHost: a\r\nx-carelb-fault: handler\r\n\r\n');
  const answer = await connection.response();
  assert.equal(answer?.status, 200);
  assert.equal(answer?.body.toString(), 'forwarded');
});
