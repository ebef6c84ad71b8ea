/**
 * Deterministic body content: the bytes of request i's body (and of its response) are a
 * window into one seeded 64 KiB block, starting at an offset derived from i. Writers send
 * slices of the block (no per-request allocation, even for 20 MiB); readers compare what
 * arrives with the same slices (memcmp), so a byte out of place, a short body, or another
 * request's body (a poisoned connection handing out someone else's answer) is caught exactly.
 */
import { Prng, Stream } from './prng';

const BLOCK = 64 * 1024;

export class Content {
  /** The block twice over, so any window of up to BLOCK bytes is one contiguous slice. */
  private readonly doubled: Buffer;

  constructor(seed: number) {
    const rng = new Prng(seed, Stream.Content, 0);
    const block = Buffer.allocUnsafe(BLOCK);
    for (let i = 0; i < BLOCK; i += 4) block.writeUInt32LE(rng.next(), i);
    this.doubled = Buffer.concat([block, block]);
  }

  /** Where body `salt` starts in the block. Requests and responses of one index use different salts. */
  static salt(index: number, side: 'request' | 'response'): number {
    return (Math.imul(index + 1, 2654435761) + (side === 'request' ? 12345 : 0)) >>> 16;
  }

  /** The `length` (≤ 64 KiB) bytes of body `salt` from `offset`: a view, never copied. */
  slice(salt: number, offset: number, length: number): Buffer {
    const start = (salt + offset) % BLOCK;
    return this.doubled.subarray(start, start + Math.min(length, BLOCK));
  }

  verifier(salt: number, expected: number): Verifier {
    return new Verifier(this, salt, expected);
  }
}

/** Checks a body as it streams in: length and every byte. */
export class Verifier {
  received = 0;
  /** Offset of the first wrong byte, or -1. */
  firstBad = -1;

  constructor(
    private readonly content: Content,
    private readonly salt: number,
    readonly expected: number,
  ) {}

  feed(chunk: Buffer): void {
    if (this.firstBad === -1) {
      let at = 0;
      while (at < chunk.length) {
        const offset = this.received + at;
        if (offset >= this.expected) {
          this.firstBad = offset;
          break;
        }
        const n = Math.min(chunk.length - at, BLOCK, this.expected - offset);
        const want = this.content.slice(this.salt, offset, n);
        if (!chunk.subarray(at, at + n).equals(want)) {
          for (let k = 0; k < n; k++) {
            if (chunk[at + k] !== want[k]) {
              this.firstBad = offset + k;
              break;
            }
          }
          break;
        }
        at += n;
      }
    }
    this.received += chunk.length;
  }

  get complete(): boolean {
    return this.received === this.expected;
  }

  get ok(): boolean {
    return this.firstBad === -1 && this.received === this.expected;
  }

  /** Why the body is wrong, or null when it is right. */
  problem(): string | null {
    if (this.firstBad !== -1 && this.firstBad < this.expected) return `byte ${this.firstBad} differs (of ${this.expected})`;
    if (this.received > this.expected) return `too long: ${this.received} bytes, expected ${this.expected}`;
    if (this.received < this.expected) return `too short: ${this.received} bytes, expected ${this.expected}`;
    return null;
  }
}

/** Writes body `salt` of `size` bytes in pieces of at most `piece` bytes, calling `write` per piece. */
export function* pieces(content: Content, salt: number, from: number, to: number, piece: number): Generator<Buffer> {
  for (let offset = from; offset < to; ) {
    const n = Math.min(piece, to - offset, BLOCK);
    yield content.slice(salt, offset, n);
    offset += n;
  }
}
