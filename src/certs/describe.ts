/**
 * What an operator needs to see of a certificate, in one shape for the CLI printout, the admin
 * API inventory and the metrics: subject, SANs, issuer, expiry, SHA-256 fingerprint. Pure.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { allNames } from '../config/san-coverage';
import { daysLeft, oneLine } from './bundle';

export interface CertificateSummary {
  subject: string;
  sans: string[];
  issuer: string;
  not_before: string;
  not_after: string;
  days_left: number;
  /** As browsers show it: upper-case hex pairs joined by colons. */
  fingerprint_sha256: string;
}

export function describeCertificate(cert: X509Certificate, now: number): CertificateSummary {
  return {
    subject: oneLine(cert.subject),
    sans: allNames(cert.subjectAltName),
    issuer: oneLine(cert.issuer),
    not_before: new Date(cert.validFrom).toISOString(),
    not_after: new Date(cert.validTo).toISOString(),
    days_left: daysLeft(cert, now),
    fingerprint_sha256: cert.fingerprint256,
  };
}

/** "RSA 2048", "EC prime256v1", "ED25519". */
export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (details.modulusLength !== undefined) return `${key.asymmetricKeyType!.toUpperCase()} ${details.modulusLength}`;
  if (details.namedCurve !== undefined) return `EC ${details.namedCurve}`;
  return (key.asymmetricKeyType ?? 'unknown').toUpperCase();
}
