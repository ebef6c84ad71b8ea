import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { evaluate, exitCode, satisfies } from '../../src/tune/evaluate';
import { readLive, type Reading } from '../../src/tune/read';
import {
  parseSysctlConf,
  RECOMMENDED_NOFILE,
  renderSysctlConf,
  SETTINGS,
  sysctlFileValue,
  sysctlSettings,
  type Setting,
} from '../../src/tune/settings';
import { formatTable } from '../../src/tune/table';
import { runTune } from '../../src/tune/command';

// dist/test/unit/ → repository root
const REPO = resolve(__dirname, '../../..');

function setting(name: string): Setting {
  const found = SETTINGS.find((s) => s.name === name);
  assert.ok(found, `no setting named ${name}`);
  return found;
}

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'carelb-tune-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

const LIMITS = (soft: string, hard: string): string =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
    'Max locked memory         8388608              8388608              bytes     ',
    '',
  ].join('\n');

/** A fake / where every setting has its recommended value, as the kernel formats them. */
function tunedTree(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const s of sysctlSettings()) {
    if (s.source.kind === 'sysctl') files[s.source.path] = `${sysctlFileValue(s.rule).split(' ').join('\t')}\n`;
  }
  files['/proc/self/limits'] = LIMITS(String(RECOMMENDED_NOFILE), String(RECOMMENDED_NOFILE));
  files['/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor'] = 'performance\n';
  files['/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor'] = 'performance\n';
  files['/sys/devices/system/cpu/cpufreq/policy0/scaling_governor'] = 'powersave\n'; // not cpuN: ignored
  files['/sys/kernel/mm/transparent_hugepage/enabled'] = 'always [madvise] never\n';
  return files;
}

test('the evaluator marks recommended values OK and weaker values WARN with the fix command', () => {
  const somaxconn = setting('net.core.somaxconn');
  const finTimeout = setting('net.ipv4.tcp_fin_timeout');
  const readings = new Map<string, Reading>([
    ['net.core.somaxconn', { state: 'value', value: '4096' }],
    ['net.ipv4.tcp_fin_timeout', { state: 'value', value: '10' }],
  ]);
  const rows = evaluate([somaxconn, finTimeout], readings);
  assert.deepEqual(rows, [
    { setting: 'net.core.somaxconn', current: '4096', recommended: '>= 65535', status: 'WARN', fix: 'sysctl -w net.core.somaxconn=65535' },
    { setting: 'net.ipv4.tcp_fin_timeout', current: '10', recommended: '<= 15', status: 'OK', fix: finTimeout.fix },
  ]);
  assert.equal(exitCode(rows), 2);
  assert.equal(exitCode(rows.slice(1)), 0);
});

test('at-least compares multi-field values field by field and accepts unlimited', () => {
  const rule = { compare: 'at-least', value: '4096 131072 33554432' } as const;
  assert.equal(satisfies('4096 131072 33554432', rule), true);
  assert.equal(satisfies('8192 262144 67108864', rule), true);
  assert.equal(satisfies('4096 87380 67108864', rule), false, 'a lower middle field fails');
  assert.equal(satisfies('4096 131072', rule), false, 'a missing field fails');
  assert.equal(satisfies('unlimited', { compare: 'at-least', value: '1048576' }), true);
  assert.equal(satisfies('12abc', { compare: 'at-least', value: '1' }), false);
});

test('range-at-least accepts any port range at least as wide as the recommended one', () => {
  const rule = { compare: 'range-at-least', value: '1024 65535' } as const;
  assert.equal(satisfies('1024 65535', rule), true);
  assert.equal(satisfies('1000 65535', rule), true);
  assert.equal(satisfies('32768 60999', rule), false, 'the kernel default is narrower');
  assert.equal(satisfies('1024', rule), false);
});

test('exact and one-of rules compare words, ignoring surrounding whitespace', () => {
  assert.equal(satisfies(' 1 ', { compare: 'exact', value: '1' }), true);
  assert.equal(satisfies('2', { compare: 'exact', value: '1' }), false);
  assert.equal(satisfies('performance,powersave', { compare: 'exact', value: 'performance' }), false);
  const thp = setting('transparent hugepages').rule;
  assert.equal(satisfies('never', thp), true);
  assert.equal(satisfies('madvise', thp), true);
  assert.equal(satisfies('always', thp), false);
});

test('an absent source is OK with a note where that means nothing to tune, WARN otherwise', () => {
  const readings = new Map<string, Reading>([
    ['CPU frequency governor', { state: 'absent', detail: 'no file matches' }],
    ['net.netfilter.nf_conntrack_max', { state: 'absent', detail: 'does not exist' }],
    ['net.core.somaxconn', { state: 'absent', detail: '/proc/sys/net/core/somaxconn does not exist' }],
    ['fs.file-max', { state: 'error', detail: 'cannot read /proc/sys/fs/file-max: EACCES' }],
  ]);
  const names = [...readings.keys()];
  const rows = evaluate(names.map(setting), readings);
  assert.deepEqual(
    rows.map((r) => [r.setting, r.current, r.status]),
    [
      ['CPU frequency governor', 'n/a', 'OK'],
      ['net.netfilter.nf_conntrack_max', 'n/a', 'OK'],
      ['net.core.somaxconn', 'missing', 'WARN'],
      ['fs.file-max', 'unreadable', 'WARN'],
    ],
  );
  assert.match(rows[0].note ?? '', /VM/);
  assert.match(rows[3].note ?? '', /EACCES/);
});

test('the reader reads a fake /proc and /sys tree under its root and every value there passes', async (t) => {
  const root = await tempDir(t);
  await writeTree(root, tunedTree());
  const readings = await readLive(SETTINGS, { root });
  assert.deepEqual(readings.get('net.ipv4.tcp_rmem'), { state: 'value', value: '4096 131072 33554432' }, 'tabs collapse to spaces');
  assert.deepEqual(readings.get('net.ipv4.ip_local_port_range'), { state: 'value', value: '1024 65535' });
  assert.deepEqual(readings.get('nofile (open files per process)'), { state: 'value', value: String(RECOMMENDED_NOFILE) });
  assert.deepEqual(readings.get('CPU frequency governor'), { state: 'value', value: 'performance' });
  assert.deepEqual(readings.get('transparent hugepages'), { state: 'value', value: 'madvise' });
  const rows = evaluate(SETTINGS, readings);
  assert.deepEqual(rows.filter((r) => r.status !== 'OK'), []);
});

test('the reader reports the soft nofile limit, mixed governors and absent files as such', async (t) => {
  const root = await tempDir(t);
  const files = tunedTree();
  delete files['/proc/sys/net/netfilter/nf_conntrack_max'];
  files['/proc/self/limits'] = LIMITS('1024', '524288');
  files['/proc/4242/limits'] = LIMITS('1048576', '1048576');
  files['/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor'] = 'powersave\n';
  files['/sys/devices/system/cpu/cpu10/cpufreq/scaling_governor'] = 'performance\n';
  files['/sys/kernel/mm/transparent_hugepage/enabled'] = '[always] madvise never\n';
  await writeTree(root, files);

  const readings = await readLive(SETTINGS, { root });
  assert.deepEqual(readings.get('nofile (open files per process)'), { state: 'value', value: '1024' });
  assert.deepEqual(readings.get('CPU frequency governor'), { state: 'value', value: 'performance,powersave' });
  assert.deepEqual(readings.get('transparent hugepages'), { state: 'value', value: 'always' });
  assert.equal(readings.get('net.netfilter.nf_conntrack_max')?.state, 'absent');

  const rows = evaluate(SETTINGS, readings);
  assert.deepEqual(
    rows.filter((r) => r.status === 'WARN').map((r) => r.setting),
    ['nofile (open files per process)', 'CPU frequency governor', 'transparent hugepages'],
  );

  const ofPid = await readLive([setting('nofile (open files per process)')], { root, pid: 4242 });
  assert.deepEqual(ofPid.get('nofile (open files per process)'), { state: 'value', value: '1048576' });
});

test('the reader treats a tree without cpufreq as n/a, not as a warning', async (t) => {
  const root = await tempDir(t);
  const files = tunedTree();
  for (const path of Object.keys(files)) if (path.includes('cpufreq')) delete files[path];
  await writeTree(root, { ...files, '/sys/devices/system/cpu/cpu0/online': '1\n' });
  const rows = evaluate(SETTINGS, await readLive(SETTINGS, { root }));
  const governor = rows.find((r) => r.setting === 'CPU frequency governor');
  assert.equal(governor?.current, 'n/a');
  assert.equal(governor?.status, 'OK');
  assert.match(formatTable(rows), /\[1\] cpufreq is not exposed/);
});

test('tuning/sysctl.conf sets exactly the sysctls the settings declare, with the same values', async () => {
  const text = await readFile(join(REPO, 'tuning/sysctl.conf'), 'utf8');
  const { values, bad } = parseSysctlConf(text);
  assert.deepEqual(bad, [], 'every non-comment line is key = value');
  const declared = new Map(sysctlSettings().map((s) => [s.name, sysctlFileValue(s.rule)]));
  assert.deepEqual(Object.fromEntries(values), Object.fromEntries(declared));
  for (const s of sysctlSettings()) {
    if (s.whenAbsent === 'warn') continue;
    assert.match(text, new RegExp(`^-${s.name.replace(/\./g, '\\.')} =`, 'm'), `${s.name} may be absent: needs the "-" prefix`);
  }
});

test('the sysctl file apply writes parses back to the declared values', () => {
  const { values, bad } = parseSysctlConf(renderSysctlConf());
  assert.deepEqual(bad, []);
  assert.deepEqual(Object.fromEntries(values), Object.fromEntries(sysctlSettings().map((s) => [s.name, sysctlFileValue(s.rule)])));
});

test('tuning/limits.conf raises nofile for the carelb user to the recommended limit', async () => {
  const text = await readFile(join(REPO, 'tuning/limits.conf'), 'utf8');
  const entries = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/));
  assert.deepEqual(entries, [
    ['carelb', 'soft', 'nofile', String(RECOMMENDED_NOFILE)],
    ['carelb', 'hard', 'nofile', String(RECOMMENDED_NOFILE)],
  ]);
});

test('tune check on this machine prints a row for every setting and exits 0 or 2', async () => {
  const out = capture();
  const code = await runTune(['check'], out.stream);
  assert.ok(code === 0 || code === 2, `exit code ${code}`);
  const lines = out.text().split('\n');
  assert.match(lines[0], /^SETTING\s+CURRENT\s+RECOMMENDED\s+STATUS\s+FIX$/);
  for (const s of SETTINGS) {
    assert.ok(lines.some((l) => l.startsWith(`${s.name} `)), `row for ${s.name}`);
  }
  assert.equal(code === 2, /\bWARN\b/.test(out.text()));
});

test('tune check exits 0 on a fully tuned tree and 2 when a setting is off', async (t) => {
  const root = await tempDir(t);
  const files = tunedTree();
  await writeTree(root, files);
  const ok = capture();
  assert.equal(await runTune(['check', '--pid', 'self'], ok.stream, { root }), 1, '--pid must be a number');
  assert.equal(await runTune(['check'], ok.stream, { root }), 0);

  await writeTree(root, { '/proc/sys/net/core/somaxconn': '4096\n' });
  const warn = capture();
  assert.equal(await runTune(['check'], warn.stream, { root }), 2);
  assert.match(warn.text(), /^net\.core\.somaxconn\s+4096\s+>= 65535\s+WARN\s+sysctl -w net\.core\.somaxconn=65535$/m);
});

test('tune apply --dry-run prints the file and the command and writes nothing', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, '60-carelb.conf');
  const out = capture();
  let loaded = false;
  const code = await runTune(['apply', '--dry-run', '--file', file], out.stream, {
    loadSysctlFile: async () => {
      loaded = true;
      return { code: 0, output: '' };
    },
  });
  assert.equal(code, 0);
  assert.equal(existsSync(file), false);
  assert.equal(loaded, false);
  for (const s of sysctlSettings()) assert.match(out.text(), new RegExp(`^(# )?-?${s.name.replace(/\./g, '\\.')} = `, 'm'));
  assert.ok(out.text().includes(`Would run: sysctl -e -p ${file}`));
});

test('tune apply writes the sysctl file, loads that file and verifies the values took effect', async (t) => {
  const root = await tempDir(t);
  await writeTree(root, tunedTree());
  const file = join(root, '60-carelb.conf');
  const loadedFiles: string[] = [];
  const loadSysctlFile = async (f: string) => {
    loadedFiles.push(f);
    return { code: 0, output: 'net.core.somaxconn = 65535\n' };
  };
  const out = capture();
  assert.equal(await runTune(['apply', '--file', file], out.stream, { root, loadSysctlFile }), 0);
  assert.equal(await readFile(file, 'utf8'), renderSysctlConf());
  assert.deepEqual(loadedFiles, [file]);
  assert.match(out.text(), /Loaded and verified/);

  const failing = capture();
  const code = await runTune(['apply', '--file', file], failing.stream, {
    root,
    loadSysctlFile: async () => ({ code: 255, output: 'permission denied' }),
  });
  assert.equal(code, 1);
  assert.match(failing.text(), /already up to date[\s\S]*exited with 255/);
});

test('tune apply fails when a value reads back unchanged although sysctl exited 0', async (t) => {
  const root = await tempDir(t);
  await writeTree(root, { ...tunedTree(), '/proc/sys/net/core/somaxconn': '4096\n' });
  const out = capture();
  const code = await runTune(['apply', '--file', join(root, 'x.conf')], out.stream, {
    root,
    loadSysctlFile: async () => ({ code: 0, output: '' }), // like sysctl(8) after an EINVAL
  });
  assert.equal(code, 1);
  assert.match(out.text(), /1 setting\(s\) did not take effect/);
  assert.match(out.text(), /^net\.core\.somaxconn\s+4096\s/m);
});

test('tune apply leaves alone live values that already satisfy the recommendation instead of lowering them', async (t) => {
  const root = await tempDir(t);
  await writeTree(root, {
    ...tunedTree(),
    '/proc/sys/net/core/somaxconn': '262144\n',
    '/proc/sys/net/ipv4/ip_local_port_range': '1000\t65535\n',
    '/proc/sys/net/ipv4/tcp_fin_timeout': '10\n',
    '/proc/sys/net/ipv4/tcp_wmem': '4096\t16384\t4194304\n', // weaker: set
  });
  const file = join(root, 'x.conf');
  const out = capture();
  assert.equal(await runTune(['apply', '--file', file], out.stream, { root, loadSysctlFile: async () => ({ code: 0, output: '' }) }), 1,
    'tcp_wmem reads back unchanged from the fake tree');
  const text = await readFile(file, 'utf8');
  const { values } = parseSysctlConf(text);
  for (const key of ['net.core.somaxconn', 'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_fin_timeout']) {
    assert.equal(values.has(key), false, `${key} is not set`);
  }
  assert.match(text, /^# not set: this host's 262144 already satisfies >= 65535\n# net\.core\.somaxconn = 65535$/m);
  assert.equal(values.get('net.ipv4.tcp_wmem'), '4096 16384 33554432');
  assert.equal(values.get('net.ipv4.tcp_tw_reuse'), '1');
});

test('tune apply reports an unwritable target instead of throwing', async (t) => {
  const dir = await tempDir(t);
  const out = capture();
  const code = await runTune(['apply', '--file', join(dir, 'no-such-dir', 'x.conf')], out.stream, {
    loadSysctlFile: async () => assert.fail('must not load after a failed write'),
  });
  assert.equal(code, 1);
  assert.match(out.text(), /cannot write/);
});

test('an unknown subcommand or option prints usage and returns 1', async () => {
  for (const args of [['frobnicate'], [], ['check', '--verbose'], ['apply', '--file']]) {
    const out = capture();
    assert.equal(await runTune(args, out.stream), 1, args.join(' '));
    assert.match(out.text(), /Usage: carelb tune/);
  }
  const help = capture();
  assert.equal(await runTune(['--help'], help.stream), 0);
});
