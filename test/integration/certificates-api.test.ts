/**
 * Certificates through the admin API (issue 14): a PFX uploaded and assigned while keep-alive
 * HTTPS traffic runs, with no failed request; the inventory (store, SNI, bridging CA and
 * client certificate); the expiry metric equal to each certificate's notAfter; the daily
 * expiry warning; read tokens refused (403) on upload and assign; every upload and
 * assignment audited. carelb runs in-process from a real config file (so the assignment's
 * rewrite and reload are real), clients on real loopback sockets.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import * as tls from 'node:tls';
import pino from 'pino';
import { stringify } from 'yaml';
import { startExpiryWatch } from '../../src/certs/expiry-watch';
import { importCertificate } from '../../src/certs/importer';
import { loadConfigText } from '../../src/config/load';
import { runCarelb, type Running } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { eventually, tempDir } from '../helpers/carelb';
import { exportPfx, leafExt, makeChain, sign, type Chain } from '../helpers/cert-chain';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';

interface Lb {
  running: Running;
  dir: string;
  store: string;
  configPath: string;
  port: number;
  adminPort: number;
  operate: string;
  read: string;
  first: Chain;
  logLines: Record<string, unknown>[];
  audit(): Record<string, unknown>[];
  call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: any; text: string }>;
}

async function start(t: TestContext, options: { soon?: boolean } = {}): Promise<Lb> {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const first = makeChain(dir, 'first');
  await importCertificate({ store, name: 'first', data: Buffer.concat([readFileSync(first.leaf), readFileSync(first.intermediate), readFileSync(first.leafKey)]) });
  const backendCa = makeCa(dir, 'backend-ca');
  const client = makeCert(dir, backendCa, 'lb-client', { cn: 'carelb-client' });
  if (options.soon) {
    // 20 days left: imported with a warning, then warned about in the log.
    const soon = makeChain(dir, 'soon');
    const leaf = join(dir, 'soon-20d.pem');
    sign(dir, join(dir, 'soon-leaf.csr'), { cert: soon.intermediate, key: soon.intermediateKey }, leaf, leafExt(['DNS:soon.example.org']), 20);
    await importCertificate({ store, name: 'soon', data: readFileSync(leaf), keyPem: readFileSync(soon.leafKey, 'utf8') });
  }
  const backend = await startBackend('b1');
  t.after(() => backend.close());
  const port = await freePort();
  const adminPort = await freePort();
  const document = {
    workers: 2,
    pin_workers: false,
    shutdown_grace: '2s',
    tls_store: store,
    virtual_services: [
      { name: 'api', listen: `127.0.0.1:${port}`, tls: { certificate: 'first' }, servers: [{ name: 'b1', address: backend.address }] },
      {
        name: 'bridge',
        listen: `127.0.0.1:${await freePort()}`,
        backend_tls: { ca: backendCa.cert, cert: client.cert, key: client.key },
        servers: [{ name: 'tls1', address: '127.0.0.1:9' }],
      },
    ],
    admin: {
      listen: `127.0.0.1:${adminPort}`,
      token_file: join(dir, 'secrets', 'admin.token'),
      tokens: [{ file: join(dir, 'secrets', 'read.token'), role: 'read' }],
    },
  };
  const configPath = join(dir, 'carelb.yaml');
  const text = `# operator's note: keep this comment\n${stringify(document)}`;
  writeFileSync(configPath, text);
  const loaded = loadConfigText(text, configPath);
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logLines.push(JSON.parse(line));
      done();
    },
  });
  const auditPath = join(dir, 'audit.log');
  const running = await runCarelb(loaded.config, { configPath, configText: text, log: pino({ level: 'info' }, sink), auditLog: auditPath });
  t.after(() => running.stop());
  const operate = readFileSync(join(dir, 'secrets', 'admin.token'), 'utf8').trim();
  const read = readFileSync(join(dir, 'secrets', 'read.token'), 'utf8').trim();
  const call = (method: string, path: string, body?: unknown, token = operate) =>
    new Promise<{ status: number; json: any; text: string }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        { host: '127.0.0.1', port: adminPort, method, path, agent: false, headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) } },
        (res) => {
          let data = '';
          res.setEncoding('utf8').on('data', (d: string) => (data += d));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(data);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode!, json, text: data });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  const audit = () => {
    try {
      return readFileSync(auditPath, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
    } catch {
      return [];
    }
  };
  return { running, dir, store, configPath, port, adminPort, operate, read, first, logLines, audit, call };
}

const fingerprint = (pem: string) => new X509Certificate(readFileSync(pem)).fingerprint256;

test('a PFX uploaded through the API and assigned under keep-alive HTTPS load fails no request', async (t) => {
  const lb = await start(t);
  const second = makeChain(lb.dir, 'second');
  // Clients trust both roots (an operator moving from one CA to another); each connection records the certificate it got.
  const ca = [readFileSync(lb.first.root), readFileSync(second.root)];
  const agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca });
  t.after(() => agent.destroy());
  const counts = { ok: 0, failed: 0, connections: 0, oldCert: 0, newCert: 0, errors: [] as string[] };
  const seen = new WeakSet<object>();
  const MAX_REQUESTS = 4000;
  const deadline = Date.now() + 30_000;
  let assigned = false;
  let newAfterAssign = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = https.request({ host: '127.0.0.1', port: lb.port, path: '/', servername: 'localhost', agent }, (res) => {
        const socket = res.socket as import('node:tls').TLSSocket;
        if (!seen.has(socket)) {
          seen.add(socket);
          counts.connections++;
          const served = socket.getPeerCertificate().fingerprint256;
          if (served === fingerprint(second.leaf)) {
            counts.newCert++;
            if (assigned) newAfterAssign++;
          } else counts.oldCert++;
        }
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) counts.ok++;
          else {
            counts.failed++;
            counts.errors.push(`status ${res.statusCode}`);
          }
          resolve();
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        counts.failed++;
        counts.errors.push(error.code ?? error.message);
        resolve();
      });
      req.end();
    });
  let total = 0;
  let okAtAssign = Infinity;
  // Bounded: at most MAX_REQUESTS requests and 30 s; stops early once every lane is on a
  // new-certificate connection and 500 more requests have been answered since the assignment.
  const lane = async () => {
    while (total < MAX_REQUESTS && Date.now() < deadline && !(newAfterAssign >= 4 && counts.ok - okAtAssign >= 500)) {
      total++;
      await one();
    }
  };
  const lanes = Array.from({ length: 4 }, lane);
  await eventually(() => counts.ok >= 200, 20_000, 'traffic on the first certificate');

  const pfx = exportPfx(lb.dir, second, 'second.pfx', 'Windows-Export-1', true);
  const uploaded = await lb.call('POST', '/api/certificates', { name: 'second', data: readFileSync(pfx).toString('base64'), password: 'Windows-Export-1' });
  assert.equal(uploaded.status, 201, uploaded.text);
  assert.equal(uploaded.json.fingerprint_sha256, fingerprint(second.leaf));
  assert.equal(uploaded.json.legacy_pkcs12, true);
  assert.equal(uploaded.json.chain_length, 2);
  const beforeAssign = counts.ok;
  const assignedReply = await lb.call('POST', '/api/certificates/second/assign', { virtual_service: 'api' });
  assert.equal(assignedReply.status, 200, assignedReply.text);
  assigned = true;
  okAtAssign = counts.ok;
  await Promise.all(lanes);
  t.diagnostic(`requests ok=${counts.ok} failed=${counts.failed} (ok before assign ${beforeAssign}); connections=${counts.connections} old cert=${counts.oldCert} new cert=${counts.newCert}`);
  console.log(`upload+assign under load: ${JSON.stringify({ ok: counts.ok, failed: counts.failed, okBeforeAssign: beforeAssign, connections: counts.connections, oldCert: counts.oldCert, newCert: counts.newCert })}`);
  assert.equal(counts.failed, 0, `failed requests: ${counts.errors.slice(0, 10).join(', ')}`);
  assert.ok(newAfterAssign >= 1, 'connections after the assignment got the new certificate');
  assert.ok(counts.ok > beforeAssign, 'traffic kept flowing after the assignment');

  const text = readFileSync(lb.configPath, 'utf8');
  assert.match(text, /^# operator's note: keep this comment/, 'the rewrite keeps the comments');
  assert.match(text, /certificate: second/);
  assert.doesNotMatch(text, /certificate: first/);

  const audit = await (async () => {
    await eventually(() => lb.audit().filter((l) => String(l.action).startsWith('certificate_')).length >= 2, 10_000, 'audit lines');
    return lb.audit().filter((l) => String(l.action).startsWith('certificate_'));
  })();
  assert.deepEqual(
    audit.map((l) => [l.action, l.target, l.result]),
    [
      ['certificate_upload', 'second', 'ok'],
      ['certificate_assign', 'second -> api', 'ok'],
    ],
  );
  assert.ok(!JSON.stringify(audit).includes('Windows-Export-1'), 'no password in the audit log');
});

test('the inventory lists store, SNI and bridging certificates; the expiry metric is each notAfter; read tokens look but get 403 on upload and assign', async (t) => {
  const lb = await start(t, { soon: true });
  const list = await lb.call('GET', '/api/certificates', undefined, lb.read);
  assert.equal(list.status, 200, list.text);
  assert.ok(Array.isArray(list.json));
  const byName = new Map<string, any>(list.json.map((e: any) => [e.name, e]));
  const first = byName.get('first');
  assert.deepEqual(Object.keys(first).filter((k) => ['name', 'subject', 'sans', 'issuer', 'not_after', 'days_left', 'fingerprint_sha256', 'used_by'].includes(k)).length, 8);
  assert.equal(first.fingerprint_sha256, fingerprint(lb.first.leaf));
  assert.deepEqual(first.used_by, ['api']);
  assert.deepEqual(first.sans, ['DNS:localhost', 'IP Address:127.0.0.1']);
  assert.equal(first.not_after, new Date(new X509Certificate(readFileSync(lb.first.leaf)).validTo).toISOString());
  assert.ok(first.days_left >= 58 && first.days_left <= 60, String(first.days_left));
  assert.deepEqual(byName.get('soon').used_by, []);
  const ca = list.json.find((e: any) => e.used_by.includes('bridge backend_tls.ca'));
  const clientCert = list.json.find((e: any) => e.used_by.includes('bridge backend_tls.cert'));
  assert.ok(ca && clientCert, JSON.stringify(list.json.map((e: any) => [e.name, e.used_by])));
  assert.equal(clientCert.subject, 'CN=carelb-client');

  const metrics = await lb.call('GET', '/metrics', undefined, lb.read);
  assert.equal(metrics.status, 200);
  const sample = (name: string, vs: string) => {
    const line = metrics.text.split('\n').find((l) => l.startsWith(`carelb_certificate_expiry_timestamp_seconds{name="${name}",virtual_service="${vs}"} `));
    assert.ok(line, `no sample for ${name}/${vs} in:\n${metrics.text.split('\n').filter((l) => l.includes('certificate')).join('\n')}`);
    return Number(line.split(' ').pop());
  };
  const notAfter = (pem: string) => Date.parse(new X509Certificate(readFileSync(pem)).validTo) / 1000;
  assert.equal(sample('first', 'api'), notAfter(lb.first.leaf));
  assert.equal(sample('soon', ''), Date.parse(byName.get('soon').not_after) / 1000);
  assert.equal(sample(clientCert.name, 'bridge'), Date.parse(clientCert.not_after) / 1000);
  assert.match(metrics.text, /# TYPE carelb_certificate_expiry_timestamp_seconds gauge/);

  // The expiry watch ran at start: one warning for the certificate with 20 days left, none for the others.
  const warned = lb.logLines.filter((l) => typeof l.msg === 'string' && /^certificate .* (expires in|has expired)/.test(l.msg as string));
  assert.ok(warned.some((l) => l.certificate === 'soon' && l.days_left === 19 && l.level === 40), JSON.stringify(warned));
  assert.ok(!warned.some((l) => l.certificate === 'first'));

  const upload = await lb.call('POST', '/api/certificates', { name: 'x', data: 'AAAA' }, lb.read);
  assert.equal(upload.status, 403, upload.text);
  const assign = await lb.call('POST', '/api/certificates/soon/assign', { virtual_service: 'api' }, lb.read);
  assert.equal(assign.status, 403, assign.text);
  assert.match(assign.json.error, /read token/);
  assert.match(readFileSync(lb.configPath, 'utf8'), /certificate: first/, 'nothing changed');

  // Refusals by the operate token say why and are audited.
  const plain = await lb.call('POST', '/api/certificates/soon/assign', { virtual_service: 'bridge' });
  assert.equal(plain.status, 409);
  assert.match(plain.json.error, /has no tls: section/);
  const missing = await lb.call('POST', '/api/certificates/nope/assign', { virtual_service: 'api' });
  assert.equal(missing.status, 404);
  const garbage = await lb.call('POST', '/api/certificates', { name: 'junk', data: Buffer.from('not a certificate').toString('base64') });
  assert.equal(garbage.status, 400);
  assert.match(garbage.json.error, /neither PEM nor PKCS#12/);
  await eventually(() => lb.audit().filter((l) => String(l.action).startsWith('certificate_') && l.result === 'refused').length >= 3, 10_000, 'audited refusals');

  // PEM in any order with the key apart, then assigned to an SNI name: the entry is appended and served.
  const sni = makeChain(lb.dir, 'sni', ['DNS:fhir.example.org']);
  const pem = Buffer.concat([readFileSync(sni.intermediate), readFileSync(sni.root), readFileSync(sni.leaf)]);
  const pemUpload = await lb.call('POST', '/api/certificates', { name: 'fhir', data: pem.toString('base64'), key: readFileSync(sni.leafKey).toString('base64') });
  assert.equal(pemUpload.status, 201, pemUpload.text);
  assert.equal(pemUpload.json.chain_length, 2);
  const sniAssign = await lb.call('POST', '/api/certificates/fhir/assign', { virtual_service: 'api', hostname: 'fhir.example.org' });
  assert.equal(sniAssign.status, 200, sniAssign.text);
  assert.deepEqual(sniAssign.json.warnings, []);
  const served = await new Promise<string>((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: lb.port, servername: 'fhir.example.org', ca: readFileSync(sni.root) }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.on('error', reject);
  });
  assert.equal(served, fingerprint(sni.leaf));
  const after = await lb.call('GET', '/api/certificates', undefined, lb.read);
  assert.deepEqual(after.json.find((e: any) => e.name === 'fhir').used_by, ['api sni fhir.example.org']);
});

test('the expiry watch repeats its warning at every interval, following the running config', async (t) => {
  const dir = tempDir(t);
  const store = join(dir, 'tls');
  const soon = makeChain(dir, 'soon');
  const leaf = join(dir, 'soon-10d.pem');
  sign(dir, join(dir, 'soon-leaf.csr'), { cert: soon.intermediate, key: soon.intermediateKey }, leaf, leafExt(['DNS:soon.example.org']), 10);
  await importCertificate({ store, name: 'soon', data: readFileSync(leaf), keyPem: readFileSync(soon.leafKey, 'utf8') });
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString('utf8'))), done()) }));
  const config = loadConfigText(stringify({ tls_store: store, virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 's', address: '127.0.0.1:2' }] }] }), 'test');
  assert.ok(config.ok);
  // 50 ms stands in for the 24 h of production.
  const stop = startExpiryWatch(() => config.config, log, 50);
  t.after(stop);
  await eventually(() => lines.length >= 3, 5000, 'three warnings');
  stop();
  assert.ok(lines.every((l) => l.level === 40 && l.certificate === 'soon' && l.days_left === 9 && l.msg === 'certificate soon expires in 9 days'), JSON.stringify(lines));
});
