/**
 * Certificates generated at test time with openssl (never committed): a test CA, server and
 * client certificates signed by it, expired ones, keys with passphrases.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pair {
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA in `dir`. */
export function makeCa(dir: string, name = 'carelb-test-ca'): Pair {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-days', '30', '-keyout', pair.key, '-out', pair.cert], dir);
  return pair;
}

export interface CertOptions {
  /** Subject CN. */
  cn: string;
  /** subjectAltName entries, e.g. ['DNS:localhost', 'IP:127.0.0.1']. */
  sans?: string[];
  /** Validity in the past (expired), using `openssl ca` dates. */
  expired?: boolean;
  /** Encrypt the key with this passphrase. */
  passphrase?: string;
}

/** A certificate for `options.cn` signed by `ca`, with its key, in `dir`. */
export function makeCert(dir: string, ca: Pair, name: string, options: CertOptions): Pair {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const sans = options.sans ?? [`DNS:${options.cn}`];
  writeFileSync(ext, `subjectAltName=${sans.join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n`);
  const keyArgs = options.passphrase ? ['-passout', `pass:${options.passphrase}`] : ['-nodes'];
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', ...keyArgs, '-subj', `/CN=${options.cn}`, '-keyout', pair.key, '-out', csr], dir);
  if (options.expired) {
    const caDir = join(dir, `${name}-ca-db`);
    execFileSync('mkdir', ['-p', caDir]);
    writeFileSync(join(caDir, 'index.txt'), '');
    writeFileSync(join(caDir, 'serial'), '1000\n');
    const cnf = join(caDir, 'ca.cnf');
    writeFileSync(
      cnf,
      `[ca]\ndefault_ca=d\n[d]\ndatabase=${caDir}/index.txt\nnew_certs_dir=${caDir}\nserial=${caDir}/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n`,
    );
    openssl(['ca', '-batch', '-notext', '-config', cnf, '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-out', pair.cert, '-extfile', ext, '-startdate', '20200101000000Z', '-enddate', '20200201000000Z'], dir);
  } else {
    openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '30', '-extfile', ext, '-out', pair.cert], dir);
  }
  return pair;
}
