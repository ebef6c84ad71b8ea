/** ReopenableLogFile (src/observe/log-file.ts): the split at reopen, and a reopen that cannot open. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReopenableLogFile } from '../../src/observe/log-file';

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'carelb-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('lines before reopen() stay in the renamed file, lines after it go to a new file at the path', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'logs', 'a.log');
  const errors: Error[] = [];
  const file = new ReopenableLogFile(path, { mode: 0o640 }, (error) => errors.push(error));
  file.write('one\n');
  renameSync(path, `${path}.1`);
  file.write('two\n');
  assert.equal(file.reopen(), true);
  file.write('three\n');
  await file.close();
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'one\ntwo\n');
  assert.equal(readFileSync(path, 'utf8'), 'three\n');
  assert.deepEqual(errors, []);
});

test('a reopen that cannot open the path keeps writing to the old file and reports why', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'a.log');
  const errors: Error[] = [];
  const file = new ReopenableLogFile(path, {}, (error) => errors.push(error));
  renameSync(path, `${path}.1`);
  mkdirSync(path); // a directory where the file was: it cannot be opened for appending
  assert.equal(file.reopen(), false);
  file.write('kept\n');
  await file.close();
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'kept\n');
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /EISDIR/);
});
