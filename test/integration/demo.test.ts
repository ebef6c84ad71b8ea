import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as https from 'node:https';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { adminCall } from '../helpers/admin-context';
import { eventually, spawnCli, waitForLog, type Child } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

/**
 * A state directory for one demo run, removed once the demo has exited: node:test runs `after`
 * hooks in registration order, and the demo writes its audit log there until it stops.
 */
function stateDir(t: TestContext): { dir: string; owns(child: Child): void } {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-demo-'));
  return {
    dir,
    owns(child) {
      t.after(async () => {
        if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
        await child.exited;
        rmSync(dir, { recursive: true, force: true });
      });
    },
  };
}

test('carelb demo runs the demo: plain, TLS offload and TLS bridging in front of demo EHR servers', async (t) => {
  const { dir: state, owns } = stateDir(t);
  const [plain, offload, bridge, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child = spawnCli(t, ['demo'], {
    CARELB_STATE_DIR: state,
    CARELB_DEMO_PORT: String(plain),
    CARELB_DEMO_OFFLOAD_PORT: String(offload),
    CARELB_DEMO_BRIDGE_PORT: String(bridge),
    CARELB_DEMO_ADMIN_PORT: String(admin),
  });
  owns(child);
  await waitForLog(child, 'ready');
  const metadata = await request(plain, { path: '/fhir/r4/metadata' });
  assert.equal(metadata.status, 200);
  assert.equal(JSON.parse(metadata.body.toString()).resourceType, 'CapabilityStatement');
  const ca = readFileSync(join(state, 'demo-tls', 'demo-ca.pem'));
  const get = (port: number, path: string) =>
    new Promise<{ status: number; servedBy: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, servedBy: String(res.headers['x-served-by']) }));
        })
        .on('error', reject);
    });
  const viaOffload = await get(offload, '/fhir/r4/Patient/123');
  assert.equal(viaOffload.status, 200);
  assert.match(viaOffload.servedBy, /^ehr-api-[12]$/);
  const viaBridge = await get(bridge, '/fhir/r4/Patient/123');
  assert.equal(viaBridge.status, 200);
  assert.match(viaBridge.servedBy, /^ehr-api-tls-[12]$/);
  assert.match(child.stdout.join(''), /TLS bridging/);
  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});

test('carelb demo prints the dashboard link with its token, and the dashboard and API answer with that token within 60 s', async (t) => {
  const { dir: state, owns } = stateDir(t);
  const [plain, offload, bridge, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const started = Date.now();
  const child = spawnCli(t, ['demo'], {
    CARELB_STATE_DIR: state,
    CARELB_DEMO_PORT: String(plain),
    CARELB_DEMO_OFFLOAD_PORT: String(offload),
    CARELB_DEMO_BRIDGE_PORT: String(bridge),
    CARELB_DEMO_ADMIN_PORT: String(admin),
  });
  owns(child);
  const link = /http:\/\/127\.0\.0\.1:(\d+)\/#token=([0-9a-f]{64})/;
  await eventually(() => link.test(child.stdout.join('')), 60_000, 'the dashboard link on stdout');
  const [, port, token] = link.exec(child.stdout.join(''))!;
  assert.equal(Number(port), admin);
  const tokenFile = join(state, 'demo-admin.token');
  assert.equal(readFileSync(tokenFile, 'utf8').trim(), token, 'the token of the link is the one in the state directory');

  const page = await adminCall(admin, 'GET', '/', null);
  assert.equal(page.status, 200);
  assert.match(page.text, /<title>carelb dashboard<\/title>/);
  const status = await adminCall(admin, 'GET', '/api/status', token);
  assert.equal(status.status, 200);
  assert.equal(status.json.role, 'operate');
  assert.deepEqual(status.json.virtual_services.map((vs: { name: string }) => vs.name), ['ehr-api', 'ehr-api-offload', 'ehr-api-bridge']);
  assert.equal(status.json.demo.traffic.running, false, 'no traffic without --traffic');
  assert.deepEqual(status.json.demo.servers, [{ name: 'ehr-api-1', sick: false }]);
  assert.ok(Date.now() - started < 60_000, 'within a minute');

  // The printed text: the three services, curl lines, ctl with the demo's config, /metrics with the token.
  const text = child.stdout.join('').split('\n').filter((line) => !line.startsWith('{')).join('\n');
  const config = join(state, 'demo.yaml');
  for (const expected of [`http://127.0.0.1:${plain}`, `https://127.0.0.1:${offload}`, `https://127.0.0.1:${bridge}`, 'curl -i', `carelb ctl status -c ${config}`, `$(cat ${tokenFile})" http://127.0.0.1:${admin}/metrics`]) {
    assert.ok(text.includes(expected), `the demo prints ${expected}`);
  }
  // And the printed commands work: ctl with the demo config, /metrics with the token.
  const ctl = spawnCli(t, ['ctl', 'status', '-c', config]);
  assert.equal(await ctl.exited, 0, ctl.stderr.join(''));
  assert.match(ctl.stdout.join(''), /ehr-api-bridge/);
  assert.equal((await adminCall(admin, 'GET', '/metrics', token)).status, 200);
  // The demo routes are the operator's: no token, no demo.
  assert.equal((await adminCall(admin, 'POST', '/api/demo/traffic/start', null)).status, 401);
  assert.equal((await adminCall(admin, 'POST', '/api/demo/servers/ehr-api-2/sick', token)).status, 404);

  child.process.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});
