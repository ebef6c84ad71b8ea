import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawnCli, tempDir, waitForLog } from '../helpers/carelb';
import { request } from '../helpers/client';
import { freePort } from '../helpers/ports';

test('carelb demo runs the demo: plain, TLS offload and TLS bridging in front of demo EHR servers', async (t) => {
  const state = tempDir(t);
  const [plain, offload, bridge] = [await freePort(), await freePort(), await freePort()];
  const child = spawnCli(t, ['demo'], {
    CARELB_STATE_DIR: state,
    CARELB_DEMO_PORT: String(plain),
    CARELB_DEMO_OFFLOAD_PORT: String(offload),
    CARELB_DEMO_BRIDGE_PORT: String(bridge),
  });
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
