/**
 * PKCS#12 / PFX files to PEM text (certificates and the unencrypted key), through the system
 * openssl (openssl.ts says why). OpenSSL 3 refuses the RC2-40/3DES encryption Windows exports
 * by default ("unsupported"), so a file it refuses that way is read again with `-legacy`.
 * The PFX is written into a private temporary directory (0700, removed at once) because
 * openssl reads its password from stdin; the PEM comes back on stdout and never touches disk.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openssl, opensslReason } from './openssl';

export class Pkcs12Error extends Error {
  override name = 'Pkcs12Error';
}

/** True for bytes that look like a DER SEQUENCE (what a PFX is), as opposed to PEM text. */
export function looksLikePkcs12(bytes: Buffer): boolean {
  return bytes.length > 4 && bytes[0] === 0x30 && !bytes.subarray(0, 200).toString('latin1').includes('-----BEGIN ');
}

/** Everything in the PFX as PEM text (certificates, then the key); throws Pkcs12Error with the reason. */
export async function pkcs12ToPem(pfx: Buffer, password: string): Promise<{ pem: string; legacy: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-pfx-'));
  try {
    const file = join(dir, 'in.pfx');
    writeFileSync(file, pfx, { mode: 0o600 });
    const args = ['pkcs12', '-in', file, '-passin', 'stdin', '-nodes'];
    // openssl reads one line of stdin as the password; a password holding a newline cannot be given this way.
    if (/[\r\n]/.test(password)) throw new Pkcs12Error('the PFX password contains a line break');
    let result = await openssl(args, `${password}\n`);
    let legacy = false;
    if (result.code !== 0 && /unsupported|RC2|legacy/i.test(result.stderr)) {
      legacy = true;
      result = await openssl([...args, '-legacy'], `${password}\n`);
    }
    if (result.code !== 0) {
      if (/mac verify|invalid password/i.test(result.stderr)) throw new Pkcs12Error('wrong PFX password (MAC verification failed)');
      throw new Pkcs12Error(`not a readable PKCS#12/PFX file: ${opensslReason(result.stderr)}`);
    }
    return { pem: result.stdout.toString('utf8'), legacy };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
