/**
 * The embedded demo (`npm start`, `carelb start` without -c): two demo EHR API servers on
 * loopback and carelb in front of them on http://127.0.0.1:8080.
 */
import { validateConfig } from '../config/load';
import type { Logger } from '../observe/log';
import { runCarelb, type Running } from '../primary/run';
import { startDemoApiServer } from './ehr-api';

export const DEMO_PORT = Number(process.env.CARELB_DEMO_PORT ?? 8080);

export async function startDemo(log: Logger): Promise<Running> {
  const servers = await Promise.all([1, 2].map((n) => startDemoApiServer({ host: '127.0.0.1', port: 0, name: `ehr-api-${n}` })));
  const result = validateConfig({
    workers: 'auto',
    pin_workers: false,
    shutdown_grace: '5s',
    virtual_services: [
      {
        name: 'ehr-api',
        listen: `127.0.0.1:${DEMO_PORT}`,
        balance: 'leastconn',
        servers: servers.map((s) => ({ name: s.name, address: `127.0.0.1:${s.port}`, weight: 1 })),
      },
    ],
  });
  if (!result.ok) throw new Error(`demo config invalid: ${result.errors.join('; ')}`);
  const closeServers = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };
  let running: Running;
  try {
    running = await runCarelb(result.config, { log, onStopped: closeServers });
  } catch (error) {
    await closeServers();
    throw error;
  }
  process.stdout.write(
    [
      '',
      `carelb demo: virtual service "ehr-api" on http://127.0.0.1:${DEMO_PORT}, balancing two demo EHR API servers:`,
      ...servers.map((s) => `  ${s.name} on http://127.0.0.1:${s.port}`),
      'Try:',
      `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/metadata`,
      `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/Patient/123   (see X-Served-By alternate)`,
      `  curl -i -X POST --data-binary @package.json http://127.0.0.1:${DEMO_PORT}/echo`,
      'Stop with Ctrl-C.',
      '',
    ].join('\n') + '\n',
  );
  return running;
}
