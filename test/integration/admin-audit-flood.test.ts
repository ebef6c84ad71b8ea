/**
 * A bad-token flood against the admin port (issue 13). The admin server runs in the primary,
 * beside the health checks; every 401 is audited. Audit writes must be asynchronous and
 * coalesced, so that during 5 s of about 5,000 bad-token requests/s:
 *   - /healthz answers in < 100 ms at p99,
 *   - health checks keep their interval,
 *   - the audit log records the flood as counted summaries (source, count, window), not one
 *     line per request.
 * carelb runs as a process with its audit log on stdout (its default, journald under systemd),
 * and the test stops reading that stdout while the flood lasts, as a journald busy or throttling
 * would: a primary that writes its audit lines synchronously then blocks on the full pipe. The
 * flood comes from another process (test/helpers/flood.ts), loopback only, bounded by count and
 * time. The thresholds are loose for a noisy shared 2-core machine; they measure stalls of the
 * primary, not throughput.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBackend } from '../helpers/backend';
import { spawnCli, tempDir, waitForLog, writeConfig } from '../helpers/carelb';
import { freePort } from '../helpers/ports';

const FLOOD = join(__dirname, '..', 'helpers', 'flood.js');
const RATE = 5000;
const SECONDS = 5;
const CHECK_INTERVAL_MS = 100;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test('5 s of ~5,000 bad-token requests/s: /healthz p99 < 100 ms, health checks on time, the audit log holds counted summaries', { timeout: 60_000 }, async (t) => {
  const checks: number[] = [];
  const api = await startBackend('api', (req, res) => {
    if (req.url === '/health') checks.push(Date.now());
    res.writeHead(200, { 'content-length': 2 });
    res.end('ok');
  });
  t.after(() => api.close());
  const dir = tempDir(t);
  const adminPort = await freePort();
  const config = writeConfig(t, {
    workers: 1,
    pin_workers: false,
    shutdown_grace: '1s',
    admin: { listen: `127.0.0.1:${adminPort}`, token_file: join(dir, 'admin.token') },
    virtual_services: [
      {
        name: 'api',
        listen: `127.0.0.1:${await freePort()}`,
        health_check: { path: '/health', interval: `${CHECK_INTERVAL_MS}ms`, timeout: '1s', rise: 1, fall: 3 },
        servers: [{ name: 'api', address: api.address }],
      },
    ],
  });
  const child = spawnCli(t, ['start', '-c', config], { CARELB_LOG_FORMAT: 'json' });
  await waitForLog(child, 'admin server listening');

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const healthz = () =>
    new Promise<number>((resolve, reject) => {
      const started = performance.now();
      http
        .get({ host: '127.0.0.1', port: adminPort, path: '/healthz', agent }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`healthz ${res.statusCode}`))));
        })
        .on('error', reject);
    });
  await healthz();

  const request = `GET /api/status HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer ${'0'.repeat(64)}\r\n\r\n`;
  const flood = spawn(process.execPath, [FLOOD, JSON.stringify({ port: adminPort, rate: RATE, seconds: SECONDS, connections: 16, max: RATE * SECONDS, request })], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (flood.exitCode === null && flood.signalCode === null) flood.kill('SIGKILL');
  });
  let floodOut = '';
  let floodErr = '';
  flood.stdout.setEncoding('utf8').on('data', (d: string) => (floodOut += d));
  flood.stderr.setEncoding('utf8').on('data', (d: string) => (floodErr += d));
  const floodDone = new Promise<number | null>((resolve) => flood.on('exit', (code) => resolve(code)));
  const floodStart = Date.now();
  // A slow log reader for the duration of the flood; reading resumes when the flood ends, whatever else waits.
  child.process.stdout!.pause();
  void floodDone.then(() => child.process.stdout!.resume());

  // /healthz every 10 ms (one keep-alive connection, one request at a time) while the flood runs.
  const latencies: number[] = [];
  let flooding = true;
  void floodDone.then(() => (flooding = false));
  while (flooding) {
    const due = Date.now() + 10;
    latencies.push(await healthz());
    const wait = due - Date.now();
    if (wait > 0 && flooding) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  assert.equal(await floodDone, 0, floodErr);
  const floodEnd = Date.now();
  const result = JSON.parse(floodOut) as { offered: number; answered: number; statuses: Record<string, number>; elapsed_ms: number };

  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0, child.stderr.join(''));

  const during = checks.filter((time) => time >= floodStart + 200 && time <= floodEnd);
  const gaps = during.slice(1).map((time, i) => time - during[i]);
  const audit = child.stdout
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.audit === true && entry.action === 'unauthorized');
  const counted = audit.reduce((sum, entry) => sum + Number(entry.count ?? 1), 0);
  t.diagnostic(
    `flood: ${result.answered} answered of ${result.offered} offered in ${result.elapsed_ms} ms (${Math.round((result.answered * 1000) / result.elapsed_ms)}/s) ${JSON.stringify(result.statuses)}; ` +
      `/healthz ${latencies.length} samples p50 ${percentile(latencies, 50).toFixed(1)} ms p99 ${percentile(latencies, 99).toFixed(1)} ms max ${Math.max(...latencies).toFixed(1)} ms; ` +
      `health checks ${during.length}, gaps max ${Math.max(...gaps)} ms p99 ${percentile(gaps, 99)} ms; audit ${audit.length} lines counting ${counted}`,
  );

  assert.ok(percentile(latencies, 99) < 100, `/healthz p99 ${percentile(latencies, 99).toFixed(1)} ms`);
  assert.ok(during.length >= (0.7 * (floodEnd - floodStart - 200)) / CHECK_INTERVAL_MS, `only ${during.length} health checks during the flood`);
  assert.ok(Math.max(...gaps) < 3 * CHECK_INTERVAL_MS, `a health check came ${Math.max(...gaps)} ms after the previous one (interval ${CHECK_INTERVAL_MS} ms)`);
  assert.equal(counted, result.answered, 'every refusal is counted in the audit log');
  assert.ok(audit.length <= 3 * (SECONDS + 5), `${audit.length} audit lines for one source: not summarised`);
  // Last, so that a stalled primary fails on the stall above: a flood that never happened proves nothing.
  // A synchronous audit writer blocks once the unread stdout pipe holds 64 KiB, a few hundred
  // lines; 20 % of the nominal flood (5,000 refusals) is many times that, and is what the
  // flooder reaches even on a machine whose CPUs are busy with other work (11,554 seen with a
  // CPU hog pinned to each core, against ~25,000 on a quiet one).
  assert.ok(result.answered >= RATE * SECONDS * 0.2, `the flood reached only ${result.answered} requests: the test did not flood`);
  assert.equal(result.statuses['401'], result.answered, 'every flood request was refused');
  for (const entry of audit) {
    assert.equal(entry.source, '127.0.0.1');
    assert.equal(typeof entry.count, 'number');
    const window = entry.window as { start?: string; end?: string } | undefined;
    assert.ok(window && !Number.isNaN(Date.parse(String(window.start))) && !Number.isNaN(Date.parse(String(window.end))), `a summary names its window: ${JSON.stringify(entry)}`);
  }
});
