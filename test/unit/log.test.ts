import assert from 'node:assert/strict';
import { test } from 'node:test';
import { humanLine } from '../../src/observe/log';

test('log records render as readable lines for a terminal', () => {
  const line = humanLine('{"level":40,"time":"2026-11-26T08:00:01.000Z","pid":1,"msg":"server down","vs":"api","server":"a","reason":"HTTP 500"}');
  assert.equal(line, '08:00:01 WARN  server down  vs=api server=a reason=HTTP 500');
});
