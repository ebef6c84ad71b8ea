/**
 * deploy/install.sh, run into temporary DESTDIR roots (issue 7, "Bare-metal install").
 *
 * Each test copies the built tree (dist/, package files, deploy/) into a temporary release
 * directory first, so that a rebuild of the working tree during the run cannot change what the
 * installer sees between two of its runs. The test runs after `npm run build`; it builds nothing.
 * Owners are not asserted: with DESTDIR set the installer creates no user and changes no owner.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';

const REPO = path.resolve(__dirname, '../../..');
const PREFIX = '/opt/carelb';

function tempDir(t: TestContext, label: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `carelb-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A copy of the built tree, as a release the installer can be run from. */
function makeRelease(t: TestContext): string {
  const release = tempDir(t, 'release');
  cpSync(path.join(REPO, 'dist'), path.join(release, 'dist'), { recursive: true });
  cpSync(path.join(REPO, 'deploy'), path.join(release, 'deploy'), { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) cpSync(path.join(REPO, file), path.join(release, file));
  symlinkSync(path.join(REPO, 'node_modules'), path.join(release, 'node_modules'));
  return release;
}

/** A tiny fake release with a small node_modules of its own, for the copy (--offline) mode. */
function makeFakeRelease(t: TestContext, options: { built?: boolean } = {}): string {
  const release = tempDir(t, 'fake-release');
  cpSync(path.join(REPO, 'deploy'), path.join(release, 'deploy'), { recursive: true });
  writeFileSync(path.join(release, 'package.json'), '{"name":"carelb","version":"0.0.0-test"}\n');
  writeFileSync(path.join(release, 'package-lock.json'), '{"lockfileVersion":3}\n');
  if (options.built !== false) {
    mkdirSync(path.join(release, 'dist/src'), { recursive: true });
    writeFileSync(path.join(release, 'dist/src/cli.js'), "console.log('fake carelb');\n");
  }
  mkdirSync(path.join(release, 'node_modules/fake'), { recursive: true });
  mkdirSync(path.join(release, 'node_modules/.bin'));
  writeFileSync(path.join(release, 'node_modules/fake/index.js'), '#!/usr/bin/env node\n');
  chmodSync(path.join(release, 'node_modules/fake/index.js'), 0o755);
  symlinkSync('../fake/index.js', path.join(release, 'node_modules/.bin/fake'));
  return release;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function install(release: string, root: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Run {
  const result = spawnSync('bash', [path.join(release, 'deploy/install.sh'), ...args], {
    env: { ...process.env, CARELB_SKIP_NPM: '', ...env, DESTDIR: root },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function installOk(release: string, root: string, args: string[] = ['--skip-npm'], env: NodeJS.ProcessEnv = {}): Run {
  const run = install(release, root, args, env);
  assert.equal(run.status, 0, `install.sh ${args.join(' ')} failed:\n${run.stdout}\n${run.stderr}`);
  return run;
}

function mode(file: string): string {
  return (lstatSync(file).mode & 0o7777).toString(8).padStart(4, '0');
}

/** Every path under root with its type, mode and content hash (or link target); links are not followed. */
function listing(root: string): string[] {
  const lines: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir).sort()) {
      const full = path.join(dir, entry);
      const rel = path.relative(root, full);
      const st = lstatSync(full);
      const perm = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) lines.push(`${rel} link ${perm} -> ${readlinkSync(full)}`);
      else if (st.isDirectory()) {
        lines.push(`${rel} dir ${perm}`);
        walk(full);
      } else lines.push(`${rel} file ${perm} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`);
    }
  };
  walk(root);
  return lines;
}

/** Parses a systemd unit into `Section.Key` → values (a key may repeat). */
function parseUnit(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1];
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a key=value line: ${line}`);
    const key = `${section}.${line.slice(0, eq).trim()}`;
    keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return keys;
}

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

test('installs the program, config, admin token, directories, wrapper, unit and logrotate into a DESTDIR root', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  const run = installOk(release, root);

  for (const line of run.stdout.trim().split('\n')) assert.match(line, /^carelb-install: /);
  assert.match(run.stdout, /user carelb: skipped \(DESTDIR is set/);
  assert.match(run.stdout, /systemd: skipped \(DESTDIR is set\)/);

  const app = path.join(root, PREFIX);
  assert.ok(existsSync(path.join(app, 'dist/src/cli.js')));
  assert.ok(existsSync(path.join(app, 'dist/src/config/load.js')));
  assert.ok(!existsSync(path.join(app, 'dist/test')), 'compiled tests are not installed');
  assert.equal(readFileSync(path.join(app, 'package.json'), 'utf8'), readFileSync(path.join(release, 'package.json'), 'utf8'));
  assert.equal(readFileSync(path.join(app, 'package-lock.json'), 'utf8'), readFileSync(path.join(release, 'package-lock.json'), 'utf8'));
  assert.equal(readlinkSync(path.join(app, 'node_modules')), path.join(release, 'node_modules'));
  assert.equal(mode(path.join(app, 'dist/src/cli.js')), '0644');

  const etc = path.join(root, 'etc/carelb');
  assert.equal(mode(etc), '0750');
  assert.equal(mode(path.join(etc, 'tls')), '0750');
  assert.equal(mode(path.join(etc, 'carelb.yaml')), '0640');
  assert.equal(readFileSync(path.join(etc, 'carelb.yaml'), 'utf8'), readFileSync(path.join(REPO, 'deploy/examples/carelb.yaml'), 'utf8'));
  assert.equal(mode(path.join(etc, 'admin.token')), '0600');
  assert.match(readFileSync(path.join(etc, 'admin.token'), 'utf8'), /^[0-9a-f]{64}\n$/);
  assert.equal(mode(path.join(root, 'var/log/carelb')), '0750');
  assert.equal(mode(path.join(root, 'var/lib/carelb')), '0750');

  const wrapper = path.join(root, 'usr/local/bin/carelb');
  assert.equal(mode(wrapper), '0755');
  assert.match(readFileSync(wrapper, 'utf8'), /^#!\/bin\/sh\n(#.*\n)*exec "\/\S+\/node" "\/opt\/carelb\/dist\/src\/cli\.js" "\$@"\n$/);
  assert.equal(mode(path.join(root, 'etc/systemd/system/carelb.service')), '0644');
  assert.equal(mode(path.join(root, 'etc/logrotate.d/carelb')), '0644');

  // The installed program, with its installed dependencies, accepts the installed config.
  const check = spawnSync(
    process.execPath,
    ['-e', 'const r = require(process.argv[1]).loadConfigFile(process.argv[2]); console.log(JSON.stringify(r)); process.exit(r.ok ? 0 : 1)', path.join(app, 'dist/src/config/load.js'), path.join(etc, 'carelb.yaml')],
    { encoding: 'utf8' },
  );
  assert.equal(check.status, 0, check.stdout + check.stderr);
});

test('CARELB_SKIP_NPM=1 does what --skip-npm does', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  const run = installOk(release, root, [], { CARELB_SKIP_NPM: '1' });
  assert.match(run.stdout, /linked \(--skip-npm/);
  assert.equal(readlinkSync(path.join(root, PREFIX, 'node_modules')), path.join(release, 'node_modules'));
});

test('the systemd unit carries the required directives', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  const unit = parseUnit(readFileSync(path.join(root, 'etc/systemd/system/carelb.service'), 'utf8'));
  const service: Record<string, string> = {
    ExecReload: '/bin/kill -HUP $MAINPID',
    User: 'carelb',
    AmbientCapabilities: 'CAP_NET_BIND_SERVICE',
    CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE CAP_SYS_NICE',
    LimitNOFILE: '1048576',
    Restart: 'always',
    RestartSec: '1',
    KillSignal: 'SIGTERM',
    TimeoutStopSec: '30',
    NoNewPrivileges: 'yes',
    ProtectSystem: 'strict',
    ProtectHome: 'yes',
    PrivateTmp: 'yes',
    ReadWritePaths: '/var/log/carelb /var/lib/carelb /etc/carelb',
    ProtectKernelTunables: 'yes',
    ProtectControlGroups: 'yes',
    RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX AF_NETLINK',
    LockPersonality: 'yes',
    RestrictRealtime: 'yes',
    SystemCallArchitectures: 'native',
  };
  for (const [key, value] of Object.entries(service)) assert.deepEqual(unit.get(`Service.${key}`), [value], key);
  const execStart = unit.get('Service.ExecStart');
  assert.equal(execStart?.length, 1);
  assert.match(execStart[0], /^\/\S+\/node \/opt\/carelb\/dist\/src\/cli\.js start -c \/etc\/carelb\/carelb\.yaml$/);
  assert.deepEqual(unit.get('Install.WantedBy'), ['multi-user.target']);
  // V8's JIT needs writable+executable memory.
  assert.equal(unit.get('Service.MemoryDenyWriteExecute'), undefined);
});

test('systemd-analyze verify accepts the installed unit', (t) => {
  if (!has('systemd-analyze')) return t.skip('systemd-analyze is not installed');
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  // Verified by path, against the host: the unit names the host's node binary, which is what
  // verify checks for existence. `--root=DESTDIR` would look for node inside the staging root,
  // where it is not installed. The script path ($PREFIX/dist/...) is an argument and not checked.
  const unitFile = path.join(root, 'etc/systemd/system/carelb.service');
  const verify = spawnSync('systemd-analyze', ['verify', '--man=no', unitFile], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  // Unknown or misspelled keys are only warnings ("Unknown key ..., ignoring"): none allowed.
  const warnings = verify.stderr.split('\n').filter((line) => line.includes('carelb.service'));
  assert.deepEqual(warnings, []);
});

test('--prefix installs elsewhere and the unit and wrapper follow it', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root, ['--skip-npm', '--prefix', '/srv/lb/carelb']);
  assert.ok(existsSync(path.join(root, 'srv/lb/carelb/dist/src/cli.js')));
  assert.ok(!existsSync(path.join(root, 'opt')));
  const unit = parseUnit(readFileSync(path.join(root, 'etc/systemd/system/carelb.service'), 'utf8'));
  assert.match(unit.get('Service.ExecStart')?.[0] ?? '', / \/srv\/lb\/carelb\/dist\/src\/cli\.js start /);
  assert.match(readFileSync(path.join(root, 'usr/local/bin/carelb'), 'utf8'), /"\/srv\/lb\/carelb\/dist\/src\/cli\.js"/);

  installOk(release, root, ['--uninstall', '--prefix=/srv/lb/carelb']);
  assert.ok(!existsSync(path.join(root, 'srv/lb/carelb')));
});

test('logrotate rotates /var/log/carelb/*.log daily, 14 times, compressed, by rename and SIGUSR1 (never copytruncate)', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  const file = path.join(root, 'etc/logrotate.d/carelb');
  const text = readFileSync(file, 'utf8');
  assert.match(text, /^\/var\/log\/carelb\/\*\.log \{$/m);
  for (const directive of ['daily', 'rotate 14', 'compress', 'delaycompress', 'missingok', 'notifempty', 'sharedscripts', 'postrotate', 'endscript']) {
    assert.match(text, new RegExp(`^\\s+${directive}$`, 'm'), directive);
  }
  // copytruncate loses the lines written between its copy and its truncate (audit lines too).
  assert.doesNotMatch(text, /^\s+copytruncate$/m);
  assert.match(text, /kill -USR1 "\$pid"/);
  if (!has('logrotate')) return t.skip('logrotate is not installed: syntax not checked');
  // Debug mode parses and plans without touching anything. The carelb user does not exist
  // here, so the `su` line is checked with root instead.
  const copy = path.join(tempDir(t, 'logrotate'), 'carelb');
  writeFileSync(copy, text.replace('su carelb carelb', 'su root root').replace('create 0640 carelb carelb', 'create 0640 root root'));
  const state = path.join(path.dirname(copy), 'state');
  const run = spawnSync('logrotate', ['-d', '-s', state, copy], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.doesNotMatch(run.stderr + run.stdout, /^error:/m);
});

test('install.sh passes shellcheck', (t) => {
  if (!has('shellcheck')) return t.skip('shellcheck is not installed (apt-get install shellcheck)');
  const run = spawnSync('shellcheck', [path.join(REPO, 'deploy/install.sh')], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
});

test('a second run changes nothing: same files, same modes, same contents', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  const before = listing(root);
  const second = installOk(release, root);
  assert.deepEqual(listing(root), before);
  assert.doesNotMatch(second.stdout, /: (written|created|updated|generated|linked)/);
});

test('a rerun keeps an edited config and the admin token, and repairs the token mode', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  const config = path.join(root, 'etc/carelb/carelb.yaml');
  const token = path.join(root, 'etc/carelb/admin.token');
  const edited = '# edited by the operator\nworkers: 2\n';
  writeFileSync(config, edited);
  const tokenBefore = readFileSync(token, 'utf8');
  chmodSync(token, 0o644);

  const run = installOk(release, root);
  assert.equal(readFileSync(config, 'utf8'), edited);
  assert.match(run.stdout, /carelb\.yaml: kept/);
  assert.equal(readFileSync(token, 'utf8'), tokenBefore);
  assert.equal(mode(token), '0600');
  // The current example still lands beside the config.
  assert.equal(readFileSync(`${config}.example`, 'utf8'), readFileSync(path.join(REPO, 'deploy/examples/carelb.yaml'), 'utf8'));
});

test('--uninstall removes the program, unit, wrapper and logrotate but keeps config, logs and state; --purge removes them', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root);
  const log = path.join(root, 'var/log/carelb/access.log');
  writeFileSync(log, '{"msg":"request"}\n');
  const token = readFileSync(path.join(root, 'etc/carelb/admin.token'), 'utf8');

  installOk(release, root, ['--uninstall']);
  for (const gone of [PREFIX, 'etc/systemd/system/carelb.service', 'usr/local/bin/carelb', 'etc/logrotate.d/carelb']) {
    assert.ok(!existsSync(path.join(root, gone)), `${gone} should be removed`);
  }
  assert.ok(existsSync(path.join(root, 'etc/carelb/carelb.yaml')));
  assert.ok(statSync(path.join(root, 'etc/carelb/tls')).isDirectory());
  assert.equal(readFileSync(path.join(root, 'etc/carelb/admin.token'), 'utf8'), token);
  assert.ok(existsSync(log));
  assert.ok(existsSync(path.join(root, 'var/lib/carelb')));

  // Uninstalling again is harmless; reinstalling reuses the kept token.
  installOk(release, root, ['--uninstall']);
  installOk(release, root);
  assert.equal(readFileSync(path.join(root, 'etc/carelb/admin.token'), 'utf8'), token);

  installOk(release, root, ['--purge']);
  for (const gone of [PREFIX, 'etc/carelb', 'var/log/carelb', 'var/lib/carelb', 'etc/systemd/system/carelb.service', 'usr/local/bin/carelb']) {
    assert.ok(!existsSync(path.join(root, gone)), `${gone} should be purged`);
  }
});

test('--uninstall refuses to remove a prefix the installer did not create', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  const foreign = path.join(root, 'opt/other');
  mkdirSync(foreign, { recursive: true });
  writeFileSync(path.join(foreign, 'precious'), 'keep me\n');
  const run = install(release, root, ['--uninstall', '--prefix', '/opt/other']);
  assert.equal(run.status, 1);
  assert.match(run.stderr, /refusing to remove .*opt\/other/);
  assert.ok(existsSync(path.join(foreign, 'precious')));
});

test('--offline copies the release\'s node_modules, and a rerun leaves the copy alone', (t) => {
  const release = makeFakeRelease(t);
  const root = tempDir(t, 'root');
  installOk(release, root, ['--offline']);
  const modules = path.join(root, PREFIX, 'node_modules');
  assert.ok(lstatSync(modules).isDirectory());
  assert.equal(readlinkSync(path.join(modules, '.bin/fake')), '../fake/index.js');
  assert.equal(mode(path.join(modules, 'fake/index.js')), '0755');
  const before = listing(root);
  installOk(release, root, ['--offline']);
  assert.deepEqual(listing(root), before);
  // Switching to --skip-npm replaces the copy with a link.
  installOk(release, root, ['--skip-npm']);
  assert.ok(lstatSync(modules).isSymbolicLink());
});

test('refuses a Node.js other than 20 with a clear message, before installing anything', (t) => {
  const release = makeRelease(t);
  const root = tempDir(t, 'root');
  const bin = tempDir(t, 'bin');
  writeFileSync(path.join(bin, 'node'), '#!/bin/sh\necho v18.19.1\n');
  chmodSync(path.join(bin, 'node'), 0o755);
  const run = install(release, root, ['--skip-npm'], { PATH: `${bin}:${process.env.PATH ?? ''}` });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /Node\.js 20 is required, but .*node is v18\.19\.1/);
  assert.deepEqual(readdirSync(root), []);

  const missing = install(release, root, ['--skip-npm', '--node', '/nonexistent/node']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /Node\.js 20 is required but \/nonexistent\/node is not an executable/);
});

test('refuses an unbuilt release, unknown options and unsafe prefixes', (t) => {
  const root = tempDir(t, 'root');
  const unbuilt = install(makeFakeRelease(t, { built: false }), root, ['--skip-npm']);
  assert.equal(unbuilt.status, 1);
  assert.match(unbuilt.stderr, /dist\/src\/cli\.js is missing.*npm ci && npm run build/);

  const release = makeRelease(t);
  const unknown = install(release, root, ['--frobnicate']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown option: --frobnicate/);
  assert.match(unknown.stderr, /--prefix DIR/);

  for (const prefix of ['relative/dir', '/', '/opt/../etc', '/usr', '/opt/car lb']) {
    const run = install(release, root, ['--skip-npm', '--prefix', prefix]);
    assert.equal(run.status, 1, prefix);
    assert.match(run.stderr, /--prefix/, prefix);
  }
  assert.deepEqual(readdirSync(root), []);

  const help = install(release, root, ['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--uninstall/);
});
