/**
 * Certificate material for the certificate-store tests (issue 14), made with the system
 * openssl at test time into a temporary directory (never committed): an RSA root → intermediate
 * → leaf chain as a hospital receives it from a CA, PKCS#12 exports (modern and `-legacy`
 * RC2/3DES as Windows writes them), a weak RSA 1024 certificate, and signing of a CSR.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Chain {
  root: string;
  rootKey: string;
  intermediate: string;
  intermediateKey: string;
  leaf: string;
  leafKey: string;
}

const CA_EXT = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n';

/** Signs `csr` with the CA into `out`; `ext` holds the extensions. */
export function sign(dir: string, csr: string, ca: { cert: string; key: string }, out: string, ext: string, days = 90): void {
  const extFile = `${out}.ext`;
  writeFileSync(extFile, ext);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', String(days), '-extfile', extFile, '-out', out], dir);
}

/** A leaf's extensions: the SANs, server auth. */
export function leafExt(sans: string[]): string {
  return `subjectAltName=${sans.join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`;
}

/** RSA 2048 root → intermediate → leaf (`sans`), all in `dir` with `prefix`. */
export function makeChain(dir: string, prefix: string, sans = ['DNS:localhost', 'IP:127.0.0.1']): Chain {
  const p = (name: string) => join(dir, `${prefix}-${name}`);
  const chain: Chain = {
    root: p('root.pem'),
    rootKey: p('root.key'),
    intermediate: p('int.pem'),
    intermediateKey: p('int.key'),
    leaf: p('leaf.pem'),
    leafKey: p('leaf.key'),
  };
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${prefix} test root`, '-days', '90', '-keyout', chain.rootKey, '-out', chain.root, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${prefix} test intermediate`, '-keyout', chain.intermediateKey, '-out', p('int.csr')], dir);
  sign(dir, p('int.csr'), { cert: chain.root, key: chain.rootKey }, chain.intermediate, CA_EXT);
  openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${prefix}.example.org`, '-keyout', chain.leafKey, '-out', p('leaf.csr')], dir);
  sign(dir, p('leaf.csr'), { cert: chain.intermediate, key: chain.intermediateKey }, chain.leaf, leafExt(sans), 60);
  return chain;
}

/** A PKCS#12 of the chain (leaf, key, intermediate and root) with `password`; `legacy`: RC2/3DES as older Windows exports. */
export function exportPfx(dir: string, chain: Chain, out: string, password: string, legacy: boolean): string {
  const extra = join(dir, `${out}.certfile.pem`);
  writeFileSync(extra, readFileSync(chain.intermediate, 'utf8') + readFileSync(chain.root, 'utf8'));
  const path = join(dir, out);
  openssl(['pkcs12', '-export', ...(legacy ? ['-legacy'] : []), '-in', chain.leaf, '-inkey', chain.leafKey, '-certfile', extra, '-passout', `pass:${password}`, '-out', path], dir);
  return path;
}

/** A self-signed RSA certificate of `bits` (1024: weak) with its key. */
export function selfSignedRsa(dir: string, name: string, bits: number): { cert: string; key: string } {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl(['req', '-x509', '-newkey', `rsa:${bits}`, '-nodes', '-subj', `/CN=${name}`, '-days', '30', '-addext', 'subjectAltName=DNS:localhost', '-keyout', pair.key, '-out', pair.cert], dir);
  return pair;
}
