/**
 * Reference backends: the API servers behind the proxy under test. Started once per run and
 * shared by every proxy, pinned to the load generator's CPU so the proxy's CPU is its own.
 * Every proxy balances over two of them (BACKEND_COUNT), so balancing does real work.
 *   nginx:   nginx `return 200` with the same body, plain or TLS (the default: C, cheap, so
 *            the load CPU has room for wrk)
 *   builtin: bench/backend-server.ts (uWebSockets.js), plain or TLS
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findBinary, missingReason } from './bin';
import { BODY } from './body';
import type { BackendKind } from './cli-args';
import type { BenchCerts } from './certs';
import { rememberTree, spawnTracked, stopTracked, type Tracked } from './children';
import { nginxHead, nginxHttpCommon } from './nginx-conf';
import { firstError, freePort, waitForPort } from './net-util';


export interface Backend {
  kind: BackendKind;
  tls: boolean;
  port: number;
  child: Tracked;
  stop(): Promise<void>;
}

/** Servers behind every proxy (the reference setup: two nginx backends). */
export const BACKEND_COUNT = 2;

export interface BackendOptions {
  kind: BackendKind;
  /** Tells instances apart in labels and directories. */
  index: number;
  /** Present → the backend speaks TLS with this certificate (bridge scenario). */
  certs?: BenchCerts;
  cpus: string | undefined;
  /** A private directory this backend may write into. */
  workDir: string;
}

function startBuiltin(o: BackendOptions): Promise<Backend> {
  const script = path.join(__dirname, 'backend-server.js');
  const args = [script, '--port', '0'];
  if (o.certs) args.push('--cert', o.certs.cert, '--key', o.certs.key);
  return new Promise((resolve, reject) => {
    let settled = false;
    const child = spawnTracked(`builtin backend ${o.index}${o.certs ? ' (tls)' : ''}`, process.execPath, args, {
      cpus: o.cpus,
      onStdoutLine: (line) => {
        if (settled) return;
        try {
          const msg = JSON.parse(line) as { msg?: string; port?: number };
          if (msg.msg === 'listening' && typeof msg.port === 'number') {
            settled = true;
            resolve({ kind: 'builtin', tls: !!o.certs, port: msg.port, child, stop: () => stopTracked(child) });
          }
        } catch {
          // Not a JSON line; ignore.
        }
      },
    });
    void child.exited.then(() => {
      if (!settled) {
        settled = true;
        reject(new Error(firstError(child, 'exited before listening')));
      }
    });
    setTimeout(() => {
      if (!settled) {
        settled = true;
        void stopTracked(child);
        reject(new Error('builtin backend did not start within 10 s'));
      }
    }, 10_000).unref();
  });
}

async function startNginx(o: BackendOptions): Promise<Backend> {
  const bin = findBinary('nginx');
  if (!bin) throw new Error(`--backend nginx: ${missingReason('nginx')}`);
  const port = await freePort();
  const dir = path.join(o.workDir, `nginx-backend-${o.certs ? 'tls' : 'plain'}-${o.index}`);
  fs.mkdirSync(dir, { recursive: true });
  const tls = o.certs
    ? `    ssl_certificate ${o.certs.cert};
    ssl_certificate_key ${o.certs.key};
    ssl_protocols TLSv1.2 TLSv1.3;
`
    : '';
  // BODY contains no single quotes, so it fits an nginx single-quoted string as is.
  const conf = `${nginxHead({ dir, workers: 1 })}http {
${nginxHttpCommon({ dir, workers: 1 })}  server {
    listen 127.0.0.1:${port}${o.certs ? ' ssl' : ''} reuseport;
${tls}    location / {
      default_type application/json;
      return 200 '${BODY}';
    }
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confPath, conf);
  const child = spawnTracked(`nginx backend ${o.index}${o.certs ? ' (tls)' : ''}`, bin, ['-p', dir, '-e', 'stderr', '-c', confPath], { cpus: o.cpus });
  await waitForPort(port, child);
  rememberTree(child);
  return { kind: 'nginx', tls: !!o.certs, port, child, stop: () => stopTracked(child) };
}

export function startBackend(o: BackendOptions): Promise<Backend> {
  return o.kind === 'builtin' ? startBuiltin(o) : startNginx(o);
}

/** BACKEND_COUNT backends of one kind, plain or TLS. */
export async function startBackends(o: Omit<BackendOptions, 'index'>): Promise<Backend[]> {
  const out: Backend[] = [];
  for (let i = 1; i <= BACKEND_COUNT; i++) out.push(await startBackend({ ...o, index: i }));
  return out;
}
