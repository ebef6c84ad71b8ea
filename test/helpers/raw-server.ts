/**
 * A raw TCP "server" whose answers are scripted per request, for bad-response and fuzz
 * tests. It splits what carelb sends into requests (heads, plus Content-Length or chunked
 * bodies), records on which connection each arrived, and hands each to the script with the
 * socket, so the script can write anything at all: broken heads, half a body, nothing.
 */
import type * as net from 'node:net';
import { startRawBackend, type RawBackend } from './backend';

export interface ScriptedRequest {
  method: string;
  path: string;
  /** The request head as received, through the blank line. */
  head: string;
  /** Index of the server connection it arrived on (as in `received`). */
  connection: number;
  /** Requests before it on the same connection. */
  nth: number;
}

export type Script = (request: ScriptedRequest, socket: net.Socket) => void;

export interface ScriptedBackend extends RawBackend {
  requests: ScriptedRequest[];
  /** Connections (by index) that have closed, whichever side closed them. */
  closed: Set<number>;
  /** Bytes carelb sent that are not a well-formed request (should stay empty). */
  garbage: string[];
  /** Resolves when connection `index` has closed. */
  whenClosed(index: number): Promise<void>;
}

/** Length of the request body starting at `at`, or -1 when incomplete; chunked: through the last chunk. */
function bodyEnd(data: string, at: number, head: string): number {
  const length = /\r\ncontent-length: *(\d+)\r\n/i.exec(head);
  if (length) return data.length - at >= Number(length[1]) ? at + Number(length[1]) : -1;
  if (/\r\ntransfer-encoding: *chunked\r\n/i.test(head)) {
    let pos = at;
    for (;;) {
      const lineEnd = data.indexOf('\r\n', pos);
      if (lineEnd === -1) return -1;
      const size = parseInt(data.slice(pos, lineEnd), 16);
      if (Number.isNaN(size)) return -2;
      if (size === 0) return data.length >= lineEnd + 4 ? lineEnd + 4 : -1;
      pos = lineEnd + 2 + size + 2;
      if (pos > data.length) return -1;
    }
  }
  return at;
}

export async function startScriptedBackend(script: Script): Promise<ScriptedBackend> {
  const requests: ScriptedRequest[] = [];
  const closed = new Set<number>();
  const garbage: string[] = [];
  const closeWaiters = new Map<number, (() => void)[]>();
  const raw = await startRawBackend((socket, index) => {
    let buffered = '';
    let nth = 0;
    socket.on('close', () => {
      closed.add(index);
      for (const resolve of closeWaiters.get(index) ?? []) resolve();
      closeWaiters.delete(index);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const headEnd = buffered.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const head = buffered.slice(0, headEnd + 4);
        const line = /^([A-Z]+) (\S+) HTTP\/1\.1\r\n/.exec(head);
        if (!line) {
          garbage.push(buffered);
          buffered = '';
          return;
        }
        const end = bodyEnd(buffered, headEnd + 4, head);
        if (end === -2) {
          garbage.push(buffered);
          buffered = '';
          return;
        }
        if (end === -1) return;
        buffered = buffered.slice(end);
        const request: ScriptedRequest = { method: line[1], path: line[2], head, connection: index, nth: nth++ };
        requests.push(request);
        if (!socket.destroyed) script(request, socket);
      }
    });
  });
  return {
    ...raw,
    requests,
    closed,
    garbage,
    whenClosed: (index) =>
      closed.has(index)
        ? Promise.resolve()
        : new Promise((resolve) => {
            const list = closeWaiters.get(index) ?? [];
            list.push(resolve);
            closeWaiters.set(index, list);
          }),
  };
}
