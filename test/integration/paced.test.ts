/**
 * paced, the latency table's load generator (bench/paced/paced.c). It is built with the
 * harness's own build step and run against node:http servers on loopback. The main case
 * runs 1 s of warm-up and a 2 s window at 2,000 req/s over 16 connections. It checks the
 * JSON: the rate achieved, no errors, percentiles in order, every request due in the window
 * answered. It also checks at the server that the arrivals were paced: no 100 ms bucket above
 * 2× the mean. autocannon's per-second bursts would fail that: at 10k offered, its busiest
 * 100 ms ran at 2.5–4× the mean. The server mixes chunked bodies and `Connection: close`
 * into the keep-alive responses, so the framing and reconnects are exercised too. Shorter
 * runs cover TLS with SNI, non-2xx and refused connections being counted, and the refusal of
 * non-loopback hosts. No timing is asserted beyond the pacing itself: DESIGN.md, Measuring.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type * as tls from 'node:tls';
import { buildPaced, type PacedJson } from '../../bench/paced';
import { makeCa, makeCert } from '../helpers/certs';

const BODY = '{"resourceType":"Patient","id":"example","active":true}';

/** Runs paced to completion (killed by PID after boundMs); its stdout parsed as JSON. */
function runPaced(t: TestContext, args: string[], boundMs: number): Promise<{ code: number | null; json: PacedJson; stderr: string }> {
  const child = spawn(buildPaced(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const killer = setTimeout(() => child.kill('SIGKILL'), boundMs);
  t.after(() => {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      try {
        resolve({ code, json: JSON.parse(stdout) as PacedJson, stderr });
      } catch (err) {
        reject(new Error(`paced exited ${code}, stdout not JSON: ${stdout.slice(0, 300)}\nstderr: ${stderr}\n${String(err)}`));
      }
    });
  });
}

function listen(t: TestContext, server: http.Server): Promise<number> {
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function assertOrdered(name: string, l: PacedJson['latency_ms']['from_due']): void {
  const xs = [l.p50, l.p90, l.p99, l.p99_9, l.max];
  for (let i = 1; i < xs.length; i++) assert.ok(xs[i - 1] <= xs[i], `${name}: percentiles out of order: ${xs.join(', ')}`);
  assert.ok(l.p50 > 0, `${name}: p50 is 0`);
}

test('paced offers an evenly spaced rate, frames keep-alive responses and reports clean JSON', { timeout: 30_000 }, async (t) => {
  const arrivals: number[] = [];
  const sockets = new Set<unknown>();
  let n = 0;
  const server = http.createServer((req, res) => {
    arrivals.push(performance.now());
    sockets.add(req.socket);
    n++;
    if (n % 10 === 0) {
      // No Content-Length: node sends this chunked, in two chunks.
      res.write(BODY.slice(0, 20));
      res.end(BODY.slice(20));
      return;
    }
    // node closes the connection after a response that says so; paced must reconnect.
    if (n % 100 === 1) res.setHeader('Connection', 'close');
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', BODY.length);
    res.end(BODY);
  });
  server.keepAliveTimeout = 30_000;
  const port = await listen(t, server);

  const { code, json: j } = await runPaced(t, ['-R', '2000', '-c', '16', '-w', '1', '-d', '2', `http://127.0.0.1:${port}/fhir/r4/Patient/example`], 15_000);
  assert.equal(code, 0);

  assert.equal(j.offered_rps, 2000);
  assert.ok(Math.abs(j.achieved_rps - 2000) <= 2000 * 0.03, `achieved ${j.achieved_rps} req/s of 2000`);
  assert.equal(j.errors_total, 0, `errors: ${JSON.stringify(j.errors)}`);
  for (const [kind, count] of Object.entries(j.errors)) assert.equal(count, 0, `${kind} errors`);
  assert.equal(j.non2xx, 0);
  // Every request due in the window was answered and timed.
  assert.ok(Math.abs(j.window_due - 4000) <= 1, `window_due ${j.window_due}`);
  assert.equal(j.latency_samples, j.window_due);
  assert.equal(j.histogram_from_due_us.reduce((a, [, c]) => a + c, 0), j.latency_samples);
  assertOrdered('from_due', j.latency_ms.from_due);
  assertOrdered('from_send', j.latency_ms.from_send);
  // Each request's send is at or after its due time, so from-send can never exceed from-due.
  assert.ok(j.latency_ms.from_send.p99 <= j.latency_ms.from_due.p99 && j.latency_ms.from_send.max <= j.latency_ms.from_due.max);
  // paced's own lateness is reported and is part of the from-due latency, never more than it.
  assertOrdered('generator lag', { ...j.generator.lag_ms, p50: j.generator.lag_ms.p50 || 0.001 });
  assert.ok(j.generator.lag_ms.max <= j.latency_ms.from_due.max);
  // Connection: close every 100th response: paced reconnected rather than erring.
  assert.ok(j.reconnects >= 40, `reconnects ${j.reconnects}`);
  assert.ok(sockets.size > 16, `the server saw ${sockets.size} connections`);
  assert.ok(arrivals.length >= j.responses, `the server saw ${arrivals.length} requests, paced ${j.responses} responses`);

  // Paced at the server: arrivals per 100 ms, from the first one; the last, partial bucket is left out.
  const first = arrivals[0];
  const buckets: number[] = [];
  for (const a of arrivals) {
    const i = Math.floor((a - first) / 100);
    buckets[i] = (buckets[i] ?? 0) + 1;
  }
  // Array.from, not map: an empty 100 ms (a hole in `buckets`) must count as 0, not be skipped.
  const full = Array.from({ length: buckets.length - 1 }, (_, i) => buckets[i] ?? 0);
  assert.ok(full.length >= 25, `only ${full.length} buckets of arrivals`);
  const mean = full.reduce((a, b) => a + b, 0) / full.length;
  const max = Math.max(...full);
  assert.ok(Math.abs(mean - 200) <= 10, `mean ${mean} arrivals per 100 ms, expected 200`);
  assert.ok(max <= 2 * mean, `arrivals were bursty: ${max} in one 100 ms bucket, mean ${mean.toFixed(1)} (${full.join(' ')})`);
  // paced's own view of the same.
  assert.ok(j.pacing.sent_per_100ms.max <= 2 * j.pacing.sent_per_100ms.mean, JSON.stringify(j.pacing));
});

test('paced over TLS sends SNI and completes the schedule', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'carelb-paced-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir);
  const pair = makeCert(dir, ca, 'localhost', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
  const names = new Set<string>();
  const server = https.createServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, (_req, res) => {
    res.setHeader('Content-Length', BODY.length);
    res.end(BODY);
  });
  server.on('secureConnection', (s: tls.TLSSocket) => names.add(String((s as unknown as { servername?: string }).servername)));
  server.keepAliveTimeout = 30_000;
  const port = await listen(t, server);
  const { code, json: j } = await runPaced(t, ['-R', '500', '-c', '4', '-w', '0.5', '-d', '1', `https://localhost:${port}/`], 15_000);
  assert.equal(code, 0);
  assert.equal(j.errors_total, 0, `errors: ${JSON.stringify(j.errors)}`);
  assert.equal(j.latency_samples, j.window_due);
  assert.ok(j.completed >= 485, `completed ${j.completed} of 500`);
  assert.deepEqual([...names], ['localhost']);
});

test('paced counts non-2xx answers and refused connections', { timeout: 30_000 }, async (t) => {
  const server = http.createServer((_req, res) => {
    res.statusCode = 503;
    res.setHeader('Content-Length', 0);
    res.end();
  });
  const port = await listen(t, server);
  const bad = await runPaced(t, ['-R', '200', '-c', '2', '-d', '0.5', `http://127.0.0.1:${port}/`], 10_000);
  assert.equal(bad.code, 0);
  assert.ok(bad.json.responses > 0);
  assert.equal(bad.json.non2xx, bad.json.responses);
  assert.equal(bad.json.errors_total, 0);

  // A port nobody listens on: the server above, closed again.
  const closed = http.createServer();
  const deadPort = await new Promise<number>((resolve) => closed.listen(0, '127.0.0.1', () => resolve((closed.address() as AddressInfo).port)));
  await new Promise((resolve) => closed.close(resolve));
  const refused = await runPaced(t, ['-R', '200', '-c', '2', '-d', '0.5', '-t', '0.3', `http://127.0.0.1:${deadPort}/`], 10_000);
  assert.equal(refused.code, 0);
  assert.ok(refused.json.errors.connect > 0, JSON.stringify(refused.json.errors));
  assert.equal(refused.json.completed, 0);
  // Nothing due in the window was answered: all of it is reported, none silently dropped.
  assert.equal(refused.json.errors.unfinished, refused.json.window_due);
});

test('paced refuses hosts that are not loopback, without looking names up', () => {
  const bin = buildPaced();
  for (const url of ['http://192.0.2.1/', 'http://example.com/', 'https://[2001:db8::1]:443/', 'http://10.0.0.1:8080/x']) {
    const r = spawnSync(bin, ['-R', '10', '-c', '1', '-d', '1', url], { encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 2, `${url}: exit ${r.status}`);
    assert.match(r.stderr, /refusing host .* only loads loopback/, url);
    assert.equal(r.stdout, '');
  }
  const usage = spawnSync(bin, ['-R', '10', '-c', '1', 'http://127.0.0.1:1/'], { encoding: 'utf8', timeout: 5000 });
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /usage: paced/);
});
