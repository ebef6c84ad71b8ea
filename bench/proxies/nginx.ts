/**
 * NGINX anchor. Like-for-like with the others: upstream keep-alive (`keepalive 256` with
 * HTTP/1.1 and an empty Connection header, the documented recipe), X-Forwarded-For appended,
 * Host passed through, least_conn, access log off, `worker_processes` = --workers.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findBinary, missingReason } from '../bin';
import { rememberTree, spawnTracked, stopTracked } from '../children';
import { nginxHead, nginxHttpCommon } from '../nginx-conf';
import { waitForPort } from '../net-util';
import { backTls, frontTls, StartError, type ProxyContext, type ProxyDriver, type RunningProxy } from './types';

export function nginxProxyConfig(ctx: ProxyContext): string {
  const p = { dir: ctx.workDir, workers: ctx.workers };
  const listenTls = frontTls(ctx.scenario)
    ? `    ssl_certificate ${ctx.certs.cert};
    ssl_certificate_key ${ctx.certs.key};
    ssl_protocols TLSv1.2 TLSv1.3;
`
    : '';
  const upstreamTls = backTls(ctx.scenario)
    ? `      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${ctx.certs.caCert};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
`
    : '';
  return `${nginxHead(p)}http {
${nginxHttpCommon(p)}  upstream servers {
    least_conn;
${ctx.backendPorts.map((port) => `    server 127.0.0.1:${port};\n`).join('')}    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${ctx.port}${frontTls(ctx.scenario) ? ' ssl' : ''};
${listenTls}    location / {
      proxy_pass ${backTls(ctx.scenario) ? 'https' : 'http'}://servers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
${upstreamTls}    }
  }
}
`;
}

export const nginx: ProxyDriver = {
  name: 'nginx',
  unavailable: () => (findBinary('nginx') ? undefined : missingReason('nginx')),
  version: () => {
    // nginx -v prints to stderr.
    const r = spawnSync(findBinary('nginx') ?? 'nginx', ['-v'], { encoding: 'utf8' });
    return (r.stderr ?? '').trim() || 'unknown';
  },
  async start(ctx: ProxyContext): Promise<RunningProxy> {
    const conf = path.join(ctx.workDir, 'nginx.conf');
    const config = nginxProxyConfig(ctx);
    fs.writeFileSync(conf, config);
    const child = spawnTracked('nginx', findBinary('nginx') ?? 'nginx', ['-p', ctx.workDir, '-e', 'stderr', '-c', conf], { cpus: ctx.cpus });
    try {
      await waitForPort(ctx.port, child);
    } catch (err) {
      await stopTracked(child);
      throw new StartError('failed', err instanceof Error ? err.message : String(err));
    }
    // Workers are forked after the master listens; wait until they exist so CPU sampling
    // covers them from the first window.
    const deadline = Date.now() + 5000;
    while (rememberTree(child).length < 1 + ctx.workers && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { child, config, pids: () => rememberTree(child), stop: () => stopTracked(child) };
  },
};
