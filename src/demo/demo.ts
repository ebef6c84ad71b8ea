/**
 * The embedded demo (`carelb demo`, which `npm start` runs): two demo EHR API servers on
 * loopback and carelb in front of them on http://127.0.0.1:8080.
 */
import { validateConfig } from '../config/load';
import type { Logger } from '../observe/log';
import { runCarelb, type Running } from '../primary/run';
import { readFileSync } from 'node:fs';
import { ensureDemoCerts } from './certs';
import { startDemoApiServer, type DemoApiServer } from './ehr-api';

export const DEMO_PORT = Number(process.env.CARELB_DEMO_PORT ?? 8080);
export const DEMO_OFFLOAD_PORT = Number(process.env.CARELB_DEMO_OFFLOAD_PORT ?? 8443);
export const DEMO_BRIDGE_PORT = Number(process.env.CARELB_DEMO_BRIDGE_PORT ?? 9443);

export async function startDemo(log: Logger): Promise<Running> {
  const certs = ensureDemoCerts();
  const plain = await Promise.all([1, 2].map((n) => startDemoApiServer({ host: '127.0.0.1', port: 0, name: `ehr-api-${n}` })));
  const secure = await Promise.all(
    [1, 2].map((n) => startDemoApiServer({ host: '127.0.0.1', port: 0, name: `ehr-api-tls-${n}`, tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) } })),
  );
  const servers = [...plain, ...secure];
  const pool = (list: DemoApiServer[]) => list.map((s) => ({ name: s.name, address: `127.0.0.1:${s.port}`, weight: 1 }));
  const result = validateConfig({
    workers: 'auto',
    pin_workers: false,
    shutdown_grace: '5s',
    virtual_services: [
      { name: 'ehr-api', listen: `127.0.0.1:${DEMO_PORT}`, servers: pool(plain) },
      // TLS offload: clients speak TLS to carelb, carelb speaks plain HTTP to the servers.
      { name: 'ehr-api-offload', listen: `127.0.0.1:${DEMO_OFFLOAD_PORT}`, tls: { cert: certs.cert, key: certs.key }, servers: pool(plain) },
      // TLS bridging: carelb re-encrypts to servers that speak TLS themselves, verifying them with the demo CA.
      {
        name: 'ehr-api-bridge',
        listen: `127.0.0.1:${DEMO_BRIDGE_PORT}`,
        tls: { cert: certs.cert, key: certs.key },
        backend_tls: { ca: certs.ca, servername: 'localhost' },
        servers: pool(secure),
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
      'carelb demo: three virtual services in front of demo EHR (FHIR R4) API servers on loopback',
      `  http://127.0.0.1:${DEMO_PORT}         plain HTTP      -> ${plain.map((s) => `${s.name} :${s.port}`).join(', ')}`,
      `  https://127.0.0.1:${DEMO_OFFLOAD_PORT}       TLS offload     -> the same servers, plain HTTP`,
      `  https://127.0.0.1:${DEMO_BRIDGE_PORT}       TLS bridging    -> ${secure.map((s) => `${s.name} :${s.port}`).join(', ')} (TLS)`,
      `Certificates (self-signed demo CA) are in ${certs.dir}`,
      'Try:',
      `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/metadata`,
      `  curl -i http://127.0.0.1:${DEMO_PORT}/fhir/r4/Patient/123     (X-Served-By shows the server)`,
      `  curl -i --cacert ${certs.ca} https://localhost:${DEMO_OFFLOAD_PORT}/fhir/r4/Patient/123`,
      `  curl -i --cacert ${certs.ca} https://localhost:${DEMO_BRIDGE_PORT}/fhir/r4/Observation?patient=123`,
      `  curl -i -X POST --data-binary @package.json http://127.0.0.1:${DEMO_PORT}/echo`,
      'Stop with Ctrl-C.',
      '',
    ].join('\n') + '\n',
  );
  return running;
}
