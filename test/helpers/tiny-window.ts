/**
 * Drives test/helpers/tiny-window-client.py: a client connection with a receive window of a
 * few KB (Node.js cannot set SO_RCVBUF), so a test can make carelb's writes to the client
 * back up at exactly the read it chooses. The child process is killed when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const SCRIPT = join(__dirname, '..', '..', '..', 'test', 'helpers', 'tiny-window-client.py');

export class TinyWindowClient {
  private readonly child: ChildProcess;
  private buffered = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | null = null;
  private exited = false;

  constructor(t: TestContext, port: number) {
    this.child = spawn('python3', [SCRIPT, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
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

  /** The next line the client prints (its answer to the last command). */
  private async line(): Promise<string> {
    while (this.lines.length === 0) {
      if (this.exited) throw new Error('tiny-window client exited');
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
    return this.lines.shift()!;
  }

  async connected(): Promise<void> {
    const line = await this.line();
    if (line !== 'connected') throw new Error(`tiny-window client: ${line}`);
  }

  async send(bytes: string): Promise<void> {
    this.child.stdin!.write(`send ${Buffer.from(bytes, 'latin1').toString('hex')}\n`);
    await this.line();
  }

  /** Reads until `total` bytes have arrived since connecting (or the peer closed). */
  async readUntil(total: number): Promise<{ received: number; closed: boolean }> {
    this.child.stdin!.write(`read ${total}\n`);
    const [, received, closed] = (await this.line()).split(' ');
    return { received: Number(received), closed: closed === '1' };
  }

  /** Everything received so far, as latin1 text. */
  async received(): Promise<string> {
    this.child.stdin!.write('dump\n');
    return Buffer.from((await this.line()).slice(5), 'hex').toString('latin1');
  }

  close(): void {
    this.child.stdin!.end('close\n');
  }
}
