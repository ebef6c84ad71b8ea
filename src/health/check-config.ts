/**
 * The effective health check of one server: HEALTH_CHECK_DEFAULTS, then the virtual service's
 * `health_check` keys, then the server's own (issue 4: per virtual service, overridable per
 * server). Pure; called by the monitor on start and on every reload.
 */
import { HEALTH_CHECK_DEFAULTS, type HealthCheckConfig, type ServerConfig, type VirtualServiceConfig } from '../config/schema';

export interface ResolvedHealthCheck {
  type: 'http' | 'https' | 'tcp';
  method: string;
  path: string;
  /** Host header; absent: the server address host:port. */
  host?: string;
  /** Accepted statuses as inclusive [low, high] ranges. */
  expect_status: readonly (readonly [number, number])[];
  /** Substring the body must contain; absent: the status alone decides. */
  expect_body?: string;
  /** Milliseconds between the starts of two checks of the same server. */
  interval: number;
  /** Milliseconds allowed for one whole check (connect, TLS, response). */
  timeout: number;
  rise: number;
  fall: number;
}

/** Keys present in `check` (zod leaves absent keys out, but an explicit undefined must not erase a default). */
function present(check: HealthCheckConfig | undefined): HealthCheckConfig {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(check ?? {})) if (value !== undefined) out[key] = value;
  return out as HealthCheckConfig;
}

/**
 * The check for `server`, or null when its virtual service has no `health_check` (servers are
 * then assumed up: issue 4, "servers assumed up"); a server's own keys only override a
 * service-level check, they do not enable one.
 */
export function resolveHealthCheck(vs: VirtualServiceConfig, server: ServerConfig): ResolvedHealthCheck | null {
  // A pool's health_check (content switching, issue 14) enables checks for its servers like the service's.
  if (!vs.health_check && !server.pool_health_check) return null;
  return { ...HEALTH_CHECK_DEFAULTS, ...present(vs.health_check), ...present(server.pool_health_check), ...present(server.health_check) };
}
