/** What a `keepalived --config-test` outcome means (src/ha/config-test.ts), without keepalived. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyConfigTest, parseKeepalivedVersion } from '../../src/ha/config-test';

const SECURE = 'global_defs {\n    enable_script_security\n    script_user carelb\n}\n';
const V227 = 'Keepalived v2.2.7 (01/16,2022)\n\nCopyright(C) 2001-2022 Alexandre Cassen';

test('parses the version keepalived --version prints', () => {
  assert.deepEqual(parseKeepalivedVersion(V227), [2, 2, 7]);
  assert.deepEqual(parseKeepalivedVersion('Keepalived v2.3.10 (12/01,2024)'), [2, 3, 10]);
  assert.equal(parseKeepalivedVersion('command not found'), null);
});

test('keepalived before 2.2.8 killed by SIGTERM on a file with enable_script_security is its known bug, not a failure', () => {
  for (const run of [
    { status: null, signal: 'SIGTERM' as const, output: '' },
    { status: 143, signal: null, output: 'Terminated' },
  ]) {
    assert.deepEqual(classifyConfigTest(run, V227, SECURE), { kind: 'known-bug', version: '2.2.7', output: run.output });
  }
  assert.equal(classifyConfigTest({ status: null, signal: 'SIGTERM', output: '' }, 'Keepalived v2.1.5 (07/13,2020)', SECURE).kind, 'known-bug');
});

test('any other failure is a failure with its reason: a fixed keepalived, another signal, an exit status, no script security', () => {
  assert.deepEqual(classifyConfigTest({ status: null, signal: 'SIGTERM', output: '' }, 'Keepalived v2.2.8 (04/04,2023)', SECURE), { kind: 'failed', reason: 'keepalived was killed by SIGTERM', output: '' });
  assert.deepEqual(classifyConfigTest({ status: null, signal: 'SIGSEGV', output: 'x' }, V227, SECURE), { kind: 'failed', reason: 'keepalived was killed by SIGSEGV', output: 'x' });
  assert.deepEqual(classifyConfigTest({ status: 5, signal: null, output: 'Non-existent interface specified in configuration\n' }, V227, SECURE), {
    kind: 'failed',
    reason: 'keepalived exited with status 5',
    output: 'Non-existent interface specified in configuration',
  });
  assert.equal(classifyConfigTest({ status: null, signal: 'SIGTERM', output: '' }, V227, 'global_defs {\n}\n').kind, 'failed');
  assert.equal(classifyConfigTest({ status: null, signal: 'SIGTERM', output: '' }, 'unknown', SECURE).kind, 'failed');
  assert.deepEqual(classifyConfigTest({ status: 0, signal: null, output: '' }, V227, SECURE), { kind: 'ok' });
});
