/**
 * Fuzzing (issue 6): thousands of random and mutated requests at carelb over raw sockets, and
 * a fake server answering with random and mutated responses. After each: no data-plane thread
 * died, every in-flight counter is back to 0, memory stayed bounded and a normal request is
 * still answered. Seeded: the seed is printed, `CARELB_FUZZ_SEED=N` replays a run, and every
 * case is generated from (seed, index) alone, so a failure names the case to look at.
 *
 * Bounded for a 2-core machine: at most 3000 requests or 20 s for the first test, about 1000
 * exchanges for the second.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { startBackend } from '../helpers/backend';
import { eventually, startInProcess, type InProcess } from '../helpers/carelb';
import { request } from '../helpers/client';
import { caseSeed, fuzzRequest, fuzzResponse, fuzzSeed, idsIn, Rng, type FuzzRequest, type FuzzResponse } from '../helpers/fuzz';
import { freePort } from '../helpers/ports';
import { parseResponse, RawConnection, type RawResponse } from '../helpers/raw-client';
import { startScriptedBackend } from '../helpers/raw-server';

const RSS_GROWTH_LIMIT_MB = 150;

function inflight(lb: InProcess): number {
  return lb.status().reduce((sum, vs) => sum + vs.servers.reduce((s, server) => s + server.active, 0), 0);
}

function rssMb(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function summary(map: Map<string, number>): string {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([key, n]) => `${key}: ${n}`)
    .join(', ');
}

/** Runs `work(i)` for i = 0.. with `lanes` in parallel until `total` are done or `deadline` passes. */
async function lanes(n: number, total: number, deadline: number, work: (i: number, lane: number) => Promise<void>): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async (_, lane) => {
      while (next < total && Date.now() < deadline) await work(next++, lane);
    }),
  );
  return next;
}

interface SendOutcome {
  /** 'answered': a complete, well-formed response; 'malformed': bytes that are not one. */
  result: 'answered' | 'malformed' | 'closed' | 'partial' | 'silent';
  status: number;
  error: string;
}

/**
 * Writes a fuzz request on a new connection; the socket is destroyed after a complete answer,
 * a close, or 500 ms without a byte. The 500 ms only bounds the wait for requests that get
 * no answer on purpose (uWS is silent for some, e.g. 50 or more header lines); 'silent' and
 * 'partial' outcomes are counted, never asserted, so a slow machine cannot make this pass.
 */
function sendFuzz(port: number, fuzz: FuzzRequest): Promise<SendOutcome> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    let settled = false;
    let timer: NodeJS.Timeout;
    const finish = (result: SendOutcome['result'], status = 0, error = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ result, status, error });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(buffer.length > 0 ? 'partial' : 'silent'), 500);
    };
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        const parsed = parseResponse(buffer, fuzz.head);
        if (parsed) finish('answered', parsed.response.status);
        else arm();
      } catch (error) {
        finish('malformed', 0, `${(error as Error).message}; received ${JSON.stringify(buffer.toString('latin1').slice(0, 300))}`);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => finish(buffer.length > 0 ? 'partial' : 'closed'));
    arm();
    socket.write(fuzz.pieces[0]);
    if (fuzz.pieces.length > 1) setImmediate(() => !socket.destroyed && socket.write(fuzz.pieces[1]));
  });
}

test('thousands of random and mutated requests: no thread dies, in-flight returns to 0, memory stays bounded, carelb still answers', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`seed ${seed} (replay: CARELB_FUZZ_SEED=${seed})`);
  const api = await startBackend('api');
  t.after(() => api.close());
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 2,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }], timeouts: { server: '2s' } }],
  });
  assert.equal((await request(port)).status, 200);
  const rssBefore = rssMb();
  const started = Date.now();

  const results = new Map<string, number>();
  const statuses = new Map<string, number>();
  const malformed: string[] = [];
  const sent = await lanes(32, 3000, started + 20_000, async (i) => {
    const fuzz = fuzzRequest(seed, i);
    const outcome = await sendFuzz(port, fuzz);
    count(results, outcome.result);
    if (outcome.result === 'answered') count(statuses, String(outcome.status));
    if (outcome.result === 'malformed') malformed.push(`#${i} (${fuzz.kind}) ${JSON.stringify(fuzz.bytes.toString('latin1').slice(0, 200))}: ${outcome.error}`);
  });
  const elapsed = Date.now() - started;
  t.diagnostic(`${sent} requests in ${elapsed} ms; outcomes ${summary(results)}; statuses ${summary(statuses)}`);

  assert.deepEqual(malformed, [], 'every answer carelb gave is a well-formed HTTP/1.1 response');
  const smuggled = api.seen.filter((seen) => seen.url.includes('/smuggled/'));
  assert.deepEqual(smuggled.map((seen) => `${seen.method} ${seen.url}`), [], 'no request hidden in a body or pipelined behind another reached the server');
  assert.equal(lb.running.supervisor.restarts, 0, 'no data-plane thread died');
  await eventually(() => inflight(lb) === 0, 10_000, 'every in-flight counter back to 0');
  const grown = rssMb() - rssBefore;
  t.diagnostic(`RSS grew ${grown.toFixed(1)} MB (process: test, carelb and its threads)`);
  assert.ok(grown < RSS_GROWTH_LIMIT_MB, `RSS grew by ${grown.toFixed(1)} MB`);
  const after = await request(port, { method: 'POST', path: '/after', body: 'still here', headers: { 'content-length': 10 } });
  assert.equal(after.status, 200);
  assert.equal(JSON.parse(after.body.toString()).bodyBytes, 10);
  assert.equal(lb.running.supervisor.restarts, 0);
});

interface Plan extends FuzzResponse {
  /** The server connection (index) the request arrived on. */
  connection: number;
}

interface Exchange {
  index: number;
  method: string;
  response: RawResponse | null;
  /** Bytes left after the response (a HEAD answer must leave none), or the partial response before a cut. */
  rest: string;
  error: string;
  /** The exchange before this one on the same client connection, if any. */
  previous: Exchange | null;
}

test('a fake server answering ~1000 requests with random and mutated responses: clients get well-formed answers, never another request\'s, and carelb stays healthy', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`seed ${seed} (replay: CARELB_FUZZ_SEED=${seed})`);
  const plans = new Map<number, Plan>();
  /** Server connections that sent bytes beyond a response (see FuzzResponse.taints). */
  const tainted = new Set<number>();
  const backend = await startScriptedBackend((req, socket) => {
    const match = /^\/fz\/(\d+)$/.exec(req.path);
    if (!match) return void socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    // A request on a connection this server already ended: nothing can be answered on it.
    if (socket.writableEnded) return;
    const index = Number(match[1]);
    const plan: Plan = { ...fuzzResponse(seed, index, req.method), connection: req.connection };
    plans.set(index, plan);
    if (plan.taints) tainted.add(req.connection);
    const write = (k: number) => {
      if (socket.destroyed) return;
      if (k < plan.pieces.length) {
        socket.write(plan.pieces[k]);
        setImmediate(() => write(k + 1));
        return;
      }
      if (plan.after === 'end') socket.end();
      else if (plan.after === 'destroy') socket.destroy();
      else if (plan.late) setTimeout(() => !socket.destroyed && socket.write(plan.late!), 1);
    };
    write(0);
  });
  t.after(() => backend.close());
  const port = await freePort();
  const lb = await startInProcess(t, {
    workers: 2,
    pin_workers: false,
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'fake', address: backend.address }], timeouts: { server: '2s' } }],
  });
  assert.equal((await request(port, { path: '/ok' })).status, 200);
  const rssBefore = rssMb();
  const started = Date.now();

  const exchanges: Exchange[] = [];
  const connections: (RawConnection | null)[] = [];
  const lastOn: (Exchange | null)[] = [];
  t.after(() => connections.forEach((c) => c?.destroy()));
  const done = await lanes(24, 1000, started + 40_000, async (index, lane) => {
    const rng = new Rng(caseSeed(seed, 3, index));
    const method = rng.pick(['GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'HEAD', 'POST', 'POST']);
    const body = method === 'POST' ? rng.text(rng.int(200)) : '';
    if (!connections[lane]) lastOn[lane] = null;
    const connection = connections[lane] ?? new RawConnection(port);
    connections[lane] = connection;
    connection.send(`${method} /fz/${index} HTTP/1.1\r\nHost: api.example\r\n${method === 'POST' ? `Content-Length: ${body.length}\r\n` : ''}\r\n${body}`);
    const exchange: Exchange = { index, method, response: null, rest: '', error: '', previous: lastOn[lane] };
    lastOn[lane] = exchange;
    exchanges.push(exchange);
    try {
      exchange.response = await connection.response(8000, method === 'HEAD');
    } catch (error) {
      exchange.error = (error as Error).message;
    }
    exchange.rest = connection.pending;
    // A cut, an error, bytes left over (which would be read as the next answer) or a
    // `Connection: close` answer: the next request goes on a new connection.
    if (exchange.response === null || exchange.rest !== '' || /close/i.test(exchange.response.headers.connection ?? '')) {
      connection.destroy();
      connections[lane] = null;
    }
  });
  const elapsed = Date.now() - started;

  // Judged once every answer is in, with the server's record of each connection.
  const results = new Map<string, number>();
  const violations: string[] = [];
  let exact = 0;
  const describe = (e: Exchange | null) =>
    e === null ? 'none' : `#${e.index} ${e.method} (${plans.get(e.index)?.kind ?? '-'}) → ${e.error || (e.response ? JSON.stringify(e.response.raw.slice(0, 200)) : `cut ${JSON.stringify(e.rest.slice(0, 60))}`)}`;
  // Every request the server received, answered or not (a request arriving on a connection
  // the server had already ended gets no plan, but it did reach the server).
  const reached = new Set(backend.requests.map((r) => /^\/fz\/(\d+)$/.exec(r.path)?.[1]).filter((id) => id !== undefined).map(Number));
  for (const { index, method, response, rest, error, previous } of exchanges) {
    const plan = plans.get(index);
    const what = `#${index} ${method} (${plan ? `${plan.kind}, server connection ${plan.connection}` : 'not answered by the server'})`;
    const trusted = plan !== undefined && !tainted.has(plan.connection);
    if (error) {
      count(results, 'error');
      violations.push(`${what}: ${error}; before it on that connection: ${describe(previous)}`);
      continue;
    }
    if (response === null) {
      count(results, 'cut');
      // A cut of a request that reached the server is the server's doing (it had ended or
      // desynchronized that connection); one that never reached it is carelb's.
      if (plan === undefined && rest === '' && !reached.has(index)) violations.push(`${what}: the client connection was closed before the request reached the server; before it on that connection: ${describe(previous)}`);
      else if (trusted && plan.expect) violations.push(`${what}: a valid response was cut (got ${JSON.stringify(rest.slice(0, 200))})`);
      continue;
    }
    const carelbError = response.headers['x-carelb-error'];
    count(results, carelbError ? `${response.status} ${carelbError}` : 'server answer');
    if (rest !== '') violations.push(`${what}: ${JSON.stringify(rest.slice(0, 80))} followed the ${response.status} response${method === 'HEAD' ? ' to HEAD (RFC 9110 §9.3.2: no content)' : ''}`);
    // A response carrying another request's id: only possible on a connection the server desynchronized.
    for (const other of idsIn(response.body.toString('latin1')).filter((k) => k !== index)) {
      const source = plans.get(other);
      if (!source || !tainted.has(source.connection)) violations.push(`${what}: got the response of request #${other} (${source?.kind ?? '?'}, server connection ${source?.connection ?? '?'})`);
    }
    if (trusted && plan.expect) {
      if (response.status !== plan.expect.status || response.body.toString('latin1') !== plan.expect.body) {
        violations.push(`${what}: expected ${plan.expect.status} with ${plan.expect.body.length} body bytes, got ${JSON.stringify(response.raw.slice(0, 300))}`);
      } else {
        exact++;
      }
    }
  }
  t.diagnostic(`${done} exchanges in ${elapsed} ms (${exact} valid responses matched exactly, ${tainted.size} server connections desynchronized on purpose); ${summary(results)}`);

  assert.deepEqual(violations, []);
  assert.ok(exact > done / 4, `only ${exact} of ${done} exchanges were checked byte for byte`);
  assert.deepEqual(backend.garbage, [], 'carelb sent the server only well-formed requests');
  assert.equal(lb.running.supervisor.restarts, 0, 'no data-plane thread died');
  await eventually(() => inflight(lb) === 0, 10_000, 'every in-flight counter back to 0');
  const grown = rssMb() - rssBefore;
  t.diagnostic(`RSS grew ${grown.toFixed(1)} MB (process: test, carelb and its threads)`);
  assert.ok(grown < RSS_GROWTH_LIMIT_MB, `RSS grew by ${grown.toFixed(1)} MB`);
  const after = await request(port, { path: '/ok' });
  assert.equal(after.status, 200);
  assert.equal(after.body.toString(), 'ok');
});
