/**
 * Does a certificate cover a host name? RFC 6125 §6.4 as browsers and HTTP clients apply it:
 * DNS names from subjectAltName only (§6.4.4: the CN is not consulted when SANs exist, and
 * current clients ignore it altogether), compared case-insensitively, and a wildcard only as
 * the whole left-most label, matching exactly one label (§6.4.3: `*.example.org` covers
 * `fhir.example.org`, not `example.org` nor `a.fhir.example.org`). Partial-label wildcards
 * (`f*.example.org`) are not honoured: the CA/Browser Forum forbids them and clients differ.
 * Pure functions, used by `carelb check` (through tls-files.ts) and the admin API.
 */
import { isIP } from 'node:net';

/** DNS names of a certificate's subjectAltName text as node:crypto renders it (`DNS:a, IP Address:1.2.3.4`). */
export function dnsNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).replace(/^"|"$/g, '').toLowerCase());
}

/** All SANs as `DNS:x` / `IP Address:y` strings, for inventories and printouts. */
export function allNames(subjectAltName: string | undefined): string[] {
  return subjectAltName ? subjectAltName.split(/,\s*/).filter((entry) => entry.length > 0) : [];
}

/** True when the SAN `pattern` covers `host`. `host` may itself be `*.domain` (an SNI entry): then only the same wildcard covers it. */
export function sanCovers(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p === h) return true;
  if (!p.startsWith('*.') || h.startsWith('*.')) return false;
  const dot = h.indexOf('.');
  // One label exactly: the part after the host's first label must equal the pattern's suffix, and that label is not empty.
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

/** True when any of the certificate's DNS names covers `host`. */
export function covered(names: readonly string[], host: string): boolean {
  return names.some((name) => sanCovers(name, host));
}

/** A listen host that is a name (clients then use it), not an address. */
export function isHostName(host: string): boolean {
  return isIP(host) === 0;
}
