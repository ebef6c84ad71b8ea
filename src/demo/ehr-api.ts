/**
 * A demo EHR REST API server shaped like an EHR's FHIR R4 endpoint (the kind of API server carelb
 * balances): used by `npm start`'s embedded demo, by tests and by hand through ehr-api-main.ts.
 *
 * Every answer is JSON and carries `X-Served-By: <name>`, so a client going through the balancer
 * can see which server answered. All data is synthetic, derived deterministically from ids and
 * search terms: no real patient data exists here.
 *
 * Routes (each also answers HEAD where it answers GET):
 *   GET  /fhir/r4/metadata                 CapabilityStatement
 *   GET  /fhir/r4/Patient/{id}             Patient derived from the id; 404 OperationOutcome for a bad id
 *   GET  /fhir/r4/Patient?name=...         Bundle searchset over a fixed synthetic population
 *   GET  /fhir/r4/Observation?patient=id   Bundle searchset of vital signs for that patient
 *   ANY  /echo                             method, url, headers, body length and sha256 (streamed)
 *   GET  /health                           {"status":"UP"}
 *   GET  /delay/{ms}                       answers after ms milliseconds
 *   POST /admin/delay/{ms}                 sets the server-wide artificial delay
 *
 * The server-wide delay (`delayMs`) is applied before every request except `/admin/*`, so a test
 * can always turn it off again promptly.
 *
 * A sick server (`setSick(true)`, the demo dashboard's button, issue 15) answers every request
 * but `/admin/*` with 503, /health included: carelb's health check takes it out after `fall`
 * failures and brings it back after `rise` passes once it is well again.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface DemoApiOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 (the default) picks an ephemeral port. */
  port?: number;
  /** Server name reported in X-Served-By, e.g. "ehr-api-1". */
  name: string;
  /** Artificial delay in milliseconds applied to every request (default 0). */
  delayMs?: number;
  /** PEM certificate and key: when set the server speaks HTTPS. */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface DemoApiServer {
  name: string;
  host: string;
  port: number;
  /** Requests waiting out a delay right now (for tests and the demo's own status). */
  readonly delayed: number;
  /** True while the server fails every request (setSick). */
  readonly sick: boolean;
  setSick(sick: boolean): void;
  /** Closes the listener, destroys open connections and pending timers; resolves once closed. */
  close(): Promise<void>;
}

/** Longest delay /delay/{ms} and /admin/delay/{ms} accept: one minute. */
export const MAX_DELAY_MS = 60_000;

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const PLAIN_JSON = 'application/json; charset=utf-8';
const FHIR_BASE = '/fhir/r4';
/** FHIR ids here: letters, digits and "-", 1 to 64 characters (FHIR R4 also allows "."; the demo does not). */
const PATIENT_ID = /^[A-Za-z0-9-]{1,64}$/;
const DELAY_PATH = /^\/delay\/(\d{1,6})$/;
const ADMIN_DELAY_PATH = /^\/admin\/delay\/(\d{1,6})$/;

// ---------------------------------------------------------------------------------------------
// Synthetic data. Everything is a pure function of its input so that every server in a pool
// answers the same resource identically: a client cannot tell which server served it except by
// X-Served-By.

const GIVEN_FEMALE = ['Alice', 'Beatrice', 'Clara', 'Dana', 'Elena', 'Fiona', 'Grace', 'Hana', 'Iris', 'June', 'Kira', 'Lena'];
const GIVEN_MALE = ['Aaron', 'Bruno', 'Caleb', 'Dmitri', 'Elias', 'Felix', 'Gideon', 'Hugo', 'Ivan', 'Jonas', 'Karl', 'Liam'];
const FAMILY = ['Testpatient', 'Sample', 'Demo', 'Example', 'Synthetic', 'Mockley', 'Fakeworth', 'Placeholder', 'Dummy', 'Specimen', 'Trial', 'Modelo'];
const CITIES = ['Springfield', 'Riverton', 'Lakeside', 'Hillview', 'Fairhaven', 'Oakdale'];
/** Size of the synthetic population that Patient?name= searches. */
const POPULATION = 240;

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export interface SyntheticPatient {
  resourceType: 'Patient';
  id: string;
  meta: { lastUpdated: string; tag: { system: string; code: string; display: string }[] };
  identifier: { system: string; value: string }[];
  active: boolean;
  name: { use: string; family: string; given: string[] }[];
  gender: 'female' | 'male';
  birthDate: string;
  address: { city: string; postalCode: string; country: string }[];
}

/** A synthetic Patient derived only from `id` (the same id always gives the same patient). */
export function syntheticPatient(id: string): SyntheticPatient {
  const h = digest(`patient:${id}`);
  const gender = h[0] % 2 === 0 ? 'female' : 'male';
  const given = (gender === 'female' ? GIVEN_FEMALE : GIVEN_MALE)[h[1] % 12];
  const family = FAMILY[h[2] % FAMILY.length];
  const year = 1930 + (h[3] % 90);
  const month = 1 + (h[4] % 12);
  const day = 1 + (h[5] % 28);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return {
    resourceType: 'Patient',
    id,
    meta: {
      lastUpdated: '2024-01-01T00:00:00Z',
      tag: [{ system: 'urn:carelb:demo', code: 'synthetic', display: 'Synthetic test data, not a real person' }],
    },
    identifier: [{ system: 'urn:carelb:demo:mrn', value: `MRN${h.readUInt32BE(6) % 10_000_000}` }],
    active: true,
    name: [{ use: 'official', family, given: [given] }],
    gender,
    birthDate: `${year}-${pad(month)}-${pad(day)}`,
    address: [{ city: CITIES[h[10] % CITIES.length], postalCode: String(10000 + (h.readUInt16BE(11) % 89999)), country: 'ZZ' }],
  };
}

let population: SyntheticPatient[] | undefined;
function syntheticPopulation(): SyntheticPatient[] {
  population ??= Array.from({ length: POPULATION }, (_, i) => syntheticPatient(`demo-${i + 1}`));
  return population;
}

/** FHIR string search: case-insensitive "starts with" on any part of the name. */
export function searchPatients(name: string | undefined, count: number): { total: number; patients: SyntheticPatient[] } {
  const term = name?.trim().toLowerCase() ?? '';
  const matches = term
    ? syntheticPopulation().filter((p) => p.name.some((n) => [n.family, ...n.given].some((part) => part.toLowerCase().startsWith(term))))
    : syntheticPopulation();
  return { total: matches.length, patients: matches.slice(0, count) };
}

interface VitalSpec {
  code: string;
  display: string;
  unit: string;
  ucum: string;
  base: number;
  spread: number;
}

const VITALS: VitalSpec[] = [
  { code: '8867-4', display: 'Heart rate', unit: 'beats/minute', ucum: '/min', base: 60, spread: 40 },
  { code: '8310-5', display: 'Body temperature', unit: 'Cel', ucum: 'Cel', base: 36.1, spread: 1.5 },
  { code: '9279-1', display: 'Respiratory rate', unit: 'breaths/minute', ucum: '/min', base: 12, spread: 8 },
  { code: '29463-7', display: 'Body weight', unit: 'kg', ucum: 'kg', base: 50, spread: 50 },
];

/** Synthetic vital-sign Observations for a patient id. */
export function syntheticObservations(patientId: string): object[] {
  return VITALS.map((vital, i) => {
    const h = digest(`observation:${patientId}:${vital.code}`);
    const value = Math.round((vital.base + (h.readUInt16BE(0) / 65535) * vital.spread) * 10) / 10;
    return {
      resourceType: 'Observation',
      id: `${patientId}-obs-${i + 1}`,
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: vital.code, display: vital.display }], text: vital.display },
      subject: { reference: `Patient/${patientId}` },
      effectiveDateTime: `2024-01-${String(1 + (h[2] % 28)).padStart(2, '0')}T08:00:00Z`,
      valueQuantity: { value, unit: vital.unit, system: 'http://unitsofmeasure.org', code: vital.ucum },
    };
  });
}

function searchset(selfUrl: string, total: number, resources: { resourceType: string; id: string }[]): object {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total,
    link: [{ relation: 'self', url: selfUrl }],
    entry: resources.map((resource) => ({ fullUrl: `${FHIR_BASE}/${resource.resourceType}/${resource.id}`, resource, search: { mode: 'match' } })),
  };
}

function operationOutcome(code: string, diagnostics: string): object {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function capabilityStatement(name: string): object {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2024-01-01',
    kind: 'instance',
    software: { name: 'carelb demo EHR API', version: '1.0.0' },
    implementation: { description: `carelb demo FHIR server ${name} (synthetic data only)`, url: FHIR_BASE },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource: [
          { type: 'Patient', interaction: [{ code: 'read' }, { code: 'search-type' }], searchParam: [{ name: 'name', type: 'string' }] },
          { type: 'Observation', interaction: [{ code: 'search-type' }], searchParam: [{ name: 'patient', type: 'reference' }] },
        ],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Server.

/** Starts one demo API server; resolves once it is listening. */
export async function startDemoApiServer(options: DemoApiOptions): Promise<DemoApiServer> {
  const name = options.name;
  const host = options.host ?? '127.0.0.1';
  let delayMs = clampDelay(options.delayMs ?? 0);
  let sick = false;
  const timers = new Set<NodeJS.Timeout>();
  let closing = false;

  /** Runs `fn` after `ms` (now when 0); the timer is cancelled if the server closes first. */
  const later = (ms: number, fn: () => void): void => {
    if (ms <= 0) return fn();
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const send = (res: http.ServerResponse, status: number, contentType: string, body: unknown, extra?: http.OutgoingHttpHeaders): void => {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(text),
      'X-Served-By': name,
      'Cache-Control': 'no-store',
      ...extra,
    });
    // Node drops the body of a response to HEAD by itself (RFC 9110 §9.3.2).
    res.end(text);
  };
  const fhir = (res: http.ServerResponse, status: number, body: unknown, extra?: http.OutgoingHttpHeaders): void =>
    send(res, status, FHIR_JSON, body, extra);
  const json = (res: http.ServerResponse, status: number, body: unknown): void => send(res, status, PLAIN_JSON, body);

  /** Answers everything but /echo, which reads its body itself. */
  const route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL): void => {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';

    if (path === '/health') {
      if (!isGet) return fhir(res, 405, operationOutcome('not-supported', `${method} is not allowed on ${path}`), { Allow: 'GET, HEAD' });
      return json(res, 200, { status: 'UP' });
    }

    const adminDelay = ADMIN_DELAY_PATH.exec(path);
    if (adminDelay) {
      if (method !== 'POST') return fhir(res, 405, operationOutcome('not-supported', `${method} is not allowed on ${path}`), { Allow: 'POST' });
      const ms = Number(adminDelay[1]);
      if (ms > MAX_DELAY_MS) return fhir(res, 400, operationOutcome('value', `delay must be at most ${MAX_DELAY_MS} ms`));
      delayMs = ms;
      return json(res, 200, { delayMs });
    }

    const delay = DELAY_PATH.exec(path);
    if (delay) {
      if (!isGet) return fhir(res, 405, operationOutcome('not-supported', `${method} is not allowed on ${path}`), { Allow: 'GET, HEAD' });
      const ms = Number(delay[1]);
      if (ms > MAX_DELAY_MS) return fhir(res, 400, operationOutcome('value', `delay must be at most ${MAX_DELAY_MS} ms`));
      return later(ms, () => json(res, 200, { delayedMs: ms }));
    }

    if (path === `${FHIR_BASE}/metadata` || path.startsWith(`${FHIR_BASE}/Patient`) || path.startsWith(`${FHIR_BASE}/Observation`)) {
      if (!isGet) return fhir(res, 405, operationOutcome('not-supported', `${method} is not allowed on ${path}`), { Allow: 'GET, HEAD' });
    }

    if (path === `${FHIR_BASE}/metadata`) return fhir(res, 200, capabilityStatement(name));

    if (path === `${FHIR_BASE}/Patient`) {
      const count = parseCount(url.searchParams.get('_count'));
      if (count === undefined) return fhir(res, 400, operationOutcome('value', '_count must be an integer from 0 to 100'));
      const { total, patients } = searchPatients(url.searchParams.get('name') ?? undefined, count);
      return fhir(res, 200, searchset(req.url ?? path, total, patients));
    }

    if (path.startsWith(`${FHIR_BASE}/Patient/`)) {
      const id = safeDecode(path.slice(`${FHIR_BASE}/Patient/`.length));
      if (id === undefined || !PATIENT_ID.test(id)) {
        return fhir(res, 404, operationOutcome('not-found', 'Patient ids are 1-64 letters, digits or "-"'));
      }
      return fhir(res, 200, syntheticPatient(id));
    }

    if (path === `${FHIR_BASE}/Observation`) {
      const patient = url.searchParams.get('patient');
      // Accept both `patient=123` and `patient=Patient/123` (FHIR reference search).
      const id = patient?.startsWith('Patient/') ? patient.slice('Patient/'.length) : patient;
      if (!id || !PATIENT_ID.test(id)) return fhir(res, 400, operationOutcome('required', 'Observation search needs patient={id}'));
      const observations = syntheticObservations(id) as { resourceType: string; id: string }[];
      return fhir(res, 200, searchset(req.url ?? path, observations.length, observations));
    }

    return fhir(res, 404, operationOutcome('not-found', `no route for ${method} ${path}`));
  };

  /** Streams the request body through sha256: memory use stays flat whatever the body size. */
  const echo = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      json(res, 200, {
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: { length, sha256: hash.digest('hex') },
      });
    });
    req.on('error', () => res.destroy());
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://demo.invalid');
    } catch {
      req.resume();
      return fhir(res, 400, operationOutcome('invalid', 'malformed request target'));
    }
    const handle = (): void => {
      if (closing) return;
      if (sick && !url.pathname.startsWith('/admin/')) {
        req.resume();
        return fhir(res, 503, operationOutcome('transient', `${name} is sick (carelb demo): it fails every request until it is made well`));
      }
      if (url.pathname === '/echo') return echo(req, res);
      // Bodies sent to other routes are drained and ignored, so the connection stays reusable.
      req.resume();
      route(req, res, url);
    };
    // The body is not read during the delay: the client is held back by TCP flow control.
    later(url.pathname.startsWith('/admin/') ? 0 : delayMs, handle);
  };

  const server: http.Server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest)
    : http.createServer(onRequest);
  server.keepAliveTimeout = 5000;

  // `closeAllConnections()` covers HTTP sockets; raw sockets (for HTTPS, also those still in the
  // TLS handshake) are tracked here so close() can destroy every one of them.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;
  return {
    name,
    host,
    port: address.port,
    get delayed() {
      return timers.size;
    },
    get sick() {
      return sick;
    },
    setSick(value: boolean) {
      sick = value;
    },
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}

function clampDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) return 0;
  return Math.min(Math.floor(ms), MAX_DELAY_MS);
}

function parseCount(text: string | null): number | undefined {
  if (text === null) return 10;
  if (!/^\d{1,3}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 100 ? n : undefined;
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
