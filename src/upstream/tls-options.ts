/**
 * node:tls options for connecting to a server with TLS (bridging), from `backend_tls` of the
 * server or else of its virtual service. Files are read once, when a thread builds the
 * server's runtime (start and reload), never per connection, and become one SecureContext
 * that every connection of the pool shares: passing `ca`/`cert`/`key` to tls.connect instead
 * makes node parse them into a new context for every connection. Also used by health checks.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import type { BackendTlsConfig, ServerConfig, VirtualServiceConfig } from '../config/schema';

export function backendTlsConfig(vs: VirtualServiceConfig, server: ServerConfig): BackendTlsConfig | undefined {
  return server.backend_tls ?? vs.backend_tls;
}

export function backendTlsOptions(vs: VirtualServiceConfig, server: ServerConfig): tls.ConnectionOptions | null {
  const config = backendTlsConfig(vs, server);
  if (!config) return null;
  const host = server.address.host;
  // SNI may not carry an IP address (RFC 6066 §3); without a servername, an IP is checked against the certificate's IP SANs.
  const servername = config.servername ?? (isIP(host) ? undefined : host);
  const secureContext = tls.createSecureContext({
    ca: config.ca ? readFileSync(config.ca) : undefined,
    cert: config.cert ? readFileSync(config.cert) : undefined,
    key: config.key ? readFileSync(config.key) : undefined,
    minVersion: 'TLSv1.2',
  });
  return { servername, secureContext, rejectUnauthorized: config.verify, ALPNProtocols: ['http/1.1'] };
}
