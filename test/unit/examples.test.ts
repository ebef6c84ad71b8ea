import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfigFile } from '../../src/config/load';

const examples = join(__dirname, '..', '..', '..', 'deploy', 'examples');

test('every example config in deploy/examples passes validation', () => {
  const files = readdirSync(examples).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.includes('ehr-api-offload.yaml') && files.includes('ehr-api-bridging.yaml'));
  for (const file of files) {
    const result = loadConfigFile(join(examples, file));
    assert.ok(result.ok, `${file}: ${result.ok ? '' : result.errors.join('; ')}`);
  }
});
