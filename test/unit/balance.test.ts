import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeastConnBalancer } from '../../src/balance/leastconn';
import { RoundRobinBalancer } from '../../src/balance/roundrobin';
import { SourceHashBalancer } from '../../src/balance/source-hash';
import { CookieBalancer, cookieTokens } from '../../src/balance/cookie';
import type { ServerTable } from '../../src/balance/types';
import { ADMIN_DRAIN, ADMIN_HALT, ADMIN_ONLINE, F_ADMIN, F_HEALTH, F_INFLIGHT, F_WEIGHT, HEALTH_DOWN, HEALTH_UP, SLOT_STRIDE } from '../../src/state/layout';

/** A table whose servers sit at slots base, base+2, base+4...: members need not be contiguous. */
function table(weights: number[], base = 0): ServerTable & { set(i: number, field: number, value: number): void } {
  const members = Int32Array.from(weights, (_w, i) => base + 2 * i);
  const slots = new Int32Array(new SharedArrayBuffer((base + 2 * weights.length) * SLOT_STRIDE * 4));
  weights.forEach((w, i) => {
    slots[members[i] * SLOT_STRIDE + F_HEALTH] = HEALTH_UP;
    slots[members[i] * SLOT_STRIDE + F_ADMIN] = ADMIN_ONLINE;
    slots[members[i] * SLOT_STRIDE + F_WEIGHT] = w;
  });
  return { slots, members, count: weights.length, set: (i, field, value) => (slots[members[i] * SLOT_STRIDE + field] = value) };
}

function counts(picks: number[], n: number): number[] {
  const out = new Array(n).fill(0);
  for (const p of picks) out[p]++;
  return out;
}

test('least-connections picks the server with the fewest in-flight requests', () => {
  const t = table([1, 1, 1]);
  t.set(0, F_INFLIGHT, 5);
  t.set(1, F_INFLIGHT, 2);
  t.set(2, F_INFLIGHT, 7);
  assert.equal(new LeastConnBalancer(t).pick(-1), 1);
});

test('least-connections weighs in-flight by weight: (in-flight + 1) / weight', () => {
  const t = table([1, 3]);
  t.set(0, F_INFLIGHT, 1); // (1+1)/1 = 2
  t.set(1, F_INFLIGHT, 4); // (4+1)/3 = 1.67
  assert.equal(new LeastConnBalancer(t).pick(-1), 1);
  t.set(1, F_INFLIGHT, 6); // 7/3 = 2.33
  assert.equal(new LeastConnBalancer(t).pick(-1), 0);
});

test('least-connections rotates among equal servers so they share evenly', () => {
  const t = table([1, 1, 1, 1]);
  const balancer = new LeastConnBalancer(t);
  const picks = Array.from({ length: 400 }, () => balancer.pick(-1));
  assert.deepEqual(counts(picks, 4), [100, 100, 100, 100]);
});

test('down, drained, halted, weight-0 and excluded servers are never picked', () => {
  const t = table([1, 1, 1, 1, 0, 1]);
  t.set(0, F_HEALTH, HEALTH_DOWN);
  t.set(1, F_ADMIN, ADMIN_DRAIN);
  t.set(2, F_ADMIN, ADMIN_HALT);
  for (const balancer of [new LeastConnBalancer(t), new RoundRobinBalancer(t)]) {
    const picks = new Set(Array.from({ length: 50 }, () => balancer.pick(5)));
    assert.deepEqual([...picks], [3]);
  }
});

test('no eligible server gives -1', () => {
  const t = table([1, 1]);
  t.set(0, F_HEALTH, HEALTH_DOWN);
  t.set(1, F_HEALTH, HEALTH_DOWN);
  assert.equal(new LeastConnBalancer(t).pick(-1), -1);
  assert.equal(new RoundRobinBalancer(t).pick(-1), -1);
});

test('round-robin splits 1:3 weights exactly and interleaves them', () => {
  const t = table([1, 3]);
  const balancer = new RoundRobinBalancer(t);
  const picks = Array.from({ length: 4000 }, () => balancer.pick(-1));
  assert.deepEqual(counts(picks, 2), [1000, 3000]);
  // Smooth: the light server never waits more than 4 picks.
  assert.deepEqual(picks.slice(0, 8), [1, 0, 1, 1, 1, 0, 1, 1]);
});

test('balancers read servers at their own slots (virtual services share one table)', () => {
  const t = table([2, 1], 3);
  t.set(0, F_HEALTH, HEALTH_DOWN);
  assert.equal(new LeastConnBalancer(t).pick(-1), 1);
  assert.equal(new RoundRobinBalancer(t).pick(-1), 1);
});

test('source-address persistence keeps a client on one server and moves only the clients of a server that goes down', () => {
  const t = table([1, 1, 1, 1]);
  const balancer = new SourceHashBalancer(t, ['a', 'b', 'c', 'd']);
  const clients = Array.from({ length: 2000 }, (_v, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);
  const before = clients.map((c) => balancer.pick(-1, c));
  assert.deepEqual(clients.map((c) => balancer.pick(-1, c)), before, 'same answer every time');
  const shares = counts(before, 4);
  for (const share of shares) assert.ok(Math.abs(share - 500) < 100, `even spread: ${shares}`);
  t.set(2, F_HEALTH, HEALTH_DOWN);
  const after = clients.map((c) => balancer.pick(-1, c));
  clients.forEach((_c, i) => {
    if (before[i] !== 2) assert.equal(after[i], before[i], 'clients of other servers stay');
    else assert.notEqual(after[i], 2);
  });
  t.set(2, F_HEALTH, HEALTH_UP);
  assert.deepEqual(clients.map((c) => balancer.pick(-1, c)), before, 'clients return when the server does');
});

test('source-address persistence honours weights', () => {
  const t = table([1, 3]);
  const balancer = new SourceHashBalancer(t, ['light', 'heavy']);
  const picks = Array.from({ length: 4000 }, (_v, i) => balancer.pick(-1, `client-${i}`));
  const [light, heavy] = counts(picks, 2);
  assert.ok(Math.abs(heavy / light - 3) < 0.45, `${heavy}/${light}`);
});

test('cookie persistence keeps the named server while up and not halted (drain and weight 0 keep it), else falls back to the balancer', () => {
  const t = table([1, 1, 1]);
  const balancer = new CookieBalancer(t, new RoundRobinBalancer(t));
  assert.equal(balancer.pick(-1, '', 2), 2);
  t.set(2, F_ADMIN, ADMIN_DRAIN);
  assert.equal(balancer.pick(-1, '', 2), 2, 'drain keeps its cookie clients');
  t.set(2, F_WEIGHT, 0);
  assert.equal(balancer.pick(-1, '', 2), 2, 'weight 0 takes no new clients but keeps its cookie clients');
  for (let i = 0; i < 6; i++) assert.notEqual(balancer.pick(-1, '', -1), 2, 'no new client on the drained server');
  t.set(2, F_ADMIN, ADMIN_HALT);
  assert.notEqual(balancer.pick(-1, '', 2), 2, 'halt moves them');
  t.set(2, F_ADMIN, ADMIN_ONLINE);
  t.set(2, F_WEIGHT, 1);
  t.set(2, F_HEALTH, HEALTH_DOWN);
  assert.notEqual(balancer.pick(-1, '', 2), 2, 'down moves them');
  t.set(2, F_HEALTH, HEALTH_UP);
  assert.notEqual(balancer.pick(2, '', 2), 2, 'a server the request just failed on is excluded');
  assert.notEqual(balancer.pick(-1, '', 7), 7, 'an index outside the table is ignored');
});

test('cookie tokens are opaque, stable and depend on the secret', () => {
  const a = cookieTokens('api', ['api1', 'api2'], undefined);
  assert.deepEqual(cookieTokens('api', ['api2', 'api1'], undefined), [a[1], a[0]], 'order does not matter');
  assert.notEqual(a[0], a[1]);
  assert.ok(a.every((token) => /^[0-9a-f]{16}$/.test(token) && !token.includes('api')));
  assert.notDeepEqual(cookieTokens('api', ['api1', 'api2'], 'another secret of enough length'), a);
});
