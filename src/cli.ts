#!/usr/bin/env node
/**
 * carelb command line: start | demo | check | ctl | ha | tune | cert | version.
 *
 * Every verb parses its arguments strictly (cli-args.ts): an unknown flag or a stray argument
 * exits 2 with the usage. `start` never falls back to the demo: without -c it runs
 * /etc/carelb/carelb.yaml when that file exists and exits 2 naming it otherwise; the demo has
 * its own verb (`carelb demo`, what `npm start` runs).
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseStrict, USAGE_EXIT, UsageError } from './cli-args';
import { loadConfigFile, loadConfigText } from './config/load';
import { checkConfigFiles } from './config/config-files';
import { NativeUwsMissing, loadNativeUws } from './native';
import { createLogger, type Logger } from './observe/log';
import { runCarelb } from './primary/run';

const VERSION: string = require('../../package.json').version;

/** The config `carelb start` runs when no -c is given (the path the installer and the systemd unit use). */
export const DEFAULT_CONFIG = '/etc/carelb/carelb.yaml';

const USAGE = `usage: carelb <command> [options]

  start [-c FILE]     run in the foreground (default FILE: ${DEFAULT_CONFIG})
  demo [--traffic]    run the built-in demo: carelb in front of demo EHR API servers on loopback,
                      with the dashboard; --traffic also sends a small bounded client mix
  check -c FILE       validate a config file; exit 1 with every error
  ctl status|drain|halt|online|reload   operate a running carelb through its admin API
  ha render|sync|handoff|resume|peer    the keepalived pair (see docs/ha.md)
  tune check|apply    compare kernel and socket settings with the recommendations
  cert import|csr     import a certificate (PEM or PFX) into the store, or make a key and CSR
  version             print the version

An unknown option or argument exits 2. -h, --help after a command prints this text.
`;

const CONFIG_OPTIONS = { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } as const;
const HELP_ONLY = { help: { type: 'boolean', short: 'h' } } as const;
const DEMO_OPTIONS = { traffic: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

interface Stoppable {
  reload(source: string): Promise<unknown>;
  reopenLogs(): string[];
  stop(): Promise<void>;
}

function check(file: string | undefined): number {
  if (!file) throw new UsageError('-c FILE is required');
  const result = loadConfigFile(file);
  if (!result.ok) {
    process.stderr.write(`${file}: invalid config\n${result.errors.map((e) => `  ${e}`).join('\n')}\n`);
    return 1;
  }
  const files = checkConfigFiles(result.config);
  for (const warning of files.warnings) process.stderr.write(`warning: ${warning}\n`);
  if (files.errors.length > 0) {
    process.stderr.write(`${file}: invalid config\n${files.errors.map((e) => `  ${e}`).join('\n')}\n`);
    return 1;
  }
  process.stdout.write(`${file}: OK (${result.config.virtual_services.length} virtual services)\n`);
  return 0;
}

/** The native uWS binding, or a message (carelb never runs on the pure-JS fallback). */
function nativeProblem(): string | null {
  try {
    loadNativeUws();
    return null;
  } catch (error) {
    if (error instanceof NativeUwsMissing) return error.message;
    throw error;
  }
}

/**
 * Serves until SIGTERM/SIGINT (graceful stop); SIGHUP reloads; SIGUSR1 reopens the log files
 * (as NGINX does: logrotate renames them, then signals, so no line is lost the way
 * copytruncate loses the lines written between its copy and its truncate). A listener on
 * SIGUSR1 also keeps Node from opening its inspector on that signal, which a production load
 * balancer must not do anyway. Resolves with the exit status.
 */
async function serve(running: Stoppable, log: Logger): Promise<number> {
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'signal received: reloading the config');
    void running.reload('SIGHUP');
  });
  process.on('SIGUSR1', () => {
    const files = running.reopenLogs();
    log.info({ signal: 'SIGUSR1', files }, 'signal received: log files reopened');
  });
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info({ signal }, 'signal received');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      void running.stop().then(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  return 0;
}

async function start(given: string | undefined): Promise<number> {
  // Never the demo here: a mistyped flag or a missing file on a production host must not start it.
  const file = given ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined);
  if (!file) throw new UsageError(`no config: ${DEFAULT_CONFIG} does not exist; pass -c FILE (for the built-in demo run \`carelb demo\`)`);
  const problem = nativeProblem();
  if (problem) {
    process.stderr.write(`carelb: ${problem}\n`);
    return 1;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    process.stderr.write(`${file}: cannot read config: ${(error as NodeJS.ErrnoException).code ?? String(error)}\n`);
    return 1;
  }
  const result = loadConfigText(text, file);
  if (!result.ok) {
    process.stderr.write(`${file}: invalid config, not starting\n${result.errors.map((e) => `  ${e}`).join('\n')}\n`);
    return 1;
  }
  const log = createLogger();
  let running;
  try {
    running = await runCarelb(result.config, { log, configPath: file, configText: text });
  } catch (error) {
    process.stderr.write(`carelb: ${(error as Error).message}\n`);
    return 1;
  }
  return serve(running, log);
}

async function demo(traffic: boolean): Promise<number> {
  const problem = nativeProblem();
  if (problem) {
    process.stderr.write(`carelb: ${problem}\n`);
    return 1;
  }
  const log = createLogger();
  const { startDemo } = await import('./demo/demo');
  return serve(await startDemo(log, { traffic }), log);
}

/** Runs one verb; UsageError propagates to main (exit 2 with the usage). */
async function run(command: string, args: string[]): Promise<number> {
  const help = () => {
    process.stdout.write(USAGE);
    return 0;
  };
  switch (command) {
    case 'start': {
      const { values } = parseStrict(args, CONFIG_OPTIONS);
      return values.help ? help() : start(values.config);
    }
    case 'check': {
      const { values } = parseStrict(args, CONFIG_OPTIONS);
      return values.help ? help() : check(values.config);
    }
    case 'demo': {
      const { values } = parseStrict(args, DEMO_OPTIONS);
      return values.help ? help() : demo(values.traffic === true);
    }
    case 'version':
    case '--version':
      if (parseStrict(args, HELP_ONLY).values.help) return help();
      process.stdout.write(`carelb ${VERSION}\n`);
      return 0;
    case 'help':
    case '--help':
    case '-h':
      parseStrict(args, {});
      return help();
    case 'ctl': {
      const { runCtl } = await import('./ctl/ctl');
      return runCtl(args, process.stdout, process.stderr);
    }
    case 'ha': {
      const { runHa } = await import('./ha/command');
      return runHa(args, process.stdout, process.stderr);
    }
    case 'tune': {
      const { runTune } = await import('./tune/command');
      return runTune(args, process.stdout);
    }
    case 'cert': {
      const { runCert } = await import('./certs/command');
      return runCert(args, process.stdout, process.stderr);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

const VERBS = new Set(['start', 'check', 'demo', 'version']);

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    if (command === undefined) throw new UsageError('a command is required');
    return await run(command, args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`carelb${VERBS.has(command) ? ` ${command}` : ''}: ${error.message}\n\n${USAGE}`);
    return USAGE_EXIT;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`carelb: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
