/**
 * writeDirect on real loopback sockets: it writes only when the stream has nothing in flight,
 * a write libuv has to queue (the peer is not reading) still arrives whole and in order, and a
 * failed write destroys the socket so its owner sees the error as any socket error.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { writeDirect } from '../../src/upstream/direct-write';

interface Pair {
  client: net.Socket;
  peer: net.Socket;
  close(): void;
}

async function socketPair(): Promise<Pair> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection');
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = (await accepted) as [net.Socket];
  return {
    client,
    peer,
    close() {
      client.destroy();
      peer.destroy();
      server.close();
    },
  };
}

function collect(socket: net.Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
    socket.on('error', reject);
  });
}

test('a direct write is refused while the stream has bytes queued, and order is kept either way', async (t) => {
  const pair = await socketPair();
  t.after(() => pair.close());
  pair.peer.pause(); // the peer does not read: the stream's own write stays queued
  const queued = 'a'.repeat(32 * 1024 * 1024);
  pair.client.write(queued);
  assert.ok(pair.client.writableLength > 0, 'the 32 MiB write is still queued in the stream');
  assert.equal(writeDirect(pair.client, 'b', true), false, 'refused while the stream holds bytes');
  const all = collect(pair.peer, queued.length + 2);
  pair.peer.resume();
  await once(pair.client, 'drain');
  assert.equal(writeDirect(pair.client, 'cd', true), true, 'taken once the stream is empty');
  const received = await all;
  assert.equal(received.length, queued.length + 2);
  assert.equal(received.subarray(-3).toString('latin1'), 'acd');
});

test('a direct write libuv must queue (peer not reading) arrives whole, before what the stream writes next', async (t) => {
  const pair = await socketPair();
  t.after(() => pair.close());
  pair.peer.pause();
  const big = 'x'.repeat(24 * 1024 * 1024) + 'é'; // larger than the socket buffers: completes later
  assert.equal(writeDirect(pair.client, big, false), true);
  pair.client.write('tail');
  const expected = Buffer.byteLength(big, 'utf8') + 4;
  const all = collect(pair.peer, expected);
  pair.peer.resume();
  const received = await all;
  assert.equal(received.length, expected);
  assert.equal(received.subarray(-6).toString('utf8'), 'étail');
});

test('a direct write is refused on a socket that is still connecting or already destroyed', async (t) => {
  const pair = await socketPair();
  t.after(() => pair.close());
  const { port } = pair.peer.address() as net.AddressInfo;
  const connecting = net.connect(port, '127.0.0.1');
  t.after(() => connecting.destroy());
  assert.equal(writeDirect(connecting, 'x', true), false);
  pair.client.destroy();
  assert.equal(writeDirect(pair.client, 'x', true), false);
});

test('a write to a peer that reset the connection destroys the socket with the error', async (t) => {
  const pair = await socketPair();
  t.after(() => pair.close());
  // Stop the handle reading, so the reset is noticed by the write, not by a read.
  (pair.client as unknown as { _handle: { readStop(): number } })._handle.readStop();
  pair.peer.resetAndDestroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const failed = once(pair.client, 'error');
  // The first write after a reset can still be taken by the kernel; the next one fails.
  for (let i = 0; i < 20 && !pair.client.destroyed; i++) {
    assert.equal(writeDirect(pair.client, 'x'.repeat(1024), true), true);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const [error] = (await failed) as [Error];
  assert.match(error.message, /write failed \(libuv error -\d+\)/);
  assert.equal(pair.client.destroyed, true);
});
