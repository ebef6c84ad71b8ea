/**
 * Writes a string straight to a plain TCP socket's libuv handle, past node's Writable stream
 * machinery, when nothing else is queued on the socket. Thread-local.
 *
 * Why: for a request head, `socket.write()` costs more in JavaScript than the write itself
 * needs: writeOrBuffer, a WriteWrap object per write, onwrite, and an afterWrite tick (perf
 * at saturation, plain HTTP: ~2.5 % of the proxy's CPU, beside ~0.2 % for the handle call
 * that does the work). The handle's own method is what `socket.write()` ends up calling.
 *
 * It is used only when the stream machinery has nothing in flight (`writableLength` 0, not
 * corked, connected, not destroyed), so the bytes keep their order with everything the
 * stream wrote before; libuv keeps the order of what follows, since a write that cannot go
 * out at once is queued by libuv itself (uv_try_write refuses while its queue is not empty,
 * and node's next write then queues behind it).
 *
 * The handle API comes from `process.binding('stream_wrap')` (deprecated, documentation-only
 * in Node 20, which carelb pins): when it is missing or not what is expected, every write
 * goes through `socket.write()` as before.
 */
import type { Socket } from 'node:net';

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** The request object libuv's write is tied to; `oncomplete` is called when a queued write ends. */
interface WriteRequest {
  oncomplete?: (status: number) => void;
  socket?: Socket;
}

interface StreamHandle {
  writeUtf8String(req: WriteRequest, data: string): number;
  writeLatin1String(req: WriteRequest, data: string): number;
}

function loadBinding(): StreamWrapBinding | null {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof binding.WriteWrap !== 'function' || !(binding.streamBaseState instanceof Int32Array) || typeof binding.kLastWriteWasAsync !== 'number') return null;
    return binding as StreamWrapBinding;
  } catch {
    return null;
  }
}

const binding = process.env.CARELB_STREAM_WRITES === '1' ? null : loadBinding();

/**
 * One request object serves every write that completes at once (node attaches nothing to it
 * then); a write that libuv had to queue keeps its object until it completes, and the next
 * write gets a new one.
 */
let spare: WriteRequest | null = binding === null ? null : new binding.WriteWrap();

function onQueuedWriteDone(this: WriteRequest, status: number): void {
  const socket = this.socket;
  this.socket = undefined;
  if (status < 0 && socket !== undefined && !socket.destroyed) socket.destroy(writeError(status));
}

function writeError(status: number): Error {
  return Object.assign(new Error(`write failed (libuv error ${status})`), { code: 'EPIPE', errno: status });
}

/**
 * Writes `text` to `socket` (`latin1`: every char is below 0x100 and is sent as one byte;
 * otherwise UTF-8). Returns false, having written nothing, when the socket must be written
 * through `socket.write()` instead. A failed write destroys the socket, whose 'close' then
 * reports the failure to the connection's exchange as any socket error does.
 */
export function writeDirect(socket: Socket, text: string, latin1: boolean): boolean {
  const req = spare;
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (req === null || handle === null || socket.connecting || socket.destroyed || socket.writableLength !== 0 || socket.writableCorked !== 0) return false;
  // A TLS socket's handle encrypts and completes its writes on its own schedule: not this path.
  if ((socket as { encrypted?: boolean }).encrypted === true) return false;
  const status = latin1 ? handle.writeLatin1String(req, text) : handle.writeUtf8String(req, text);
  if (status < 0) {
    socket.destroy(writeError(status));
    return true;
  }
  if (binding!.streamBaseState[binding!.kLastWriteWasAsync] !== 0) {
    req.socket = socket;
    req.oncomplete = onQueuedWriteDone;
    spare = new binding!.WriteWrap();
  }
  return true;
}
