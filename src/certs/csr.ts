/**
 * `carelb cert csr` (issue 14): a new key (P-256, RSA 2048 or RSA 3072) and a certificate
 * signing request for a CA, as appliances make them. The key goes straight into the store as
 * NAME.key (0600) and never leaves the host; NAME.csr is what the operator sends to the CA.
 * `carelb cert import` of the signed certificate later pairs it with NAME.key. openssl makes
 * both (openssl.ts says why the system openssl). An existing NAME.key or NAME.pem is never
 * overwritten: it may be serving, and a new key would not match its certificate.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImportRefused } from './bundle';
import { openssl, opensslReason } from './openssl';
import { CERT_MODE, ensureStore, KEY_MODE, nameProblem, storePaths, writeStoreFile } from './store';

export const KEY_TYPES = ['p256', 'rsa2048', 'rsa3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

const KEY_ARGS: Record<KeyType, string[]> = {
  p256: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  rsa2048: ['-newkey', 'rsa:2048'],
  rsa3072: ['-newkey', 'rsa:3072'],
};

const DNS_NAME = /^(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export interface CsrInput {
  store: string;
  name: string;
  cn: string;
  /** DNS names (or IP addresses) for subjectAltName; the CN is added when missing (clients only read SANs). */
  sans: string[];
  keyType: KeyType;
}

export interface CsrResult {
  key: string;
  csr: string;
  subject: string;
  sans: string[];
}

/** A subject with one CN, escaped for openssl's `/CN=...` form. */
function subjectOf(cn: string): string {
  if (!/^[\x20-\x7e]{1,64}$/.test(cn)) throw new ImportRefused('--cn must be 1-64 printable ASCII characters');
  return `/CN=${cn.replace(/[\\/+=]/g, (c) => `\\${c}`)}`;
}

export async function makeCsr(input: CsrInput): Promise<CsrResult> {
  const problem = nameProblem(input.name);
  if (problem) throw new ImportRefused(problem);
  const names = [...new Set([...(DNS_NAME.test(input.cn) ? [input.cn.toLowerCase()] : []), ...input.sans.map((san) => san.toLowerCase())])];
  if (names.length === 0) throw new ImportRefused('give at least one --san DNS name (clients check the SANs, not the CN)');
  const sans = names.map((san) => {
    if (isIP(san)) return `IP:${san}`;
    if (!DNS_NAME.test(san)) throw new ImportRefused(`--san "${san}" is not a DNS name or IP address`);
    return `DNS:${san}`;
  });
  const paths = storePaths(input.store, input.name);
  for (const existing of [paths.key, paths.cert]) {
    if (existsSync(existing)) throw new ImportRefused(`${existing} exists: choose a new name (e.g. ${input.name}-2) and assign it when signed`);
  }
  ensureStore(input.store);
  // openssl writes the key to a private temporary directory; carelb then moves it into the store with the store's rules.
  const dir = mkdtempSync(join(tmpdir(), 'carelb-csr-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const csrFile = join(dir, 'req.csr');
    writeFileSync(keyFile, '', { mode: 0o600 });
    const result = await openssl([
      'req', '-new', ...KEY_ARGS[input.keyType], '-nodes', '-sha256',
      '-subj', subjectOf(input.cn), '-addext', `subjectAltName=${sans.join(',')}`,
      '-keyout', keyFile, '-out', csrFile,
    ]);
    if (result.code !== 0) throw new Error(`openssl req failed: ${opensslReason(result.stderr)}`);
    writeStoreFile(input.store, paths.key, readFileSync(keyFile), KEY_MODE);
    writeStoreFile(input.store, paths.csr, readFileSync(csrFile), CERT_MODE);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { key: paths.key, csr: paths.csr, subject: `CN=${input.cn}`, sans };
}
