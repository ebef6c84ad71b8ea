/**
 * Starts one demo EHR API server from the command line:
 *
 *   node dist/src/demo/ehr-api-main.js --port 9001 --name ehr-api-1 [--delay 0] [--host 127.0.0.1]
 *                                      [--tls-cert cert.pem --tls-key key.pem]
 *
 * Prints `{"msg":"ready","port":N}` on stdout once listening (a parent process waits for that
 * line), and closes cleanly on SIGTERM or SIGINT.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startDemoApiServer, type DemoApiOptions } from './ehr-api';

function fail(message: string): never {
  process.stderr.write(`ehr-api: ${message}\n`);
  process.exit(2);
}

function integer(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) fail(`${flag} must be a non-negative integer, got "${text}"`);
  return Number(text);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        name: { type: 'string' },
        delay: { type: 'string' },
        host: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  const port = integer(values.port, '--port', 0);
  if (port > 65535) fail('--port must be at most 65535');
  const options: DemoApiOptions = {
    name: values.name ?? `ehr-api-${port}`,
    host: values.host ?? '127.0.0.1',
    port,
    delayMs: integer(values.delay, '--delay', 0),
  };
  if (values['tls-cert'] || values['tls-key']) {
    if (!values['tls-cert'] || !values['tls-key']) fail('--tls-cert and --tls-key go together');
    options.tls = { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']) };
  }

  const server = await startDemoApiServer(options);
  process.stdout.write(`${JSON.stringify({ msg: 'ready', port: server.port })}\n`);

  const stop = (): void => {
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => fail(error instanceof Error ? error.message : String(error)));
