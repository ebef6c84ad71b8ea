/**
 * Checks the certificate, key and CA files a config refers to, before anything uses them:
 * readable, PEM, parseable, key matching its certificate, passphrase right. Expired or
 * soon-expiring certificates are warnings (a hospital must not lose its API because a
 * certificate ran out overnight, nor find out at 3 a.m.). Never puts key material or
 * passphrases in a message. Also digests the files' contents, so a reload notices a file
 * rotated in place (same path, new bytes). Used through config-files.ts by `check`, `start`
 * and reload, in the primary.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { BackendTlsConfig, Config, ResolvedCertificate } from './schema';
import { readNamedFile, type FileRead } from './file-read';
import { covered, dnsNames, isHostName } from './san-coverage';

const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export interface TlsFileReport {
  errors: string[];
  warnings: string[];
  /** Per virtual service with `tls`: a digest of its certificate files, to notice changes on reload. */
  fingerprints: Record<string, string>;
  /**
   * Per virtual service (config order), per server: a digest of the server's effective
   * backend_tls (settings and the bytes of its CA, certificate and key files), or undefined
   * without bridging. A changed digest on reload means new pooled connections (issue 11, point 7).
   */
  backendFingerprints: (string | undefined)[][];
}

class Checker {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];

  /** Files read so far, by path: each file is read once per check. */
  private readonly files = new Map<string, FileRead>();

  constructor(private readonly now: number) {}

  /** A file's bytes; reports the reason under `path` and returns null when it cannot be read. */
  read(path: string, file: string, label: string): Buffer | null {
    let read = this.files.get(file);
    if (!read) this.files.set(file, (read = readNamedFile(file, label)));
    if (read.ok) return read.bytes;
    this.errors.push(`${path}: ${read.reason}`);
    return null;
  }

  /** Bytes of a file already read successfully, else an empty buffer (its error is already reported). */
  bytesOf(file: string | undefined): Buffer {
    const read = file === undefined ? undefined : this.files.get(file);
    return read?.ok ? read.bytes : Buffer.alloc(0);
  }

  /** Reads a PEM file; reports and returns null when it cannot be used. */
  pem(path: string, file: string, label: string): string | null {
    const bytes = this.read(path, file, label);
    if (bytes === null) return null;
    const text = bytes.toString('utf8');
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
    const bytes = this.read(path, file, 'passphrase file');
    return bytes === null ? null : bytes.toString('utf8').replace(/\r?\n$/, '');
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
    return this.usablePair(path, { cert: certFile, key: keyFile, passphrase_file: passphraseFile })?.digest ?? null;
  }

  /**
   * A front-end certificate from files or the store; its digest and parsed leaf when usable.
   * A store name is reported under `<path>.certificate` with the name and the store's file,
   * so the operator sees which reference is bad and why (issue 14).
   */
  usablePair(path: string, entry: ResolvedCertificate): { digest: string; cert: X509Certificate } | null {
    const named = entry.certificate;
    const certPath = named === undefined ? `${path}.cert` : `${path}.certificate`;
    const keyPath = named === undefined ? `${path}.key` : `${path}.certificate`;
    const before = this.errors.length;
    const passphrase = this.passphrase(`${path}.passphrase_file`, entry.passphrase_file);
    const cert = this.certificate(certPath, entry.cert);
    // A stored name whose certificate is missing is one error, not one per file.
    const key = passphrase === null || (named !== undefined && cert === null) ? null : this.key(keyPath, entry.key, passphrase);
    if (named !== undefined) {
      // Say it is the store name that is wrong, then the file-level reason.
      for (let i = before; i < this.errors.length; i++) this.errors[i] = this.errors[i].replace(`${certPath}: `, `${certPath}: stored certificate "${named}" cannot be used: `);
    }
    if (!cert || !key) return null;
    if (!cert.checkPrivateKey(key)) {
      this.errors.push(named === undefined ? `${keyPath}: key ${entry.key} does not match the certificate ${entry.cert}` : `${keyPath}: stored certificate "${named}": ${entry.key} does not match ${entry.cert}`);
      return null;
    }
    const digest = createHash('sha256')
      .update(this.bytesOf(entry.cert))
      .update(this.bytesOf(entry.key))
      .update(passphrase ?? '')
      .digest('hex');
    return { digest, cert };
  }

  /** Warns when `host` (a name clients use for this service) is not among the certificate's SANs. */
  coverage(path: string, cert: X509Certificate | undefined, host: string, why: string): void {
    if (!cert || covered(dnsNames(cert.subjectAltName), host)) return;
    this.warnings.push(`${path}: ${why} "${host}" is not covered by the certificate's names (${dnsNames(cert.subjectAltName).join(', ') || 'no DNS names'}): clients will refuse it`);
  }

  /** Checks a backend_tls section; returns the digest of its settings and its files' bytes. */
  backend(path: string, tls: BackendTlsConfig): string {
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
    const digest = createHash('sha256').update(JSON.stringify(tls));
    for (const file of [tls.ca, tls.cert, tls.key]) digest.update('\0').update(this.bytesOf(file));
    return digest.digest('hex');
  }
}

export function checkTlsFiles(config: Config, now = Date.now()): TlsFileReport {
  const checker = new Checker(now);
  const fingerprints: Record<string, string> = {};
  const backendFingerprints: (string | undefined)[][] = [];
  config.virtual_services.forEach((vs, v) => {
    const base = `virtual_services[${v}]`;
    if (vs.tls) {
      const digest = createHash('sha256');
      const main = checker.usablePair(`${base}.tls`, vs.tls);
      digest.update(main?.digest ?? '');
      if (isHostName(vs.listen.host)) checker.coverage(`${base}.tls`, main?.cert, vs.listen.host, 'listen host');
      vs.tls.sni.forEach((entry, i) => {
        const sni = checker.usablePair(`${base}.tls.sni[${i}]`, entry);
        // The SNI names are part of what the listener serves: a renamed entry needs a new listener too.
        digest.update(sni?.digest ?? '').update(`\0${entry.hostname}\0`);
        checker.coverage(`${base}.tls.sni[${i}].hostname`, sni?.cert, entry.hostname, 'SNI hostname');
      });
      fingerprints[vs.name] = digest.update(vs.tls.ciphers).digest('hex');
      // A plain-HTTP service redirecting here by name sends its clients to this certificate.
      config.virtual_services.forEach((other, o) => {
        if (other.redirect_https && other.https_port === vs.listen.port && isHostName(other.listen.host)) {
          checker.coverage(`virtual_services[${o}].redirect_https`, main?.cert, other.listen.host, `redirect target host (served by ${vs.name})`);
        }
      });
    }
    let shared: string | undefined;
    if (vs.backend_tls) {
      shared = checker.backend(`${base}.backend_tls`, vs.backend_tls);
      if (!vs.backend_tls.verify) checker.warnings.push(`${base}.backend_tls.verify: false — server certificates are NOT verified`);
    }
    backendFingerprints[v] = vs.servers.map((server, s) => {
      if (!server.backend_tls) return shared;
      if (!server.backend_tls.verify) checker.warnings.push(`${base}.servers[${s}].backend_tls.verify: false — server certificates are NOT verified`);
      return checker.backend(`${base}.servers[${s}].backend_tls`, server.backend_tls);
    });
  });
  if (config.admin?.tls) {
    checker.pair('admin.tls', config.admin.tls.cert, config.admin.tls.key);
    if (config.admin.tls.ca) checker.backend('admin.tls', { ca: config.admin.tls.ca, verify: true });
  }
  return { errors: checker.errors, warnings: checker.warnings, fingerprints, backendFingerprints };
}
