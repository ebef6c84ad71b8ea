#!/usr/bin/env node
/**
 * carelb command line: start | check | tune | version.
 */
import { readFileSync } from 'node:fs';
import { loadConfigFile, loadConfigText } from './config/load';
import { checkConfigFiles } from './config/config-files';
import { NativeUwsMissing, loadNativeUws } from './native';
import { createLogger } from './observe/log';
import { runCarelb } from './primary/run';

const VERSION: string = require('../../package.json').version;

const USAGE = `usage: carelb <command> [options]

  start [-c FILE]     run in the foreground (without -c: the built-in demo)
  check -c FILE       validate a config file; exit 1 with every error
  ctl status|drain|halt|online|reload   operate a running carelb through its admin API
  ha render|sync|handoff|resume|peer    the keepalived pair (see docs/ha.md)
  tune check|apply    compare kernel and socket settings with the recommendations
  version             print the version
`;

function option(args: string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) if (names.includes(args[i])) return args[i + 1];
  return undefined;
}

function check(file: string | undefined): number {
  if (!file) {
    process.stderr.write('carelb check: -c FILE is required\n');
    return 1;
  }
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

async function start(file: string | undefined): Promise<number> {
  try {
    loadNativeUws();
  } catch (error) {
    if (error instanceof NativeUwsMissing) {
      process.stderr.write(`carelb: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const log = createLogger();
  let running;
  if (file) {
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
    try {
      running = await runCarelb(result.config, { log, configPath: file, configText: text });
    } catch (error) {
      process.stderr.write(`carelb: ${(error as Error).message}\n`);
      return 1;
    }
  } else {
    const { startDemo } = await import('./demo/demo');
    running = await startDemo(log);
  }
  const live = running;
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'signal received: reloading the config');
    void live.reload('SIGHUP');
  });
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info({ signal }, 'signal received');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      void running!.stop().then(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'start':
      return start(option(args, '-c', '--config'));
    case 'check':
      return check(option(args, '-c', '--config'));
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
    case 'version':
    case '--version':
      process.stdout.write(`carelb ${VERSION}\n`);
      return 0;
    default:
      process.stderr.write(USAGE);
      return command === undefined || command === 'help' || command === '--help' ? 0 : 1;
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
