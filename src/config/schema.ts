/**
 * The one config schema: every key, its default and its unit live here (fastify's
 * build-validation idea). Unknown keys are errors: a typo in a load balancer config must not
 * pass silently. Parsing turns units into plain numbers (milliseconds, bytes) once, so nothing
 * downstream parses text again.
 */
import { z } from 'zod';
import { parseDuration } from './units';

/** A duration such as "250ms", "5s", "2m", or a number of milliseconds. */
export const duration = z.union([z.string(), z.number().int().nonnegative()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${value}" is not a duration (use e.g. 500ms, 5s, 2m)` });
    return z.NEVER;
  }
  return ms;
});

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

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit');

const server = z
  .object({
    name,
    address: hostPort,
    /** Relative share of traffic; 0 = takes no new requests. */
    weight: z.number().int().min(0).max(256).default(1),
  })
  .strict();

const timeouts = z
  .object({
    /** Time allowed to open a connection to a server. */
    connect: duration.default('5s'),
    /** Time allowed for a server to start its response once the request is sent, and between its reads. */
    server: duration.default('60s'),
    /** Idle keep-alive connections to servers are closed after this; keep it below the servers' own. */
    upstream_idle: duration.default('4s'),
  })
  .strict();

const virtualService = z
  .object({
    name,
    listen: hostPort,
    balance: z.enum(['leastconn', 'roundrobin']).default('leastconn'),
    timeouts: timeouts.default({}),
    /** Most idle keep-alive connections a thread keeps per server. */
    max_idle_per_server: z.number().int().min(0).max(100_000).default(256),
    servers: z.array(server).min(1, 'needs at least one server'),
  })
  .strict()
  .superRefine((vs, ctx) => {
    const seen = new Set<string>();
    vs.servers.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['servers', i, 'name'], message: `duplicate server name "${s.name}"` });
      seen.add(s.name);
    });
  });

export const configSchema = z
  .object({
    /** Data-plane threads: an integer, or "auto" for one per CPU. */
    workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto'),
    /** Pin thread i to CPU i mod cpus. */
    pin_workers: z.boolean().default(true),
    /** On SIGTERM/SIGINT, in-flight requests get this long to finish. */
    shutdown_grace: duration.default('10s'),
    virtual_services: z.array(virtualService).min(1, 'needs at least one virtual service'),
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
  });

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type VirtualServiceConfig = Config['virtual_services'][number];
export type ServerConfig = VirtualServiceConfig['servers'][number];
