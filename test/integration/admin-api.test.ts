/**
 * The admin API (issue 5) against a real carelb: token handling, every endpoint's shape, state
 * changes that reach the data plane, reload, and the audit log. Real sockets everywhere.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { SERVER_STATS, VS_STATS } from '../../src/state/stats';
import { ERRORS } from '../../src/errors';
import { adminCall, startWithAdmin, type AdminHarness } from '../helpers/admin-context';
import { request } from '../helpers/client';

/** Every authenticated endpoint with a method that is valid for it. */
const API_ENDPOINTS: [string, string][] = [
  ['GET', '/api/status'],
  ['POST', '/api/servers/api/b1/online'],
  ['POST', '/api/servers/api/b1/drain'],
  ['POST', '/api/servers/api/b1/halt'],
  ['POST', '/api/reload'],
  ['GET', '/metrics'],
];

async function sendThroughCarelb(lb: AdminHarness, count: number): Promise<string[]> {
  const servedBy: string[] = [];
  for (let i = 0; i < count; i++) {
    const reply = await request(lb.port, { path: `/fhir/Patient/${i}` });
    assert.equal(reply.status, 200);
    servedBy.push(String(reply.headers['x-served-by']));
  }
  return servedBy;
}

test('the first start generates a 64-hex-digit token file with mode 0600 (parent directory created) and logs its path; the next start reuses it', async (t) => {
  const lb = await startWithAdmin(t);
  assert.match(lb.token, /^[0-9a-f]{64}$/);
  assert.equal(statSync(lb.admin.tokenFile).mode & 0o777, 0o600);
  const generated = lb.logLines.find((line) => typeof line.msg === 'string' && line.msg.startsWith('admin token generated'));
  assert.ok(generated, 'a log line names the generated token file');
  assert.equal(generated.token_file, lb.admin.tokenFile);

  const { startAdminServer } = await import('../../src/admin/server');
  const { createLogger } = await import('../../src/observe/log');
  const second = await startAdminServer(lb.running.admin, lb.config.admin!, createLogger('warn'), { port: 0, auditLog: lb.auditPath });
  t.after(() => second.close());
  assert.equal(readFileSync(lb.admin.tokenFile, 'utf8').trim(), lb.token);
  const reply = await (await import('../helpers/admin-context')).adminCall(second.port, 'GET', '/api/status', lb.token);
  assert.equal(reply.status, 200);
});

test('every /api endpoint and /metrics answer 401 without a token and with a wrong one, count each refusal and audit it in a summary, and work with the right token', async (t) => {
  const lb = await startWithAdmin(t);
  let refusals = 0;
  for (const [method, path] of API_ENDPOINTS) {
    for (const token of [null, 'wrong-token', `${lb.token}x`, '']) {
      const reply = await lb.call(method, path, token);
      assert.equal(reply.status, 401, `${method} ${path} with token ${JSON.stringify(token)}`);
      assert.equal(reply.headers['www-authenticate'], 'Bearer realm="carelb"');
      assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
      assert.match(reply.json.error, /token/);
      refusals++;
    }
    const ok = await lb.call(method, path);
    assert.equal(ok.status, 200, `${method} ${path} with the right token: ${ok.text}`);
  }
  // Unknown /api paths need the token too (no route discovery without it).
  assert.equal((await lb.call('GET', '/api/nothing-here', null)).status, 401);
  refusals++;
  assert.equal((await lb.call('GET', '/api/nothing-here')).status, 404);

  const metrics = await lb.call('GET', '/metrics');
  assert.match(metrics.text, new RegExp(`^carelb_admin_unauthorized_total ${refusals}$`, 'm'));
  // Refusals are audited as counted summaries per source and window (issue 13), not one line each.
  const refused = (lines: Record<string, unknown>[]) => lines.filter((line) => line.action === 'unauthorized');
  const total = (lines: Record<string, unknown>[]) => refused(lines).reduce((sum, line) => sum + Number(line.count), 0);
  const audited = refused(await lb.auditWhen((lines) => total(lines) === refusals, `${refusals} refusals in the audit log`));
  assert.ok(audited.length < refusals, `${audited.length} lines for ${refusals} refusals`);
  const results: Record<string, number> = {};
  for (const line of audited) for (const [result, n] of Object.entries(line.results as Record<string, number>)) results[result] = (results[result] ?? 0) + n;
  assert.deepEqual(results, { 'no token': 13, 'wrong token': 12 });
  assert.equal(audited[0].result, 'no token', 'the first refusal of the window');
  assert.equal(audited[0].source, '127.0.0.1');
  assert.equal(audited[0].target, 'GET /api/status');
  assert.equal((audited[0].targets as Record<string, number>)['GET /api/status'], 4);
});

test('GET /healthz and GET / need no token; the page loads nothing from elsewhere and only runs its own files', async (t) => {
  const lb = await startWithAdmin(t);
  const health = await lb.call('GET', '/healthz', null);
  assert.equal(health.status, 200);
  assert.deepEqual(health.json, { status: 'serving' });

  const page = await lb.call('GET', '/', null);
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'] ?? '', /^text\/html/);
  assert.match(page.text, /<title>carelb dashboard<\/title>/);
  assert.doesNotMatch(page.text, /\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i, 'no external resources');
  assert.doesNotMatch(page.text, /<script>|<style>|\sstyle\s*=|\son[a-z]+\s*=/i, 'nothing inline: no script or style element without src, no style or event attribute');
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /style-src 'self'(;|$)/);
  assert.equal(page.headers['x-frame-options'], 'DENY');

  // Every file the page names is served by the admin server itself, with its type and the same CSP, without a token.
  const files = [...page.text.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]);
  assert.ok(files.includes('/ui/vendor/uPlot.iife.min.js') && files.includes('/ui/dashboard.js') && files.includes('/ui/dashboard.css'), files.join(' '));
  for (const file of files) {
    const reply = await lb.call('GET', file, null);
    assert.equal(reply.status, 200, file);
    assert.match(reply.headers['content-type'] ?? '', file.endsWith('.css') ? /^text\/css/ : /^text\/javascript/, file);
    assert.equal(reply.headers['content-security-policy'], csp, file);
    // Unchanged files are answered 304 to a revalidation.
    assert.equal((await adminCall(lb.adminPort, 'GET', file, null, { 'if-none-match': String(reply.headers.etag) })).status, 304, file);
  }
  // Only the files built into dist: no path reaches anything else.
  assert.equal((await lb.call('GET', '/ui/../package.json', null)).status, 404);
  assert.equal((await lb.call('GET', '/ui/vendor/uPlot.LICENSE.txt', null)).status, 404);

  assert.equal((await lb.call('GET', '/nothing', null)).status, 404);
  assert.equal((await lb.call('POST', '/healthz', null)).status, 405);
});

test('GET /api/status reports the instance, each virtual service and each server with live counters', async (t) => {
  const lb = await startWithAdmin(t);
  await sendThroughCarelb(lb, 6);
  const reply = await lb.call('GET', '/api/status');
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['cache-control'], 'no-store');
  const status = reply.json;
  assert.equal(status.version, require('../../../package.json').version);
  assert.equal(typeof status.uptime_s, 'number');
  assert.equal(status.workers, 2);
  assert.equal(status.config_hash, createHash('sha256').update(readFileSync(lb.configPath, 'utf8')).digest('hex'));
  assert.equal(status.thread_restarts, 0);
  assert.ok(!Number.isNaN(Date.parse(status.time)));

  assert.equal(status.virtual_services.length, 1);
  const vs = status.virtual_services[0];
  assert.equal(vs.name, 'api');
  assert.equal(vs.listen, `127.0.0.1:${lb.port}`);
  assert.equal(vs.tls, false);
  assert.equal(vs.balance, 'roundrobin');
  assert.equal(vs.requests, 6);
  assert.deepEqual(Object.keys(vs.counters), [...VS_STATS]);
  assert.deepEqual(Object.keys(vs.errors).sort(), Object.values(ERRORS).map((e) => e.code).sort());
  assert.equal(vs.latency_ms, null);

  assert.deepEqual(vs.servers.map((s: { name: string }) => s.name), ['b1', 'b2']);
  let total = 0;
  for (const server of vs.servers) {
    const backend = lb.backends.find((b) => b.name === server.name)!;
    assert.deepEqual(
      Object.keys(server).sort(),
      ['active', 'address', 'admin', 'counters', 'errors', 'health', 'last_check', 'latency_ms', 'name', 'requests', 'weight'],
    );
    assert.equal(server.address, backend.address);
    assert.equal(server.weight, 1);
    assert.equal(server.health, 'up');
    assert.equal(server.admin, 'online');
    assert.equal(server.active, 0);
    assert.equal(server.requests, backend.seen.length);
    assert.equal(server.errors, 0);
    assert.equal(server.last_check, null);
    assert.equal(server.latency_ms, null);
    assert.deepEqual(Object.keys(server.counters), [...SERVER_STATS]);
    assert.equal(server.counters.responses_2xx, backend.seen.length);
    total += server.requests;
  }
  assert.equal(total, 6);
  assert.equal((await lb.call('POST', '/api/status')).status, 405);
});

test('draining a server through the API stops new requests to it at the front end; online brings it back', async (t) => {
  const lb = await startWithAdmin(t);
  const before = await sendThroughCarelb(lb, 10);
  assert.ok(before.includes('b1') && before.includes('b2'), `both servers take requests first: ${before}`);

  const drained = await lb.call('POST', '/api/servers/api/b1/drain');
  assert.equal(drained.status, 200);
  assert.equal(drained.json.name, 'b1');
  assert.equal(drained.json.admin, 'drain');
  assert.equal(drained.json.address, lb.backends[0].address);
  assert.equal(typeof drained.json.counters.requests, 'number');

  const b1Seen = lb.backends[0].seen.length;
  const during = await sendThroughCarelb(lb, 10);
  assert.deepEqual(new Set(during), new Set(['b2']), 'a drained server gets no new requests');
  assert.equal(lb.backends[0].seen.length, b1Seen);
  const status = await lb.call('GET', '/api/status');
  assert.equal(status.json.virtual_services[0].servers[0].admin, 'drain');

  const halted = await lb.call('POST', '/api/servers/api/b1/halt');
  assert.equal(halted.json.admin, 'halt');
  assert.deepEqual(new Set(await sendThroughCarelb(lb, 6)), new Set(['b2']), 'a halted server gets no requests');

  const online = await lb.call('POST', '/api/servers/api/b1/online');
  assert.equal(online.json.admin, 'online');
  assert.ok((await sendThroughCarelb(lb, 10)).includes('b1'), 'an online server takes requests again');

  const isChange = (line: Record<string, unknown>) => ['drain', 'halt', 'online'].includes(String(line.action));
  const changes = (await lb.auditWhen((lines) => lines.filter(isChange).length >= 3, 'three state changes audited')).filter(isChange);
  assert.deepEqual(
    changes.map((line) => [line.action, line.target, line.result, line.from, line.to, line.source, line.audit]),
    [
      ['drain', 'api/b1', 'ok', 'online', 'drain', '127.0.0.1', true],
      ['halt', 'api/b1', 'ok', 'drain', 'halt', '127.0.0.1', true],
      ['online', 'api/b1', 'ok', 'halt', 'online', '127.0.0.1', true],
    ],
  );
  assert.ok(changes.every((line) => !Number.isNaN(Date.parse(String(line.time)))));
});

test('server actions answer 404 with a message for unknown names or actions, 405 for other methods', async (t) => {
  const lb = await startWithAdmin(t);
  const noServer = await lb.call('POST', '/api/servers/api/nope/drain');
  assert.equal(noServer.status, 404);
  assert.equal(noServer.json.error, 'no server "nope" in virtual service "api"');
  const noVs = await lb.call('POST', '/api/servers/web/b1/drain');
  assert.equal(noVs.status, 404);
  assert.equal(noVs.json.error, 'no virtual service "web"');
  const noAction = await lb.call('POST', '/api/servers/api/b1/reboot');
  assert.equal(noAction.status, 404);
  assert.match(noAction.json.error, /drain, halt or online/);

  const wrongMethod = await lb.call('GET', '/api/servers/api/b1/drain');
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.allow, 'POST');
  assert.equal((await lb.call('GET', '/api/reload')).status, 405);
  assert.equal((await lb.call('DELETE', '/metrics')).status, 405);

  const status = await lb.call('GET', '/api/status');
  assert.ok(status.json.virtual_services[0].servers.every((s: { admin: string }) => s.admin === 'online'), 'nothing changed');
  const notFound = (await lb.auditWhen((lines) => lines.filter((line) => line.result === 'not found').length >= 2)).filter((line) => line.result === 'not found');
  assert.deepEqual(notFound.map((line) => line.target), ['api/nope', 'web/b1']);
});

test('POST /api/reload applies a valid config (200, new hash) and refuses an invalid one (400, errors) keeping the running config', async (t) => {
  const lb = await startWithAdmin(t);
  const hashOfFile = () => createHash('sha256').update(readFileSync(lb.configPath, 'utf8')).digest('hex');

  const same = await lb.call('POST', '/api/reload');
  assert.equal(same.status, 200);
  assert.deepEqual(same.json, { ok: true, config_hash: hashOfFile() });

  const vs = (lb.document.virtual_services as Record<string, unknown>[])[0];
  const servers = vs.servers as Record<string, unknown>[];
  writeFileSync(lb.configPath, stringify({ ...lb.document, virtual_services: [{ ...vs, servers: [servers[0], { ...servers[1], weight: 3 }] }] }));
  const changed = await lb.call('POST', '/api/reload');
  assert.equal(changed.status, 200, changed.text);
  assert.equal(changed.json.config_hash, hashOfFile());
  const status = (await lb.call('GET', '/api/status')).json;
  assert.equal(status.config_hash, changed.json.config_hash);
  assert.equal(status.virtual_services[0].servers[1].weight, 3);

  writeFileSync(lb.configPath, stringify({ ...lb.document, virtual_services: [{ ...vs, balance: 'random', servers }] }));
  const refused = await lb.call('POST', '/api/reload');
  assert.equal(refused.status, 400);
  assert.equal(refused.json.ok, false);
  assert.ok(refused.json.errors.some((e: string) => e.startsWith('virtual_services[0].balance:')), refused.text);
  const after = (await lb.call('GET', '/api/status')).json;
  assert.equal(after.config_hash, changed.json.config_hash, 'the running config is unchanged');
  assert.equal(after.virtual_services[0].servers[1].weight, 3);
  assert.equal((await request(lb.port)).status, 200, 'still serving');

  const reloads = (await lb.auditWhen((lines) => lines.filter((line) => line.action === 'reload').length >= 3)).filter((line) => line.action === 'reload');
  assert.deepEqual(reloads.map((line) => line.result), ['ok', 'ok', 'invalid config']);
  assert.deepEqual(reloads[2].errors, refused.json.errors);
});
