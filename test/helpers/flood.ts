/**
 * A bounded request flood, run as its own process so that the load it generates does not share
 * an event loop with what the test measures:
 *
 *   node dist/test/helpers/flood.js '{"port":9900,"rate":5000,"seconds":5,"connections":16,
 *                                     "max":30000,"request":"GET /api/status HTTP/1.1\r\n..."}'
 *
 * `connections` keep-alive raw sockets to 127.0.0.1:`port` share one schedule: request i is due
 * at start + i / rate, and a connection sends its next request when it is due and its previous
 * one has been answered (so a slow server is offered less, never a burst to catch up). It stops
 * after `seconds` or `max` requests, whichever comes first, and prints one JSON line:
 * {offered, answered, unanswered, statuses, elapsed_ms, reconnects}. A request still unanswered one
 * second after the end is given up (counted in `unanswered`). Loopback only.
 */
import * as net from 'node:net';

interface Options {
  port: number;
  rate: number;
  seconds: number;
  connections: number;
  max: number;
  request: string;
}

/** Runs the flood described by `options` and prints its result. */
function flood(options: Options): void {
  const request = Buffer.from(options.request, 'latin1');
  const start = Date.now();
  const stopAt = start + options.seconds * 1000;
  let next = 0;
  let answered = 0;
  let reconnects = 0;
  /** Requests still unanswered one second after the flood's end (a stalled server). */
  let unanswered = 0;
  const statuses: Record<string, number> = {};

  /** The index of the next request to send, or -1 when the flood is over. */
  function take(): number {
    if (next >= options.max || Date.now() >= stopAt) return -1;
    return next++;
  }

  function waitUntil(time: number): Promise<void> {
    const delay = time - Date.now();
    return delay > 0 ? new Promise((resolve) => setTimeout(resolve, delay)) : Promise.resolve();
  }

  /** One keep-alive connection: resolves when the flood is over for it. */
  async function lane(): Promise<void> {
    let socket: net.Socket | null = null;
    let buffer: Buffer = Buffer.alloc(0);
    let waiter: ((ok: boolean) => void) | null = null;
    const connect = () =>
      new Promise<void>((resolve, reject) => {
        buffer = Buffer.alloc(0);
        const s = net.connect(options.port, '127.0.0.1', () => resolve());
        s.setNoDelay(true);
        s.on('data', (chunk: Buffer) => {
          buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
          if (waiter && parseOne()) {
            const w = waiter;
            waiter = null;
            w(true);
          }
        });
        s.on('error', (error) => (waiter ? (waiter(false), (waiter = null)) : reject(error)));
        s.on('close', () => {
          if (socket === s) socket = null;
          if (waiter) {
            const w = waiter;
            waiter = null;
            w(false);
          }
        });
        socket = s;
      });
    /** Consumes one complete response from the buffer; true when there was one. */
    const parseOne = (): boolean => {
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return false;
      const head = buffer.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffer.length < end + 4 + length) return false;
      const status = head.slice(9, 12);
      statuses[status] = (statuses[status] ?? 0) + 1;
      answered++;
      buffer = buffer.subarray(end + 4 + length);
      return true;
    };
    for (;;) {
      const i = take();
      if (i === -1) break;
      await waitUntil(start + (i * 1000) / options.rate);
      if (!socket) {
        if (i > 0) reconnects++;
        await connect();
      }
      const answer = new Promise<boolean>((resolve) => (waiter = resolve));
      socket!.write(request);
      // A server that stops answering must not hold the flood past its time: give up one second after.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, stopAt + 1000 - Date.now()))));
      const outcome = await Promise.race([answer, late]);
      clearTimeout(timer);
      if (outcome === 'late') {
        unanswered++;
        waiter = null;
        break;
      }
      if (!outcome) socket = null;
    }
    (socket as net.Socket | null)?.destroy();
  }

  void Promise.all(Array.from({ length: options.connections }, lane)).then(
    () => {
      process.stdout.write(`${JSON.stringify({ offered: next, answered, unanswered, statuses, elapsed_ms: Date.now() - start, reconnects })}\n`);
    },
    (error: Error) => {
      process.stderr.write(`flood: ${error.message}\n`);
      process.exitCode = 1;
    },
  );
}

// `npm test` loads every file under dist/test; without arguments this one does nothing.
if (process.argv[2] !== undefined) flood(JSON.parse(process.argv[2]) as Options);
