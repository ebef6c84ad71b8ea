/**
 * One certificate import, shared by `carelb cert import` and `POST /api/certificates`
 * (issue 14): the bytes (PEM in any order, or PKCS#12/PFX), an optional separate key and a
 * password in; a validated leaf + intermediates and its key written to the store as NAME.pem
 * and NAME.key. Without a key anywhere, the key `carelb cert csr` left in the store for NAME is
 * used (the CSR workflow). Nothing is written unless every check passes. Primary or CLI only.
 */
import { existsSync } from 'node:fs';
import { bundleFromPem, ImportRefused, pemBlocks } from './bundle';
import { describeCertificate, describeKey, type CertificateSummary } from './describe';
import { looksLikePkcs12, Pkcs12Error, pkcs12ToPem } from './pkcs12';
import { CERT_MODE, ensureStore, KEY_MODE, nameProblem, readStoredKey, storePaths, writeStoreFile } from './store';

export interface ImportInput {
  store: string;
  name: string;
  /** The certificate file's bytes: PEM (any order, key optional) or PKCS#12/PFX. */
  data: Buffer;
  /** A separate private key (PEM). */
  keyPem?: string;
  /** Password of the PFX, or of an encrypted PEM key. */
  password?: string;
  now?: number;
}

export interface ImportResult extends CertificateSummary {
  name: string;
  key_type: string;
  /** Certificates in NAME.pem: the leaf and its intermediates. */
  chain_length: number;
  files: { cert: string; key: string };
  /** True when the PFX needed OpenSSL's legacy provider (RC2/3DES). */
  legacy_pkcs12: boolean;
  /** True when the key came from the store (a CSR made by `carelb cert csr`). */
  paired_stored_key: boolean;
  /** True when NAME.pem existed and was replaced (a renewal). */
  replaced: boolean;
  warnings: string[];
  notes: string[];
}

/** Throws ImportRefused (what is wrong with the input) or another Error (I/O); writes nothing then. */
export async function importCertificate(input: ImportInput): Promise<ImportResult> {
  const now = input.now ?? Date.now();
  const problem = nameProblem(input.name);
  if (problem) throw new ImportRefused(problem);
  let text: string;
  let legacy = false;
  if (looksLikePkcs12(input.data)) {
    try {
      ({ pem: text, legacy } = await pkcs12ToPem(input.data, input.password ?? ''));
    } catch (error) {
      if (error instanceof Pkcs12Error) throw new ImportRefused(error.message);
      throw error;
    }
  } else {
    text = input.data.toString('utf8');
    if (!text.includes('-----BEGIN ')) throw new ImportRefused('the file is neither PEM nor PKCS#12/PFX');
  }
  const paths = storePaths(input.store, input.name);
  let keyPem = input.keyPem;
  let pairedStoredKey = false;
  if (keyPem === undefined && pemBlocks(text).keys.length === 0) {
    const stored = readStoredKey(input.store, input.name);
    if (stored === null) throw new ImportRefused(`no private key in the file, none given (--key), and no ${paths.key} from \`carelb cert csr\``);
    keyPem = stored;
    pairedStoredKey = true;
  }
  let bundle;
  try {
    bundle = bundleFromPem(text, { keyPem, password: input.password, now });
  } catch (error) {
    if (pairedStoredKey && error instanceof ImportRefused && /does not match/.test(error.message)) {
      throw new ImportRefused(`the certificate does not match the stored key ${paths.key} (was it signed from another CSR?)`);
    }
    throw error;
  }
  ensureStore(input.store);
  const replaced = existsSync(paths.cert);
  // Key first, then the chain. A reload that reads the store between the two renames finds a
  // key that does not match the old chain: its file check refuses it and the running config keeps serving.
  writeStoreFile(input.store, paths.key, bundle.key.export({ type: 'pkcs8', format: 'pem' }) as string, KEY_MODE);
  writeStoreFile(input.store, paths.cert, bundle.chain.map((cert) => cert.toString()).join(''), CERT_MODE);
  return {
    name: input.name,
    ...describeCertificate(bundle.leaf, now),
    key_type: describeKey(bundle.key),
    chain_length: bundle.chain.length,
    files: { cert: paths.cert, key: paths.key },
    legacy_pkcs12: legacy,
    paired_stored_key: pairedStoredKey,
    replaced,
    warnings: bundle.warnings,
    notes: bundle.notes,
  };
}
