/**
 * The certificate inventory (issue 14): every certificate in the store and every certificate
 * file the config names (front-end cert files, SNI certs, backend CA bundles and client
 * certificates for bridging, the admin API's own), each with where it is used. Feeds
 * GET /api/certificates, the expiry metric and the daily expiry warning. Files are parsed
 * again only when their size or mtime changed, so a metrics scrape costs a few stat calls.
 * Primary only; never throws for a file that cannot be read (the config check reports those).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Config } from '../config/schema';
import { pemBlocks } from './bundle';
import { describeCertificate, type CertificateSummary } from './describe';
import { storedNames, storePaths } from './store';

export interface InventoryEntry extends CertificateSummary {
  /** The store name, or the file path for certificates the config names by path (`path#2`: the 2nd of a bundle). */
  name: string;
  source: 'store' | 'file';
  path: string;
  /** Where it is used: `api` (default certificate), `api sni fhir.example.org`, `api backend_tls.ca`, `api/s1 backend_tls.cert`, `admin tls`. */
  used_by: string[];
  /** Virtual services using it (for the metric's label). */
  virtual_services: string[];
}

const cache = new Map<string, { stamp: string; certs: X509Certificate[] }>();

/** The certificates in a PEM file (all of a bundle), or [] when it cannot be read or parsed. */
function certificatesIn(path: string): X509Certificate[] {
  let stamp: string;
  try {
    const stat = statSync(path);
    stamp = `${stat.size}:${stat.mtimeMs}:${stat.ino}`;
  } catch {
    cache.delete(path);
    return [];
  }
  const known = cache.get(path);
  if (known?.stamp === stamp) return known.certs;
  let certs: X509Certificate[] = [];
  try {
    certs = pemBlocks(readFileSync(path, 'utf8')).certificates.map((block) => new X509Certificate(block));
  } catch {
    certs = [];
  }
  cache.set(path, { stamp, certs });
  return certs;
}

export function certificateInventory(config: Config, now = Date.now()): InventoryEntry[] {
  const entries = new Map<string, InventoryEntry>();
  const add = (key: string, name: string, source: InventoryEntry['source'], path: string, cert: X509Certificate): InventoryEntry => {
    let entry = entries.get(key);
    if (!entry) entries.set(key, (entry = { name, source, path, ...describeCertificate(cert, now), used_by: [], virtual_services: [] }));
    return entry;
  };
  const use = (entry: InventoryEntry | undefined, where: string, vs: string | null) => {
    if (!entry) return;
    if (!entry.used_by.includes(where)) entry.used_by.push(where);
    if (vs !== null && !entry.virtual_services.includes(vs)) entry.virtual_services.push(vs);
  };
  for (const name of storedNames(config.tls_store)) {
    const path = storePaths(config.tls_store, name).cert;
    const leaf = certificatesIn(path)[0];
    if (leaf) add(path, name, 'store', path, leaf);
  }
  /** The leaf of a served file (store or not): the first certificate in it. */
  const served = (path: string): InventoryEntry | undefined => {
    const known = entries.get(path);
    if (known) return known;
    const leaf = certificatesIn(path)[0];
    return leaf ? add(path, path, 'file', path, leaf) : undefined;
  };
  /** Every certificate of a bundle (CA files hold several). */
  const bundle = (path: string, where: string, vs: string | null) => {
    certificatesIn(path).forEach((cert, i) => {
      const key = i === 0 ? path : `${path}#${i + 1}`;
      use(entries.get(key) ?? add(key, key, 'file', path, cert), where, vs);
    });
  };
  for (const vs of config.virtual_services) {
    if (vs.tls) {
      use(served(vs.tls.cert), vs.name, vs.name);
      for (const entry of vs.tls.sni) use(served(entry.cert), `${vs.name} sni ${entry.hostname}`, vs.name);
    }
    const backend = (tls: typeof vs.backend_tls, who: string) => {
      if (tls?.ca) bundle(tls.ca, `${who} backend_tls.ca`, vs.name);
      if (tls?.cert) use(served(tls.cert), `${who} backend_tls.cert`, vs.name);
    };
    backend(vs.backend_tls, vs.name);
    for (const server of vs.servers) backend(server.backend_tls, `${vs.name}/${server.name}`);
  }
  if (config.admin?.tls) {
    use(served(config.admin.tls.cert), 'admin tls', null);
    if (config.admin.tls.ca) bundle(config.admin.tls.ca, 'admin tls.ca', null);
  }
  return [...entries.values()];
}
