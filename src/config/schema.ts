/**
 * The one config schema: every key, its default and its unit live here (fastify's
 * build-validation idea). Unknown keys are errors: a typo in a load balancer config must not
 * pass silently. Parsing turns units into plain numbers (milliseconds, bytes) once, so nothing
 * downstream parses text again.
 */
import { z } from 'zod';
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { parseDuration, parseSize } from './units';
import { headerRuleProblems, RESERVED_REQUEST_FIELDS, RESERVED_RESPONSE_FIELDS } from './header-rules';

/** A number, or text in a unit that `parse` turns into that number (the one place units are read). */
function withUnit(parse: (text: string) => number | undefined, what: string) {
  return z.union([z.string(), z.number().int().nonnegative()]).transform((value, ctx) => {
    if (typeof value === 'number') return value;
    const parsed = parse(value);
    if (parsed === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${value}" is not ${what}` });
      return z.NEVER;
    }
    return parsed;
  });
}

/** A duration such as "250ms", "5s", "2m", or a number of milliseconds. */
export const duration = withUnit(parseDuration, 'a duration (use e.g. 500ms, 5s, 2m)');

/** A byte size such as "16k", "8KiB", "10m", or a number of bytes. */
export const size = withUnit(parseSize, 'a size (use e.g. 16k, 8KiB, 10m)');

/** An IPv4 or IPv6 address or CIDR block. */
const cidr = z.string().refine((value) => {
  const [address, bits, extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR block (10.0.0.0/8, 2001:db8::/32)');

export interface HostPort {
  host: string;
  port: number;
}

/** Splits "host:port" or "[v6]:port"; returns an error message instead when malformed. */
export function parseHostPort(text: string): HostPort | string {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return `"${text}" is not host:port (use [::1]:port for IPv6)`;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return `port ${port} is out of range 1-65535`;
  return { host: match[1] ?? match[2], port };
}

const hostPort = z.string().transform((value, ctx) => {
  const parsed = parseHostPort(value);
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed });
    return z.NEVER;
  }
  return parsed;
});

/** Names of virtual services, servers, HA nodes and stored certificates (a certificate's name is also its file name). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const NAME_RULE = 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit';
const name = z.string().regex(NAME_PATTERN, NAME_RULE);

/** Where `carelb cert import` writes and `certificate: NAME` reads (NAME.pem, NAME.key). */
export const DEFAULT_TLS_STORE = '/etc/carelb/tls';

/** "200", 200, or "200-399": expected health-check statuses. */
const statusRange = z.union([z.number().int().min(100).max(599), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return [value, value] as [number, number];
  const match = /^(\d{3})(?:-(\d{3}))?$/.exec(value.trim());
  const low = match ? Number(match[1]) : NaN;
  const high = match ? Number(match[2] ?? match[1]) : NaN;
  if (!match || low < 100 || high > 599 || low > high) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${value}" is not a status or a range like 200-399` });
    return z.NEVER;
  }
  return [low, high] as [number, number];
});

/** Active health checks, run by the primary. All keys optional; a server may override any of them. */
const healthCheckFields = {
  type: z.enum(['http', 'https', 'tcp']),
  method: z.string().regex(/^[A-Z]{1,16}$/, 'must be an HTTP method in capitals'),
  path: z.string().startsWith('/', 'must start with /'),
  /** Host header; default: the server address. */
  host: z.string().min(1),
  expect_status: z.array(statusRange).min(1),
  /** Substring the response body must contain. */
  expect_body: z.string(),
  interval: duration.refine((ms) => ms >= 10, 'must be at least 10ms'),
  timeout: duration.refine((ms) => ms >= 1, 'must be at least 1ms'),
  /** Consecutive passes to go up. */
  rise: z.number().int().min(1).max(100),
  /** Consecutive failures to go down. */
  fall: z.number().int().min(1).max(100),
};
export const HEALTH_CHECK_DEFAULTS = {
  type: 'http',
  method: 'GET',
  path: '/health',
  expect_status: [[200, 399]] as [number, number][],
  interval: 2000,
  timeout: 1000,
  rise: 2,
  fall: 3,
} as const;
const healthCheck = z.object(healthCheckFields).partial().strict();

/** TLS 1.2 ciphers when none are configured: Mozilla's "intermediate" profile (TLS 1.3 suites are always on). */
export const INTERMEDIATE_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:' +
  'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384';

const file = z.string().min(1, 'must be a file path');

/**
 * Token and secret files: absolute, so that what they name never depends on the working
 * directory, and a config sync can always tell them from the files it may write (issue 13).
 */
const secretFile = file.refine((path) => isAbsolute(path), 'must be an absolute path');

/**
 * A certificate (full chain, PEM) and its key for the front end: either file paths (cert, key,
 * passphrase_file) or `certificate: NAME`, a certificate in the store (tls_store) that
 * `carelb cert import` or the admin API put there (issue 14). The config's top level resolves a
 * name into the store's NAME.pem and NAME.key, so everything downstream sees paths only.
 */
const certificate = {
  cert: file.optional(),
  key: file.optional(),
  /** File holding the key's passphrase (never the passphrase itself in the config). */
  passphrase_file: file.optional(),
  /** A certificate in the store by name; instead of cert/key. */
  certificate: name.optional(),
};

/** Exactly one source: a store name, or a cert and key pair of files. */
function oneCertificateSource(value: { cert?: string; key?: string; passphrase_file?: string; certificate?: string }, ctx: z.RefinementCtx): void {
  const issue = (path: string, message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
  if (value.certificate !== undefined) {
    if (value.cert !== undefined || value.key !== undefined) issue('certificate', 'names a stored certificate: leave out cert and key');
    // Keys in the store are written unencrypted, 0600 (carelb cert import decrypts them once).
    if (value.passphrase_file !== undefined) issue('passphrase_file', 'is for cert/key files; a stored certificate has no passphrase');
    return;
  }
  if (value.cert === undefined && value.key === undefined) issue('cert', 'is required (or name a stored certificate with certificate: NAME)');
  else if (value.cert === undefined) issue('cert', 'is required with key');
  else if (value.key === undefined) issue('key', 'is required with cert');
}

const sniEntry = z
  .object({ hostname: z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'must be a DNS name or *.domain'), ...certificate })
  .strict()
  .superRefine(oneCertificateSource);

const frontendTls = z
  .object({
    ...certificate,
    ciphers: z.string().min(1).default(INTERMEDIATE_CIPHERS),
    /** Extra certificates chosen by the client's SNI name; the main cert is the default. */
    sni: z.array(sniEntry).default([]),
  })
  .strict()
  .superRefine(oneCertificateSource);

/** Front-end TLS as threads and checks see it: `certificate: NAME` resolved into the store's files. */
export interface ResolvedCertificate {
  cert: string;
  key: string;
  passphrase_file?: string;
  /** The store name, when the config named one (messages then speak of `certificate`). */
  certificate?: string;
}
type FrontendTlsInput = z.output<typeof frontendTls>;
export type FrontendTlsConfig = Omit<FrontendTlsInput, 'cert' | 'key' | 'sni'> &
  ResolvedCertificate & { sni: (Omit<FrontendTlsInput['sni'][number], 'cert' | 'key'> & ResolvedCertificate)[] };

/** The store's files of a certificate name. */
export function storeFiles(store: string, certName: string): { cert: string; key: string } {
  return { cert: `${store.replace(/\/+$/, '')}/${certName}.pem`, key: `${store.replace(/\/+$/, '')}/${certName}.key` };
}

function resolveCertificate<T extends { cert?: string; key?: string; certificate?: string }>(entry: T, store: string): T & ResolvedCertificate {
  return entry.certificate === undefined ? (entry as T & ResolvedCertificate) : { ...entry, ...storeFiles(store, entry.certificate) };
}

function resolveTls(tls: FrontendTlsInput, store: string): FrontendTlsConfig {
  return { ...resolveCertificate(tls, store), sni: tls.sni.map((entry) => resolveCertificate(entry, store)) };
}

/** TLS to the servers (bridging). Its presence turns bridging on. */
const backendTls = z
  .object({
    /** CA bundle to verify servers with; default: the system CAs. */
    ca: file.optional(),
    /** SNI and the name the server certificate must match; default: the server's host. */
    servername: z.string().min(1).optional(),
    verify: z.boolean().default(true),
    /** Client certificate and key for mutual TLS. */
    cert: file.optional(),
    key: file.optional(),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (Boolean(value.cert) !== Boolean(value.key)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [value.cert ? 'key' : 'cert'], message: 'cert and key go together' });
  });

const server = z
  .object({
    name,
    address: hostPort,
    /** Relative share of traffic; 0 = takes no new requests. */
    weight: z.number().int().min(0).max(256).default(1),
    /** Most requests in flight to this server across all threads (0 = no limit); more wait in the queue. */
    max_conns: z.number().int().min(0).max(1_000_000).default(0),
    /** Overrides of the virtual service's health_check for this server. */
    health_check: healthCheck.optional(),
    /** TLS to this server; overrides the virtual service's backend_tls. */
    backend_tls: backendTls.optional(),
  })
  .strict();

const httpMethod = z.string().regex(/^[A-Z]{1,16}$/, 'must be an HTTP method in capitals');

/** One content-switching route: every matcher given must match (host, path_prefix, method); the first route that matches picks its pool. */
const route = z
  .object({
    /** Host without port, exact (`fhir.example.org`) or a suffix (`*.example.org`: one or more labels before it); case-insensitive. */
    host: z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'must be a DNS name or *.domain').optional(),
    /** Path prefix, compared byte for byte with the request target (`/oauth2/`). */
    path_prefix: z.string().startsWith('/', 'must start with /').optional(),
    /** A method or a list of methods. */
    method: z.union([httpMethod, z.array(httpMethod).min(1)]).optional(),
    pool: name,
  })
  .strict()
  .refine((r) => r.host !== undefined || r.path_prefix !== undefined || r.method !== undefined, 'needs host, path_prefix or method (use default_pool for everything else)');

const timeouts = z
  .object({
    /** Time allowed to open a connection to a server. */
    connect: duration.default('5s'),
    /** Time allowed for a server to start its response once the request is sent, and between its reads. */
    server: duration.default('60s'),
    /** Idle keep-alive connections to servers are closed after this; keep it below the servers' own. */
    upstream_idle: duration.default('4s'),
    /** A request body that stalls longer than this is aborted (the server connection is freed). */
    client_body_idle: duration.default('30s'),
    /** Waiting in the queue of a full server (max_conns) longer than this gives 503. */
    queue: duration.default('5s'),
  })
  .strict();

/** A named server pool for content switching (issue 14): its servers and, optionally, its own balance and health check. */
const pool = z
  .object({
    servers: z.array(server).min(1, 'needs at least one server'),
    /** Overrides the virtual service's balance for this pool. */
    balance: z.enum(['leastconn', 'roundrobin']).optional(),
    /** Health check of this pool's servers: the service's keys (if any), then these, then a server's own. */
    health_check: healthCheck.optional(),
    /** Overrides of the virtual service's timeouts for this pool (any of its keys). */
    timeouts: timeouts.partial().optional(),
  })
  .strict();

/** A header value: text (numbers and booleans are taken as their text). Checked by header-rules.ts. */
const headerValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

/** `request_headers` / `response_headers`: set (replace), add (append), remove (header-rules.ts). */
const headerRules = z
  .object({
    set: z.record(z.string(), headerValue).default({}),
    add: z.record(z.string(), headerValue).default({}),
    remove: z.array(z.string()).default([]),
  })
  .strict();

const virtualService = z
  .object({
    name,
    listen: hostPort,
    balance: z.enum(['leastconn', 'roundrobin']).default('leastconn'),
    timeouts: timeouts.default({}),
    /** Request limits: beyond them carelb answers 431, 414 or 413 and closes the connection. */
    limits: z
      .object({
        /** Total bytes of the request's header fields. */
        header_bytes: size.default('16k'),
        /** Header lines; uWS v20.30 itself never passes on a request with 50 or more. */
        header_count: z.number().int().min(1).max(49).default(40),
        /** Request line: path and query. */
        url_bytes: size.default('8k'),
        /** Request body, also enforced while a chunked body streams; 0 = unlimited. */
        max_body: size.default(0),
      })
      .strict()
      .default({}),
    /** Requests waiting per thread when every server is at max_conns; beyond it 503 at once. */
    max_queue: z.number().int().min(0).max(100_000).default(1024),
    /** Client addresses (CIDR) allowed; empty = everyone not denied. */
    allow: z.array(cidr).default([]),
    /** Client addresses (CIDR) refused, checked before allow. */
    deny: z.array(cidr).default([]),
    /** Refused clients get 403, or their connection closed without an answer. */
    deny_action: z.enum(['403', 'close']).default('403'),
    /** Proxies (CIDR) whose PROXY protocol address and X-Forwarded-For are believed. */
    trusted_proxies: z.array(cidr).default([]),
    /**
     * Chunked request bodies: allow, or refuse with 411. uWS v20.30 mis-sizes chunks that
     * carry extensions, so behind another proxy that shares connections between clients a
     * chunked body could swallow someone else's request. Default: refuse when
     * trusted_proxies is set (carelb is behind a proxy), allow otherwise.
     */
    chunked_requests: z.enum(['allow', 'refuse']).optional(),
    /** Per client address, across all threads: a token bucket; beyond it 429 with Retry-After. */
    rate_limit: z
      .object({
        requests: z.number().int().min(1),
        per: duration.default('1s'),
        burst: z.number().int().min(1).optional(),
      })
      .strict()
      .optional(),
    /** Terminate TLS from clients (offload or bridging). */
    tls: frontendTls.optional(),
    /** Plain HTTP service that only redirects every request to https (301). */
    redirect_https: z.boolean().default(false),
    /** Port for the redirect target; 443 is left out of the URL. */
    https_port: z.number().int().min(1).max(65535).default(443),
    /** TLS to the servers (bridging); a server's own backend_tls overrides it. */
    backend_tls: backendTls.optional(),
    /** Mark a server down at once after this many consecutive failures (0 = off); active checks bring it back. */
    passive: z
      .object({
        /** Connection failures, timeouts, TLS failures, malformed responses. */
        consecutive_failures: z.number().int().min(0).max(1000).default(0),
        /** 5xx responses from the server. */
        consecutive_5xx: z.number().int().min(0).max(1000).default(0),
      })
      .strict()
      .default({}),
    /** When no server is up: send to this server, or answer locally. */
    fallback: z
      .union([
        z.object({ server: hostPort }).strict(),
        z
          .object({
            status: z.number().int().min(200).max(599).default(503),
            /** Body of the local answer, read at start and on reload. */
            body_file: file.optional(),
            content_type: z.string().min(1).default('text/plain; charset=utf-8'),
            retry_after: duration.optional(),
          })
          .strict(),
      ])
      .optional(),
    /** A server that comes back ramps from a low weight to its full weight over this time (0 = off). */
    slow_start: duration.default(0),
    /**
     * HTTP Strict Transport Security (RFC 6797) on every response of a TLS service, carelb's
     * own answers included; a server's own Strict-Transport-Security is replaced.
     */
    hsts: z
      .object({
        /** How long browsers remember to use https only (sent in seconds). */
        max_age: duration,
        include_subdomains: z.boolean().default(false),
      })
      .strict()
      .optional(),
    /**
     * A request id per request: the client's, when valid (1-128 of A-Z a-z 0-9 -_.:+/=@),
     * else a generated one; passed to the server in `header` and logged as `request_id`.
     */
    request_id: z
      .object({ header: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be a header name (a token, RFC 9110 §5.1)').default('X-Request-Id') })
      .strict()
      .optional(),
    /** Fields set, added or removed on every request sent to a server; values may use {client_ip}, {virtual_service}, {server}, {request_id}. */
    request_headers: headerRules.optional(),
    /** Fields set, added or removed on every server response; the same templates. */
    response_headers: headerRules.optional(),
    /**
     * source_ip: a client address keeps reaching the same server while that server is up.
     * cookie: a client keeps reaching the server its cookie names (options in `cookie`).
     */
    persistence: z.enum(['none', 'source_ip', 'cookie']).default('none'),
    /** Cookie persistence options (persistence: cookie); HAProxy's `cookie NAME insert indirect nocache`. */
    cookie: z
      .object({
        /** Cookie name (RFC 6265 §4.1.1: a token). */
        name: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be a cookie name (a token, RFC 6265 §4.1.1)').default('CARELBSRV'),
        /** A cookie not seen for this long no longer counts (0 = no limit). */
        max_idle: duration.default(0),
        /** A cookie older than this since it was first set no longer counts (0 = no limit). */
        max_life: duration.default(0),
        /** Secure attribute; default: on for TLS services. */
        secure: z.boolean().optional(),
        httponly: z.boolean().default(true),
        samesite: z.enum(['lax', 'strict', 'none']).default('lax'),
        /** Key for the servers' opaque cookie tokens (at least 16 characters); the same on both HA nodes. */
        secret_file: secretFile.optional(),
      })
      .strict()
      .optional(),
    /** Active health checks of the servers; absent: servers are assumed up. */
    health_check: healthCheck.optional(),
    /** Most idle keep-alive connections a thread keeps per server. */
    max_idle_per_server: z.number().int().min(0).max(100_000).default(256),
    servers: z.array(server).default([]),
    /** Content switching: named pools instead of `servers`, chosen per request by `routes`, else `default_pool`. */
    pools: z.record(z.string(), pool).optional(),
    /** Ordered: the first route whose matchers all match picks the pool. */
    routes: z.array(route).default([]),
    /** Pool for requests no route matches; without it they get 404 CLB_NO_ROUTE. */
    default_pool: name.optional(),
  })
  .strict()
  .superRefine((vs, ctx) => {
    if (vs.pools !== undefined) checkPools(vs, ctx);
    else if (vs.routes.length > 0 || vs.default_pool !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [vs.routes.length > 0 ? 'routes' : 'default_pool'], message: 'needs pools' });
    if (vs.servers.length === 0 && !vs.redirect_https && vs.pools === undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['servers'], message: 'needs at least one server' });
    if ((vs.passive.consecutive_failures > 0 || vs.passive.consecutive_5xx > 0) && !vs.health_check) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['passive'], message: 'needs health_check: only active checks bring a passively marked server back' });
    }
    // RFC 6797 §7.2: a host must not send Strict-Transport-Security over plain HTTP, and §8.1: browsers ignore it there.
    if (vs.hsts && !vs.tls) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['hsts'], message: 'needs tls: Strict-Transport-Security over plain HTTP is ignored by browsers (RFC 6797 §8.1); set it on the TLS virtual service' });
    const requestIdField = vs.request_id?.header.toLowerCase();
    if (requestIdField !== undefined && RESERVED_REQUEST_FIELDS[requestIdField] !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['request_id', 'header'], message: `${vs.request_id!.header} cannot carry the request id: ${RESERVED_REQUEST_FIELDS[requestIdField]}` });
    }
    const noneReserved: Record<string, string> = {};
    const sides: [string, z.output<typeof headerRules> | undefined, Record<string, string>, Record<string, string>][] = [
      ['request_headers', vs.request_headers, RESERVED_REQUEST_FIELDS, requestIdField === undefined ? noneReserved : { [requestIdField]: 'it is the request_id field (carelb sets it)' }],
      ['response_headers', vs.response_headers, RESERVED_RESPONSE_FIELDS, vs.hsts ? { 'strict-transport-security': 'hsts sets it' } : noneReserved],
    ];
    for (const [key, rules, reserved, extra] of sides) {
      if (!rules) continue;
      for (const [path, message] of headerRuleProblems(rules, reserved, extra, vs.request_id !== undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [key, ...path], message });
    }
    if (vs.cookie && vs.persistence !== 'cookie') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cookie'], message: 'is for persistence: cookie' });
    if (vs.cookie?.secure === true && !vs.tls) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cookie', 'secure'], message: 'needs tls: browsers never send a Secure cookie back over plain HTTP, so no client would stay' });
    if (vs.cookie?.samesite === 'none' && !(vs.cookie.secure ?? vs.tls)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['cookie', 'samesite'], message: 'none needs a Secure cookie (browsers refuse SameSite=None without it): use it on a TLS service' });
    if (vs.redirect_https && vs.tls) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['redirect_https'], message: 'a TLS virtual service cannot redirect to https: set it on the plain-HTTP one' });
    const seen = new Set<string>();
    vs.servers.forEach((s, i) => {
      if (s.health_check && !vs.health_check) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['servers', i, 'health_check'], message: "overrides need the virtual service's health_check (add health_check: {} there to check with the defaults)" });
      }
      if (seen.has(s.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['servers', i, 'name'], message: `duplicate server name "${s.name}"` });
      seen.add(s.name);
    });
  })
  .transform((vs) => ({
    ...vs,
    // Pools are flattened into `servers` (each tagged with its pool), so slots, health checks,
    // status and admin state work on one list; `pools` keeps each pool's name and balance.
    servers: flattenServers(vs.servers, vs.pools, vs.timeouts),
    pools: vs.pools === undefined ? undefined : Object.entries(vs.pools).map(([poolName, p]) => ({ name: poolName, balance: p.balance ?? vs.balance, timeouts: poolTimeouts(vs.timeouts, p.timeouts) })),
    chunked_requests: vs.chunked_requests ?? (vs.trusted_proxies.length > 0 ? ('refuse' as const) : ('allow' as const)),
    // persistence: cookie without a cookie key gets the defaults; Secure follows tls unless set.
    cookie: vs.persistence === 'cookie' ? resolveCookie(vs.cookie, Boolean(vs.tls)) : undefined,
  }));

type ServerInput = z.output<typeof server>;
/** A server as the rest of carelb sees it: its pool (content switching) and that pool's health check keys, if any. */
export type PooledServer = ServerInput & { pool?: string; pool_health_check?: z.output<typeof healthCheck>; pool_timeouts?: TimeoutsConfig };
export type TimeoutsConfig = z.output<typeof timeouts>;

/** A pool's timeouts: the service's, with the pool's own keys over them. */
function poolTimeouts(service: TimeoutsConfig, own: Partial<TimeoutsConfig> | undefined): TimeoutsConfig {
  const out = { ...service };
  for (const [key, value] of Object.entries(own ?? {})) if (value !== undefined) out[key as keyof TimeoutsConfig] = value;
  return out;
}

function flattenServers(servers: ServerInput[], pools: Record<string, z.output<typeof pool>> | undefined, service: TimeoutsConfig): PooledServer[] {
  if (pools === undefined) return servers;
  return Object.entries(pools).flatMap(([poolName, p]) => {
    const resolved = poolTimeouts(service, p.timeouts);
    return p.servers.map((s) => ({ ...s, pool: poolName, pool_health_check: p.health_check, pool_timeouts: resolved }));
  });
}

/** Pools, routes and default_pool of one virtual service (content switching). */
function checkPools(vs: { servers: unknown[]; pools?: Record<string, z.output<typeof pool>>; routes: z.output<typeof route>[]; default_pool?: string; health_check?: unknown }, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });
  const pools = vs.pools!;
  if (vs.servers.length > 0) issue(['servers'], 'give servers either here or in pools, not both');
  const names = Object.keys(pools);
  if (names.length === 0) issue(['pools'], 'needs at least one pool');
  const seen = new Set<string>();
  for (const poolName of names) {
    if (!NAME_PATTERN.test(poolName)) issue(['pools', poolName], `pool name ${NAME_RULE}`);
    pools[poolName].servers.forEach((s, i) => {
      // Server names are unique across the service's pools: admin state, status and cookies name them.
      if (seen.has(s.name)) issue(['pools', poolName, 'servers', i, 'name'], `duplicate server name "${s.name}" (server names are unique across pools)`);
      seen.add(s.name);
      if (s.health_check && !vs.health_check && !pools[poolName].health_check) issue(['pools', poolName, 'servers', i, 'health_check'], "overrides need the pool's or the virtual service's health_check");
    });
  }
  vs.routes.forEach((r, i) => {
    if (!(r.pool in pools)) issue(['routes', i, 'pool'], `no pool named "${r.pool}" (pools: ${names.join(', ')})`);
  });
  if (vs.default_pool !== undefined && !(vs.default_pool in pools)) issue(['default_pool'], `no pool named "${vs.default_pool}" (pools: ${names.join(', ')})`);
  if (vs.routes.length === 0 && vs.default_pool === undefined) issue(['routes'], 'pools need routes or a default_pool');
}

/** Cookie persistence options with their defaults (the schema's, for a service that gives none). */
function resolveCookie(cookie: CookieInput | undefined, tls: boolean): CookieOptions {
  const given = cookie ?? { name: 'CARELBSRV', max_idle: 0, max_life: 0, httponly: true, samesite: 'lax' as const };
  return { ...given, secure: given.secure ?? tls };
}
interface CookieInput {
  name: string;
  max_idle: number;
  max_life: number;
  secure?: boolean;
  httponly: boolean;
  samesite: 'lax' | 'strict' | 'none';
  secret_file?: string;
}
export type CookieOptions = CookieInput & { secure: boolean };

export const configSchema = z
  .object({
    /** Data-plane threads: an integer, or "auto" for one per CPU. */
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto'),
    /** Pin thread i to CPU i mod cpus. */
    pin_workers: z.boolean().default(true),
    /** On SIGTERM/SIGINT, in-flight requests get this long to finish. */
    shutdown_grace: duration.default('10s'),
    virtual_services: z.array(virtualService).min(1, 'needs at least one virtual service'),
    /** The certificate store: `tls: { certificate: NAME }` reads NAME.pem and NAME.key here (issue 14). */
    tls_store: secretFile.default(DEFAULT_TLS_STORE),
    /** One JSON line per request: off, stdout, or { path: FILE }. Written in batches, off the request path. */
    access_log: z.union([z.enum(['off', 'stdout']), z.object({ path: file }).strict()]).default('off'),
    /** Log query strings too. Off by default: they can carry patient identifiers. */
    log_query: z.boolean().default(false),
    /** High-availability pair: rendered into a keepalived config (`carelb ha render`). */
    ha: z
      .object({
        node_name: name,
        interface: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'must be a network interface name'),
        priority: z.number().int().min(1).max(254).default(100),
        virtual_router_id: z.number().int().min(1).max(255),
        advert_int: duration.default('1s'),
        /** Peer address: unicast VRRP and config sync. */
        peer: z.string().ip('must be an IP address'),
        /** Peer's admin API for config sync. */
        peer_admin: hostPort.optional(),
        /** The peer's sync token (a copy of the peer's ha.sync_token_file). */
        peer_token_file: secretFile.optional(),
        /**
         * This node's HA sync token, accepted on /api/ha/* only (generated, mode 0600, when
         * missing). Without it no token is accepted there: this node is neither queried nor synced.
         */
        sync_token_file: secretFile.optional(),
        /** VRRP auth_pass (keepalived uses its first 8 characters). */
        auth_secret_file: secretFile.optional(),
        /** Off by default: a recovered node does not take the address back (no second interruption). */
        preempt: z.boolean().default(false),
        /** Push the config to the peer after every successful reload. */
        auto_sync: z.boolean().default(false),
        /**
         * Config sync carries keys and passphrases, so it needs admin.tls on both nodes. true
         * accepts plain HTTP instead (a lab, or a dedicated cable): logged as a warning at every start.
         */
        allow_plaintext_sync: z.boolean().default(false),
        vips: z
          .array(
            z
              .object({
                address: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$|^[0-9a-fA-F:]+\/\d{1,3}$/, 'must be an address with its prefix length, e.g. 10.0.0.100/24'),
                priority: z.number().int().min(1).max(254).optional(),
              })
              .strict(),
          )
          .min(1, 'needs at least one virtual IP'),
        keepalived_conf: file.default('/etc/keepalived/keepalived.conf'),
        check_script_user: z.string().min(1).default('carelb'),
      })
      .strict()
      .optional(),
    /** Admin API, dashboard and metrics, served by the primary. */
    admin: z
      .object({
        listen: hostPort.default('127.0.0.1:9900'),
        /** Bearer token file, role operate; generated (mode 0600) at first start when missing. */
        token_file: secretFile.default('/etc/carelb/admin.token'),
        /** More tokens, each with its role: read (status, metrics, dashboard) or operate (also drain, halt, online, reload). */
        tokens: z
          .array(
            z
              .object({
                file: secretFile,
                role: z.enum(['read', 'operate'], { errorMap: () => ({ message: 'must be read or operate (the HA sync token is ha.sync_token_file)' }) }),
              })
              .strict(),
          )
          .default([]),
        /** Serve /metrics without a token. */
        metrics_public: z.boolean().default(false),
        /**
         * Serve the admin API over HTTPS (required between HA peers: config sync carries the
         * config and keys). `ca` verifies the peer's admin certificate (default: system CAs).
         */
        tls: z.object({ cert: file, key: file, ca: file.optional() }).strict().optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((config, ctx) => {
    const names = new Set<string>();
    const listens = new Set<string>();
    config.virtual_services.forEach((vs, i) => {
      if (names.has(vs.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['virtual_services', i, 'name'], message: `duplicate virtual service name "${vs.name}"` });
      names.add(vs.name);
      const key = `${vs.listen.host}:${vs.listen.port}`;
      if (listens.has(key)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['virtual_services', i, 'listen'], message: `${key} is already used by another virtual service` });
      listens.add(key);
    });
  })
  // Store names become file paths once, here: threads, checks and HA sync see cert/key paths only.
  .transform((config) => ({
    ...config,
    virtual_services: config.virtual_services.map((vs) => ({ ...vs, tls: vs.tls ? resolveTls(vs.tls, config.tls_store) : undefined })),
  }));

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type VirtualServiceConfig = Config['virtual_services'][number];
export type ServerConfig = PooledServer;
export type BackendTlsConfig = z.output<typeof backendTls>;
export type HealthCheckConfig = z.output<typeof healthCheck>;
export type AdminConfig = NonNullable<Config['admin']>;
export type HaConfig = NonNullable<Config['ha']>;
