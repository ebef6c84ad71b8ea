/**
 * Config sync needs TLS (issue 13): the push carries the config, private keys and passphrases.
 * Without admin.tls on either node `carelb ha sync` and auto_sync refuse, and a receiver whose
 * admin API is plain HTTP refuses the push, unless ha.allow_plaintext_sync is set (a warning at
 * every start). Over TLS the peer's certificate must chain to admin.tls.ca. Two carelb
 * instances in this process, loopback only, certificates generated now.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { runHa } from '../../src/ha/command';
import { runCarelb, type Running } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { eventually, tempDir } from '../helpers/carelb';
import { makeCa, makeCert, type Pair } from '../helpers/certs';
import { freePort } from '../helpers/ports';

interface NodeSpec {
  name: string;
  adminPort: number;
  peerAdminPort: number;
  tls?: { cert: string; key: string; ca?: string };
  allowPlaintext?: boolean;
  autoSync?: boolean;
}

interface Node {
  running: Running | null;
  path: string;
  document: Record<string, unknown>;
  logs: Record<string, unknown>[];
  syncTokenFile: string;
}

async function pairDir(t: TestContext) {
  const dir = tempDir(t);
  const api = await startBackend('api');
  t.after(() => api.close());
  return { dir, api: api.address };
}

/** Writes node `spec.name`'s config into `dir` and, with `start`, runs it. */
async function node(t: TestContext, dir: string, backend: string, spec: NodeSpec, start = true): Promise<Node> {
  const document = {
    workers: 1,
    pin_workers: false,
    admin: { listen: `127.0.0.1:${spec.adminPort}`, token_file: join(dir, `${spec.name}.token`), ...(spec.tls ? { tls: spec.tls } : {}) },
    ha: {
      node_name: spec.name,
      interface: 'lo',
      virtual_router_id: 51,
      peer: '127.0.0.1',
      peer_admin: `127.0.0.1:${spec.peerAdminPort}`,
      peer_token_file: join(dir, `${spec.name}.peer-token`),
      sync_token_file: join(dir, `${spec.name}.sync-token`),
      ...(spec.allowPlaintext ? { allow_plaintext_sync: true } : {}),
      ...(spec.autoSync ? { auto_sync: true } : {}),
      vips: [{ address: '127.0.0.250/32' }],
    },
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${await freePort()}`, servers: [{ name: 'api', address: backend }] }],
  };
  const path = join(dir, `${spec.name}.yaml`);
  const text = stringify(document);
  writeFileSync(path, text);
  const logs: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _e, done) {
        for (const line of chunk.toString().split('\n')) if (line.startsWith('{')) logs.push(JSON.parse(line));
        done();
      },
    }),
  );
  let running: Running | null = null;
  if (start) {
    const loaded = loadConfigText(text, path);
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('; '));
    running = await runCarelb(loaded.config, { configPath: path, configText: text, log, auditLog: join(dir, `${spec.name}-audit.log`) });
    t.after(() => running!.stop());
  }
  return { running, path, document, logs, syncTokenFile: join(dir, `${spec.name}.sync-token`) };
}

/** `carelb ha sync -c path`: exit status and what it wrote on stderr. */
async function haSync(path: string): Promise<{ code: number; err: string; out: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let outText = '';
  let errText = '';
  out.on('data', (c) => (outText += c));
  err.on('data', (c) => (errText += c));
  const code = await runHa(['sync', '-c', path], out, err);
  return { code, err: errText, out: outText };
}

/** The config with one more timeout, so a sync that gets through is visible on the receiver. */
function changed(a: Node): void {
  const vs = (a.document.virtual_services as Record<string, unknown>[])[0];
  writeFileSync(a.path, stringify({ ...a.document, virtual_services: [{ ...vs, timeouts: { server: '42s' } }] }));
}

function adminCert(dir: string, ca: Pair, name: string) {
  const cert = makeCert(dir, ca, name, { cn: `carelb-${name}`, sans: ['IP:127.0.0.1'] });
  return { cert: cert.cert, key: cert.key, ca: ca.cert };
}

test('ha sync refuses when this node’s admin API has no TLS, and says how to fix it', async (t) => {
  const { dir, api } = await pairDir(t);
  const [adminA, adminB] = [await freePort(), await freePort()];
  const b = await node(t, dir, api, { name: 'lb2', adminPort: adminB, peerAdminPort: adminA, allowPlaintext: true });
  writeFileSync(join(dir, 'lb1.peer-token'), readFileSync(b.syncTokenFile));
  const a = await node(t, dir, api, { name: 'lb1', adminPort: adminA, peerAdminPort: adminB }, false);
  changed(a);
  const result = await haSync(a.path);
  assert.equal(result.code, 1, result.err);
  assert.match(result.err, /admin\.tls/);
  assert.match(result.err, /allow_plaintext_sync/);
  assert.equal(b.running!.admin.config().virtual_services[0].timeouts.server, 60_000, 'nothing reached the peer');
});

test('a receiver whose admin API is plain HTTP refuses a push (403) unless ha.allow_plaintext_sync, which warns at start', async (t) => {
  const { dir, api } = await pairDir(t);
  const strict = await node(t, dir, api, { name: 'lb2', adminPort: await freePort(), peerAdminPort: 9 });
  const lenient = await node(t, dir, api, { name: 'lb3', adminPort: await freePort(), peerAdminPort: 9, allowPlaintext: true });
  const push = (target: Node, port: number) =>
    new Promise<{ status: number; json: any }>((resolve, reject) => {
      const body = JSON.stringify({ config_text: readFileSync(target.path, 'utf8').replace(/node_name: \S+/, 'node_name: lb9'), files: [] });
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/api/ha/config', agent: false, headers: { authorization: `Bearer ${readFileSync(target.syncTokenFile, 'utf8').trim()}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const refused = await push(strict, strict.running!.adminServer!.port);
  assert.equal(refused.status, 403, JSON.stringify(refused.json));
  assert.match(JSON.stringify(refused.json), /TLS/);
  assert.match(JSON.stringify(refused.json), /allow_plaintext_sync/);
  assert.equal(strict.logs.some((l) => /allow_plaintext_sync/.test(String(l.msg))), false);

  const accepted = await push(lenient, lenient.running!.adminServer!.port);
  assert.equal(accepted.status, 200, JSON.stringify(accepted.json));
  const warning = lenient.logs.find((l) => l.level === 40 && /allow_plaintext_sync/.test(String(l.msg)));
  assert.ok(warning, 'the start logged a warning naming ha.allow_plaintext_sync');
});

test('over TLS the peer’s certificate must chain to admin.tls.ca: a peer with another CA’s certificate is refused, nothing is written', async (t) => {
  const { dir, api } = await pairDir(t);
  const [adminA, adminB] = [await freePort(), await freePort()];
  const pairCa = makeCa(dir, 'pair-ca');
  const otherCa = makeCa(dir, 'other-ca');
  const b = await node(t, dir, api, { name: 'lb2', adminPort: adminB, peerAdminPort: adminA, tls: adminCert(dir, otherCa, 'lb2') });
  writeFileSync(join(dir, 'lb1.peer-token'), readFileSync(b.syncTokenFile));
  const a = await node(t, dir, api, { name: 'lb1', adminPort: adminA, peerAdminPort: adminB, tls: adminCert(dir, pairCa, 'lb1') }, false);
  changed(a);
  const result = await haSync(a.path);
  assert.equal(result.code, 1, result.out);
  assert.match(result.err, /certificate|self.signed|unable to verify/i);
  assert.equal(b.running!.admin.config().virtual_services[0].timeouts.server, 60_000, 'nothing reached the peer');

  // admin.tls without ca: sync refuses rather than trusting the system CAs with the pair's keys.
  const noCa = await node(t, join(dir), api, { name: 'lb4', adminPort: await freePort(), peerAdminPort: adminB, tls: { ...adminCert(dir, pairCa, 'lb4'), ca: undefined } }, false);
  writeFileSync(join(dir, 'lb4.peer-token'), readFileSync(b.syncTokenFile));
  const refused = await haSync(noCa.path);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /admin\.tls\.ca/);
});

test('the same CA on both nodes: ha sync over TLS reaches the peer', async (t) => {
  const { dir, api } = await pairDir(t);
  const [adminA, adminB] = [await freePort(), await freePort()];
  const ca = makeCa(dir, 'pair-ca');
  const b = await node(t, dir, api, { name: 'lb2', adminPort: adminB, peerAdminPort: adminA, tls: adminCert(dir, ca, 'lb2') });
  writeFileSync(join(dir, 'lb1.peer-token'), readFileSync(b.syncTokenFile));
  const a = await node(t, dir, api, { name: 'lb1', adminPort: adminA, peerAdminPort: adminB, tls: adminCert(dir, ca, 'lb1') }, false);
  changed(a);
  const result = await haSync(a.path);
  assert.equal(result.code, 0, result.err);
  assert.equal(b.running!.admin.config().virtual_services[0].timeouts.server, 42_000);
});

test('auto_sync without TLS refuses with a warning and pushes nothing', async (t) => {
  const { dir, api } = await pairDir(t);
  const [adminA, adminB] = [await freePort(), await freePort()];
  const b = await node(t, dir, api, { name: 'lb2', adminPort: adminB, peerAdminPort: adminA, allowPlaintext: true });
  writeFileSync(join(dir, 'lb1.peer-token'), readFileSync(b.syncTokenFile));
  const a = await node(t, dir, api, { name: 'lb1', adminPort: adminA, peerAdminPort: adminB, autoSync: true });
  changed(a);
  assert.equal((await a.running!.reload('test')).ok, true);
  await eventually(() => a.logs.some((l) => /^ha auto_sync/.test(String(l.msg))), 10_000, 'node A to log its auto_sync');
  const line = a.logs.find((l) => /^ha auto_sync/.test(String(l.msg)))!;
  assert.equal(line.level, 40, JSON.stringify(line));
  assert.match(JSON.stringify(line), /admin\.tls/);
  assert.equal(b.running!.admin.config().virtual_services[0].timeouts.server, 60_000, 'nothing reached the peer');
});
