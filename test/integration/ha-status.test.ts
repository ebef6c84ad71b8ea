/**
 * The HA pair in /api/status and on the dashboard (headless Chromium), for a node whose peer is unreachable
 * (no keepalived here: the pair test in test/ha covers the real thing).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load';
import { createLogger } from '../../src/observe/log';
import { runCarelb } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { tempDir, until } from '../helpers/carelb';
import { freePort } from '../helpers/ports';
import { CHROMIUM, openBrowser } from '../helpers/browser';


function get(port: number, path: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

test('/api/status shows this node and its peer, and the dashboard has a place for the pair', async (t) => {
  const dir = tempDir(t);
  const api = await startBackend('api');
  t.after(() => api.close());
  const [port, adminPort, peerAdmin] = [await freePort(), await freePort(), await freePort()];
  const document = {
    workers: 1,
    pin_workers: false,
    admin: { listen: `127.0.0.1:${adminPort}`, token_file: join(dir, 'admin.token') },
    ha: { node_name: 'lb1', interface: 'lo', virtual_router_id: 51, peer: '127.0.0.1', peer_admin: `127.0.0.1:${peerAdmin}`, peer_token_file: join(dir, 'peer.token'), vips: [{ address: '127.0.0.250/32' }] },
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, servers: [{ name: 'api', address: api.address }] }],
  };
  const path = join(dir, 'carelb.yaml');
  const text = stringify(document);
  writeFileSync(path, text);
  writeFileSync(join(dir, 'peer.token'), 'x'.repeat(64));
  const loaded = loadConfigText(text, path);
  assert.ok(loaded.ok);
  const running = await runCarelb(loaded.config, { configPath: path, configText: text, log: createLogger('warn'), auditLog: join(dir, 'audit.log') });
  t.after(() => running.stop());
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  type Status = { ha: { self: { node: string; config_hash: string }; peer: { error?: string } | null } };
  // One request at a time, each awaited: the condition is judged on the answer just received.
  const status = await until(async () => {
    const reply = await get(adminPort, '/api/status', token);
    assert.equal(reply.status, 200, reply.body);
    const body = JSON.parse(reply.body) as Status;
    return body.ha.peer !== null ? body : undefined;
  }, 10_000, 'the peer probe to finish');
  assert.equal(status.ha.self.node, 'lb1');
  assert.equal(status.ha.self.config_hash, running.admin.configHash());
  // Nothing listens on peer_admin: the probe's own error, not an empty or generic one.
  assert.deepEqual(status.ha.peer, { error: `cannot reach the peer's admin API at 127.0.0.1:${peerAdmin}: ECONNREFUSED` }, 'an unreachable peer is reported, not hidden');
  if (!existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is absent (apt-get install -y chromium): the page itself is not checked`);
  // The profile is removed after the browser closes (helpers/browser.ts), not with `dir`.
  const { page } = await openBrowser(t);
  page.setDefaultTimeout(15_000);
  await page.goto(`http://127.0.0.1:${adminPort}/`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Show the dashboard' }).click();
  const pair = page.locator('#ha');
  await pair.waitFor({ state: 'visible' });
  await page.locator('#ha', { hasText: 'peer' }).waitFor();
  const line = await pair.innerText();
  assert.match(line, /HA pair · this node lb1: VRRP unknown, holds no VIP/);
  assert.match(line, /peer: unreachable/);
  assert.match(line, /configs differ or unknown/);
});
