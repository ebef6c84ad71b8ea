/**
 * HA peers talk over the admin API in TLS (admin.tls): node A sees node B's status and syncs
 * its config to B over HTTPS, verified against the pair's CA. Two carelb instances in this
 * process, loopback only.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { runCtl } from '../../src/ctl/ctl';
import { runHa } from '../../src/ha/command';
import { createLogger } from '../../src/observe/log';
import { runCarelb, type Running } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { eventually, tempDir } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';

interface Node {
  running: Running;
  path: string;
  document: Record<string, unknown>;
}

async function node(t: TestContext, dir: string, name: string, ports: { lb: number; admin: number; peerAdmin: number }, tls: Record<string, string>, backendAddress: string): Promise<Node> {
  const document = {
    workers: 1,
    pin_workers: false,
    admin: { listen: `127.0.0.1:${ports.admin}`, token_file: join(dir, `${name}.token`), tls },
    ha: { node_name: name, interface: 'lo', virtual_router_id: 51, peer: '127.0.0.1', peer_admin: `127.0.0.1:${ports.peerAdmin}`, peer_token_file: join(dir, `${name}.peer-token`), sync_token_file: join(dir, `${name}.sync-token`), vips: [{ address: '127.0.0.250/32' }] },
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${ports.lb}`, servers: [{ name: 'api', address: backendAddress }] }],
  };
  const path = join(dir, `${name}.yaml`);
  const text = stringify(document);
  writeFileSync(path, text);
  const loaded = loadConfigText(text, path);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('; '));
  const running = await runCarelb(loaded.config, { configPath: path, configText: text, log: createLogger('warn'), auditLog: join(dir, `${name}-audit.log`) });
  t.after(() => running.stop());
  return { running, path, document };
}

test('HA peers reach each other over HTTPS: status shows the peer, and a sync over TLS reloads the peer', async (t) => {
  const dir = tempDir(t);
  const ca = makeCa(dir);
  const cert = makeCert(dir, ca, 'admin', { cn: 'carelb-admin', sans: ['IP:127.0.0.1'] });
  const tls = { cert: cert.cert, key: cert.key, ca: ca.cert };
  const api = await startBackend('api');
  t.after(() => api.close());
  const [lbA, lbB, adminA, adminB] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const b = await node(t, dir, 'lb2', { lb: lbB, admin: adminB, peerAdmin: adminA }, tls, api.address);
  // Each node holds the other's sync token as its peer token.
  writeFileSync(join(dir, 'lb1.peer-token'), readFileSync(join(dir, 'lb2.sync-token')));
  const a = await node(t, dir, 'lb1', { lb: lbA, admin: adminA, peerAdmin: adminB }, tls, api.address);
  writeFileSync(join(dir, 'lb2.peer-token'), readFileSync(join(dir, 'lb1.sync-token')));

  await eventually(() => {
    const peer = a.running.admin.ha()?.peer as { node?: string } | null;
    return peer?.node === 'lb2';
  }, 10_000, "node A to see node B over HTTPS");

  // Change A's config (a timeout) and push it to B over TLS; B keeps its own ha: block.
  const changed = { ...a.document, virtual_services: [{ ...(a.document.virtual_services as object[])[0], timeouts: { server: '42s' } }] };
  writeFileSync(a.path, stringify(changed));
  assert.equal((await a.running.reload('test')).ok, true);
  const out = new PassThrough();
  const err = new PassThrough();
  let errText = '';
  err.on('data', (c) => (errText += c));
  const code = await runHa(['sync', '-c', a.path], out, err);
  assert.equal(code, 0, errText);
  assert.equal(b.running.admin.config().virtual_services[0].timeouts.server, 42_000);
  assert.equal(b.running.admin.config().ha?.node_name, 'lb2', 'B kept its own ha: block');
  // carelb ctl reads admin.tls from the config and speaks HTTPS too.
  let ctlOut = '';
  const ctlStream = new PassThrough();
  ctlStream.on('data', (c) => (ctlOut += c));
  assert.equal(await runCtl(['status', '--json', '-c', b.path], ctlStream, err), 0, errText);
  assert.equal(JSON.parse(ctlOut).virtual_services[0].name, 'api');
});
