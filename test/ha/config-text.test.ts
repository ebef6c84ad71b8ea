import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findBlock, findHaBlock, sharedHash, sharedText, spliceHaBlock, spliceLocalBlocks, textHash } from '../../src/ha/config-text';
import { referencedFiles, unsafePathReason, withFilePaths } from '../../src/ha/files';
import { configFrom } from '../helpers/carelb';

const HEAD = `# pair config
workers: 1
virtual_services:
  - name: api
    listen: 0.0.0.0:8080
    servers:
      - { name: api1, address: 10.0.0.11:80 }
`;
const haOf = (name: string, priority: number, peer: string) => `# this node
ha:
  node_name: ${name}
  interface: eth0
  priority: ${priority}   # higher wins
  virtual_router_id: 51
  peer: ${peer}
  vips:
    - { address: 10.0.0.100/24 }
  # end of ha
`;
const TAIL = `
# admin API
admin:
  listen: 0.0.0.0:9900
`;
const textA = HEAD + haOf('lb1', 150, '10.0.0.3') + TAIL;
const textB = HEAD + haOf('lb2', 100, '10.0.0.2') + TAIL;

test('the ha: block runs from its key line to its last indented line; comments at column 0 after it are shared', () => {
  const found = findHaBlock(textA);
  assert.ok(found.ok && found.block);
  assert.ok(found.block.text.startsWith('ha:\n  node_name: lb1'));
  assert.ok(found.block.text.endsWith('  # end of ha\n'));
  // admin: is node-local too (issue 13): only its comment stays in the shared text.
  assert.equal(sharedText(textA), HEAD + '# this node\n' + '\n# admin API\n');
});

test('two nodes whose files differ only in their ha: blocks have the same shared hash and different config hashes', () => {
  assert.equal(sharedHash(textA), sharedHash(textB));
  assert.notEqual(textHash(textA), textHash(textB));
  assert.notEqual(sharedHash(textA), sharedHash(textA.replace('10.0.0.11:80', '10.0.0.12:80')));
});

test('splicing puts the receiver’s own ha: block in place of the sender’s and keeps the shared text byte for byte', () => {
  const localBlock = (findHaBlock(textB) as { ok: true; block: { text: string } }).block.text;
  const changed = textA.replace('10.0.0.11:80', '10.0.0.12:80');
  const spliced = spliceHaBlock(changed, localBlock);
  assert.ok(spliced.ok);
  assert.equal(spliced.text, textB.replace('10.0.0.11:80', '10.0.0.12:80'));
  assert.equal(sharedHash(spliced.text), sharedHash(changed));
});

test('a flow-style ha: value, an ha: block at the end without a newline, and no ha: at all', () => {
  const flow = `workers: 1\nha: { node_name: lb1 }\nadmin: {}\n`;
  const found = findHaBlock(flow);
  assert.ok(found.ok && found.block);
  assert.equal(found.block.text, 'ha: { node_name: lb1 }\n');
  const last = `workers: 1\nha:\n  node_name: lb1`;
  const spliced = spliceHaBlock(last, 'ha:\n  node_name: lb2\n');
  assert.ok(spliced.ok);
  assert.equal(spliced.text, 'workers: 1\nha:\n  node_name: lb2\n');
  const none = spliceHaBlock('workers: 1\n', 'ha:\n  node_name: lb2\n');
  assert.ok(none.ok);
  assert.equal(none.text, 'workers: 1\nha:\n  node_name: lb2\n');
  assert.deepEqual(findHaBlock('workers: 1\n'), { ok: true, block: null });
  assert.equal(sharedText('workers: 1\n'), 'workers: 1\n');
});

test('texts whose ha: extent cannot be told are refused, not guessed', () => {
  assert.equal(findHaBlock('- a\n- b\n').ok, false);
  assert.equal(findHaBlock('workers: [1\n').ok, false);
  // A flow mapping continued at column 0: YAML refuses it too, and so does the splice.
  const odd = findHaBlock('ha: { node_name: lb1,\nx: 1 }\nworkers: 1\n');
  assert.equal(odd.ok, false);
});

test('referenced files: every certificate, key, CA, passphrase and fallback body, each once, with where it is named', () => {
  const config = configFrom({
    virtual_services: [
      {
        name: 'tls',
        listen: '0.0.0.0:443',
        tls: { cert: '/etc/carelb/tls/a.pem', key: '/etc/carelb/tls/a.key', passphrase_file: '/etc/carelb/tls/a.pass', sni: [{ hostname: 'b.example.org', cert: '/etc/carelb/tls/b.pem', key: '/etc/carelb/tls/b.key' }] },
        backend_tls: { ca: '/etc/carelb/tls/ca.pem', cert: '/etc/carelb/tls/client.pem', key: '/etc/carelb/tls/client.key' },
        fallback: { body_file: '/etc/carelb/sorry.html' },
        servers: [{ name: 's1', address: '10.0.0.11:443', backend_tls: { ca: '/etc/carelb/tls/ca.pem' } }],
      },
    ],
    admin: { token_file: '/etc/carelb/admin.token' },
  });
  const refs = referencedFiles(config);
  assert.deepEqual(
    refs.map((r) => [r.path, r.kind]),
    [
      ['/etc/carelb/tls/a.pem', 'certificate'],
      ['/etc/carelb/tls/a.key', 'key'],
      ['/etc/carelb/tls/a.pass', 'passphrase'],
      ['/etc/carelb/tls/b.pem', 'certificate'],
      ['/etc/carelb/tls/b.key', 'key'],
      ['/etc/carelb/tls/ca.pem', 'ca'],
      ['/etc/carelb/tls/client.pem', 'certificate'],
      ['/etc/carelb/tls/client.key', 'key'],
      ['/etc/carelb/sorry.html', 'body'],
    ],
  );
  assert.equal(refs[3].where, 'virtual_services[0].tls.sni[0].cert');
  assert.ok(!refs.some((r) => r.path.endsWith('admin.token')), 'the admin token is never synced');
  const mapped = withFilePaths(config, new Map([['/etc/carelb/tls/ca.pem', '/tmp/x/0']]));
  assert.equal(mapped.virtual_services[0].backend_tls!.ca, '/tmp/x/0');
  assert.equal(mapped.virtual_services[0].servers[0].backend_tls!.ca, '/tmp/x/0');
  assert.equal(mapped.virtual_services[0].tls!.cert, '/etc/carelb/tls/a.pem');
});

test('referenced files: a cookie persistence secret travels with the config as a secret (0600) and is mapped', () => {
  const config = configFrom({
    virtual_services: [{ name: 'api', listen: '0.0.0.0:80', persistence: 'cookie', cookie: { secret_file: '/etc/carelb/cookie.secret' }, servers: [{ name: 's1', address: '10.0.0.11:80' }] }],
  });
  assert.deepEqual(referencedFiles(config), [{ path: '/etc/carelb/cookie.secret', kind: 'passphrase', where: 'virtual_services[0].cookie.secret_file' }]);
  assert.equal(withFilePaths(config, new Map([['/etc/carelb/cookie.secret', '/tmp/x/0']])).virtual_services[0].cookie!.secret_file, '/tmp/x/0');
});

test('only absolute, normalized paths may be written', () => {
  assert.equal(unsafePathReason('/etc/carelb/tls/a.pem'), null);
  assert.match(unsafePathReason('tls/a.pem')!, /not an absolute path/);
  assert.match(unsafePathReason('/etc/carelb/../shadow')!, /"\.\."/);
  assert.match(unsafePathReason('/etc/carelb/./a.pem')!, /"\.\."/);
  assert.match(unsafePathReason('/etc//carelb/a.pem')!, /normalized/);
  assert.match(unsafePathReason('/etc/carelb/')!, /normalized/);
  assert.match(unsafePathReason('/etc/carelb/a\0b')!, /NUL/);
  assert.match(unsafePathReason('')!, /empty/);
});

test('node-local blocks: ha:, admin: and access_log: are kept from this node, dropped when it has none, appended when the sender has none', () => {
  const sender = `workers: 2\nadmin:\n  listen: 0.0.0.0:9999\n  metrics_public: true\nvirtual_services: []\naccess_log: { path: /tmp/x.log }\nha:\n  node_name: lb1\n`;
  const local = `workers: 1\nha:\n  node_name: lb2\naccess_log: off\nadmin:\n  listen: 127.0.0.1:9900\n`;
  const spliced = spliceLocalBlocks(sender, local);
  assert.ok(spliced.ok);
  assert.equal(spliced.text, `workers: 2\nadmin:\n  listen: 127.0.0.1:9900\nvirtual_services: []\naccess_log: off\nha:\n  node_name: lb2\n`);
  assert.equal(sharedText(spliced.text), 'workers: 2\nvirtual_services: []\n');
  assert.equal(sharedHash(spliced.text), sharedHash(sender));

  const noAdminHere = spliceLocalBlocks(sender, 'ha:\n  node_name: lb2\n');
  assert.ok(noAdminHere.ok);
  assert.equal(noAdminHere.text, 'workers: 2\nvirtual_services: []\nha:\n  node_name: lb2\n', "the sender's admin: and access_log: are dropped");
  const bareSender = spliceLocalBlocks('workers: 2\n', local);
  assert.ok(bareSender.ok);
  assert.equal(bareSender.text, 'workers: 2\nha:\n  node_name: lb2\nadmin:\n  listen: 127.0.0.1:9900\naccess_log: off\n');
  assert.equal(findBlock('access_log: stdout\nworkers: 1\n', 'access_log').ok, true);
  assert.equal(spliceLocalBlocks(sender, 'admin: { listen: x,\ny: 1 }\n').ok, false, "this node's own file must be readable too");
});
