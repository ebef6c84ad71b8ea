/**
 * Small programs the HA pair test runs inside its network namespaces (`node programs.js MODE ...`):
 *
 *   api NAME PORT                 an API server answering {"server":NAME,"lb":<peer address>}; the
 *                                 peer address is the carelb node that forwarded the request (SNAT)
 *   load URL LOOPS GAP_MS MAX_MS  LOOPS concurrent loops, each: one GET on a fresh connection, wait
 *                                 GAP_MS; one JSON line per request {s,e,ok,status,lb,err} on stdout;
 *                                 stops when stdin closes or after MAX_MS, then prints {"done":true}
 *
 * Without a mode (as `node --test` loads every file under test/) it does nothing.
 */
import * as http from 'node:http';

export interface LoadRecord {
  /** Start and end, ms since the epoch. */
  s: number;
  e: number;
  ok: boolean;
  status?: number;
  /** Address of the carelb node that forwarded it (as the API server saw it). */
  lb?: string;
  err?: string;
}

function api(name: string, port: number): void {
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ server: name, lb: req.socket.remoteAddress });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.listen(port, '0.0.0.0', () => process.stdout.write(`${JSON.stringify({ listening: port })}\n`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

function load(url: string, loops: number, gapMs: number, maxMs: number): void {
  let stop = false;
  process.stdin.resume();
  process.stdin.on('end', () => (stop = true));
  process.stdin.on('close', () => (stop = true));
  setTimeout(() => (stop = true), maxMs).unref();
  const one = () =>
    new Promise<LoadRecord>((resolve) => {
      const s = Date.now();
      const fail = (error: NodeJS.ErrnoException) => resolve({ s, e: Date.now(), ok: false, err: error.code ?? error.message });
      // A fresh connection per request (agent: false), as many integration engines do; 5 s is
      // long enough to ride out a SYN retransmission (1 s, then 3 s) during a failover.
      const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', fail);
        res.on('end', () => {
          let lb: string | undefined;
          try {
            lb = JSON.parse(Buffer.concat(chunks).toString('utf8')).lb;
          } catch {
            /* not the API server's answer */
          }
          resolve({ s, e: Date.now(), ok: res.statusCode === 200, status: res.statusCode, lb });
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', fail);
    });
  const loop = async () => {
    // Independent clients: spread the loops over the gap instead of firing them in bursts.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * gapMs));
    while (!stop) {
      process.stdout.write(`${JSON.stringify(await one())}\n`);
      await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  };
  void Promise.all(Array.from({ length: loops }, loop)).then(() => {
    process.stdout.write('{"done":true}\n');
    process.exit(0);
  });
}

if (require.main === module) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'api') api(args[0], Number(args[1]));
  else if (mode === 'load') load(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
}
