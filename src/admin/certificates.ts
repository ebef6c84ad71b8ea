/**
 * The certificate endpoints of the admin API (issue 14):
 *
 *   GET  /api/certificates                  read: the inventory (certs/inventory.ts)
 *   POST /api/certificates                  operate: upload { name, data, key?, password? } —
 *                                           data is the base64 of a PFX or PEM file, key the
 *                                           base64 of a separate PEM key; the same checks as
 *                                           `carelb cert import` (certs/importer.ts)
 *   POST /api/certificates/{name}/assign    operate: { virtual_service, hostname? } rewrites
 *                                           the config file (certs/assign.ts) and reloads it
 *                                           through the one reload path (AdminContext.reload)
 *
 * An assignment is validated (schema and every file) before the file is written, so a bad
 * one changes nothing; assignments run one at a time. The reload that applies it opens a new
 * listener for the new certificate and lets the old one finish its requests (issue 11), so
 * running traffic does not fail. Every upload and assignment is audited, refused ones too.
 * Primary only.
 */
import { readFileSync, statSync, chownSync } from 'node:fs';
import type * as http from 'node:http';
import { checkConfigFiles } from '../config/config-files';
import { loadConfigText } from '../config/load';
import { storePaths } from '../certs/store';
import { assignCertificate, AssignRefused } from '../certs/assign';
import { ImportRefused } from '../certs/bundle';
import { importCertificate } from '../certs/importer';
import { certificateInventory } from '../certs/inventory';
import { writeFileAtomic } from '../ha/atomic-write';
import type { Logger } from '../observe/log';
import type { AuditLog } from './audit';
import type { AdminContext } from './context';
import { decodeSegment, readBody, sendJson } from './http-io';

/** An upload carries a PFX or a PEM chain in base64: a few kB; 1 MiB leaves room for long chains. */
const MAX_UPLOAD = 1024 * 1024;
const MAX_ASSIGN = 4 * 1024;
const HOSTNAME = /^(\*\.)?[A-Za-z0-9.-]+$/;
const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/;

export interface CertificateHandlerOptions {
  ctx: AdminContext;
  configPath?: string;
  audit: AuditLog;
  log: Logger;
}

export type CertificateHandler = (req: http.IncomingMessage, res: http.ServerResponse, path: string, source: string) => Promise<void>;

/** The JSON object of a request body, or a reason it is not one. */
function parseObject(body: Buffer): Record<string, unknown> | string {
  try {
    const value = JSON.parse(body.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : 'the body must be a JSON object';
  } catch {
    return 'the body is not valid JSON';
  }
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined | null {
  const value = body[key];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : null;
}

export function createCertificateHandler(options: CertificateHandlerOptions): CertificateHandler {
  const { ctx, audit, log } = options;
  let assigning: Promise<unknown> = Promise.resolve();

  async function upload(req: http.IncomingMessage, res: http.ServerResponse, source: string): Promise<void> {
    const raw = await readBody(req, res, MAX_UPLOAD);
    if (raw === null) return;
    const body = parseObject(raw);
    const refuse = (name: string, error: string) => {
      audit.write({ source, action: 'certificate_upload', target: name, result: 'refused', reason: error });
      sendJson(res, 400, { ok: false, error });
    };
    if (typeof body === 'string') return refuse('', body);
    const name = optionalString(body, 'name');
    const data = optionalString(body, 'data');
    const key = optionalString(body, 'key');
    const password = optionalString(body, 'password');
    if (typeof name !== 'string') return refuse('', 'name (a string) is required');
    if (typeof data !== 'string' || !BASE64.test(data)) return refuse(name, 'data (the base64 of a PFX or PEM file) is required');
    if (key === null || (key !== undefined && !BASE64.test(key))) return refuse(name, 'key must be the base64 of a PEM private key');
    if (password === null) return refuse(name, 'password must be a string');
    try {
      const result = await importCertificate({
        store: ctx.config().tls_store,
        name,
        data: Buffer.from(data, 'base64'),
        keyPem: key === undefined ? undefined : Buffer.from(key, 'base64').toString('utf8'),
        password,
      });
      audit.write({ source, action: 'certificate_upload', target: name, result: 'ok', fingerprint_sha256: result.fingerprint_sha256, not_after: result.not_after, replaced: result.replaced });
      log.info({ certificate: name, fingerprint_sha256: result.fingerprint_sha256, not_after: result.not_after, source }, 'certificate uploaded');
      sendJson(res, 201, { ok: true, ...result });
    } catch (error) {
      if (error instanceof ImportRefused) return refuse(name, error.message);
      throw error;
    }
  }

  async function assignOnce(name: string, body: Record<string, unknown>, source: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const vs = optionalString(body, 'virtual_service');
    const hostname = optionalString(body, 'hostname');
    if (typeof vs !== 'string') return { status: 400, body: { ok: false, error: 'virtual_service (a string) is required' } };
    if (hostname === null || (hostname !== undefined && !HOSTNAME.test(hostname))) return { status: 400, body: { ok: false, error: 'hostname must be a DNS name or *.domain' } };
    const paths = storePaths(ctx.config().tls_store, name);
    try {
      statSync(paths.cert);
      statSync(paths.key);
    } catch {
      return { status: 404, body: { ok: false, error: `no certificate "${name}" in the store ${ctx.config().tls_store}` } };
    }
    const configPath = options.configPath;
    if (!configPath) return { status: 409, body: { ok: false, error: 'this instance runs a built-in config (no -c FILE): there is no config file to change' } };
    const before = readFileSync(configPath, 'utf8');
    let after: string;
    try {
      after = assignCertificate(before, { certificate: name, virtualService: vs, hostname });
    } catch (error) {
      if (!(error instanceof AssignRefused)) throw error;
      return { status: /no virtual service/.test(error.message) ? 404 : 409, body: { ok: false, error: error.message } };
    }
    // Validate before writing: a refused assignment leaves the file as it was.
    const loaded = loadConfigText(after, configPath);
    if (!loaded.ok) return { status: 400, body: { ok: false, error: 'the assignment would make the config invalid', errors: loaded.errors } };
    const files = checkConfigFiles(loaded.config);
    if (files.errors.length > 0) return { status: 400, body: { ok: false, error: 'the assignment names files that cannot be used', errors: files.errors } };
    const stat = statSync(configPath);
    writeFileAtomic(configPath, after, stat.mode & 0o777);
    if (process.getuid?.() === 0) chownSync(configPath, stat.uid, stat.gid);
    const reloaded = await ctx.reload(`certificate assign from ${source}`);
    const warnings = files.warnings.filter((w) => /not covered by the certificate/.test(w));
    if (!reloaded.ok) return { status: 500, body: { ok: false, error: 'the config file was changed but the reload failed', errors: reloaded.errors } };
    return { status: 200, body: { ok: true, certificate: name, virtual_service: vs, hostname: hostname ?? null, config_hash: reloaded.config_hash, warnings } };
  }

  async function assign(req: http.IncomingMessage, res: http.ServerResponse, name: string, source: string): Promise<void> {
    const raw = await readBody(req, res, MAX_ASSIGN);
    if (raw === null) return;
    const body = parseObject(raw);
    let outcome: { status: number; body: Record<string, unknown> };
    if (typeof body === 'string') outcome = { status: 400, body: { ok: false, error: body } };
    else {
      // One assignment at a time: two read-modify-writes of the config file must not interleave.
      const run = assigning.then(() => assignOnce(name, body, source));
      assigning = run.catch(() => undefined);
      outcome = await run;
    }
    const target = typeof body === 'string' ? name : `${name} -> ${String(body.virtual_service)}${body.hostname ? ` ${String(body.hostname)}` : ''}`;
    audit.write({ source, action: 'certificate_assign', target, result: outcome.body.ok ? 'ok' : 'refused', ...(outcome.body.ok ? { config_hash: outcome.body.config_hash } : { reason: outcome.body.error, errors: outcome.body.errors }) });
    if (outcome.body.ok) log.info({ certificate: name, virtual_service: outcome.body.virtual_service, hostname: outcome.body.hostname, source }, 'certificate assigned');
    sendJson(res, outcome.status, outcome.body);
  }

  return async (req, res, path, source) => {
    const method = req.method ?? 'GET';
    if (path === '/api/certificates') {
      if (method === 'GET' || method === 'HEAD') {
        const list = certificateInventory(ctx.config()).map(({ virtual_services: _vs, ...entry }) => entry);
        return sendJson(res, 200, list);
      }
      if (method === 'POST') return upload(req, res, source);
      return sendJson(res, 405, { error: 'method not allowed; use GET or POST' }, { allow: 'GET, POST' });
    }
    const match = /^\/api\/certificates\/([^/]+)\/assign$/.exec(path);
    if (!match) return sendJson(res, 404, { error: `no such API endpoint: ${path}` });
    const name = decodeSegment(match[1]);
    if (name === null) return sendJson(res, 400, { error: 'malformed percent-encoding in the path' });
    if (method !== 'POST') return sendJson(res, 405, { error: 'method not allowed; use POST' }, { allow: 'POST' });
    return assign(req, res, name, source);
  };
}
