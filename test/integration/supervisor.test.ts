/**
 * The supervisor's restart and reload policy (issue 11, point 4) with real piscina threads
 * running a scripted serve task (test/helpers/scripted-worker.ts), so failures happen exactly
 * when the test says: a first start that cannot complete fails, a reload a thread cannot apply
 * is reported, a thread still starting during a reload gets the new config.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import type { Config } from '../../src/config/schema';
import { Supervisor } from '../../src/primary/supervisor';
import type { SharedViews } from '../../src/state/layout';
import { eventually } from '../helpers/carelb';
import { CONTROL, type ScriptedConfig } from '../helpers/scripted-worker';

const WORKER = join(__dirname, '..', 'helpers', 'scripted-worker.js');
const FAST = { initialMs: 20, maxMs: 200, stableMs: 60_000 };

function scripted(t: TestContext, threads: number, options: { diagnose?: () => string[] } = {}) {
  const buffer = new SharedArrayBuffer(CONTROL.SIZE * 4);
  const control = new Int32Array(buffer);
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const config = (marker: number) => ({ pin_workers: false, marker }) satisfies ScriptedConfig as unknown as Config;
  const shared = { buffer, layout: { shape: {} } } as unknown as SharedViews;
  const supervisor = new Supervisor(config(1), { vs: [] }, threads, shared, pino(sink), { workerFile: WORKER, restartPolicy: FAST, ...options });
  t.after(() => {
    // A thread held at start (START_MODE 2) must be let go, or it never sees 'stop'.
    Atomics.store(control, CONTROL.GO, 1);
    Atomics.notify(control, CONTROL.GO);
    return supervisor.stop(0);
  });
  return { supervisor, control, lines, config };
}

test('a first start in which a thread cannot start fails with its reason and is not retried', async (t) => {
  const { supervisor, control } = scripted(t, 2, { diagnose: () => ['virtual_services[0].tls.cert: cannot read certificate /etc/x.pem: ENOENT (missing)'] });
  control[CONTROL.START_MODE] = 1;
  await assert.rejects(supervisor.start(), /data-plane thread \d failed to start: scripted start failure in slot \d; the config's files: virtual_services\[0\]\.tls\.cert: .*ENOENT \(missing\)/);
  await supervisor.stop(0);
  assert.equal(control[CONTROL.STARTS], 2, 'one start per thread, no retry');
  assert.equal(supervisor.restarts, 0);
});

test('a reload that a thread cannot apply is reported as failed with the reason, and the thread is restarted', async (t) => {
  const { supervisor, control, lines, config } = scripted(t, 2);
  await supervisor.start();
  control[CONTROL.RELOAD_MODE] = 1;
  const outcome = await supervisor.reload(config(2), { vs: [] });
  assert.deepEqual(outcome.unlistened, []);
  assert.equal(outcome.threadErrors.length, 2, JSON.stringify(outcome));
  for (const error of outcome.threadErrors) assert.match(error, /^data-plane thread \d ended before applying the config: scripted failure applying the config$/);
  // Each is replaced, with the new config, and says so once.
  await eventually(() => lines.filter((l) => l.msg === 'replacement thread is serving').length === 2, 5000, 'both threads replaced');
  assert.equal(control[CONTROL.APPLIED], 2);
  assert.equal(supervisor.restarts, 2);
});

test('a thread still starting while a reload happens gets the new config as soon as it listens', async (t) => {
  const { supervisor, control, config } = scripted(t, 1);
  control[CONTROL.START_MODE] = 2;
  const started = supervisor.start();
  await eventually(() => control[CONTROL.STARTS] === 1, 5000, 'the thread to start');
  // Nothing listens yet: the reload has no thread to wait for and resolves at once.
  await supervisor.reload(config(2), { vs: [] });
  Atomics.store(control, CONTROL.GO, 1);
  Atomics.notify(control, CONTROL.GO);
  await started;
  await eventually(() => control[CONTROL.APPLIED] === 2, 5000, 'the new config applied');
});
