/**
 * Strict command lines (issue 13): every verb parses its arguments with node:util parseArgs; an
 * unknown flag or a stray argument exits 2 with the usage, and `carelb start` never falls back to
 * the demo. Real processes (the built CLI), nothing started on any port.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, tempDir, writeConfig } from '../helpers/carelb';

const DEFAULT_CONFIG = '/etc/carelb/carelb.yaml';

function runCli(args: string[]) {
  // A short timeout: a command line that starts anything (the demo) fails the test instead of hanging it.
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000, env: { ...process.env, CARELB_LOG_FORMAT: 'json' } });
}

const VALID = { virtual_services: [{ name: 'api', listen: '127.0.0.1:1', servers: [{ name: 'a', address: '127.0.0.1:2' }] }] };

test('carelb start --conf FILE (a typo of --config) exits 2 with the usage and starts nothing', (t) => {
  const config = writeConfig(t, VALID);
  const result = runCli(['start', '--conf', config]);
  assert.equal(result.signal, null, 'it must not keep running (the demo)');
  assert.equal(result.status, 2, result.stderr);
  assert.match(result.stderr, /--conf/);
  assert.match(result.stderr, /usage: carelb <command>/);
  assert.doesNotMatch(result.stdout, /"msg":"ready"|demo/i);
});

test('every verb refuses unknown flags and stray arguments with exit 2 and its usage', (t) => {
  const config = writeConfig(t, VALID);
  const cases: [string[], RegExp, RegExp][] = [
    [['start', '-c', config, 'extra'], /extra/, /usage: carelb <command>/],
    [['start', '-x'], /-x/, /usage: carelb <command>/],
    [['check', '-c', config, '--verbose'], /--verbose/, /usage: carelb <command>/],
    [['check'], /-c FILE is required/, /usage: carelb <command>/],
    [['check', config], /unexpected argument/, /usage: carelb <command>/],
    [['demo', '--port', '80'], /--port/, /usage: carelb <command>/],
    [['version', 'now'], /now/, /usage: carelb <command>/],
    [['frobnicate'], /unknown command "frobnicate"/, /usage: carelb <command>/],
    [['ctl', 'status', '--verbose'], /--verbose/, /usage: carelb ctl <command>/],
    [['ctl', 'drain', 'api/a', 'extra'], /extra/, /usage: carelb ctl <command>/],
    [['ctl', 'restart'], /unknown command "restart"/, /usage: carelb ctl <command>/],
    [['ctl', 'status', '--admin'], /--admin/, /usage: carelb ctl <command>/],
    [['ha', 'sync', '-c', config, '--bogus'], /--bogus/, /usage: carelb ha <command>/],
    [['ha', 'render', '-c', config, 'extra'], /extra/, /usage: carelb ha <command>/],
    [['ha', 'bogus'], /unknown command "bogus"/, /usage: carelb ha <command>/],
  ];
  for (const [args, reason, usage] of cases) {
    const result = runCli(args);
    assert.equal(result.status, 2, `carelb ${args.join(' ')}: exit ${result.status}\n${result.stderr}`);
    assert.match(result.stderr, reason, `carelb ${args.join(' ')}`);
    assert.match(result.stderr, usage, `carelb ${args.join(' ')}`);
    assert.equal(result.stdout, '', `carelb ${args.join(' ')} printed on stdout`);
  }
});

test('help and version still work: usage on stdout with exit 0', () => {
  for (const args of [['--help'], ['help'], ['start', '--help'], ['ctl', '--help'], ['ha', '--help']]) {
    const result = runCli(args);
    assert.equal(result.status, 0, `carelb ${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stdout, /^usage: carelb /, `carelb ${args.join(' ')}`);
  }
  const version = runCli(['version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^carelb \d+\.\d+\.\d+\n$/);
});

test(
  `carelb start without -c looks for ${DEFAULT_CONFIG} and, when it is absent, exits 2 naming it`,
  { skip: existsSync(DEFAULT_CONFIG) ? `${DEFAULT_CONFIG} exists on this machine` : false },
  (t) => {
    // Run from an empty directory: nothing relative to the working directory may be picked up either.
    const result = spawnSync(process.execPath, [CLI, 'start'], { encoding: 'utf8', timeout: 15_000, cwd: tempDir(t) });
    assert.equal(result.signal, null, 'it must not keep running (the demo)');
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, new RegExp(`${DEFAULT_CONFIG.replace(/[./]/g, '\\$&')}`));
    assert.match(result.stderr, /carelb demo/, 'the message points to the demo verb');
  },
);

test('carelb check -c FILE and --config=FILE are the same option', (t) => {
  const config = writeConfig(t, VALID);
  for (const args of [['check', '-c', config], ['check', `--config=${config}`], ['check', '--config', config]]) {
    const result = runCli(args);
    assert.equal(result.status, 0, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stdout, /OK \(1 virtual services\)/);
  }
  const missing = runCli(['check', '-c', join(tempDir(t), 'missing.yaml')]);
  assert.equal(missing.status, 1, 'an unreadable config is an error of the config, not of the command line');
});
