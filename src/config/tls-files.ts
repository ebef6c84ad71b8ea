/**
 * Checks the certificate, key and CA files a config refers to, before anything uses them:
 * readable, PEM, parseable, key matching its certificate, passphrase right. Expired or
 * soon-expiring certificates are warnings (a hospital must not lose its API because a
 * certificate ran out overnight, nor find out at 3 a.m.). Never puts key material or
 * passphrases in a message. Used by `check`, `start` and reload, in the primary.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { BackendTlsConfig, Config } from './schema';

const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export interface TlsFileReport {
  errors: string[];
  warnings: string[];
  /** Per virtual service with `tls`: a digest of its certificate files, to notice changes on reload. */
  fingerprints: Record<string, string>;
}

class Checker {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];

  constructor(private readonly now: number) {}

  /** Reads a PEM file; reports and returns null when it cannot be used. */
  pem(path: string, file: string, label: string): string | null {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      this.errors.push(`${path}: cannot read ${label} ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      return null;
    }
    if (!text.includes('-----BEGIN ')) {
      this.errors.push(`${path}: ${file} is not a PEM file`);
      return null;
    }
    return text;
  }

  certificate(path: string, file: string): X509Certificate | null {
    const text = this.pem(path, file, 'certificate');
    if (text === null) return null;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(text);
    } catch {
      this.errors.push(`${path}: ${file} holds no valid certificate`);
      return null;
    }
    const validTo = Date.parse(cert.validTo);
    const subject = cert.subject.replace(/\n/g, ', ');
    if (validTo < this.now) this.warnings.push(`${path}: certificate ${file} (${subject}) expired on ${cert.validTo}`);
    else if (validTo - this.now < EXPIRY_WARNING_DAYS * DAY_MS) {
      this.warnings.push(`${path}: certificate ${file} (${subject}) expires in ${Math.floor((validTo - this.now) / DAY_MS)} days (${cert.validTo})`);
    }
    return cert;
  }

  passphrase(path: string, file: string | undefined): string | undefined | null {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      this.errors.push(`${path}: cannot read passphrase file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      return null;
    }
  }

  key(path: string, file: string, passphrase: string | undefined): KeyObject | null {
    const text = this.pem(path, file, 'key');
    if (text === null) return null;
    try {
      return createPrivateKey({ key: text, passphrase });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      const encrypted = /ENCRYPTED/.test(text);
      if (encrypted && passphrase === undefined) this.errors.push(`${path}: key ${file} is encrypted: set passphrase_file`);
      else if (encrypted) this.errors.push(`${path}: key ${file} could not be decrypted: wrong passphrase`);
      else this.errors.push(`${path}: ${file} holds no valid private key${code ? ` (${code})` : ''}`);
      return null;
    }
  }

  /** A certificate with its key; returns the digest of both files' contents when usable. */
  pair(path: string, certFile: string, keyFile: string, passphraseFile?: string): string | null {
    const passphrase = this.passphrase(`${path}.passphrase_file`, passphraseFile);
    const cert = this.certificate(`${path}.cert`, certFile);
    const key = passphrase === null ? null : this.key(`${path}.key`, keyFile, passphrase);
    if (!cert || !key) return null;
    if (!cert.checkPrivateKey(key)) {
      this.errors.push(`${path}.key: key ${keyFile} does not match the certificate ${certFile}`);
      return null;
    }
    return createHash('sha256')
      .update(readFileSync(certFile))
      .update(readFileSync(keyFile))
      .update(passphrase ?? '')
      .digest('hex');
  }

  backend(path: string, tls: BackendTlsConfig): void {
    if (tls.ca) {
      const text = this.pem(`${path}.ca`, tls.ca, 'CA bundle');
      if (text !== null) {
        try {
          new X509Certificate(text);
        } catch {
          this.errors.push(`${path}.ca: ${tls.ca} holds no valid certificate`);
        }
      }
    }
    if (tls.cert && tls.key) this.pair(path, tls.cert, tls.key);
  }
}

export function checkTlsFiles(config: Config, now = Date.now()): TlsFileReport {
  const checker = new Checker(now);
  const fingerprints: Record<string, string> = {};
  config.virtual_services.forEach((vs, v) => {
    const base = `virtual_services[${v}]`;
    if (vs.tls) {
      const digest = createHash('sha256');
      digest.update(checker.pair(`${base}.tls`, vs.tls.cert, vs.tls.key, vs.tls.passphrase_file) ?? '');
      vs.tls.sni.forEach((entry, i) => digest.update(checker.pair(`${base}.tls.sni[${i}]`, entry.cert, entry.key, entry.passphrase_file) ?? ''));
      fingerprints[vs.name] = digest.update(vs.tls.ciphers).digest('hex');
    }
    if (vs.backend_tls) {
      checker.backend(`${base}.backend_tls`, vs.backend_tls);
      if (!vs.backend_tls.verify) checker.warnings.push(`${base}.backend_tls.verify: false — server certificates are NOT verified`);
    }
    vs.servers.forEach((server, s) => {
      if (!server.backend_tls) return;
      checker.backend(`${base}.servers[${s}].backend_tls`, server.backend_tls);
      if (!server.backend_tls.verify) checker.warnings.push(`${base}.servers[${s}].backend_tls.verify: false — server certificates are NOT verified`);
    });
  });
  if (config.admin?.tls) {
    checker.pair('admin.tls', config.admin.tls.cert, config.admin.tls.key);
    if (config.admin.tls.ca) checker.backend('admin.tls', { ca: config.admin.tls.ca, verify: true });
  }
  return { errors: checker.errors, warnings: checker.warnings, fingerprints };
}
