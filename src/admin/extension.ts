/**
 * Extra admin API routes a caller of runCarelb can add: the demo's (`/api/demo/...`, issue 15).
 * They exist only when the demo registers them, so a production carelb has no such route at
 * all (not a route switched off by a flag). The admin server authenticates them like every
 * /api path (GET needs read, anything else operate) before calling `handle`.
 */
import type * as http from 'node:http';

export interface AdminExtension {
  /** Owns `/api/<name>` and everything under it; `/api/status` carries `<name>: status()`. */
  readonly name: string;
  /** What the dashboard needs to draw this extension's controls. */
  status(): unknown;
  /** Answers one authenticated request (a POST body has been read and dropped already). */
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string, method: string): void | Promise<void>;
}
