/**
 * deploy/monitoring: the Prometheus alerting rules pass `promtool check rules` and their own
 * unit tests (`promtool test rules`), every dashboard query parses as PromQL, and every metric
 * name the rules and the dashboard use exists in the /metrics of a running carelb: an HA pair
 * of two carelbs on loopback, so that the HA metrics have samples too. (A metric without
 * samples, such as certificate expiry with no certificate configured, still has its # TYPE.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import { adminCall } from '../helpers/admin-context';
import { startBackend } from '../helpers/backend';
import { tempDir, until } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

const MONITORING = join(__dirname, '..', '..', '..', 'deploy', 'monitoring');
const RULES = join(MONITORING, 'carelb-alerts.yml');
const DASHBOARD = join(MONITORING, 'carelb-dashboard.json');

function promtool(args: string[], cwd = MONITORING): { status: number | null; output: string; missing: boolean } {
  const run = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, output: `${run.stdout ?? ''}${run.stderr ?? ''}`, missing: (run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' };
}

function hasPromtool(): boolean {
  return !promtool(['--version']).missing;
}

/** Every `expr` of the rules file. */
function ruleExpressions(): string[] {
  const doc = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { expr: string }[] }[] };
  return doc.groups.flatMap((group) => group.rules.map((rule) => String(rule.expr)));
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: { query?: unknown; definition?: string }[] } };
  const exprs: string[] = [];
  const walk = (panels: Panel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr) exprs.push(target.expr);
      walk(panel.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const variable of dashboard.templating.list) if (variable.definition) exprs.push(variable.definition);
  return exprs;
}

/** The carelb_ names an expression uses (metric names; label values are not carelb_ names). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bcarelb_[a-zA-Z0-9_:]+/g)].map((m) => m[0]);
}

/** Every name a scrape of /metrics carries: each family's name and each sample's name (with _bucket, _sum, _count). */
function namesIn(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const typed = /^# TYPE (\S+) /.exec(line);
    if (typed) names.add(typed[1]);
    else if (line && !line.startsWith('#')) names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

/** One carelb of the pair, in this process, with its peer at `peerAdmin`. */
async function pairNode(t: TestContext, dir: string, name: string, own: { admin: number; port: number }, peerAdmin: number, backend: string): Promise<Running> {
  const document = {
    workers: 1,
    pin_workers: false,
    shutdown_grace: '1s',
    admin: { listen: `127.0.0.1:${own.admin}`, token_file: join(dir, `${name}.token`) },
    ha: {
      node_name: name,
      interface: 'lo',
      virtual_router_id: 51,
      peer: '127.0.0.1',
      peer_admin: `127.0.0.1:${peerAdmin}`,
      sync_token_file: join(dir, `${name}.sync-token`),
      peer_token_file: join(dir, `${name === 'lb1' ? 'lb2' : 'lb1'}.sync-token`),
      vips: [{ address: '127.0.0.250/32' }],
    },
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${own.port}`, servers: [{ name: 'api1', address: backend }] }],
  };
  const path = join(dir, `${name}.yaml`);
  const text = stringify(document);
  writeFileSync(path, text);
  const loaded = loadConfigText(text, path);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('; '));
  const running = await runCarelb(loaded.config, { configPath: path, configText: text, log: createLogger('error'), auditLog: join(dir, `${name}-audit.log`) });
  t.after(() => running.stop());
  return running;
}

test('promtool check rules accepts deploy/monitoring/carelb-alerts.yml, and its unit tests pass', (t) => {
  if (!hasPromtool()) return t.skip('promtool is not installed (Debian package prometheus; .ci/run installs it)');
  const check = promtool(['check', 'rules', RULES]);
  assert.equal(check.status, 0, check.output);
  assert.match(check.output, /SUCCESS: 8 rules found/);
  const unit = promtool(['test', 'rules', 'carelb-alerts.test.yml']);
  assert.equal(unit.status, 0, unit.output);
});

test('every query of the Grafana dashboard parses as PromQL', (t) => {
  if (!hasPromtool()) return t.skip('promtool is not installed');
  const dir = tempDir(t);
  // Grafana's variables replaced by what they stand for; each query checked as a recording rule.
  const exprs = dashboardExpressions().filter((expr) => !expr.startsWith('label_values('));
  assert.ok(exprs.length >= 20, `${exprs.length} queries`);
  const rules = exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr: expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*') }));
  const file = join(dir, 'dashboard-queries.yml');
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
  const check = promtool(['check', 'rules', file], dir);
  assert.equal(check.status, 0, check.output);
});

test('every metric name in the alerting rules and the Grafana dashboard exists in a running carelb\'s /metrics (an HA pair)', async (t) => {
  const dir = tempDir(t);
  const api = await startBackend('api1');
  t.after(() => api.close());
  const [one, two] = [
    { admin: await freePort(), port: await freePort() },
    { admin: await freePort(), port: await freePort() },
  ];
  await pairNode(t, dir, 'lb1', one, two.admin, api.address);
  await pairNode(t, dir, 'lb2', two, one.admin, api.address);
  for (let i = 0; i < 3; i++) assert.equal((await request(one.port, { path: `/fhir/Patient/${i}` })).status, 200);
  const token = readFileSync(join(dir, 'lb1.token'), 'utf8').trim();
  // The peer is queried every 5 s: wait for a scrape with both the traffic and the pair's verdict.
  const exposition = await until(async () => {
    const reply = await adminCall(one.admin, 'GET', '/metrics', token);
    assert.equal(reply.status, 200, reply.text);
    const ready = /^carelb_ha_config_in_sync [01]$/m.test(reply.text) && /^carelb_request_latency_seconds_count\{vs="api"\} 3$/m.test(reply.text);
    return ready ? reply.text : undefined;
  }, 15_000, 'the HA peer verdict and the latency histogram in /metrics');
  assert.match(exposition, /^carelb_ha_peer_up 1$/m);
  // The two nodes share a host here, so their virtual services listen on different ports: their
  // shared configs differ, and carelb says so (what CarelbHaConfigDrift alerts on).
  assert.match(exposition, /^carelb_ha_config_in_sync 0$/m);
  if (hasPromtool()) {
    // The HA families with samples, checked by Prometheus's own parser and linter too.
    const run = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 0, `promtool check metrics:\n${run.stdout}${run.stderr}`);
  }

  const present = namesIn(exposition);
  const used = new Map<string, string>();
  for (const expr of ruleExpressions()) for (const name of metricNames(expr)) used.set(name, 'carelb-alerts.yml');
  for (const expr of dashboardExpressions()) for (const name of metricNames(expr)) used.set(name, used.has(name) ? `${used.get(name)}, carelb-dashboard.json` : 'carelb-dashboard.json');
  assert.ok(used.size >= 25, `${used.size} names used`);
  const missing: string[] = [];
  for (const [name, where] of used) {
    if (!present.has(name)) missing.push(`${name} (${where})`);
  }
  assert.deepEqual(missing, [], 'metric names used by the monitoring kit but absent from /metrics');
});
