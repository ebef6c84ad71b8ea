/**
 * deploy/examples/ha-lb1.yaml and ha-lb2.yaml: the HA pair as two node configs. They differ
 * only in the ha: block (checked on the text and on the parsed documents), pass `carelb check`
 * and render keepalived configurations with `carelb ha render`. The files they name under
 * /etc/carelb (certificates, secrets) are made in a temp dir the paths are moved into.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CLI, tempDir } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';

const EXAMPLES = join(__dirname, '..', '..', '..', 'deploy', 'examples');
const NODES = ['ha-lb1.yaml', 'ha-lb2.yaml'] as const;

function carelb(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The example with /etc/carelb moved into `root`, and the files it names made there. */
function installed(root: string, name: string): string {
  const etc = join(root, 'etc', 'carelb');
  const tls = join(etc, 'tls');
  mkdirSync(tls, { recursive: true });
  const ca = makeCa(tls, 'pair-ca');
  for (const [file, cn] of [
    ['admin', 'lb.example-hospital.org'],
    ['ehr-api', 'ehr-api.example-hospital.org'],
  ]) makeCert(tls, ca, file, { cn, sans: [`DNS:${cn}`, 'IP:127.0.0.1'] });
  for (const secret of ['vrrp.secret', 'sync.token', 'peer.token', 'admin.token']) writeFileSync(join(etc, secret), `${secret.replace(/\W/g, '')}0123456789abcdef\n`, { mode: 0o600 });
  const path = join(root, name);
  writeFileSync(path, readFileSync(join(EXAMPLES, name), 'utf8').replaceAll('/etc/carelb/', `${etc}/`));
  return path;
}

test('the two HA examples differ only in their ha: block', () => {
  const [one, two] = NODES.map((name) => readFileSync(join(EXAMPLES, name), 'utf8'));
  const [linesOne, linesTwo] = [one.split('\n'), two.split('\n')];
  const haStart = linesOne.indexOf('ha:');
  assert.ok(haStart > 0, 'ha-lb1.yaml has a top-level ha: block');
  assert.equal(linesTwo.indexOf('ha:'), haStart, 'the ha: block starts on the same line in both');
  assert.equal(linesOne.length, linesTwo.length);
  // The ha: block is the last one: every line after it is indented (part of it) or empty.
  for (const lines of [linesOne, linesTwo]) for (const line of lines.slice(haStart + 1)) assert.match(line, /^(\s|$)/, `"${line}" is inside the ha: block`);
  const differing = linesOne.map((line, i) => (line === linesTwo[i] ? -1 : i)).filter((i) => i >= 0);
  assert.ok(differing.length > 0);
  for (const i of differing) assert.ok(i > haStart, `line ${i + 1} differs outside the ha: block: "${linesOne[i]}" / "${linesTwo[i]}"`);

  const [docOne, docTwo] = [parse(one), parse(two)];
  assert.notDeepEqual(docOne.ha, docTwo.ha);
  delete docOne.ha;
  delete docTwo.ha;
  assert.deepEqual(docOne, docTwo);
});

test('carelb check passes both HA examples, and carelb ha render --stdout renders each node (its name, priority and peer)', (t) => {
  const root = tempDir(t);
  const rendered: string[] = [];
  for (const [index, name] of NODES.entries()) {
    const path = installed(join(root, String(index)), name);
    const check = carelb(['check', '-c', path]);
    assert.equal(check.status, 0, `${name}: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /: OK \(2 virtual services\)/);
    const render = carelb(['ha', 'render', '-c', path, '--stdout']);
    assert.equal(render.status, 0, `${name}: ${render.stderr}`);
    assert.match(render.stdout, /auth_pass \*{8}/, 'the secret is masked');
    rendered.push(render.stdout);
  }
  const [one, two] = rendered;
  assert.match(one, /router_id lb1\n/);
  assert.match(two, /router_id lb2\n/);
  assert.match(one, /priority 150\n/);
  assert.match(two, /priority 100\n/);
  assert.match(one, /unicast_peer \{\n\s+10\.0\.0\.3\n/);
  assert.match(two, /unicast_peer \{\n\s+10\.0\.0\.2\n/);
  // The same instances, VIP and router id on both nodes: only what the ha: block says differs.
  for (const text of rendered) {
    assert.match(text, /virtual_router_id 51\n/);
    assert.match(text, /10\.0\.0\.100\/24 dev eth0\n/);
  }
  const strip = (text: string) => text.replace(/lb[12]/g, 'NODE').replace(/priority \d+/g, 'priority N').replace(/10\.0\.0\.[23]\n/g, 'PEER\n').replace(/^# keepalived configuration .*\n/m, '');
  assert.equal(strip(one), strip(two));
});

test('carelb ha render writes each HA example\'s keepalived files and keepalived checks them (or says it cannot, on 2.2.7)', (t) => {
  if (spawnSync('keepalived', ['--version']).error) return t.skip('keepalived is not installed');
  // keepalived refuses an interface that does not exist (eth0 in the examples) and loopback.
  const iface = readdirSync('/sys/class/net').find((name) => name !== 'lo');
  if (!iface) return t.skip('no network interface other than lo here');
  const root = tempDir(t);
  for (const [index, name] of NODES.entries()) {
    const dir = join(root, String(index));
    const path = installed(dir, name);
    // The check script's user, carelb, is made by the installer; nobody exists on every Debian host.
    writeFileSync(path, `${readFileSync(path, 'utf8').replace('interface: eth0', `interface: ${iface}`).trimEnd()}\n  check_script_user: nobody\n`);
    const render = carelb(['ha', 'render', '-c', path, '--out', join(dir, 'keepalived.conf'), '--check-script', join(dir, 'bin', 'check'), '--notify-script', join(dir, 'bin', 'notify'), '--state-dir', join(dir, 'state'), '--audit-log', join(dir, 'audit.log')]);
    assert.equal(render.status, 0, `${name}: ${render.stdout}${render.stderr}`);
    assert.ok(
      /keepalived --config-test: OK/.test(render.stdout) || /cannot check this file \(its config-test bug\); it was written but not checked/.test(render.stderr),
      `${name}: ${render.stdout}${render.stderr}`,
    );
  }
});
