/** What the harness needs from each proxy under test: start it on a port, stop it, its PIDs. */
import type { BenchCerts } from '../certs';
import type { Tracked } from '../children';
import type { Scenario } from '../cli-args';

export type ProxyName = 'carelb' | 'haproxy' | 'nginx';

export interface ProxyContext {
  scenario: Scenario;
  /** Where the proxy listens (127.0.0.1). */
  port: number;
  /** The reference backends, all on 127.0.0.1; every proxy balances over all of them. */
  backendPorts: number[];
  certs: BenchCerts;
  /** Threads (HAProxy, carelb) or worker processes (nginx). */
  workers: number;
  /** taskset CPU list for the whole proxy process (all threads, all forked workers); undefined = unpinned. */
  cpus: string | undefined;
  /** A private directory for generated config, pid files and temp paths. */
  workDir: string;
  /** Client connections the load will open (sizes connection limits). */
  connections: number;
}

/** TLS from clients to the proxy: every scenario but plain. */
export function frontTls(s: Scenario): boolean {
  return s !== 'plain';
}

/** TLS from the proxy to the backend: bridging only. */
export function backTls(s: Scenario): boolean {
  return s === 'bridge';
}

export interface RunningProxy {
  child: Tracked;
  /** The generated configuration it runs with, kept in the results for reproducibility. */
  config: string;
  /** The proxy's processes now (nginx: master + workers); CPU and RSS are summed over them. */
  pids(): number[];
  stop(): Promise<void>;
}

/**
 * `unsupported`: the proxy refused this scenario's config (carelb before TLS support lands);
 * the run carries on and reports it. `failed`: anything else that kept it from starting.
 */
export class StartError extends Error {
  constructor(
    readonly kind: 'unsupported' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

export interface ProxyDriver {
  name: ProxyName;
  /** undefined when it can run here, else why not (e.g. binary not installed). */
  unavailable(): string | undefined;
  /** Version string recorded with the results. */
  version(): string;
  start(ctx: ProxyContext): Promise<RunningProxy>;
}
