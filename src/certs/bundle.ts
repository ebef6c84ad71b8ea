/**
 * From a heap of PEM blocks (certificates, chain and key in any order, as hospitals receive
 * them) to what carelb serves: the leaf that matches the key, its intermediates in order, no
 * root. Then the policy an import enforces (issue 14): key matches, RSA keys of at least 2048
 * bits, a leaf that is valid now; fewer than 30 days left is a warning. Parsing is node:crypto
 * (X509Certificate, createPrivateKey): only the PEM armour is split here, never ASN.1.
 * Pure apart from the clock passed in.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';

export const MIN_RSA_BITS = 2048;
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export class ImportRefused extends Error {
  override name = 'ImportRefused';
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

export interface PemBlocks {
  certificates: string[];
  keys: string[];
}

/** Splits PEM text into certificate and private-key blocks; anything else (bag attributes, CSRs, comments) is ignored. */
export function pemBlocks(text: string): PemBlocks {
  const out: PemBlocks = { certificates: [], keys: [] };
  for (const match of text.matchAll(BLOCK)) {
    if (match[1] === 'CERTIFICATE') out.certificates.push(`${match[0]}\n`);
    else if (/PRIVATE KEY$/.test(match[1])) out.keys.push(`${match[0]}\n`);
  }
  return out;
}

/** Parses a private key block; an encrypted one needs `password`. */
export function parseKey(pem: string, password: string | undefined): KeyObject {
  try {
    return createPrivateKey({ key: pem, passphrase: password });
  } catch {
    if (/ENCRYPTED/.test(pem)) throw new ImportRefused(password === undefined ? 'the private key is encrypted: give its password (--password-file)' : 'the private key could not be decrypted: wrong password');
    throw new ImportRefused('the private key could not be parsed');
  }
}

function selfSigned(cert: X509Certificate): boolean {
  return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

export interface Bundle {
  leaf: X509Certificate;
  /** Leaf first, then each intermediate up to (not including) the root. */
  chain: X509Certificate[];
  key: KeyObject;
  /** Roots dropped, certificates that are not part of the chain. */
  notes: string[];
  warnings: string[];
}

/**
 * Builds the served chain from `certificates` for `key`: the leaf is the certificate whose
 * public key is the key's; each next link is the certificate that issued the previous one
 * (names and signature both checked). A self-signed issuer is a root: clients have it, and
 * sending it only costs bytes, so it is dropped (RFC 8446 §4.4.2 lets it be omitted).
 */
export function buildChain(certificates: X509Certificate[], key: KeyObject): Omit<Bundle, 'warnings'> {
  const leaf = certificates.find((cert) => !cert.ca && cert.checkPrivateKey(key)) ?? certificates.find((cert) => cert.checkPrivateKey(key));
  if (!leaf) throw new ImportRefused(certificates.length === 0 ? 'no certificate found' : 'the private key does not match any of the certificates');
  const chain = [leaf];
  const notes: string[] = [];
  const used = new Set<X509Certificate>([leaf]);
  for (let current = leaf; !selfSigned(current); ) {
    const issuer = certificates.find((cert) => !used.has(cert) && current.checkIssued(cert) && current.verify(cert.publicKey));
    if (!issuer) {
      notes.push(`issuer ${oneLine(current.issuer)} not in the file: fine when it is a root CA the clients trust, otherwise add the intermediate`);
      break;
    }
    used.add(issuer);
    if (selfSigned(issuer)) {
      notes.push(`root dropped: ${oneLine(issuer.subject)}`);
      break;
    }
    chain.push(issuer);
    current = issuer;
  }
  for (const cert of certificates) {
    if (used.has(cert)) continue;
    // The same certificate twice (chain files often repeat the leaf) is no news.
    if (chain.some((c) => c.fingerprint256 === cert.fingerprint256)) continue;
    notes.push(`${selfSigned(cert) ? 'root' : 'certificate'} not in the chain, left out: ${oneLine(cert.subject)}`);
  }
  return { leaf, chain, key, notes };
}

export function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

/** Days from `now` to the certificate's end, rounded down. */
export function daysLeft(cert: X509Certificate, now: number): number {
  return Math.floor((Date.parse(cert.validTo) - now) / DAY_MS);
}

/** Refuses what must not be served; returns warnings for what should be fixed soon. */
export function checkPolicy(bundle: Omit<Bundle, 'warnings'>, now: number): string[] {
  const { leaf, key, chain } = bundle;
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && bits !== undefined && bits < MIN_RSA_BITS) {
    // NIST SP 800-131A: RSA under 2048 bits has been disallowed since 2014; browsers refuse such certificates.
    throw new ImportRefused(`the RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`);
  }
  if (Date.parse(leaf.validFrom) > now) throw new ImportRefused(`the certificate is not valid yet (from ${leaf.validFrom})`);
  if (Date.parse(leaf.validTo) <= now) throw new ImportRefused(`the certificate expired on ${leaf.validTo}`);
  const warnings: string[] = [];
  const days = daysLeft(leaf, now);
  if (days < EXPIRY_WARNING_DAYS) warnings.push(`the certificate expires in ${days} days (${leaf.validTo}): renew it soon`);
  for (const cert of chain.slice(1)) {
    if (Date.parse(cert.validTo) <= now) warnings.push(`intermediate ${oneLine(cert.subject)} expired on ${cert.validTo}: clients may refuse the chain`);
  }
  return warnings;
}

/** The whole import check of PEM text: blocks → key → chain → policy. `key` is the separate key's PEM, if any. */
export function bundleFromPem(text: string, options: { keyPem?: string; password?: string; now: number }): Bundle {
  const blocks = pemBlocks(text);
  const keyBlocks = options.keyPem === undefined ? blocks.keys : pemBlocks(options.keyPem).keys;
  if (keyBlocks.length === 0) throw new ImportRefused(options.keyPem === undefined ? 'no private key found (give it with --key, or import a CSR key from the store)' : 'the key file holds no private key');
  if (keyBlocks.length > 1) throw new ImportRefused(`${keyBlocks.length} private keys found; give exactly one`);
  const certificates: X509Certificate[] = [];
  for (const block of blocks.certificates) {
    try {
      certificates.push(new X509Certificate(block));
    } catch {
      throw new ImportRefused('a CERTIFICATE block could not be parsed');
    }
  }
  const built = buildChain(certificates, parseKey(keyBlocks[0], options.password));
  return { ...built, warnings: checkPolicy(built, options.now) };
}
