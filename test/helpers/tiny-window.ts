/**
 * Drives the Python helpers that give a TCP connection a receive window of a few KB (Node.js
 * cannot set SO_RCVBUF or TCP_MAXSEG), so a test can make carelb's writes back up at exactly
 * the point it chooses: tiny-window-client.py (a client that stops reading) and
 * tiny-window-server.py (a server that stops reading). Both speak one command per line on
 * stdin and answer one line on stdout. The child is killed when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const HELPERS = join(__dirname, '..', '..', '..', 'test', 'helpers');

class LineChild {
  private readonly child: ChildProcess;
  private buffered = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | null = null;
  private exited = false;

  constructor(t: TestContext, script: string, args: string[]) {
    this.child = spawn('python3', [join(HELPERS, script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdout!.setEncoding('utf8').on('data', (data: string) => {
      this.buffered += data;
      let at: number;
      while ((at = this.buffered.indexOf('\n')) !== -1) {
        this.lines.push(this.buffered.slice(0, at));
        this.buffered = this.buffered.slice(at + 1);
      }
      this.waiter?.();
    });
    this.child.on('exit', () => {
      this.exited = true;
      this.waiter?.();
    });
    t.after(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    });
  }

  /** The next line the child prints. */
  async line(): Promise<string> {
    while (this.lines.length === 0) {
      if (this.exited) throw new Error('tiny-window helper exited');
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
    return this.lines.shift()!;
  }

  /** Sends a command and returns the child's answer line. */
  async command(text: string): Promise<string> {
    this.child.stdin!.write(`${text}\n`);
    return this.line();
  }

  end(): void {
    this.child.stdin!.end('close\n');
  }
}

/** A client connection to 127.0.0.1:port that reads only when told to. */
export class TinyWindowClient {
  private readonly child: LineChild;

  constructor(t: TestContext, port: number) {
    this.child = new LineChild(t, 'tiny-window-client.py', [String(port)]);
  }

  async connected(): Promise<void> {
    const line = await this.child.line();
    if (line !== 'connected') throw new Error(`tiny-window client: ${line}`);
  }

  async send(bytes: string): Promise<void> {
    await this.child.command(`send ${Buffer.from(bytes, 'latin1').toString('hex')}`);
  }

  /** Reads until `total` bytes have arrived since connecting (or the peer closed). */
  async readUntil(total: number): Promise<{ received: number; closed: boolean }> {
    const [, received, closed] = (await this.child.command(`read ${total}`)).split(' ');
    return { received: Number(received), closed: closed === '1' };
  }

  /** Everything received so far, as latin1 text. */
  async received(): Promise<string> {
    return Buffer.from((await this.child.command('dump')).slice(5), 'hex').toString('latin1');
  }

  close(): void {
    this.child.end();
  }
}

/** A one-connection server on a loopback port that reads only when told to. */
export class TinyWindowServer {
  private readonly child: LineChild;
  port = 0;

  constructor(t: TestContext) {
    this.child = new LineChild(t, 'tiny-window-server.py', []);
  }

  async listening(): Promise<number> {
    this.port = Number((await this.child.line()).split(' ')[1]);
    return this.port;
  }

  async accepted(): Promise<void> {
    const line = await this.child.line();
    if (line !== 'accepted') throw new Error(`tiny-window server: ${line}`);
  }

  /** Reads until the request head and `bodyBytes` of body have arrived; returns the body bytes that did. */
  async drain(bodyBytes: number): Promise<number> {
    return Number((await this.child.command(`drain ${bodyBytes}`)).split(' ')[1]);
  }

  /** Length and SHA-256 (hex) of what followed the request head. */
  async body(): Promise<{ length: number; sha256: string }> {
    const [, length, sha256] = (await this.child.command('body')).split(' ');
    return { length: Number(length), sha256 };
  }

  async answer(bytes: string): Promise<void> {
    await this.child.command(`answer ${Buffer.from(bytes, 'latin1').toString('hex')}`);
  }

  close(): void {
    this.child.end();
  }
}
