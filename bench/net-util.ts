/** Loopback port helpers for starting servers and knowing when they listen. */
import * as net from 'node:net';
import type { Tracked } from './children';

/**
 * A port that was free a moment ago on 127.0.0.1. Racy in theory (another process could take
 * it before our server binds), harmless in practice on a bench machine; a failed bind shows
 * up as a start failure with the proxy's own message.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/**
 * Resolves once 127.0.0.1:port accepts TCP connections. Rejects with the child's first stderr
 * line if it exits first, or after timeoutMs.
 */
export async function waitForPort(port: number, child: Tracked, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.hasExited()) throw new Error(firstError(child, 'exited before listening'));
    if (await tryConnect(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${child.label} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/**
 * The child's first stderr line that reads like an error (HAProxy prints NOTICE lines before
 * its ALERT, nginx prefixes [emerg]), else its first line, else a fallback.
 */
export function firstError(child: Tracked, fallback: string): string {
  const line = child.stderrHead.find((l) => /alert|emerg|error|fatal|cannot|invalid/i.test(l)) ?? child.stderrHead[0];
  return line ?? `${child.label} ${fallback}`;
}
