/**
 * `carelb ctl`: talks to a running carelb through its admin API (never to its threads or
 * memory). The admin address and token file come from flags, else from the config's `admin`
 * key (`-c FILE`), else the defaults 127.0.0.1:9900 and /etc/carelb/admin.token.
 * Exit status: 0 done, 2 a wrong command line (with the usage), 1 anything else (with one
 * clear line on `err`).
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { loadConfigFile } from '../config/load';
import { parseHostPort, type HostPort } from '../config/schema';
import { readToken } from '../admin/token';
import { parseStrict, USAGE_EXIT, UsageError } from '../cli-args';
import type { ServerView, StatusView } from '../admin/view';

type Out = NodeJS.WritableStream;

export const CTL_USAGE = `usage: carelb ctl <command> [options]

commands:
  status [--json]          virtual services and servers: health, admin state, traffic
  drain VS/SERVER          stop sending new requests to a server (in-flight ones finish)
  halt VS/SERVER           take a server out of service
  online VS/SERVER         return a server to service
  reload                   re-read the config file and apply it (kept unchanged if invalid)

options:
  -c, --config FILE        read admin.listen and admin.token_file from this config
  --admin HOST:PORT        admin API address (default 127.0.0.1:9900)
  --token-file FILE        admin token file (default /etc/carelb/admin.token)
  --json                   status as JSON (the /api/status document)
`;

const DEFAULT_ADMIN: HostPort = { host: '127.0.0.1', port: 9900 };
const DEFAULT_TOKEN_FILE = '/etc/carelb/admin.token';
const TIMEOUT_MS = 10_000;

class CtlError extends Error {}

interface Target {
  /** CA for an admin API served over TLS (admin.tls), or null for plain HTTP. */
  tls: { ca?: string } | null;
  admin: HostPort;
  tokenFile: string;
}

interface Parsed {
  command?: string;
  operand?: string;
  config?: string;
  admin?: string;
  tokenFile?: string;
  json: boolean;
  help: boolean;
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  admin: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Strict parse (cli-args.ts): unknown options and a third positional throw UsageError (exit 2). */
function parseCtlArgs(args: string[]): Parsed {
  const { values, positionals } = parseStrict(args, OPTIONS, 2);
  return {
    command: positionals[0],
    operand: positionals[1],
    config: values.config,
    admin: values.admin,
    tokenFile: values['token-file'],
    json: values.json === true,
    help: values.help === true,
  };
}

/** Where to connect: an admin listening on every address is reached over loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

function resolveTarget(parsed: Parsed): Target {
  let admin = DEFAULT_ADMIN;
  let tokenFile = DEFAULT_TOKEN_FILE;
  let tls: Target['tls'] = null;
  if (parsed.config) {
    const loaded = loadConfigFile(parsed.config);
    if (!loaded.ok) throw new CtlError(`${parsed.config}: invalid config\n${loaded.errors.map((e) => `  ${e}`).join('\n')}`);
    if (loaded.config.admin) {
      admin = loaded.config.admin.listen;
      tokenFile = loaded.config.admin.token_file;
      const adminTls = loaded.config.admin.tls;
      if (adminTls) tls = adminTls.ca ? { ca: readFileSync(adminTls.ca, 'utf8') } : {};
    }
  }
  if (parsed.admin) {
    const hostPort = parseHostPort(parsed.admin);
    if (typeof hostPort === 'string') throw new CtlError(`--admin: ${hostPort}`);
    admin = hostPort;
  }
  if (parsed.tokenFile) tokenFile = parsed.tokenFile;
  return { admin: { host: connectHost(admin.host), port: admin.port }, tokenFile, tls };
}

function label(admin: HostPort): string {
  return admin.host.includes(':') ? `[${admin.host}]:${admin.port}` : `${admin.host}:${admin.port}`;
}

interface Answer {
  status: number;
  body: unknown;
}

function call(target: Target, token: string, method: string, path: string): Promise<Answer> {
  const where = label(target.admin);
  return new Promise((resolve, reject) => {
    const options = { host: target.admin.host, port: target.admin.port, method, path, headers: { authorization: `Bearer ${token}`, 'content-length': 0 }, agent: false };
    const req = (target.tls ? https : http).request(
      target.tls ? { ...options, ca: target.tls.ca } : options,
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON: keep the text */
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', (error) => reject(new CtlError(`the connection to carelb at ${where} failed: ${error.message}`)));
      },
    );
    req.setTimeout(TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) => {
      switch (error.code) {
        case 'ECONNREFUSED':
          return reject(new CtlError(`carelb is not running at ${where} (connection refused)`));
        case 'ETIMEDOUT':
          return reject(new CtlError(`carelb did not answer at ${where} within ${TIMEOUT_MS / 1000}s`));
        case 'ENOTFOUND':
        case 'EAI_AGAIN':
          return reject(new CtlError(`cannot resolve the admin address ${where} (${error.code})`));
        default:
          return reject(new CtlError(`cannot reach carelb at ${where} (${error.code ?? error.message})`));
      }
    });
    req.end();
  });
}

function errorText(answer: Answer): string {
  const body = answer.body as { error?: unknown } | null;
  if (body && typeof body === 'object' && typeof body.error === 'string') return body.error;
  return `HTTP ${answer.status}`;
}

/** Turns the statuses every command shares into errors; returns the answer otherwise. */
function checked(answer: Answer): Answer {
  if (answer.status === 401) throw new CtlError('the admin token was refused (401): check --token-file (or admin.token_file in the config)');
  if (answer.status === 403) throw new CtlError(`not allowed with this token (403): ${errorText(answer)}`);
  if (answer.status === 404) throw new CtlError(errorText(answer));
  if (answer.status >= 500) throw new CtlError(`carelb answered ${answer.status}: ${errorText(answer)}`);
  return answer;
}

function ms(value: number | undefined): string {
  return value === undefined ? '-' : value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : String(Math.round(value));
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  if (m) return `${m}m${seconds % 60}s`;
  return `${seconds}s`;
}

function lastCheck(server: ServerView): string {
  const check = server.last_check;
  return check ? `${check.result}: ${check.reason}` : '-';
}

/** A left-aligned text table; numeric columns right-aligned. */
function table(headers: string[], rows: string[][], numeric: Set<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function formatStatus(status: StatusView): string {
  const out: string[] = [
    `carelb ${status.version}, up ${duration(status.uptime_s)}, ${status.workers} threads, config ${status.config_hash.slice(0, 12)}, ${status.thread_restarts} thread restarts`,
  ];
  for (const vs of status.virtual_services) {
    const errors = Object.entries(vs.errors).filter(([, n]) => n > 0);
    out.push(
      '',
      `${vs.name}  ${vs.listen}  ${vs.tls ? 'tls' : 'http'}  ${vs.balance}  requests ${vs.requests}  in flight ${vs.active}  errors ${errors.length ? errors.map(([code, n]) => `${code}=${n}`).join(' ') : 'none'}`,
    );
    out.push(
      table(
        ['SERVER', 'ADDRESS', 'HEALTH', 'ADMIN', 'WEIGHT', 'ACTIVE', 'REQUESTS', 'ERRORS', 'P50 MS', 'P99 MS', 'LAST CHECK'],
        vs.servers.map((s) => [
          s.name,
          s.address,
          s.health,
          s.admin,
          String(s.weight),
          String(s.active),
          String(s.requests),
          String(s.errors),
          ms(s.latency_ms?.p50),
          ms(s.latency_ms?.p99),
          lastCheck(s),
        ]),
        new Set([4, 5, 6, 7, 8, 9]),
      ).replace(/^/gm, '  '),
    );
  }
  return `${out.join('\n')}\n`;
}

/** Runs `carelb ctl ARGS`; writes results to `out`, problems to `err`; resolves with the exit status. */
export async function runCtl(args: string[], out: Out, err: Out): Promise<number> {
  try {
    const parsed = parseCtlArgs(args);
    if (parsed.help || parsed.command === 'help') {
      out.write(CTL_USAGE);
      return 0;
    }
    if (!parsed.command) throw new UsageError('a command is required');
    const needsOperand = ['drain', 'halt', 'online'].includes(parsed.command);
    if (!needsOperand && !['status', 'reload'].includes(parsed.command)) throw new UsageError(`unknown command "${parsed.command}"`);
    if (needsOperand && !/^[^/]+\/[^/]+$/.test(parsed.operand ?? '')) throw new UsageError(`${parsed.command} needs VS/SERVER, e.g. carelb ctl ${parsed.command} api/server1`);
    if (!needsOperand && parsed.operand !== undefined) throw new UsageError(`unexpected argument "${parsed.operand}": ${parsed.command} takes none`);
    if (parsed.json && parsed.command !== 'status') throw new UsageError('--json goes with status only');
    const target = resolveTarget(parsed);
    let token: string;
    try {
      token = readToken(target.tokenFile);
    } catch (error) {
      throw new CtlError(`${(error as Error).message}: run as a user who can read it, or pass --token-file`);
    }

    switch (parsed.command) {
      case 'status': {
        const answer = checked(await call(target, token, 'GET', '/api/status'));
        if (answer.status !== 200) throw new CtlError(`carelb answered ${answer.status}: ${errorText(answer)}`);
        out.write(parsed.json ? `${JSON.stringify(answer.body, null, 2)}\n` : formatStatus(answer.body as StatusView));
        return 0;
      }
      case 'reload': {
        const answer = checked(await call(target, token, 'POST', '/api/reload'));
        const body = answer.body as { ok?: boolean; config_hash?: string; errors?: string[] };
        if (answer.status === 200 && body.ok) {
          out.write(`reloaded: config ${body.config_hash?.slice(0, 12)} is running\n`);
          return 0;
        }
        const errors = Array.isArray(body.errors) ? body.errors : [errorText(answer)];
        err.write(`reload refused, the running config is unchanged:\n${errors.map((e) => `  ${e}`).join('\n')}\n`);
        return 1;
      }
      default: {
        const [vs, server] = parsed.operand!.split('/');
        const path = `/api/servers/${encodeURIComponent(vs)}/${encodeURIComponent(server)}/${parsed.command}`;
        const answer = checked(await call(target, token, 'POST', path));
        if (answer.status !== 200) throw new CtlError(`carelb answered ${answer.status}: ${errorText(answer)}`);
        const view = answer.body as ServerView;
        out.write(`${vs}/${view.name}: ${view.admin} (health ${view.health}, ${view.active} in flight)\n`);
        return 0;
      }
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err.write(`carelb ctl: ${error.message}\n\n${CTL_USAGE}`);
      return USAGE_EXIT;
    }
    if (!(error instanceof CtlError)) throw error;
    err.write(`carelb ctl: ${error.message}\n`);
    return 1;
  }
}
