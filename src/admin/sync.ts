/**
 * The HA endpoints of the admin API (issues 8 and 13), for the HA sync token only (roles.ts):
 *
 *   POST /api/ha/config   {config_text, files:[{path, content_base64}]} from the peer's
 *                         `carelb ha sync`: validated, written, reloaded; 200 {ok, config_hash,
 *                         shared_hash, files_written, warnings} or 400 {ok:false, errors} with
 *                         the running config and every file on disk left as they were
 *   GET  /api/ha/peer     {node, config_hash, shared_hash, config_file_changed, vrrp}
 *
 * A push is read only over TLS (or with ha.allow_plaintext_sync, ha/transport.ts). The receiver
 * keeps its node-local blocks, `ha:`, `admin:` and `access_log:` (ha/config-text.ts): the text
 * written is the sender's with this node's blocks in place of the sender's, which are never
 * taken. Drift is judged on `shared_hash`.
 *
 * Where files may land (issue 13): only under the sync root, the directory of this node's
 * config file (ha/sync-root.ts): no `..`, no symbolic link at any level below it, nothing
 * outside it, never one of this node's own files (ha/own-files.ts). Every file the new config
 * names must satisfy that, sent or not (a synced config must not make this node read, say, a
 * token as a fallback body). Modes are fixed by kind: 0600 for keys and passphrases, 0640 for
 * the rest; the owner is this process's user. A refused sync names the key and the reason and
 * writes nothing.
 *
 * Validation before anything is written: the config text must load, and the certificate files
 * are checked as they would be written: each sent file is staged in a private temporary
 * directory and checkConfigFiles runs on the config with its paths mapped to the staged copies
 * (files not sent are checked where they are). Only then are files installed (ha/install.ts),
 * each through an exclusive temporary file and a rename, the old contents kept in memory; if
 * writing fails, or the reload refuses the config, every file and the config are put back.
 * Validating before writing, rather than writing and rolling back, means a refused sync never
 * touches the files the running config uses, not even for a moment.
 */
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import type * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfigText } from '../config/load';
import { readBody, sendJson } from './http-io';
import { checkConfigFiles } from '../config/config-files';
import { findHaBlock, sharedHash, spliceLocalBlocks, textHash } from '../ha/config-text';
import { receiveProblem } from '../ha/transport';
import { referencedFiles, syncedFileMode, unsafePathReason, withFilePaths } from '../ha/files';
import { Installer } from '../ha/install';
import { ownFiles } from '../ha/own-files';
import { checkSyncPath, syncRootOf } from '../ha/sync-root';
import type { PeerInfo, SyncBody } from '../ha/client';
import { readVrrpState, stateDir as defaultStateDir } from '../ha/state';
import type { Logger } from '../observe/log';
import type { AuditLog } from './audit';
import type { AdminContext } from './context';

/** Certificates, keys and a config: a few hundred KiB at most; anything larger is refused unread. */
const MAX_SYNC_BODY = 4 * 1024 * 1024;
/**
 * Pushes held at a time, from the first body byte to the answer: at most this many bodies are
 * in memory, and a peer (or whoever holds its token) cannot tie up the primary with more.
 */
const MAX_SYNCS_IN_PROGRESS = 2;

export interface HaHandlerOptions {
  ctx: AdminContext;
  /** The file this instance was started from; undefined for built-in configs (sync refused with 409). */
  configPath?: string;
  audit: AuditLog;
  log: Logger;
  /** VRRP state directory (default: CARELB_HA_STATE_DIR or /var/lib/carelb/ha). */
  stateDir?: string;
  /** This node's token files (every role) and audit log: never written by a sync, never named by a synced config. */
  ownFiles?: readonly (string | undefined)[];
  /** The admin API serves TLS (admin.tls): a push is accepted only then, or with ha.allow_plaintext_sync. */
  servesTls: boolean;
}

export type HaHandler = (req: http.IncomingMessage, res: http.ServerResponse, path: string, source: string) => Promise<void>;

type Outcome = { status: number; body: Record<string, unknown>; result: string };

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
    // Older senders send a mode; it is checked for shape and otherwise ignored (modes are fixed by kind).
    if (f.mode !== undefined && (!Number.isInteger(f.mode) || (f.mode as number) < 0 || (f.mode as number) > 0o777)) errors.push(`body.files[${i}].mode: must be a permission mode 0-0777`);
    if (typeof f.content_base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(f.content_base64)) errors.push(`body.files[${i}].content_base64: must be base64`);
    for (const key of Object.keys(f)) if (!['path', 'mode', 'content_base64'].includes(key)) errors.push(`body.files[${i}].${key}: unknown key`);
  });
  return errors;
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
  let queue: Promise<unknown> = Promise.resolve();

  async function applySync(body: SyncBody, source: string): Promise<Outcome> {
    const refuse = (status: number, errors: string[], result = 'refused'): Outcome => ({ status, body: { ok: false, errors }, result });
    if (!configPath) return refuse(409, ['this instance runs a built-in config (no -c FILE): there is no config file to write']);

    // This node's own file: its local blocks replace the sender's.
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
    // This node's ha:, admin: and access_log: replace the sender's (ha/config-text.ts LOCAL_KEYS).
    const spliced = spliceLocalBlocks(body.config_text, localText);
    if (!spliced.ok) return refuse(400, [`config_text: ${spliced.error}`], 'invalid config');
    const loaded = loadConfigText(spliced.text, configPath);
    if (!loaded.ok) return refuse(400, loaded.errors, 'invalid config');
    const config = loaded.config;

    // Where files may land: under the sync root, never one of this node's own files. Every file
    // the new config names is checked, sent or not; then every file sent must be one of those.
    let root;
    try {
      root = syncRootOf(configPath);
    } catch (error) {
      return refuse(409, [(error as Error).message]);
    }
    const own = ownFiles(configPath, [config, ctx.config()], options.ownFiles ?? [], stateDir);
    const errors: string[] = [];
    const targets = new Map<string, { real: string; mode: number }>();
    for (const ref of referencedFiles(config)) {
      const verdict = checkSyncPath(root, ref.path);
      if (!verdict.ok) errors.push(`${ref.where}: ${ref.path} ${verdict.reason}`);
      else if (own.has(verdict.path)) errors.push(`${ref.where}: ${ref.path} is this node's own file and is never synced`);
      else targets.set(ref.path, { real: verdict.path, mode: syncedFileMode(ref.kind) });
    }
    const seen = new Set<string>();
    const files = body.files ?? [];
    files.forEach((file, i) => {
      const unsafe = unsafePathReason(file.path);
      if (unsafe) errors.push(`files[${i}].path: ${JSON.stringify(file.path)} ${unsafe}`);
      else if (own.has(file.path)) errors.push(`files[${i}].path: ${file.path} is this node's own file and is never synced`);
      else if (!referencedFiles(config).some((ref) => ref.path === file.path)) errors.push(`files[${i}].path: ${file.path} is not a certificate, key, CA, passphrase or body file of the config`);
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
      const report = checkConfigFiles(withFilePaths(config, map));
      if (report.errors.length > 0) return refuse(400, report.errors.map(back), 'invalid config');
      warnings = report.warnings.map(back);
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }

    // Install: files first, then the config; any failure puts everything back. Each path is
    // checked once more just before its write: the tree may have changed since validation.
    const installer = new Installer(root.real);
    try {
      files.forEach((file, i) => {
        const target = targets.get(file.path)!;
        const again = checkSyncPath(root, file.path);
        if (!again.ok || again.path !== target.real) throw new Error(`${file.path} ${again.ok ? 'moved' : again.reason}`);
        installer.install(target.real, contents[i], target.mode);
      });
      // The config file keeps its own mode; a link to it stays a link (the file it points to is written).
      installer.install(realpathSync(configPath), Buffer.from(spliced.text), { keep: 0o640 });
    } catch (error) {
      const failed = installer.rollback();
      if (failed.length > 0) log.error({ failed }, 'ha sync: rollback incomplete');
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
    const failed = installer.rollback();
    if (failed.length > 0) log.error({ failed }, 'ha sync: rollback incomplete');
    return refuse(400, [...result.errors, ...failed], 'reload refused');
  }

  let inProgress = 0;

  /** Reads, checks and applies one push; null when readBody answered already or the client left. */
  async function receive(req: http.IncomingMessage, res: http.ServerResponse, source: string): Promise<Outcome | null> {
    const raw = await readBody(req, res, MAX_SYNC_BODY);
    if (raw === null) return null;
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return { status: 400, body: { ok: false, errors: ['body: not JSON'] }, result: 'invalid body' };
    }
    const shapeErrors = syncBodyErrors(body);
    if (shapeErrors.length > 0) return { status: 400, body: { ok: false, errors: shapeErrors }, result: 'invalid body' };
    // One sync at a time is applied: a second waits for the first (written and reloaded, or refused).
    const run = queue.then(() => applySync(body as SyncBody, source));
    queue = run.catch(() => undefined);
    return run;
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
    if (inProgress >= MAX_SYNCS_IN_PROGRESS) {
      return sendJson(res, 503, { ok: false, errors: [`${MAX_SYNCS_IN_PROGRESS} config pushes are in progress already; retry`] }, { 'retry-after': '1' });
    }
    inProgress++;
    let outcome: Outcome | null;
    try {
      outcome = await receive(req, res, source);
    } finally {
      inProgress--;
    }
    if (!outcome) return; // answered already (413), or the client went away
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
