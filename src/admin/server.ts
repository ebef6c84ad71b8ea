/**
 * The admin server (issue 5): API, dashboard page and Prometheus metrics on node:http in the
 * primary, off the data plane. Everything it reads or changes goes through AdminContext.
 *
 *   GET  /healthz                               no token: 200 {"status":"serving"}
 *   GET  /, /ui/*                               no token: the dashboard page and its files (ui-assets.ts)
 *   GET  /api/status                            read or operate token
 *   GET  /api/history?window=15m, /api/events   read or operate token: 1 s samples, last transitions
 *   /api/demo/*                                 only when the demo registers it (extension.ts)
 *   POST /api/servers/{vs}/{server}/{drain|halt|online}   operate token
 *   POST /api/reload                            operate token
 *   GET  /api/certificates                      read or operate token (certificates.ts)
 *   POST /api/certificates, POST /api/certificates/{name}/assign   operate token
 *   GET  /metrics                               read or operate token, none with admin.metrics_public
 *   GET  /api/ha/peer, POST /api/ha/config      the HA sync token only (HA pair: admin/sync.ts)
 *
 * Roles are in roles.ts, the tokens in credentials.ts. A missing or wrong token gets 401 and is
 * counted (carelb_admin_unauthorized_total); a valid token used beyond its role gets 403
 * (carelb_admin_forbidden_total). Both go to the audit log as counted summaries per source and
 * second (audit-summary.ts); every state change, reload and sync gets its own line.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/schema';
import type { Logger } from '../observe/log';
import { createAuditLog, type AuditLog } from './audit';
import type { AdminContext, AdminState } from './context';
import type { AdminExtension } from './extension';
import { handleHistory } from './history-api';
import { DASHBOARD_CSP, loadAssets, type Asset } from './ui-assets';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics';
import { loadCredentials, type Credential } from './credentials';
import { allows, needOf, refusalReason } from './roles';
import { createHaHandler } from './sync';
import { createCertificateHandler } from './certificates';
import { decodeSegment, readBody, sendJson, targetPath } from './http-io';
import { bearerToken } from './token';
import { serverView, statusView } from './view';

export interface AdminServerOptions {
  /** Audit log file (appended; directory created). Default: stdout, each line marked `"audit":true`. */
  auditLog?: string;
  /** Listen on this port instead of `config.listen.port` (0: any free port; tests). */
  port?: number;
  /** The config file (HA sync writes it); undefined for built-in configs. */
  configPath?: string;
  /** Routes under /api/<name> that only some callers have (the demo's). */
  extension?: AdminExtension;
}

export interface AdminServer {
  /** The port actually listened on. */
  port: number;
  /** The operate token file admin.token_file (generated at this start when it did not exist). */
  tokenFile: string;
  close(): Promise<void>;
  /** Reopens the audit log file (log rotation); false when the audit log goes to stdout. */
  reopenAuditLog(): boolean;
}

const STATES: readonly AdminState[] = ['online', 'drain', 'halt'];
/** Admin requests carry no useful body; anything larger is refused rather than buffered. */
const MAX_BODY = 64 * 1024;

function sourceOf(req: http.IncomingMessage): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export async function startAdminServer(ctx: AdminContext, config: AdminConfig, log: Logger, options: AdminServerOptions = {}): Promise<AdminServer> {
  // Tokens first: a token file that cannot be used stops the start before anything listens.
  const credentials = loadCredentials(config, ctx.config().ha, log);
  // The page is optional to the API: without its files (tsc run without the copy step) the API
  // and metrics still serve, and / says what is missing.
  let assets: Map<string, Asset> = new Map();
  let assetProblem: string | null = null;
  try {
    assets = loadAssets();
  } catch (error) {
    assetProblem = (error as Error).message;
    log.error({ err: assetProblem }, 'dashboard unavailable');
  }
  const extension = options.extension;
  const audit: AuditLog = createAuditLog(options.auditLog, (error) => log.error({ err: error.message, audit_log: options.auditLog ?? 'stdout' }, 'audit log write failed'));
  let unauthorized = 0;
  let forbidden = 0;
  const ha = createHaHandler({ ctx, configPath: options.configPath, audit, log, ownFiles: [...credentials.files, options.auditLog], servesTls: Boolean(config.tls) });
  const certificates = createCertificateHandler({ ctx, configPath: options.configPath, audit, log });

  /**
   * Checks the bearer token and its role for this request. Answers 401 (no or wrong token) or
   * 403 (valid token, wrong role) itself, counted and audited, and returns null then.
   */
  function authorized(req: http.IncomingMessage, res: http.ServerResponse, path: string): Credential | null {
    const presented = bearerToken(req.headers.authorization);
    const credential = presented === null ? null : credentials.identify(presented);
    const target = `${req.method} ${path}`;
    if (!credential) {
      unauthorized++;
      // Counted into a summary, not written per request: a flood of bad tokens must not become a flood of writes.
      audit.refused({ action: 'unauthorized', source: sourceOf(req), target, result: presented === null ? 'no token' : 'wrong token' });
      sendJson(res, 401, { error: 'a valid admin token is required: Authorization: Bearer <token>' }, { 'www-authenticate': 'Bearer realm="carelb"' });
      return null;
    }
    const need = needOf(req.method ?? 'GET', path);
    if (allows(credential.role, need) && (need !== 'sync' || credentials.hasSync)) return credential;
    forbidden++;
    audit.refused({ action: 'forbidden', source: sourceOf(req), target, result: `${credential.role} token`, role: credential.role });
    const error = need === 'sync' && !credentials.hasSync ? 'this node has no HA sync token (ha.sync_token_file): /api/ha/ is closed' : refusalReason(credential.role, need);
    sendJson(res, 403, { error });
    return null;
  }

  function methodNotAllowed(res: http.ServerResponse, allow: string): void {
    sendJson(res, 405, { error: `method not allowed; use ${allow}` }, { allow });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = targetPath(req.url);
    if (path === null) return sendJson(res, 400, { error: 'bad request target: use a path such as /api/status' });
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';

    if (path === '/healthz') {
      if (!isGet) return methodNotAllowed(res, 'GET');
      return sendJson(res, 200, { status: 'serving' });
    }
    const asset = assets.get(path === '/index.html' ? '/' : path);
    if (asset || (path === '/' && assetProblem)) {
      if (!isGet) return methodNotAllowed(res, 'GET');
      if (!asset) return sendJson(res, 503, { error: assetProblem });
      const headers = {
        'content-type': asset.type,
        // Revalidated every time (a rebuilt carelb serves new files), answered 304 when unchanged.
        'cache-control': 'no-cache',
        etag: asset.etag,
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
      };
      if (req.headers['if-none-match'] === asset.etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, 'content-length': asset.body.length });
      res.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (path === '/metrics') {
      if (!config.metrics_public && !authorized(req, res, path)) return;
      if (!isGet) return methodNotAllowed(res, 'GET');
      const text = renderMetrics(ctx, { unauthorized, forbidden });
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
    if (path !== '/api' && !path.startsWith('/api/')) return sendJson(res, 404, { error: `no such page: ${path}` });

    // Every /api path needs a token, unknown ones too: no route discovery without it.
    const credential = authorized(req, res, path);
    if (!credential) return;
    if (path.startsWith('/api/ha/')) return ha(req, res, path, sourceOf(req));
    // Uploads carry a certificate file: they read their own body, with their own limit.
    if (path === '/api/certificates' || path.startsWith('/api/certificates/')) return certificates(req, res, path, sourceOf(req));
    // Bodies carry nothing here; one is read (and dropped) only to enforce the limit. null: answered (413) or gone.
    if (method === 'POST' && (await readBody(req, res, MAX_BODY)) === null) return;

    if (path === '/api/status') {
      if (!isGet) return methodNotAllowed(res, 'GET');
      // The role tells the dashboard which buttons this token can use; the extension, which controls it offers.
      return sendJson(res, 200, { role: credential.role, ...statusView(ctx), ...(extension ? { [extension.name]: extension.status() } : {}) });
    }
    if (handleHistory(ctx, req, res, path)) return;
    if (extension && (path === `/api/${extension.name}` || path.startsWith(`/api/${extension.name}/`))) return extension.handle(req, res, path, method);
    if (path === '/api/reload') {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      const source = sourceOf(req);
      const result = await ctx.reload(`admin API from ${source}`);
      if (result.ok) {
        audit.write({ source, action: 'reload', target: 'config', result: 'ok', config_hash: result.config_hash });
        return sendJson(res, 200, result);
      }
      audit.write({ source, action: 'reload', target: 'config', result: 'invalid config', errors: result.errors });
      return sendJson(res, 400, result);
    }
    const action = /^\/api\/servers\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(path);
    if (action) {
      const decoded = action.slice(1, 4).map(decodeSegment);
      if (decoded.includes(null)) return sendJson(res, 400, { error: 'malformed percent-encoding in the path' });
      const [vs, server, verb] = decoded as string[];
      if (!STATES.includes(verb as AdminState)) return sendJson(res, 404, { error: `unknown action "${verb}": use drain, halt or online` });
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      const source = sourceOf(req);
      const before = ctx.status().find((s) => s.name === vs)?.servers.find((s) => s.name === server);
      const after = before ? ctx.setAdminState(vs, server, verb as AdminState, `admin API from ${source}`) : null;
      if (!after) {
        const known = ctx.status().some((s) => s.name === vs);
        const error = known ? `no server "${server}" in virtual service "${vs}"` : `no virtual service "${vs}"`;
        audit.write({ source, action: verb, target: `${vs}/${server}`, result: 'not found' });
        return sendJson(res, 404, { error });
      }
      audit.write({ source, action: verb, target: `${vs}/${server}`, result: 'ok', from: before!.admin, to: after.admin });
      return sendJson(res, 200, serverView(ctx, vs, after));
    }
    return sendJson(res, 404, { error: `no such API endpoint: ${path}` });
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: error instanceof Error ? error.message : String(error), url: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error; see the carelb log' });
      else res.destroy();
    });
  };
  // HTTPS when admin.tls is set: HA peers exchange configs and keys over this API.
  const server = config.tls
    ? https.createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), minVersion: 'TLSv1.2' }, onRequest)
    : http.createServer(onRequest);
  // Expect: 100-continue goes through the same handler, which sends 100 only when it will read the body (http-io.ts).
  server.on('checkContinue', onRequest);
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? config.listen.port, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await audit.close();
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new Error(`admin server: cannot listen on ${config.listen.host}:${options.port ?? config.listen.port} (${code})`);
  }
  const port = (server.address() as AddressInfo).port;
  log.info({ listen: `${config.listen.host}:${port}`, token_file: config.token_file, audit_log: options.auditLog ?? 'stdout' }, 'admin server listening');

  let closing: Promise<void> | null = null;
  return {
    port,
    tokenFile: config.token_file,
    reopenAuditLog: () => audit.reopen(),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => {
          void audit.close().then(resolve);
        });
        server.closeAllConnections();
      })),
  };
}
