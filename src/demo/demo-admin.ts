/**
 * The demo's admin routes (issue 15), registered on the admin server only by `carelb demo`
 * (admin/extension.ts): a production carelb has no /api/demo at all. GET needs a read token,
 * POST an operate token, like every admin route.
 *
 *   GET  /api/demo                          { traffic, servers: [{ name, sick }], rise, fall }
 *   POST /api/demo/traffic/start|stop       the built-in client mix (traffic.ts)
 *   POST /api/demo/servers/{name}/sick|well make a demo server fail every request, or heal it
 */
import type { AdminExtension } from '../admin/extension';
import { decodeSegment, sendJson } from '../admin/http-io';
import type { DemoApiServer } from './ehr-api';
import type { DemoTraffic } from './traffic';

export interface DemoControls {
  traffic: DemoTraffic;
  /** The servers the dashboard may make sick. */
  sickable: DemoApiServer[];
  /** The demo's health check, so the dashboard can say how long a change takes. */
  rise: number;
  fall: number;
  /** Logs what a demo control did (the demo's log). */
  note(message: string, fields: Record<string, unknown>): void;
}

const SERVER_ACTION = /^\/api\/demo\/servers\/([^/]+)\/(sick|well)$/;

export function demoAdmin(controls: DemoControls): AdminExtension {
  const status = () => ({
    traffic: controls.traffic.status(),
    servers: controls.sickable.map((s) => ({ name: s.name, sick: s.sick })),
    rise: controls.rise,
    fall: controls.fall,
  });
  return {
    name: 'demo',
    status,
    handle(_req, res, path, method) {
      if (path === '/api/demo') {
        if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: 'method not allowed; use GET' }, { allow: 'GET' });
        return sendJson(res, 200, status());
      }
      const traffic = /^\/api\/demo\/traffic\/(start|stop)$/.exec(path);
      const server = SERVER_ACTION.exec(path);
      if (!traffic && !server) return sendJson(res, 404, { error: `no such demo endpoint: ${path}` });
      if (method !== 'POST') return sendJson(res, 405, { error: 'method not allowed; use POST' }, { allow: 'POST' });
      if (traffic) {
        if (traffic[1] === 'start') controls.traffic.start();
        else controls.traffic.stop();
        controls.note(`demo traffic ${traffic[1] === 'start' ? 'started' : 'stopped'}`, {});
        return sendJson(res, 200, status());
      }
      const name = decodeSegment(server![1]);
      const target = controls.sickable.find((s) => s.name === name);
      if (!target) return sendJson(res, 404, { error: `no demo server "${name ?? server![1]}" can be made sick; try ${controls.sickable.map((s) => s.name).join(', ')}` });
      target.setSick(server![2] === 'sick');
      controls.note(`demo server ${target.name} is ${server![2]}`, { server: target.name });
      return sendJson(res, 200, status());
    },
  };
}
