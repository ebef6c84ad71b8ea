/**
 * The HA endpoints of the admin API (issue 8), behind the admin token like every /api path:
 *
 *   POST /api/ha/config   {config_text, files:[{path, mode, content_base64}]} from the peer's
 *                         `carelb ha sync`: validated, written, reloaded; 200 {ok, config_hash,
 *                         shared_hash, files_written, warnings} or 400 {ok:false, errors} with
 *                         the running config and every file on disk left as they were
 *   GET  /api/ha/peer     {node, config_hash, shared_hash, config_file_changed, vrrp}
 *
 * The receiver keeps its own `ha:` block (node name, priority, peer differ per node; see
 * ha/config-text.ts): the text written is the sender's with this node's `ha:` block in place
 * of the sender's. Drift is judged on `shared_hash`.
 *
 * Validation before anything is written: the config text must load, and the certificate files
 * are checked as they would be written: each sent file is staged in a private temporary
 * directory and checkTlsFiles runs on the config with its paths mapped to the staged copies
 * (files not sent are checked where they are). Only then are files installed, each through a
 * temporary file and rename in its own directory, the old contents kept in memory; if writing
 * fails, or the reload refuses the config, every file and the config are put back. Validating
 * before writing, rather than writing and rolling back, means a refused sync never touches the
 * files the running config uses, not even for a moment.
 *
 * Path safety: a file is written only when its path is absolute, normalized (no `..`), named by
 * the new config as certificate, key, CA, passphrase or fallback body file, and is not the
 * config file itself nor a token or secret file of this node.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import type * as http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfigText } from '../config/load';
import { checkTlsFiles } from '../config/tls-files';
import { findHaBlock, sharedHash, spliceHaBlock, textHash } from '../ha/config-text';
import { receiveProblem } from '../ha/transport';
import { referencedFiles, unsafePathReason, withFilePaths } from '../ha/files';
import type { PeerInfo, SyncBody } from '../ha/client';
import { readVrrpState, stateDir as defaultStateDir } from '../ha/state';
import type { Logger } from '../observe/log';
import type { AuditLog } from './audit';
import type { AdminContext } from './context';

/** Certificates, keys and a config: a few hundred KiB at most; anything larger is refused unread. */
const MAX_SYNC_BODY = 16 * 1024 * 1024;

export interface HaHandlerOptions {
  ctx: AdminContext;
  /** The file this instance was started from; undefined for built-in configs (sync refused with 409). */
  configPath?: string;
  audit: AuditLog;
  log: Logger;
  /** VRRP state directory (default: CARELB_HA_STATE_DIR or /var/lib/carelb/ha). */
  stateDir?: string;
  /** This node's token files (every role): never written by a sync, never named by a synced config. */
  ownFiles?: readonly string[];
  /** The admin API serves TLS (admin.tls): a push is accepted only then, or with ha.allow_plaintext_sync. */
  servesTls: boolean;
}

export type HaHandler = (req: http.IncomingMessage, res: http.ServerResponse, path: string, source: string) => Promise<void>;

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => resolve(null));
  });
}

/** Checks the shape of a sync body; returns the errors (empty when usable). */
export function syncBodyErrors(body: unknown): string[] {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return ['body: must be a JSON object {config_text, files}'];
  const b = body as Record<string, unknown>;
  const errors: string[] = [];
  for (const key of Object.keys(b)) if (key !== 'config_text' && key !== 'files') errors.push(`body.${key}: unknown key`);
  if (typeof b.config_text !== 'string' || b.config_text.length === 0) errors.push('body.config_text: must be the config file text');
  if (b.files !== undefined && !Array.isArray(b.files)) errors.push('body.files: must be an array');
  (Array.isArray(b.files) ? b.files : []).forEach((file: unknown, i) => {
    const f = (file ?? {}) as Record<string, unknown>;
    if (typeof f.path !== 'string') errors.push(`body.files[${i}].path: must be a string`);
    if (!Number.isInteger(f.mode) || (f.mode as number) < 0 || (f.mode as number) > 0o777) errors.push(`body.files[${i}].mode: must be a permission mode 0-0777`);
    if (typeof f.content_base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(f.content_base64)) errors.push(`body.files[${i}].content_base64: must be base64`);
    for (const key of Object.keys(f)) if (!['path', 'mode', 'content_base64'].includes(key)) errors.push(`body.files[${i}].${key}: unknown key`);
  });
  return errors;
}

interface Backup {
  path: string;
  /** Previous content and mode, or null when the file did not exist. */
  previous: { content: Buffer; mode: number } | null;
}

/** Writes `content` to `path` through a temporary file in the same directory and a rename. */
function installFile(path: string, content: Buffer, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  const tmp = join(dirname(path), `.${path.split('/').pop()}.carelb-sync-${process.pid}`);
  try {
    writeFileSync(tmp, content, { mode });
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    throw error;
  }
}

function backupOf(path: string): Backup {
  try {
    return { path, previous: { content: readFileSync(path), mode: statSync(path).mode & 0o7777 } };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path, previous: null };
    throw error;
  }
}

function restore(backups: Backup[], log: Logger): string[] {
  const failed: string[] = [];
  for (const backup of backups.reverse()) {
    try {
      if (backup.previous) installFile(backup.path, backup.previous.content, backup.previous.mode);
      else unlinkSync(backup.path);
    } catch (error) {
      failed.push(`${backup.path}: could not be restored (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
  }
  if (failed.length > 0) log.error({ failed }, 'ha sync: rollback incomplete');
  return failed;
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
}

/**
 * This node's side of the pair, as GET /api/ha/peer answers it (and /api/status can show it):
 * node name, config hash, shared hash (null when the file on disk is not the running one, or
 * for a built-in config), VRRP state from the notify script's files.
 */
export function haSelfInfo(ctx: AdminContext, configPath: string | undefined, stateDir: string = defaultStateDir()): PeerInfo {
  let shared: string | null = null;
  let changed = false;
  if (configPath) {
    try {
      const text = readFileSync(configPath, 'utf8');
      if (textHash(text) === ctx.configHash()) shared = sharedHash(text);
      else changed = true;
    } catch {
      changed = true;
    }
  }
  return { node: ctx.config().ha?.node_name ?? null, config_hash: ctx.configHash(), shared_hash: shared, config_file_changed: changed, vrrp: readVrrpState(stateDir) };
}

export function createHaHandler(options: HaHandlerOptions): HaHandler {
  const { ctx, configPath, audit, log } = options;
  const stateDir = options.stateDir ?? defaultStateDir();
  // One sync at a time: a second waits for the first to finish (written and reloaded or refused).
  let queue: Promise<unknown> = Promise.resolve();

  type Outcome = { status: number; body: Record<string, unknown>; result: string };

  async function applySync(body: SyncBody, source: string): Promise<Outcome> {
    const refuse = (status: number, errors: string[], result = 'refused'): Outcome => ({ status, body: { ok: false, errors }, result });
    if (!configPath) return refuse(409, ['this instance runs a built-in config (no -c FILE): there is no config file to write']);

    // This node's own ha: block replaces the sender's.
    let localText: string;
    try {
      localText = readFileSync(configPath, 'utf8');
    } catch (error) {
      return refuse(500, [`${configPath}: cannot read this node's config: ${codeOf(error)}`]);
    }
    const local = findHaBlock(localText);
    if (!local.ok) return refuse(409, [`${configPath}: ${local.error}`]);
    if (!local.block) return refuse(409, [`${configPath} has no ha: section: this node is not set up as an HA peer`]);
    let senderNode: unknown;
    try {
      senderNode = (parseYaml(body.config_text) as { ha?: { node_name?: unknown } } | null)?.ha?.node_name;
    } catch {
      /* invalid YAML is reported by the validation below */
    }
    const localNode = ctx.config().ha?.node_name;
    if (senderNode !== undefined && senderNode === localNode) {
      return refuse(409, [`the config comes from node "${String(senderNode)}", which is this node: does ha.peer_admin point to the node itself?`]);
    }
    const spliced = spliceHaBlock(body.config_text, local.block.text);
    if (!spliced.ok) return refuse(400, [`config_text: ${spliced.error}`], 'invalid config');
    const loaded = loadConfigText(spliced.text, configPath);
    if (!loaded.ok) return refuse(400, loaded.errors, 'invalid config');
    const config = loaded.config;

    // Which paths may be written: only those the new config names, never this node's own files.
    const allowed = new Set(referencedFiles(config).map((ref) => ref.path));
    const running = ctx.config();
    const forbidden = new Set(
      [configPath, ...(options.ownFiles ?? []), ...[config, running].flatMap((c) => [c.admin?.token_file, c.ha?.peer_token_file, c.ha?.sync_token_file, c.ha?.auth_secret_file, c.ha?.keepalived_conf])].filter((p): p is string => Boolean(p)),
    );
    const errors: string[] = [];
    const seen = new Set<string>();
    const files = body.files ?? [];
    files.forEach((file, i) => {
      const unsafe = unsafePathReason(file.path);
      if (unsafe) errors.push(`files[${i}].path: ${JSON.stringify(file.path)} ${unsafe}`);
      else if (forbidden.has(file.path)) errors.push(`files[${i}].path: ${file.path} is this node's own file and is never synced`);
      else if (!allowed.has(file.path)) errors.push(`files[${i}].path: ${file.path} is not a certificate, key, CA, passphrase or body file of the config`);
      else if (seen.has(file.path)) errors.push(`files[${i}].path: ${file.path} is sent twice`);
      seen.add(file.path);
    });
    if (errors.length > 0) return refuse(400, errors);

    // Certificates checked as they would be written: staged copies, config paths mapped to them.
    const stage = mkdtempSync(join(tmpdir(), 'carelb-ha-sync-'));
    const contents = files.map((file) => Buffer.from(file.content_base64, 'base64'));
    let warnings: string[];
    try {
      const map = new Map<string, string>();
      files.forEach((file, i) => {
        const staged = join(stage, String(i));
        writeFileSync(staged, contents[i], { mode: 0o600 });
        map.set(file.path, staged);
      });
      const back = (message: string) => {
        let out = message;
        for (const [original, staged] of map) out = out.split(staged).join(original);
        return out;
      };
      const report = checkTlsFiles(withFilePaths(config, map));
      if (report.errors.length > 0) return refuse(400, report.errors.map(back), 'invalid config');
      warnings = report.warnings.map(back);
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }

    // Install: files first, then the config; any failure puts everything back.
    const backups: Backup[] = [];
    try {
      files.forEach((file, i) => {
        backups.push(backupOf(file.path));
        installFile(file.path, contents[i], file.mode);
      });
      const configBackup = backupOf(configPath);
      backups.push(configBackup);
      installFile(configPath, Buffer.from(spliced.text), configBackup.previous?.mode ?? 0o640);
    } catch (error) {
      const failed = restore(backups, log);
      return refuse(500, [`writing the files failed: ${codeOf(error)}`, ...failed], 'write failed');
    }

    const before = ctx.configHash();
    const result = await ctx.reload(`ha sync from ${source}`);
    if (result.ok) {
      log.info({ source, config_hash: result.config_hash, files: files.map((f) => f.path) }, 'ha sync: config from the peer written and reloaded');
      return {
        status: 200,
        body: { ok: true, config_hash: result.config_hash, shared_hash: sharedHash(spliced.text), files_written: files.map((f) => f.path), warnings },
        result: 'ok',
      };
    }
    if (ctx.configHash() !== before && ctx.configHash() === textHash(spliced.text)) {
      // Applied, but some listener could not open: the new config runs, so its files stay.
      return { status: 500, body: { ok: false, applied: true, errors: result.errors }, result: 'applied with errors' };
    }
    const failed = restore(backups, log);
    return refuse(400, [...result.errors, ...failed], 'reload refused');
  }

  return async (req, res, path, source) => {
    const method = req.method ?? 'GET';
    if (path === '/api/ha/peer') {
      if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: 'method not allowed; use GET' }, { allow: 'GET' });
      return sendJson(res, 200, haSelfInfo(ctx, configPath, stateDir));
    }
    if (path !== '/api/ha/config') return sendJson(res, 404, { error: `no such API endpoint: ${path}` });
    if (method !== 'POST') return sendJson(res, 405, { error: 'method not allowed; use POST' }, { allow: 'POST' });
    // Refused before the body is read: over plain HTTP the keys in it have already crossed the wire.
    const transport = receiveProblem(ctx.config(), options.servesTls);
    if (transport) {
      audit.write({ source, action: 'ha_sync', target: 'config', result: 'refused', errors: [transport] });
      return sendJson(res, 403, { ok: false, errors: [transport] });
    }
    const raw = await readBody(req, MAX_SYNC_BODY);
    if (raw === null) return sendJson(res, 413, { ok: false, errors: [`request body larger than ${MAX_SYNC_BODY} bytes`] });
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return sendJson(res, 400, { ok: false, errors: ['body: not JSON'] });
    }
    const shapeErrors = syncBodyErrors(body);
    if (shapeErrors.length > 0) return sendJson(res, 400, { ok: false, errors: shapeErrors });
    const run = queue.then(() => applySync(body as SyncBody, source));
    queue = run.catch(() => undefined);
    const outcome = await run;
    audit.write({
      source,
      action: 'ha_sync',
      target: 'config',
      result: outcome.result,
      ...(outcome.body.ok ? { config_hash: outcome.body.config_hash, files: (outcome.body.files_written as string[]).length } : { errors: outcome.body.errors }),
    });
    if (!outcome.body.ok) log.warn({ source, errors: outcome.body.errors }, 'ha sync refused: still running the previous config');
    return sendJson(res, outcome.status, outcome.body);
  };
}
