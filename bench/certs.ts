/**
 * Certificates for the TLS scenarios, generated with openssl into a temporary directory at
 * every run (never committed): a throw-away CA and a server certificate for localhost and
 * 127.0.0.1 signed by it, so proxies can verify the TLS backend the way a real bridging
 * deployment does (backend_tls.ca + servername).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CertKind } from './cli-args';

export interface BenchCerts {
  dir: string;
  caCert: string;
  cert: string;
  key: string;
  /** Certificate then key in one file, the form HAProxy's `crt` wants. */
  combined: string;
  kind: CertKind;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function keyArgs(kind: CertKind): string[] {
  return kind === 'p256'
    ? ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
    : ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'];
}

export function generateCerts(dir: string, kind: CertKind): BenchCerts {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  openssl(['genpkey', ...keyArgs(kind), '-out', 'ca.key'], dir);
  openssl(
    ['req', '-x509', '-new', '-key', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=carelb bench CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  openssl(['genpkey', ...keyArgs(kind), '-out', 'key.pem'], dir);
  openssl(['req', '-new', '-key', 'key.pem', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-out', 'cert.pem', '-extfile', 'server.ext'],
    dir,
  );
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const combined = path.join(dir, 'combined.pem');
  fs.writeFileSync(combined, fs.readFileSync(cert, 'utf8') + fs.readFileSync(key, 'utf8'), { mode: 0o600 });
  return { dir, caCert: path.join(dir, 'ca.pem'), cert, key, combined, kind };
}
