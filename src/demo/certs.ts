/**
 * Demo certificates: a private CA and a certificate for localhost / 127.0.0.1, generated with
 * openssl at the first demo start into the state directory (never into the repository) and
 * reused afterwards.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface DemoCerts {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

export function demoStateDir(): string {
  return process.env.CARELB_STATE_DIR ?? join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'carelb');
}

export function ensureDemoCerts(dir = join(demoStateDir(), 'demo-tls')): DemoCerts {
  const certs = { dir, ca: join(dir, 'demo-ca.pem'), cert: join(dir, 'localhost.pem'), key: join(dir, 'localhost.key') };
  if (existsSync(certs.cert) && existsSync(certs.key) && existsSync(certs.ca)) return certs;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const caKey = join(dir, 'demo-ca.key');
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=carelb demo CA', '-days', '825', '-keyout', caKey, '-out', certs.ca]);
  const csr = join(dir, 'localhost.csr');
  const ext = join(dir, 'localhost.ext');
  writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', certs.key, '-out', csr]);
  run(['x509', '-req', '-in', csr, '-CA', certs.ca, '-CAkey', caKey, '-CAcreateserial', '-days', '825', '-extfile', ext, '-out', certs.cert]);
  return certs;
}
