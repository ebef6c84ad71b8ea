/**
 * The embedded demo (`carelb demo`, which `npm start` runs): demo EHR API servers on loopback,
 * carelb in front of them on http://127.0.0.1:8080 (and TLS offload and bridging listeners),
 * and the admin API with the dashboard on http://127.0.0.1:9900 (issue 15).
 *
 * The config is written to the state directory (demo.yaml) and run from there, so
 * `carelb ctl status -c <that file>` and a reload work as on a real install; the admin token
 * is generated next to it. `--traffic` starts the built-in client mix (traffic.ts); the
 * dashboard offers it too, and can make one demo server sick (demo-admin.ts).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfigText } from '../config/load';
import type { Logger } from '../observe/log';
import { runCarelb, type Running } from '../primary/run';
import { demoStateDir, ensureDemoCerts, type DemoCerts } from './certs';
import { demoAdmin } from './demo-admin';
import { startDemoApiServer, type DemoApiServer } from './ehr-api';
import { DemoTraffic } from './traffic';

export const DEMO_PORT = Number(process.env.CARELB_DEMO_PORT ?? 8080);
export const DEMO_OFFLOAD_PORT = Number(process.env.CARELB_DEMO_OFFLOAD_PORT ?? 8443);
export const DEMO_BRIDGE_PORT = Number(process.env.CARELB_DEMO_BRIDGE_PORT ?? 9443);
export const DEMO_ADMIN_PORT = Number(process.env.CARELB_DEMO_ADMIN_PORT ?? 9900);

/** Quick checks, so "sick" shows as down within seconds and a healed server returns as fast. */
const HEALTH = { interval: '1s', timeout: '500ms', rise: 2, fall: 2 };

export interface DemoOptions {
  /** Start the built-in client mix at once (`carelb demo --traffic`). */
  traffic?: boolean;
}

function demoDocument(certs: DemoCerts, plain: DemoApiServer[], secure: DemoApiServer[], dir: string) {
  const pool = (list: DemoApiServer[]) => list.map((s) => ({ name: s.name, address: `127.0.0.1:${s.port}`, weight: 1 }));
  return {
    workers: 'auto',
    pin_workers: false,
    shutdown_grace: '5s',
    virtual_services: [
      { name: 'ehr-api', listen: `127.0.0.1:${DEMO_PORT}`, health_check: HEALTH, servers: pool(plain) },
      // TLS offload: clients speak TLS to carelb, carelb speaks plain HTTP to the servers.
      { name: 'ehr-api-offload', listen: `127.0.0.1:${DEMO_OFFLOAD_PORT}`, tls: { cert: certs.cert, key: certs.key }, health_check: HEALTH, servers: pool(plain) },
      // TLS bridging: carelb re-encrypts to servers that speak TLS themselves, verifying them with the demo CA.
      {
        name: 'ehr-api-bridge',
        listen: `127.0.0.1:${DEMO_BRIDGE_PORT}`,
        tls: { cert: certs.cert, key: certs.key },
        backend_tls: { ca: certs.ca, servername: 'localhost' },
        health_check: { ...HEALTH, type: 'https' },
        servers: pool(secure),
      },
    ],
    // Loopback only, like every demo listener; the token file is generated at the first start.
    admin: { listen: `127.0.0.1:${DEMO_ADMIN_PORT}`, token_file: join(dir, 'demo-admin.token') },
  };
}

export async function startDemo(log: Logger, options: DemoOptions = {}): Promise<Running> {
  const dir = demoStateDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certs = ensureDemoCerts();
  const plain = await Promise.all([1, 2].map((n) => startDemoApiServer({ host: '127.0.0.1', port: 0, name: `ehr-api-${n}` })));
  const secure = await Promise.all(
    [1, 2].map((n) => startDemoApiServer({ host: '127.0.0.1', port: 0, name: `ehr-api-tls-${n}`, tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) } })),
  );
  const servers = [...plain, ...secure];
  const ca = readFileSync(certs.ca);
  const traffic = new DemoTraffic({ plain: { port: DEMO_PORT }, offload: { port: DEMO_OFFLOAD_PORT, ca }, bridge: { port: DEMO_BRIDGE_PORT, ca } });
  const closeServers = async () => {
    traffic.close();
    await Promise.all(servers.map((s) => s.close()));
  };
  const configPath = join(dir, 'demo.yaml');
  const text = `# Written by \`carelb demo\` at each start (the demo servers' ports change); edits are overwritten.\n${stringify(demoDocument(certs, plain, secure, dir))}`;
  let running: Running;
  try {
    writeFileSync(configPath, text);
    const loaded = loadConfigText(text, configPath);
    if (!loaded.ok) throw new Error(`demo config invalid: ${loaded.errors.join('; ')}`);
    const adminExtension = demoAdmin({ traffic, sickable: [plain[0]], rise: HEALTH.rise, fall: HEALTH.fall, note: (message, fields) => log.info(fields, message) });
    running = await runCarelb(loaded.config, { log, configPath, configText: text, onStopped: closeServers, adminExtension, auditLog: join(dir, 'demo-audit.log') });
  } catch (error) {
    await closeServers();
    throw error;
  }
  const token = readFileSync(running.adminServer!.tokenFile, 'utf8').trim();
  process.stdout.write(welcome({ certs, plain, secure, configPath, tokenFile: running.adminServer!.tokenFile, token, adminPort: running.adminServer!.port, traffic: options.traffic === true }));
  if (options.traffic) traffic.start();
  // Traffic stops first: requests sent while carelb drains would only fail.
  const stop = running.stop;
  running.stop = () => {
    traffic.stop();
    return stop();
  };
  return running;
}

interface Welcome {
  certs: DemoCerts;
  plain: DemoApiServer[];
  secure: DemoApiServer[];
  configPath: string;
  tokenFile: string;
  token: string;
  adminPort: number;
  traffic: boolean;
}

/** What `carelb demo` prints once everything answers: where to look and what to try. */
function welcome(w: Welcome): string {
  const admin = `http://127.0.0.1:${w.adminPort}`;
  return [
    '',
    'carelb demo: three virtual services in front of demo EHR (FHIR R4) API servers on loopback',
    `  http://127.0.0.1:${DEMO_PORT}         plain HTTP      -> ${w.plain.map((s) => `${s.name} :${s.port}`).join(', ')}`,
    `  https://127.0.0.1:${DEMO_OFFLOAD_PORT}       TLS offload     -> the same servers, plain HTTP`,
    `  https://127.0.0.1:${DEMO_BRIDGE_PORT}       TLS bridging    -> ${w.secure.map((s) => `${s.name} :${s.port}`).join(', ')} (TLS)`,
    '',
    'Dashboard (the token is in the link; the page keeps it for this tab and removes it from the address bar):',
    `  ${admin}/#token=${w.token}`,
    w.traffic
      ? '  Demo traffic is running (at most 40 requests/s, stops by itself after 5 minutes); the dashboard can restart or stop it.'
      : '  Press "Start demo traffic" there (or run `carelb demo --traffic`) to watch the charts move.',
    '  "Make ehr-api-1 sick" there shows a health check taking a server out and bringing it back.',
    '',
    'Try:',
    `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/metadata`,
    `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/Patient/123     (X-Served-By shows the server)`,
    `  curl -i --cacert ${w.certs.ca} https://localhost:${DEMO_OFFLOAD_PORT}/fhir/r4/Patient/123`,
    `  curl -i --cacert ${w.certs.ca} https://localhost:${DEMO_BRIDGE_PORT}/fhir/r4/Observation?patient=123`,
    `  curl -i -X POST --data-binary @package.json http://127.0.0.1:${DEMO_PORT}/echo`,
    `  carelb ctl status -c ${w.configPath}        (from a checkout: node dist/src/cli.js ctl status -c ...)`,
    `  carelb ctl drain ehr-api/ehr-api-1 -c ${w.configPath}`,
    `  curl -H "Authorization: Bearer $(cat ${w.tokenFile})" ${admin}/metrics`,
    `  curl -H "Authorization: Bearer $(cat ${w.tokenFile})" "${admin}/api/history?window=5m"`,
    `Certificates (self-signed demo CA) are in ${w.certs.dir}; the config is ${w.configPath}.`,
    'Stop with Ctrl-C.',
    '',
  ].join('\n') + '\n';
}
