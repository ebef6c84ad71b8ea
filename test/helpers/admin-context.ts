/**
 * carelb with its admin server, for the admin, metrics, dashboard and ctl tests: real backends,
 * carelb in-process started from a config file (so reload and the config hash are real), its
 * own AdminContext (`Running.admin`), and the admin server on a free loopback port. Everything
 * is stopped when the test ends, failed or not.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { stringify } from 'yaml';
import type { AdminServer } from '../../src/admin/server';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { runCarelb, type Running } from '../../src/primary/run';
import { startBackend, type TestBackend } from './backend';
import { eventually, tempDir } from './carelb';
import { freePort } from './ports';

export interface AdminHarness {
  running: Running;
  config: Config;
  configPath: string;
  /** The config document the file was written from. */
  document: Record<string, unknown>;
  dir: string;
  admin: AdminServer;
  adminPort: number;
  /** The token the admin server generated into `config.admin.token_file`. */
  token: string;
  auditPath: string;
  /** Front-end port of the `api` virtual service. */
  port: number;
  backends: TestBackend[];
  /** carelb's own log lines (JSON) since start. */
  logLines: Record<string, unknown>[];
  auditLines(): Record<string, unknown>[];
  /** Waits until the audit log (written asynchronously) holds lines for which `match` is true; returns them. */
  auditWhen(match: (lines: Record<string, unknown>[]) => boolean, what?: string): Promise<Record<string, unknown>[]>;
  /** Calls the admin server; `token: null` sends no Authorization header. */
  call(method: string, path: string, token?: string | null): Promise<AdminReply>;
}

export interface AdminReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

export function adminCall(port: number, method: string, path: string, token: string | null, extraHeaders: http.OutgoingHttpHeaders = {}): Promise<AdminReply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...extraHeaders };
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface HarnessOptions {
  backends?: string[];
  workers?: number;
  metricsPublic?: boolean;
  /** More config for this test, given the temp dir: keys merged into `admin:`, and an `ha:` block. */
  extra?: (dir: string) => { admin?: Record<string, unknown>; ha?: Record<string, unknown> };
  /** More keys of the `api` virtual service (a health_check, say). */
  service?: Record<string, unknown>;
}

export async function startWithAdmin(t: TestContext, options: HarnessOptions = {}): Promise<AdminHarness> {
  const dir = tempDir(t);
  const backends: TestBackend[] = [];
  t.after(() => Promise.all(backends.map((b) => b.close())));
  for (const name of options.backends ?? ['b1', 'b2']) backends.push(await startBackend(name));

  const port = await freePort();
  const adminPort = await freePort();
  const extra = options.extra?.(dir) ?? {};
  const document = {
    workers: options.workers ?? 2,
    pin_workers: false,
    shutdown_grace: '2s',
    virtual_services: [{ name: 'api', listen: `127.0.0.1:${port}`, balance: 'roundrobin', servers: backends.map((b) => ({ name: b.name, address: b.address })), ...options.service }],
    admin: { listen: `127.0.0.1:${adminPort}`, token_file: join(dir, 'secrets', 'admin.token'), metrics_public: options.metricsPublic ?? false, ...extra.admin },
    ...(extra.ha ? { ha: extra.ha } : {}),
  };
  const configPath = join(dir, 'carelb.yaml');
  const text = stringify(document);
  writeFileSync(configPath, text);
  const loaded = loadConfigText(text, configPath);
  if (!loaded.ok) throw new Error(`test config invalid: ${loaded.errors.join('; ')}`);

  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('{')) logLines.push(JSON.parse(line));
      done();
    },
  });
  const log = pino({ level: 'info' }, sink);

  const auditPath = join(dir, 'logs', 'audit.log');
  const auditLines = (): Record<string, unknown>[] => {
    let content = '';
    try {
      content = readFileSync(auditPath, 'utf8');
    } catch {
      return [];
    }
    return content
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line));
  };
  const running = await runCarelb(loaded.config, { configPath, configText: text, log, auditLog: auditPath });
  t.after(() => running.stop());
  const admin = running.adminServer!;
  const token = readFileSync(admin.tokenFile, 'utf8').trim();

  return {
    running,
    config: loaded.config,
    configPath,
    document,
    dir,
    admin,
    adminPort: admin.port,
    token,
    auditPath,
    port,
    backends,
    logLines,
    auditLines,
    auditWhen: async (match, what = 'the audit lines') => {
      await eventually(() => match(auditLines()), 10_000, what);
      return auditLines();
    },
    call: (method, path, token = undefined) => adminCall(admin.port, method, path, token === undefined ? readFileSync(admin.tokenFile, 'utf8').trim() : token),
  };
}
