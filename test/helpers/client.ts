/** HTTP clients for tests: a keep-alive node:http client and a raw-socket client. */
import * as http from 'node:http';
import * as net from 'node:net';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer | string;
  agent?: http.Agent | false;
}

export function request(port: number, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sends raw bytes and collects everything until the server closes or `untilIdleMs` of silence after data. */
export function rawExchange(port: number, bytes: string | Buffer, untilIdleMs = 300): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: data, closed });
    };
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), untilIdleMs);
    });
    socket.on('close', () => finish(true));
    socket.on('error', reject);
    socket.write(bytes);
  });
}

/** Runs `count` requests with at most `concurrency` in flight; returns the replies in order. */
export async function requestMany(count: number, concurrency: number, make: (i: number) => Promise<Reply>): Promise<Reply[]> {
  const replies: Reply[] = new Array(count);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      replies[i] = await make(i);
    }
  });
  await Promise.all(lanes);
  return replies;
}
