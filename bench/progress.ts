/**
 * The progress line: one line rewritten in place with \r on a terminal; on a pipe or file
 * (CI logs), plain lines, at most one every few seconds plus one per phase change, so logs
 * stay readable.
 */
export class ProgressLine {
  private lastPlain = 0;
  private lastKey = '';
  private shown = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  /** `key` identifies the phase: a new key always prints on a non-terminal. */
  update(key: string, line: string): void {
    if (this.tty) {
      // Keep it to one screen line, or \r would only return to the last wrapped part.
      // columns is 0 on some pseudo-terminals; then assume a usual width.
      const width = this.out.columns > 20 ? this.out.columns : 120;
      this.out.write(`\r${line.slice(0, width - 1)}\x1b[K`);
      this.shown = true;
      return;
    }
    const now = Date.now();
    if (key !== this.lastKey || now - this.lastPlain >= 3000) {
      this.out.write(line + '\n');
      this.lastKey = key;
      this.lastPlain = now;
    }
  }

  /** A permanent line (a note, a finished measurement) that must not be overwritten. */
  log(line: string): void {
    if (this.tty && this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
    this.out.write(line + '\n');
  }

  clear(): void {
    if (this.tty && this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }
}
