/**
 * Associating a stored certificate with a virtual service by rewriting the config text
 * (issue 14, `POST /api/certificates/{name}/assign`): the default certificate
 * (`tls: { certificate: NAME }`), or the SNI entry of one host name (replaced, or appended).
 * The YAML is edited as a document, so the operator's comments, order and layout survive.
 * A service without `tls:` is refused: assigning a certificate must not turn a plain-HTTP
 * port into an HTTPS one under its clients. Pure: text in, text out.
 */
import { isMap, isSeq, parseDocument, type YAMLMap } from 'yaml';

export class AssignRefused extends Error {
  override name = 'AssignRefused';
}

export interface Assignment {
  certificate: string;
  virtualService: string;
  /** An SNI host name; absent: the service's default certificate. */
  hostname?: string;
}

/** Points one certificate reference at `certificate`, dropping the file keys it replaces. */
function point(map: YAMLMap, certificate: string): void {
  for (const key of ['cert', 'key', 'passphrase_file']) map.delete(key);
  map.set('certificate', certificate);
}

export function assignCertificate(text: string, assignment: Assignment): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new AssignRefused(`the config file is not valid YAML: ${doc.errors[0].message.split('\n')[0]}`);
  const services = doc.get('virtual_services');
  if (!isSeq(services)) throw new AssignRefused('the config has no virtual_services list');
  const vs = services.items.find((item) => isMap(item) && item.get('name') === assignment.virtualService);
  if (!isMap(vs)) throw new AssignRefused(`no virtual service "${assignment.virtualService}"`);
  const tls = vs.get('tls');
  if (!isMap(tls)) throw new AssignRefused(`virtual service "${assignment.virtualService}" has no tls: section; a certificate is assigned to a TLS service only`);
  if (assignment.hostname === undefined) {
    point(tls, assignment.certificate);
    return doc.toString();
  }
  const host = assignment.hostname.toLowerCase();
  let sni = tls.get('sni');
  if (sni === undefined) {
    tls.set('sni', doc.createNode([]));
    sni = tls.get('sni');
  }
  if (!isSeq(sni)) throw new AssignRefused(`virtual service "${assignment.virtualService}": tls.sni is not a list`);
  const entry = sni.items.find((item) => isMap(item) && String(item.get('hostname')).toLowerCase() === host);
  if (isMap(entry)) point(entry, assignment.certificate);
  else sni.add(doc.createNode({ hostname: assignment.hostname, certificate: assignment.certificate }));
  return doc.toString();
}
