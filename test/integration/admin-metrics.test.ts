/**
 * GET /metrics against a real carelb: the text is valid Prometheus exposition format 0.0.4
 * (checked by the strict parser below, not by a lenient library) and the counters match the
 * requests sent through carelb's front end. Prometheus's own checker (`promtool check metrics`)
 * reads the same text, so a rule the parser below does not know about is caught too.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ERRORS } from '../../src/errors';
import { startWithAdmin, type AdminHarness } from '../helpers/admin-context';
import { eventually } from '../helpers/carelb';
import { request } from '../helpers/client';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, line: number): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  assert.match(text, /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/, `line ${line}: "${text}" is not a float`);
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at text[0] === '{'; returns the labels and the rest of the line. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i);
    assert.ok(eq > i, `line ${line}: label without =`);
    const name = text.slice(i, eq);
    assert.match(name, LABEL_NAME, `line ${line}: bad label name "${name}"`);
    assert.ok(!name.startsWith('__'), `line ${line}: reserved label name ${name}`);
    assert.ok(!(name in labels), `line ${line}: duplicate label ${name}`);
    assert.equal(text[eq + 1], '"', `line ${line}: label value must be quoted`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      assert.ok(c !== undefined, `line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[j + 1];
        assert.ok(next === '\\' || next === '"' || next === 'n', `line ${line}: invalid escape \\${next}`);
        value += next === 'n' ? '\n' : next;
        j += 2;
        continue;
      }
      assert.notEqual(c, '\n');
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else assert.equal(text[i], '}', `line ${line}: expected , or } after a label`);
  }
  return { labels, rest: text.slice(i + 1) };
}

/** A strict parser of the text format 0.0.4: throws (assert) on anything a Prometheus server would reject or misread. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | null = null;
  const seriesSeen = new Set<string>();
  const familyFor = (name: string, line: number): Family => {
    const f = families.get(name);
    assert.ok(f, `line ${line}: ${name} has no # TYPE line before its samples`);
    return f;
  };
  text
    .slice(0, -1)
    .split('\n')
    .forEach((raw, index) => {
      const line = index + 1;
      assert.ok(raw.length > 0, `line ${line}: empty line`);
      if (raw.startsWith('#')) {
        const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
        if (!match) return; // a plain comment
        const [, kind, name, rest] = match;
        assert.match(name, METRIC_NAME, `line ${line}: bad metric name`);
        if (current && current.name !== name) closed.add(current.name);
        assert.ok(!closed.has(name), `line ${line}: ${name} appears again after other families (must be contiguous)`);
        let family = families.get(name);
        if (!family) families.set(name, (family = { name, type: 'untyped', help: '', samples: [] }));
        current = family;
        if (kind === 'TYPE') {
          assert.ok(TYPES.has(rest), `line ${line}: unknown type ${rest}`);
          assert.equal(family.samples.length, 0, `line ${line}: TYPE after samples`);
          family.type = rest;
        } else {
          assert.equal(family.help, '', `line ${line}: second HELP for ${name}`);
          assert.ok(!/\\[^\\n]/.test(rest.replace(/\\\\/g, '')), `line ${line}: invalid escape in HELP`);
          family.help = rest;
        }
        return;
      }
      const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
      assert.ok(nameMatch, `line ${line}: no metric name in "${raw}"`);
      const name = nameMatch[0];
      let rest = raw.slice(name.length);
      let labels: Record<string, string> = {};
      if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line));
      const parts = rest.split(' ');
      assert.equal(parts[0], '', `line ${line}: a space must separate the value`);
      assert.ok(parts.length === 2 || parts.length === 3, `line ${line}: value [timestamp] expected`);
      const value = parseValue(parts[1], line);
      if (parts.length === 3) assert.match(parts[2], /^-?\d+$/, `line ${line}: bad timestamp`);

      assert.ok(current, `line ${line}: sample before any TYPE`);
      const family: Family = current;
      const base = family.type === 'summary' || family.type === 'histogram' ? name.replace(/_(sum|count|bucket)$/, '') : name;
      assert.equal(base, family.name, `line ${line}: sample ${name} outside its family (families must be contiguous)`);
      familyFor(base, line);
      if (family.type === 'summary' && name === base) assert.ok('quantile' in labels, `line ${line}: summary sample without quantile`);
      if (family.type === 'counter') assert.ok(value >= 0, `line ${line}: negative counter`);
      const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
      assert.ok(!seriesSeen.has(key), `line ${line}: duplicate series ${key}`);
      seriesSeen.add(key);
      family.samples.push({ name, labels, value });
    });
  return families;
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  const family = families.get(name) ?? families.get(name.replace(/_(sum|count|bucket)$/, ''));
  const sample = family?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length);
  return sample?.value;
}

async function scrape(lb: AdminHarness, token?: string | null): Promise<Map<string, Family>> {
  const reply = await lb.call('GET', '/metrics', token);
  assert.equal(reply.status, 200, reply.text);
  assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(reply.text);
}

test('the strict parser itself rejects what Prometheus rejects', () => {
  assert.throws(() => parseExposition('# TYPE a counter\na 1'), /line feed/);
  assert.throws(() => parseExposition('# TYPE a counter\na{x="\\q"} 1\n'), /invalid escape/);
  assert.throws(() => parseExposition('# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na 2\n'), /outside its family/);
  assert.throws(() => parseExposition('# TYPE a counter\na 1\na 2\n'), /duplicate series/);
  assert.throws(() => parseExposition('# TYPE a counter\na{x=1} 1\n'), /quoted/);
  assert.throws(() => parseExposition('# TYPE a counter\na one\n'), /not a float/);
  assert.throws(() => parseExposition('b 1\n'), /before any TYPE/);
  const ok = parseExposition('# HELP a A \\\\ help\n# TYPE a counter\na{x="q\\"\\n\\\\"} 1\n');
  assert.equal(ok.get('a')!.samples[0].labels.x, 'q"\n\\');
});

test('/metrics is valid Prometheus text whose request, response, byte and error counters match the requests sent', async (t) => {
  const lb = await startWithAdmin(t);
  let bytesOut = 0;
  for (let i = 0; i < 7; i++) {
    const reply = await request(lb.port, { path: `/fhir/Observation?patient=${i}` });
    assert.equal(reply.status, 200);
    bytesOut += reply.body.length;
  }
  const body = 'x'.repeat(100);
  const posted = await request(lb.port, { method: 'POST', path: '/fhir/Observation', body, headers: { 'content-type': 'text/plain', 'content-length': body.length } });
  assert.equal(posted.status, 200);
  bytesOut += posted.body.length;
  // Both servers drained: the next request is answered by carelb itself with 503 CLB_NO_SERVER.
  for (const server of ['b1', 'b2']) assert.equal((await lb.call('POST', `/api/servers/api/${server}/drain`)).status, 200);
  const refused = await request(lb.port, { path: '/fhir/Patient' });
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['x-carelb-error'], ERRORS.NO_SERVER.code);
  await eventually(() => lb.running.status()[0].counters.requests === 9, 5000, 'the request counters');

  const families = await scrape(lb);
  for (const family of families.values()) {
    assert.match(family.name, /^carelb_/);
    assert.notEqual(family.help, '', `${family.name} has HELP`);
    assert.notEqual(family.type, 'untyped', `${family.name} has a TYPE`);
  }
  const vs = { vs: 'api' };
  assert.equal(value(families, 'carelb_requests_total', vs), 9);
  assert.equal(value(families, 'carelb_responses_total', { ...vs, class: '2xx' }), 8);
  assert.equal(value(families, 'carelb_responses_total', { ...vs, class: '5xx' }), 1);
  for (const klass of ['1xx', '3xx', '4xx']) assert.equal(value(families, 'carelb_responses_total', { ...vs, class: klass }), 0);
  assert.equal(value(families, 'carelb_bytes_in_total', vs), 100);
  assert.ok(value(families, 'carelb_bytes_out_total', vs)! >= bytesOut, 'bytes out include carelb\'s own 503 body');
  assert.equal(value(families, 'carelb_in_flight', vs), 0);
  for (const error of Object.values(ERRORS)) {
    assert.equal(value(families, 'carelb_errors_total', { ...vs, code: error.code }), error.code === ERRORS.NO_SERVER.code ? 1 : 0, error.code);
  }

  let serverRequests = 0;
  let serverBytesOut = 0;
  for (const backend of lb.backends) {
    const labels = { vs: 'api', server: backend.name };
    assert.equal(value(families, 'carelb_server_requests_total', labels), backend.seen.length, backend.name);
    assert.equal(value(families, 'carelb_server_responses_total', { ...labels, class: '2xx' }), backend.seen.length);
    assert.equal(value(families, 'carelb_server_failures_total', labels), 0);
    assert.equal(value(families, 'carelb_server_in_flight', labels), 0);
    assert.equal(value(families, 'carelb_server_weight', labels), 1);
    assert.equal(value(families, 'carelb_server_up', labels), 1);
    assert.equal(value(families, 'carelb_server_admin_state', { ...labels, state: 'drain' }), 1);
    assert.equal(value(families, 'carelb_server_admin_state', { ...labels, state: 'online' }), 0);
    assert.equal(value(families, 'carelb_server_admin_state', { ...labels, state: 'halt' }), 0);
    serverRequests += value(families, 'carelb_server_requests_total', labels)!;
    serverBytesOut += value(families, 'carelb_server_bytes_out_total', labels)!;
  }
  assert.equal(serverRequests, 8);
  assert.equal(serverBytesOut, bytesOut);
  assert.equal(lb.backends.reduce((sum, b) => sum + b.seen.length, 0), 8);
  assert.equal(lb.backends.reduce((sum, b) => sum + b.seen.filter((s) => s.bodyBytes === 100).length, 0), 1);

  assert.equal(value(families, 'carelb_thread_restarts_total', {}), 0);
  assert.equal(value(families, 'carelb_workers', {}), 2);
  assert.equal(value(families, 'carelb_build_info', { version: require('../../../package.json').version }), 1);
  assert.equal(value(families, 'carelb_admin_unauthorized_total', {}), 0);
  for (const name of ['carelb_request_duration_seconds', 'carelb_server_request_duration_seconds']) assert.equal(families.get(name)?.type, 'summary');
  for (const name of ['carelb_server_check_duration_seconds', 'carelb_server_check_success']) assert.equal(families.get(name)?.type, 'gauge');
});

test(
  'carelb_server_bytes_in_total counts the request body bytes sent to the server',
  async (t) => {
    const lb = await startWithAdmin(t, { backends: ['b1'] });
    const body = 'y'.repeat(250);
    const reply = await request(lb.port, { method: 'POST', path: '/fhir/Observation', body, headers: { 'content-type': 'text/plain', 'content-length': body.length } });
    assert.equal(reply.status, 200);
    await eventually(() => lb.running.status()[0].counters.requests === 1, 5000, 'the request counter');
    const families = await scrape(lb);
    assert.equal(value(families, 'carelb_bytes_in_total', { vs: 'api' }), 250);
    assert.equal(value(families, 'carelb_server_bytes_in_total', { vs: 'api', server: 'b1' }), 250);
  },
);

test('/metrics needs the token unless admin.metrics_public is true; the API needs it either way', async (t) => {
  const closed = await startWithAdmin(t);
  assert.equal((await closed.call('GET', '/metrics', null)).status, 401);

  const open = await startWithAdmin(t, { metricsPublic: true });
  const families = await scrape(open, null);
  assert.equal(value(families, 'carelb_requests_total', { vs: 'api' }), 0);
  assert.equal((await open.call('GET', '/api/status', null)).status, 401);
});

/** promtool's verdict on an exposition text: its exit status and what it printed. */
function promtoolCheckMetrics(text: string): { status: number | null; output: string; missing: boolean } {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
  const missing = (run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
  return { status: run.status, output: `${run.stdout ?? ''}${run.stderr ?? ''}`, missing };
}

test('promtool check metrics accepts a live /metrics with traffic, errors and health checks in it', async (t) => {
  if (promtoolCheckMetrics('').missing) return t.skip('promtool is not installed (Debian package prometheus; .ci/run installs it)');
  const lb = await startWithAdmin(t);
  for (let i = 0; i < 5; i++) assert.equal((await request(lb.port, { path: `/fhir/Patient/${i}` })).status, 200);
  for (const server of ['b1', 'b2']) assert.equal((await lb.call('POST', `/api/servers/api/${server}/drain`)).status, 200);
  assert.equal((await request(lb.port, { path: '/fhir/Patient' })).status, 503);
  await eventually(() => (lb.running.admin.latency('api', null)?.count ?? 0) >= 5, 5000, 'latency batches to reach the primary');
  const reply = await lb.call('GET', '/metrics');
  assert.equal(reply.status, 200);
  const verdict = promtoolCheckMetrics(reply.text);
  assert.equal(verdict.status, 0, `promtool check metrics:\n${verdict.output}`);
  assert.equal(verdict.output.trim(), '', 'promtool has no lint remarks');
});

test('the latency summary\'s _count and _sum are totals since start (the histogram\'s), never a window that can shrink', async (t) => {
  const lb = await startWithAdmin(t, { backends: ['b1'] });
  for (let i = 0; i < 4; i++) assert.equal((await request(lb.port, { path: '/fhir/Patient' })).status, 200);
  await eventually(() => (lb.running.admin.latencyBuckets('api', null)?.count ?? 0) >= 4, 5000, 'latency batches to reach the primary');
  const families = await scrape(lb);
  for (const [summary, labels] of [
    ['carelb_request_duration_seconds', { vs: 'api' }],
    ['carelb_server_request_duration_seconds', { vs: 'api', server: 'b1' }],
  ] as const) {
    const total = summary === 'carelb_request_duration_seconds' ? lb.running.admin.latencyBuckets('api', null)! : lb.running.admin.latencyBuckets('api', 'b1')!;
    assert.equal(value(families, `${summary}_count`, labels), total.count, `${summary}_count`);
    assert.equal(value(families, `${summary}_sum`, labels), total.sum, `${summary}_sum`);
    assert.ok(total.sum > 0);
  }
  // The summary's totals and the histogram's are one and the same.
  assert.equal(value(families, 'carelb_request_duration_seconds_count', { vs: 'api' }), value(families, 'carelb_request_latency_seconds_count', { vs: 'api' }));
  assert.equal(value(families, 'carelb_request_duration_seconds_sum', { vs: 'api' }), value(families, 'carelb_request_latency_seconds_sum', { vs: 'api' }));
});
