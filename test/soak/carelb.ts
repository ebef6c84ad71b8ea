/**
 * carelb as a real child process for the soak: its config (written as YAML into a temp dir,
 * rewritten for reloads), the process itself (`node dist/src/cli.js start -c FILE`), its admin
 * API (bearer token from a file the harness writes), and its memory (/proc/PID/status VmRSS:
 * the data-plane threads live in the same process, so one figure covers them all).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { pollUntil } from './cleanup';
import { TIMEOUTS, type Vs } from './schedule';

/** carelb's CLI: this build's, or CARELB_SOAK_CLI (another build's dist/src/cli.js, e.g. to check a fix against the code before it). */
export const CLI = process.env.CARELB_SOAK_CLI ?? join(__dirname, '..', '..', 'src', 'cli.js');

export interface Topology {
  ports: Record<Vs, number>;
  adminPort: number;
  servers: Record<Vs, { name: string; address: string }[]>;
}

export interface Weights {
  main: [number, number];
  raw: [number, number];
}

/** Requests each queue server takes at once (across threads); more wait in the queue. */
export const QUEUE_MAX_CONNS = [3, 2];

export function configDocument(topology: Topology, dir: string, weights: Weights): unknown {
  const timeouts = {
    connect: `${TIMEOUTS.connectMs}ms`,
    server: `${TIMEOUTS.serverMs}ms`,
    upstream_idle: `${TIMEOUTS.upstreamIdleMs}ms`,
    client_body_idle: `${TIMEOUTS.clientBodyIdleMs}ms`,
    queue: `${TIMEOUTS.queueMs}ms`,
  };
  const vs = (name: Vs, extra: Record<string, unknown>, servers: Record<string, unknown>[]) => ({
    name,
    listen: `127.0.0.1:${topology.ports[name]}`,
    timeouts,
    ...extra,
    servers,
  });
  const pair = (name: 'main' | 'raw') => topology.servers[name].map((s, i) => ({ name: s.name, address: s.address, weight: weights[name][i] }));
  return {
    workers: 2,
    // The machine is shared: the soak tests the request path, not CPU placement.
    pin_workers: false,
    shutdown_grace: '2s',
    admin: { listen: `127.0.0.1:${topology.adminPort}`, token_file: join(dir, 'admin.token') },
    virtual_services: [
      vs('main', {}, pair('main')),
      vs('raw', {}, pair('raw')),
      vs('queue', { max_queue: 16 }, topology.servers.queue.map((s, i) => ({ name: s.name, address: s.address, max_conns: QUEUE_MAX_CONNS[i] }))),
    ],
  };
}

export interface CarelbChild {
  pid: number;
  configPath: string;
  /** Null while it runs; its exit code or signal once it exited. */
  exit: { code: number | null; signal: string | null; at: number } | null;
  exited: Promise<void>;
  /** Log lines at warn level or above (pino: level >= 40), and stderr, for the report. */
  problems: string[];
  /** Observations about carelb worth a line in the report without failing it. */
  notes: string[];
  /** How many times carelb logged "config reloaded", by source (SIGHUP reloads are seen only here). */
  reloads: { api: number; sighup: number; refused: number };
  writeConfig(weights: Weights): void;
  admin(method: 'GET' | 'POST', path: string): Promise<{ status: number; json: any }>;
  rssKb(): number;
  /** SIGTERM by PID; resolves with the exit code, or null when it had to be SIGKILLed after `graceMs`. */
  stop(graceMs: number): Promise<number | null>;
  kill(): void;
}

export async function startCarelb(topology: Topology, dir: string, weights: Weights, readyMs = 20_000): Promise<CarelbChild> {
  const configPath = join(dir, 'carelb.yaml');
  const token = randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'admin.token'), `${token}\n`, { mode: 0o600 });
  const writeConfig = (w: Weights) => writeFileSync(configPath, stringify(configDocument(topology, dir, w)));
  writeConfig(weights);

  const proc: ChildProcess = spawn(process.execPath, [CLI, 'start', '-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const problems: string[] = [];
  const reloads = { api: 0, sighup: 0, refused: 0 };
  const note = (line: string) => problems.length < 200 && problems.push(line.length > 2000 ? `${line.slice(0, 2000)}…` : line);
  let ready: (() => void) | null = null;
  let buffered = '';
  proc.stdout!.setEncoding('utf8').on('data', (data: string) => {
    buffered += data;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      let entry: { level?: number; msg?: string; source?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (entry.msg === 'ready') ready?.();
      if (entry.msg === 'config reloaded') entry.source === 'SIGHUP' ? reloads.sighup++ : reloads.api++;
      if (typeof entry.msg === 'string' && entry.msg.startsWith('reload refused')) reloads.refused++;
      if ((entry.level ?? 0) >= 40) note(line);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (data: string) => note(`stderr: ${data.trimEnd()}`));

  const child: CarelbChild = {
    pid: proc.pid!,
    configPath,
    exit: null,
    exited: new Promise<void>((resolve) =>
      proc.on('exit', (code, signal) => {
        child.exit = { code, signal, at: Date.now() };
        resolve();
      }),
    ),
    problems,
    notes: [],
    reloads,
    writeConfig,
    admin: (method, path) => adminRequest(topology.adminPort, token, method, path),
    rssKb: () => {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      return match ? Number(match[1]) : NaN;
    },
    stop: async (graceMs) => {
      if (child.exit) return child.exit.code;
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([child.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
      clearTimeout(timer);
      if (!inTime) {
        child.kill();
        await child.exited;
        return null;
      }
      return child.exit!.code;
    },
    kill: () => {
      if (!child.exit) proc.kill('SIGKILL');
    },
  };

  // If the harness itself goes (an uncaught error, SIGINT/SIGTERM through main.ts), the child goes too.
  const onExit = () => child.kill();
  process.on('exit', onExit);
  void child.exited.then(() => process.off('exit', onExit));

  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([
    new Promise<boolean>((resolve) => (ready = () => resolve(true))),
    child.exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), readyMs))),
  ]);
  clearTimeout(timer);
  if (!started) {
    child.kill();
    throw new Error(`carelb did not become ready (${child.exit ? `exited ${child.exit.code ?? child.exit.signal}` : `no "ready" within ${readyMs} ms`}): ${problems.join('\n')}`);
  }
  // carelb logs "ready" when the threads listen; the admin API may come up a moment later.
  const readyAt = Date.now();
  let refused = 0;
  const up = await pollUntil(async () => {
    try {
      return (await child.admin('GET', '/api/status')).status === 200;
    } catch {
      refused++;
      return false;
    }
  }, 10_000, 20);
  if (!up) {
    child.kill();
    throw new Error('carelb logged "ready" but its admin API did not answer within 10 s');
  }
  if (refused > 0) child.notes.push(`the admin API answered ${Date.now() - readyAt} ms after carelb logged "ready" (${refused} refused connections before): "ready" comes before the admin server listens`);
  return child;
}

/** One admin API call (its own connection, 5 s limit): the status code and the parsed JSON. */
function adminRequest(port: number, token: string, method: 'GET' | 'POST', path: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: { authorization: `Bearer ${token}`, 'content-length': '0' }, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode!, json: JSON.parse(text) });
        } catch {
          resolve({ status: res.statusCode!, json: { text } });
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${method} ${path}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}
