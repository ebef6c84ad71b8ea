/**
 * Talking to the peer's admin API (issue 8): push a config (`POST /api/ha/config`) and read its
 * state (`GET /api/ha/peer`), with the peer's token from `ha.peer_token_file`. https when this
 * pair's admin API serves TLS (`tls` option), http otherwise. Called by `carelb ha sync` and,
 * for /api/status, by the primary (`peerStatus`).
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { readToken } from '../admin/token';
import type { Config, HaConfig, HostPort } from '../config/schema';
import { sharedHash } from './config-text';
import { referencedFiles } from './files';
import { placeInRoot, syncRootOf } from './sync-root';
import type { VrrpState } from './state';

export interface PeerTls {
  /** CA bundle (PEM text) the peer's admin certificate must chain to; default: the system CAs. */
  ca?: string;
}

export interface PeerOptions {
  /** Use https (the admin API serves TLS); an object to give a CA. */
  tls?: boolean | PeerTls;
  timeoutMs?: number;
}

/** What `GET /api/ha/peer` answers. */
export interface PeerInfo {
  node: string | null;
  config_hash: string;
  /** sha256 of the running config without its `ha:` block: equal on both nodes when in sync. null when the file changed since it was loaded. */
  shared_hash: string | null;
  /** The config file on disk differs from the one running (edited, not reloaded). */
  config_file_changed: boolean;
  vrrp: VrrpState;
}

export interface SyncFile {
  path: string;
  /** Sent by older versions; ignored: the receiver sets 0640, or 0600 for keys and passphrases. */
  mode?: number;
  content_base64: string;
}

export interface SyncBody {
  config_text: string;
  files: SyncFile[];
}

export type SyncAnswer = { ok: true; config_hash: string; shared_hash: string; files_written: string[] } | { ok: false; errors: string[] };

interface Reply {
  status: number;
  json: any;
  text: string;
}

function request(target: HostPort, method: string, path: string, token: string, body: string | null, options: PeerOptions): Promise<Reply> {
  const useTls = Boolean(options.tls);
  const module = useTls ? https : http;
  const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (body !== null) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(body);
  }
  const ca = typeof options.tls === 'object' ? options.tls.ca : undefined;
  return new Promise((resolve, reject) => {
    const req = module.request(
      { host: target.host, port: target.port, method, path, headers, agent: false, timeout: options.timeoutMs ?? 10_000, ...(useTls ? { ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON: reported with the text */
          }
          resolve({ status: res.statusCode ?? 0, json, text });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${(options.timeoutMs ?? 10_000) / 1000}s`)));
    req.on('error', (error: NodeJS.ErrnoException) => reject(new Error(`cannot reach the peer's admin API at ${target.host}:${target.port}: ${error.code ?? error.message}`)));
    req.end(body ?? undefined);
  });
}

function peerTarget(ha: HaConfig): HostPort | string {
  if (!ha.peer_admin) return 'ha.peer_admin is not set: the peer admin API address is needed';
  if (!ha.peer_token_file) return "ha.peer_token_file is not set: the peer admin API's token is needed";
  return ha.peer_admin;
}

function errorOf(reply: Reply): string {
  if (reply.json && typeof reply.json.error === 'string') return `HTTP ${reply.status}: ${reply.json.error}`;
  if (reply.json && Array.isArray(reply.json.errors)) return `HTTP ${reply.status}: ${reply.json.errors.join('; ')}`;
  return `HTTP ${reply.status}: ${reply.text.slice(0, 200)}`;
}

/** How to reach the peer's admin API for this config: https (with admin.tls.ca) when admin.tls is set. */
export function peerOptionsFor(config: Config): PeerOptions {
  const tls = config.admin?.tls;
  if (!tls) return {};
  return { tls: tls.ca ? { ca: readFileSync(tls.ca, 'utf8') } : true };
}

/**
 * The peer's node name, config hashes and VRRP state, or `{error}` (never throws). For
 * /api/status: `tokenReader` reads `ha.peer_token_file` (default: the admin token reader).
 */
export async function peerStatus(
  haConfig: HaConfig,
  tokenReader: (path: string) => string = readToken,
  options: PeerOptions = {},
): Promise<PeerInfo | { error: string }> {
  const target = peerTarget(haConfig);
  if (typeof target === 'string') return { error: target };
  try {
    const token = tokenReader(haConfig.peer_token_file!);
    const reply = await request(target, 'GET', '/api/ha/peer', token, null, { timeoutMs: 2000, ...options });
    if (reply.status !== 200 || !reply.json) return { error: errorOf(reply) };
    return reply.json as PeerInfo;
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * The body of a sync: the config text and every file it references, read now. Every such file
 * must lie under this node's sync root, the directory of `configPath` (the receiver writes
 * nowhere else, see sync-root.ts); modes are not sent, the receiver sets them by kind. Throws
 * with the key and a readable reason.
 */
export function buildSyncBody(configText: string, config: Config, configPath: string, read: (path: string) => Buffer = (path) => readFileSync(path)): SyncBody {
  const root = syncRootOf(configPath);
  const files: SyncFile[] = [];
  for (const ref of referencedFiles(config)) {
    const placed = placeInRoot(root, ref.path);
    if (!placed.ok) throw new Error(`${ref.where}: ${ref.path} ${placed.reason}; config sync carries only files under ${root.real}: move it there on both nodes`);
    let content: Buffer;
    try {
      content = read(ref.path);
    } catch (error) {
      throw new Error(`${ref.where}: cannot read ${ref.path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    files.push({ path: ref.path, content_base64: content.toString('base64') });
  }
  return { config_text: configText, files };
}

/** Pushes a sync body to the peer. Resolves with the peer's answer (ok or its errors); rejects when the peer cannot be reached. */
export async function pushConfig(haConfig: HaConfig, body: SyncBody, tokenReader: (path: string) => string = readToken, options: PeerOptions = {}): Promise<SyncAnswer> {
  const target = peerTarget(haConfig);
  if (typeof target === 'string') throw new Error(target);
  const token = tokenReader(haConfig.peer_token_file!);
  const reply = await request(target, 'POST', '/api/ha/config', token, JSON.stringify(body), { timeoutMs: 30_000, ...options });
  if (reply.json && typeof reply.json.ok === 'boolean') {
    if (reply.json.ok) return reply.json as SyncAnswer;
    return { ok: false, errors: Array.isArray(reply.json.errors) ? reply.json.errors : [errorOf(reply)] };
  }
  return { ok: false, errors: [errorOf(reply)] };
}

/**
 * auto_sync after a successful reload: pushes `configText` unless the peer already runs the same
 * shared config (which also ends the echo: the peer's own auto_sync after our push finds us in
 * sync). The primary should not call it for reloads whose source starts with "ha sync".
 */
export async function syncIfDrifted(
  haConfig: HaConfig,
  configText: string,
  config: Config,
  configPath: string,
  tokenReader: (path: string) => string = readToken,
  options: PeerOptions = {},
): Promise<{ skipped: true; shared_hash: string } | SyncAnswer> {
  const peer = await peerStatus(haConfig, tokenReader, options);
  const mine = sharedHash(configText);
  if (!('error' in peer) && peer.shared_hash === mine) return { skipped: true, shared_hash: mine };
  return pushConfig(haConfig, buildSyncBody(configText, config, configPath), tokenReader, options);
}
