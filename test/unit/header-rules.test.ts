import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerRuleProblems, parseTemplate, RESERVED_REQUEST_FIELDS } from '../../src/config/header-rules';

test('header values split into literal parts and the four template variables', () => {
  assert.deepEqual(parseTemplate('plain value'), ['plain value']);
  assert.deepEqual(parseTemplate('{virtual_service} via {server} for {client_ip} id={request_id}'), [
    { variable: 'virtual_service' },
    ' via ',
    { variable: 'server' },
    ' for ',
    { variable: 'client_ip' },
    ' id=',
    { variable: 'request_id' },
  ]);
  assert.deepEqual(parseTemplate('a\tb'), ['a\tb'], 'a tab is allowed');
  assert.deepEqual(parseTemplate(''), []);
});

test('header values that could break a header line or are ambiguous are refused with a reason', () => {
  assert.match(parseTemplate('a\r\nX-Injected: 1') as string, /CR or LF/);
  assert.match(parseTemplate('a\nb') as string, /CR or LF/);
  assert.match(parseTemplate('a\rb') as string, /CR or LF/);
  assert.match(parseTemplate('nul\u0000') as string, /control character 0x00/);
  assert.match(parseTemplate('del\u007f') as string, /control character 0x7f/);
  assert.match(parseTemplate('caf\u00e9') as string, /non-ASCII/);
  assert.match(parseTemplate('{user}') as string, /uses \{user\}/);
  assert.match(parseTemplate('{server') as string, /not closed/);
  assert.match(parseTemplate('a}b') as string, /"\}" outside/);
  assert.match(parseTemplate('x'.repeat(1025)) as string, /longer than 1024/);
  assert.ok(Array.isArray(parseTemplate('x'.repeat(1024))));
});

test('rule problems: reserved fields whatever their case, owned fields, one list per name, {request_id} needs request_id', () => {
  const problems = headerRuleProblems(
    { set: { HOST: 'x', 'X-A': '{request_id}' }, add: { 'X-B': '1' }, remove: ['x-b', 'X-Trace'] },
    RESERVED_REQUEST_FIELDS,
    { 'x-trace': 'it is the request_id field (carelb sets it)' },
    false,
  );
  assert.deepEqual(
    problems.map(([path, message]) => `${path.join('.')}: ${message}`),
    [
      'set.HOST: HOST cannot be changed by a rule: carelb passes the client’s Host on as it came',
      'set.X-A: uses {request_id}: add request_id to the virtual service',
      'remove.0: x-b is already in add: a field goes in one of set, add, remove',
      'remove.1: X-Trace cannot be changed by a rule: it is the request_id field (carelb sets it)',
    ],
  );
});
