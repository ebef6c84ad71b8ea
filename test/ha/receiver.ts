/**
 * An HA receiver for config-sync tests: carelb "node b" running in this process with a real admin
 * server started with its config path (as the primary starts it), a real backend, and a client
 * for its admin API that presents the HA sync token. Everything is stopped when the test ends.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { startAdminServer } from '../../src/admin/server';
import { loadConfigText } from '../../src/config/load';
import { runCarelb } from '../../src/primary/run';
import { startBackend } from '../helpers/backend';
import { tempDir } from '../helpers/carelb';
import { makeCa, makeCert } from '../helpers/certs';
import { freePort } from '../helpers/ports';

export interface Receiver {
  dir: string;
  configPath: string;
  adminPort: number;
  /** The receiver's HA sync token (ha.sync_token_file), the one /api/ha/* accepts. */
  token: string;
  tokenFile: string;
  /** The receiver's operate token (admin.token_file). */
  adminTokenFile: string;
  stateDir: string;
  /** The receiver's text for a shared part. */
  textFor(shared: string): string;
  /** The receiver's own admin: block, as written in its file. */
  adminText: string;
  shared(extra?: string, weight?: number): string;
  senderText(shared: string): string;
  call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: any }>;
  hash(): string;
  logs: Record<string, unknown>[];
}

export const haBlock = (name: string, priority: number, peer: string, extra = '') =>
  `ha:\n  node_name: ${name}\n  interface: eth0\n  priority: ${priority}\n  virtual_router_id: 51\n  peer: ${peer}\n${extra}  vips:\n    - { address: 10.0.0.100/24 }\n`;

/** carelb "node b" in this process, its admin server started with configPath. */
export async function startReceiver(t: TestContext, options: { withHa?: boolean; withConfigPath?: boolean; tail?: string } = {}): Promise<Receiver> {
  const dir = tempDir(t);
  const backend = await startBackend('api1');
  t.after(() => backend.close());
  const port = await freePort();
  const stateDir = join(dir, 'ha-state');
  mkdirSync(stateDir);
  const adminTokenFile = join(dir, 'admin.token');
  const tokenFile = join(dir, 'sync.token');
  const shared = (extra = '', weight = 1) =>
    `# shared by the pair\nworkers: 1\npin_workers: false\nshutdown_grace: 1s\nvirtual_services:\n  - name: api\n    listen: 127.0.0.1:${port}\n    servers:\n      - { name: api1, address: ${backend.address}, weight: ${weight} }\n${extra}`;
  const admin = `admin:\n  listen: 127.0.0.1:9\n  token_file: ${adminTokenFile}\n`;
  // `tail`: more top-level text of the receiver's own (e.g. an access_log: block).
  const textFor = (s: string) => `${s}${options.withHa === false ? '' : haBlock('lb2', 100, '10.0.0.2', `  sync_token_file: ${tokenFile}\n  allow_plaintext_sync: true\n`)}${admin}${options.tail ?? ''}`;
  const senderText = (s: string) => `${s}${haBlock('lb1', 150, '10.0.0.3')}${admin}`;
  const configPath = join(dir, 'carelb.yaml');
  const text = textFor(shared());
  writeFileSync(configPath, text, { mode: 0o640 });
  const loaded = loadConfigText(text, configPath);
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
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
  // The primary would start the admin server itself; here it is started with configPath (as the
  // primary will pass it) on a free port.
  const running = await runCarelb({ ...loaded.config, admin: undefined }, { configPath, configText: text, log });
  t.after(() => running.stop());
  const previous = process.env.CARELB_HA_STATE_DIR;
  process.env.CARELB_HA_STATE_DIR = stateDir;
  const server = await startAdminServer(running.admin, loaded.config.admin!, log, { port: 0, configPath: options.withConfigPath === false ? undefined : configPath, auditLog: join(dir, 'audit.log') });
  if (previous === undefined) delete process.env.CARELB_HA_STATE_DIR;
  else process.env.CARELB_HA_STATE_DIR = previous;
  t.after(() => server.close());
  const token = options.withHa === false ? '' : readFileSync(tokenFile, 'utf8').trim();
  const call = (method: string, path: string, body?: unknown, as = token) =>
    new Promise<{ status: number; json: any }>((resolve, reject) => {
      const payload = body === undefined ? '' : JSON.stringify(body);
      const req = http.request({ host: '127.0.0.1', port: server.port, method, path, agent: false, headers: { authorization: `Bearer ${as}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
      });
      req.on('error', reject);
      req.end(payload);
    });
  return { dir, configPath, adminText: admin, adminPort: server.port, token, tokenFile, adminTokenFile, stateDir, textFor, shared, senderText, call, hash: () => running.admin.configHash(), logs };
}

export function pem(dir: string, name: string, cn = 'api.example.test'): { cert: string; key: string; certText: string; keyText: string } {
  mkdirSync(dir, { recursive: true });
  const pair = makeCert(dir, makeCa(dir, `${name}-ca`), name, { cn });
  return { ...pair, certText: readFileSync(pair.cert, 'utf8'), keyText: readFileSync(pair.key, 'utf8') };
}
export const b64 = (text: string) => Buffer.from(text).toString('base64');

