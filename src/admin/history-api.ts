/**
 * `GET /api/history?window=15m` and `GET /api/events` (issue 15): the primary's 1 s samples and
 * the last server transitions, for the dashboard's charts. Read role. Pure over the context.
 */
import type * as http from 'node:http';
import type { AdminContext } from './context';
import { sendJson } from './http-io';
import { HISTORY_CAPACITY, HISTORY_INTERVAL_MS } from '../observe/history';

/** Longest window there is data for: the ring's depth. */
const MAX_WINDOW_S = (HISTORY_CAPACITY * HISTORY_INTERVAL_MS) / 1000;
const WINDOW = /^([1-9][0-9]{0,4})(s|m)$/;

/** Seconds of `?window=` (`30s`, `5m`, `15m`; default 15m), or an error text for a 400. */
export function parseWindow(value: string | null): number | string {
  if (value === null) return MAX_WINDOW_S;
  const match = WINDOW.exec(value);
  if (!match) return `window must be a number of seconds or minutes such as 30s, 5m or 15m (got "${value.slice(0, 40)}")`;
  const seconds = Number(match[1]) * (match[2] === 'm' ? 60 : 1);
  if (seconds > MAX_WINDOW_S) return `window may be at most ${MAX_WINDOW_S / 60}m: carelb keeps ${MAX_WINDOW_S / 60} minutes of samples`;
  return seconds;
}

function eventsView(ctx: AdminContext) {
  return ctx.transitions().map((t) => ({ ...t, time: new Date(t.time).toISOString() }));
}

/** Answers /api/history and /api/events; false when `path` is neither. */
export function handleHistory(ctx: AdminContext, req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean {
  if (path !== '/api/history' && path !== '/api/events') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, { error: 'method not allowed; use GET' }, { allow: 'GET' });
    return true;
  }
  if (path === '/api/events') {
    sendJson(res, 200, { events: eventsView(ctx) });
    return true;
  }
  const query = new URL(req.url ?? '/', 'http://admin.invalid').searchParams;
  const unknown = [...query.keys()].filter((key) => key !== 'window');
  if (unknown.length > 0) {
    sendJson(res, 400, { error: `unknown query parameter "${unknown[0].slice(0, 40)}": use window` });
    return true;
  }
  const window = parseWindow(query.get('window'));
  if (typeof window === 'string') {
    sendJson(res, 400, { error: window });
    return true;
  }
  sendJson(res, 200, { ...ctx.history(window), events: eventsView(ctx) });
  return true;
}
