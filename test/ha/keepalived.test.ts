import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import type { HaConfig } from '../../src/config/schema';
import { runHa } from '../../src/ha/command';
import { adminUrl, instancePlan, renderCheckScript, renderErrors, renderKeepalivedConf, renderNotifyScript } from '../../src/ha/keepalived';
import { readVrrpState } from '../../src/ha/state';
import { configFrom, tempDir } from '../helpers/carelb';

const BASE = {
  virtual_services: [{ name: 'api', listen: '0.0.0.0:8080', servers: [{ name: 'api1', address: '10.0.0.11:80' }] }],
  admin: { listen: '0.0.0.0:9900' },
};
function haOf(ha: Record<string, unknown>): HaConfig {
  return configFrom({ ...BASE, ha: { node_name: 'lb1', interface: 'eth0', priority: 150, virtual_router_id: 51, peer: '10.0.0.3', vips: [{ address: '10.0.0.100/24' }], ...ha } }).ha!;
}
const OPTIONS = { admin: { host: '0.0.0.0', port: 9900 }, stateDir: '/var/lib/carelb/ha', authPass: 'vrrp-secret-long' };

/** The body of a `name { ... }` block (first match), nested blocks included. */
function block(text: string, name: string): string {
  const start = text.indexOf(`${name} {`);
  assert.ok(start >= 0, `no block ${name}`);
  let depth = 0;
  for (let i = text.indexOf('{', start); i < text.length; i++) {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) return text.slice(start, i + 1);
  }
  throw new Error(`unterminated block ${name}`);
}

test('keepalived.conf: global_defs with script security, a check without weight, the release file, one BACKUP nopreempt instance per VIP', () => {
  const ha = haOf({ vips: [{ address: '10.0.0.100/24' }, { address: '10.0.0.101/24', priority: 100 }] });
  const conf = renderKeepalivedConf(ha, OPTIONS);
  const global = block(conf, 'global_defs');
  assert.match(global, /router_id lb1\n/);
  assert.match(global, /enable_script_security\n/);
  assert.match(global, /script_user carelb\n/);

  const check = block(conf, 'vrrp_script chk_carelb');
  assert.match(check, /script "\/usr\/local\/lib\/carelb\/check-carelb"/);
  assert.match(check, /interval 1\n/);
  assert.match(check, /fall 2\n/);
  assert.match(check, /rise 2\n/);
  assert.doesNotMatch(check, /weight/, 'a failing check must mean FAULT, not a lower priority');

  const release = block(conf, 'track_file carelb_release');
  assert.match(release, /file "\/var\/lib\/carelb\/ha\/release"/);
  assert.match(release, /weight 0\n/);

  const first = block(conf, 'vrrp_instance carelb_1');
  assert.match(first, /state BACKUP\n/);
  assert.match(first, /interface eth0\n/);
  assert.match(first, /virtual_router_id 51\n/);
  assert.match(first, /priority 150\n/);
  assert.match(first, /advert_int 1\n/);
  assert.match(first, /\n {4}nopreempt\n/);
  assert.match(first, /unicast_peer \{\n {8}10\.0\.0\.3\n {4}\}/);
  assert.match(first, /auth_type PASS\n {8}auth_pass vrrp-sec\n/, 'keepalived uses the first 8 characters');
  assert.match(first, /virtual_ipaddress \{\n {8}10\.0\.0\.100\/24 dev eth0\n/);
  assert.match(first, /track_script \{\n {8}chk_carelb\n/);
  assert.match(first, /track_file \{\n {8}carelb_release\n/);
  assert.match(first, /notify "\/usr\/local\/lib\/carelb\/notify-carelb lb1 10\.0\.0\.100\/24 eth0 10" root\n/);
  assert.doesNotMatch(first, /unicast_src_ip/);

  const second = block(conf, 'vrrp_instance carelb_2');
  assert.match(second, /virtual_router_id 52\n/);
  assert.match(second, /priority 100\n/, "a VIP's own priority overrides ha.priority (active-active)");
  assert.match(second, /10\.0\.0\.101\/24 dev eth0/);
  assert.deepEqual(
    instancePlan(ha).map((p) => [p.name, p.virtualRouterId, p.priority]),
    [
      ['carelb_1', 51, 150],
      ['carelb_2', 52, 100],
    ],
  );
});

test('keepalived.conf: preempt on, no secret, a unicast source, seconds from advert_int, other script paths', () => {
  const conf = renderKeepalivedConf(haOf({ preempt: true, advert_int: '3s' }), {
    admin: { host: '10.0.0.2', port: 9900 },
    stateDir: '/run/x/',
    unicastSrcIp: '10.0.0.2',
    checkScript: '/opt/check',
    notifyScript: '/opt/notify',
    lingerSeconds: 0,
  });
  assert.doesNotMatch(conf, /nopreempt/);
  assert.doesNotMatch(conf, /authentication/);
  assert.match(conf, /unicast_src_ip 10\.0\.0\.2\n/);
  assert.match(conf, /advert_int 3\n/);
  assert.match(conf, /interval 3\n/);
  assert.match(conf, /script "\/opt\/check"/);
  assert.match(conf, /file "\/run\/x\/release"/);
  assert.match(conf, /notify "\/opt\/notify lb1 10\.0\.0\.100\/24 eth0 0" root/);
});

test('what keepalived cannot take is refused with the key and the reason', () => {
  assert.deepEqual(renderErrors(haOf({})), []);
  assert.match(renderErrors(haOf({ advert_int: '1500ms' }))[0], /^ha\.advert_int: must be whole seconds/);
  assert.match(renderErrors(haOf({ virtual_router_id: 255, vips: [{ address: '10.0.0.100/24' }, { address: '10.0.0.101/24' }] }))[0], /^ha\.virtual_router_id: 255 \+ 1/);
  assert.match(renderErrors(haOf({ vips: [{ address: 'fd00::100/64' }] }))[0], /^ha\.vips\[0\]\.address: IPv6/);
  assert.match(renderErrors(haOf({ peer: 'fd00::3' }))[0], /^ha\.peer: IPv6/);
  assert.match(renderErrors(haOf({ vips: [{ address: '10.0.0.300/24' }] }))[0], /not an IPv4 address/);
  assert.throws(() => renderKeepalivedConf(haOf({ advert_int: '500ms' }), OPTIONS), /whole seconds/);
  assert.throws(() => renderKeepalivedConf(haOf({}), { ...OPTIONS, authPass: 'a b' }), /auth_secret_file/);
});

test('the check script exits 0 while /healthz answers 2xx and fails when it answers 503 or nothing listens', async (t) => {
  const dir = tempDir(t);
  let status = 200;
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/healthz' ? status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const script = join(dir, 'check');
  for (const withCurl of [true, false]) {
    writeFileSync(script, renderCheckScript({ admin: { host: '0.0.0.0', port }, node: process.execPath }), { mode: 0o755 });
    // Without curl on PATH the script falls back to node.
    const env = withCurl ? process.env : { PATH: '/nonexistent' };
    const run = () => new Promise<number>((resolve) => execFile(script, [], { env }, (error) => resolve(error ? ((error as { code?: number }).code ?? 1) : 0)));
    status = 200;
    assert.equal(await run(), 0, `healthy (${withCurl ? 'curl' : 'node'})`);
    status = 503;
    assert.notEqual(await run(), 0, `503 (${withCurl ? 'curl' : 'node'})`);
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.notEqual(spawnSync(script, { env: { PATH: '/nonexistent' } }).status, 0, 'nothing listening');
  assert.equal(adminUrl({ host: '::', port: 1 }), 'http://[::1]:1/healthz');
  assert.equal(adminUrl({ host: '10.0.0.2', port: 9900 }, true), 'https://10.0.0.2:9900/healthz');
});

test('the notify script records the state per instance and appends the transition to the audit log', (t) => {
  const dir = tempDir(t);
  const script = join(dir, 'notify');
  const state = join(dir, 'state');
  const audit = join(dir, 'log', 'audit.log');
  writeFileSync(script, renderNotifyScript({ stateDir: state, auditLog: audit, checkScript: '/bin/false' }), { mode: 0o755 });
  const notify = (...args: string[]) => spawnSync(script, args, { encoding: 'utf8' });
  assert.equal(readVrrpState(state).state, 'unknown');
  assert.equal(notify('lb1', '10.0.0.100/24', 'eth0', '10', 'INSTANCE', 'carelb_1', 'MASTER', '150').status, 0);
  assert.equal(notify('lb1', '10.0.0.101/24', 'eth0', '10', 'INSTANCE', 'carelb_2', 'BACKUP', '100').status, 0);
  // Leaving MASTER outside a handoff (no release flag): the address does not linger.
  assert.equal(notify('lb1', '10.0.0.100/24', 'eth0', '10', 'INSTANCE', 'carelb_1', 'FAULT', '150').status, 0);
  assert.equal(notify('lb1', '10.0.0.100/24', 'eth0', '10', 'GROUP', 'g', 'FAULT', '0').status, 0, 'groups are ignored');
  const bad = notify('lb1";rm -rf /', '10.0.0.100/24', 'eth0', '10', 'INSTANCE', 'carelb_1', 'MASTER', '150');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unexpected arguments/);

  const vrrp = readVrrpState(state);
  assert.equal(vrrp.state, 'mixed');
  assert.deepEqual(
    vrrp.instances.map((i) => [i.instance, i.state, i.vip, i.priority]),
    [
      ['carelb_1', 'FAULT', '10.0.0.100/24', 150],
      ['carelb_2', 'BACKUP', '10.0.0.101/24', 100],
    ],
  );
  assert.ok(!Number.isNaN(Date.parse(vrrp.instances[0].time!)));
  const lines = readFileSync(audit, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  assert.equal(lines.length, 3);
  assert.deepEqual(
    { ...lines[2], time: undefined },
    { time: undefined, audit: true, source: 'keepalived', action: 'vrrp', target: 'carelb_1', result: 'FAULT', node: 'lb1', instance: 'carelb_1', state: 'FAULT', vip: '10.0.0.100/24', priority: 150, linger: 'no: not a handoff', msg: 'vrrp transition' },
  );
  assert.equal(lines[0].linger, 'no');
});

test('carelb ha render writes keepalived.conf (0600, it holds the secret) and the two scripts (0755), and checks the result with keepalived', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'vrrp.secret'), 'Sup3rSecretValue\n', { mode: 0o600 });
  const configPath = join(dir, 'carelb.yaml');
  writeFileSync(
    configPath,
    stringify({
      ...BASE,
      ha: { node_name: 'lb1', interface: 'eth0', priority: 150, virtual_router_id: 51, peer: '10.0.0.3', auth_secret_file: join(dir, 'vrrp.secret'), vips: [{ address: '10.0.0.100/24' }], keepalived_conf: join(dir, 'keepalived', 'keepalived.conf'), check_script_user: 'root' },
    }),
  );
  const out: string[] = [];
  const err: string[] = [];
  const sink = (into: string[]) => ({ write: (s: string) => (into.push(s), true) }) as unknown as NodeJS.WritableStream;
  const args = ['render', '-c', configPath, '--check-script', join(dir, 'bin', 'check'), '--notify-script', join(dir, 'bin', 'notify'), '--state-dir', join(dir, 'state'), '--audit-log', join(dir, 'audit.log')];
  const code = await runHa(args, sink(out), sink(err));
  assert.equal(code, 0, err.join(''));
  const confPath = join(dir, 'keepalived', 'keepalived.conf');
  assert.equal(statSync(confPath).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'bin', 'check')).mode & 0o777, 0o755);
  assert.equal(statSync(join(dir, 'bin', 'notify')).mode & 0o777, 0o755);
  assert.match(readFileSync(confPath, 'utf8'), /auth_pass Sup3rSec\n/);
  assert.match(readFileSync(join(dir, 'bin', 'check'), 'utf8'), /http:\/\/127\.0\.0\.1:9900\/healthz/);
  assert.match(out.join(''), new RegExp(`wrote ${confPath}`));
  if (spawnSync('keepalived', ['--version']).error === undefined) assert.match(out.join(''), /keepalived --config-test: OK/);

  const shown: string[] = [];
  assert.equal(await runHa([...args, '--stdout'], sink(shown), sink(err)), 0);
  assert.match(shown.join(''), /auth_pass \*{8}/, '--stdout never prints the secret');

  const noAdmin = join(dir, 'no-admin.yaml');
  writeFileSync(noAdmin, stringify({ virtual_services: BASE.virtual_services, ha: { node_name: 'lb1', interface: 'eth0', virtual_router_id: 51, peer: '10.0.0.3', vips: [{ address: '10.0.0.100/24' }] } }));
  const refused: string[] = [];
  assert.equal(await runHa(['render', '-c', noAdmin], sink(out), sink(refused)), 1);
  assert.match(refused.join(''), /admin: is required/);
});

/** `carelb ha render` of a pair node whose check script runs as `user` on `iface`, with the real keepalived. */
async function renderWith(t: import('node:test').TestContext, user: string, iface: string): Promise<{ code: number; out: string; err: string; conf: string }> {
  const dir = tempDir(t);
  const configPath = join(dir, 'carelb.yaml');
  const conf = join(dir, 'keepalived', 'keepalived.conf');
  writeFileSync(
    configPath,
    stringify({ ...BASE, ha: { node_name: 'lb1', interface: iface, priority: 150, virtual_router_id: 51, peer: '10.0.0.3', vips: [{ address: '10.0.0.100/24' }], keepalived_conf: conf, check_script_user: user } }),
  );
  const out: string[] = [];
  const err: string[] = [];
  const sink = (into: string[]) => ({ write: (s: string) => (into.push(s), true) }) as unknown as NodeJS.WritableStream;
  const code = await runHa(['render', '-c', configPath, '--check-script', join(dir, 'bin', 'check'), '--notify-script', join(dir, 'bin', 'notify'), '--state-dir', join(dir, 'state'), '--audit-log', join(dir, 'audit.log')], sink(out), sink(err));
  return { code, out: out.join(''), err: err.join(''), conf };
}

function keepalivedVersion(): string | null {
  const run = spawnSync('keepalived', ['--version'], { encoding: 'utf8' });
  if (run.error) return null;
  return /Keepalived v(\d+\.\d+\.\d+)/.exec(`${run.stdout}${run.stderr}`)?.[1] ?? null;
}

test('carelb ha render on keepalived 2.2.7 with a script user of its own: written, not checked (its config-test bug), exit 0 with a warning', async (t) => {
  const version = keepalivedVersion();
  if (!version) return t.skip('keepalived is not installed');
  // keepalived refuses loopback for VRRP: any other interface of this host will do.
  const iface = readdirSync('/sys/class/net').find((name) => name !== 'lo');
  if (!iface) return t.skip('no network interface other than lo here');
  // nobody: a script user other than root, which is what trips 2.2.7's config test.
  const result = await renderWith(t, 'nobody', iface);
  assert.ok(statSync(result.conf).isFile(), 'the file was written');
  const [major, minor, patch] = version.split('.').map(Number);
  if (major === 2 && (minor < 2 || (minor === 2 && patch < 8))) {
    assert.equal(result.code, 0, result.err);
    assert.match(result.err, new RegExp(`warning: keepalived ${version.replace(/\./g, '\\.')} cannot check this file \\(its config-test bug\\); it was written but not checked`));
    assert.match(result.err, /#2587/);
    assert.doesNotMatch(result.out, /config-test: OK/);
  } else if (result.code === 0) {
    assert.match(result.out, /keepalived --config-test: OK/);
  } else {
    // A fixed keepalived may still refuse this host's temp paths for a non-root script user:
    // then the reason and keepalived's own words, never the bare line of the bug report.
    assert.match(result.err, /keepalived --config-test failed: keepalived (exited with status \d+|was killed by SIG\w+)\n\s+\S/);
  }
});

test('carelb ha render prints keepalived\'s output and the reason when its config test fails for any other reason, and exits 1', async (t) => {
  if (!keepalivedVersion()) return t.skip('keepalived is not installed');
  const result = await renderWith(t, 'root', 'carelbnoif0');
  assert.equal(result.code, 1);
  assert.match(result.err, /keepalived --config-test failed: keepalived exited with status \d+\n/);
  assert.match(result.err, /interface carelbnoif0 .*doesn't exist|Non-existent interface/);
});

test('carelb ha handoff with no virtual IP here writes the release flag and returns at once; resume clears it', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'state'));
  const configPath = join(dir, 'carelb.yaml');
  // 192.0.2.0/24 (TEST-NET-1) is never on a local interface.
  writeFileSync(configPath, stringify({ ...BASE, ha: { node_name: 'lb1', interface: 'eth0', virtual_router_id: 51, peer: '192.0.2.3', vips: [{ address: '192.0.2.100/24' }] } }));
  const out: string[] = [];
  const sink = { write: (s: string) => (out.push(s), true) } as unknown as NodeJS.WritableStream;
  assert.equal(await runHa(['handoff', '-c', configPath, '--state-dir', join(dir, 'state')], sink, sink), 0);
  assert.equal(readFileSync(join(dir, 'state', 'release'), 'utf8'), '1\n');
  assert.match(out.join(''), /holds none of the virtual IPs/);
  assert.equal(await runHa(['resume', '--state-dir', join(dir, 'state')], sink, sink), 0);
  assert.equal(readFileSync(join(dir, 'state', 'release'), 'utf8'), '0\n');
  assert.equal(await runHa(['bogus'], sink, sink), 2, 'a command-line mistake exits 2 with the usage');
  assert.match(out.join(''), /unknown command "bogus"/);
});
