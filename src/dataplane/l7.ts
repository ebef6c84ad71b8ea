/**
 * L7 rules of one virtual service (issue 14), compiled once per config load or reload into
 * plain data that the request path only reads: lowercase names to drop, header lines already
 * rendered as text, templates split into literal parts and variable slots. Nothing here is
 * parsed per request, and no regular expression runs per request (DESIGN.md, hot path).
 *
 * A service without any rule gets no L7Rules at all (`ServiceRuntime.rules === null`): the
 * request path then pays one null check per request and nothing else.
 *
 * Thread-local: built by each data-plane thread from the config it receives (ServiceRuntime).
 */
import type { VirtualServiceConfig } from '../config/schema';

/**
 * Fields of a server response the response rules rewrite, as lowercase names: a server's own
 * value is dropped and carelb's line is added (HSTS is a `set` of Strict-Transport-Security).
 */
interface ResponseRules {
  /** Lowercase names of the server's fields to drop (removed, or replaced by a set). */
  drop: string[];
  /** Lines to append to every server response head, each as `\r\nName: value`. */
  lines: string;
}

/** Per-thread scratch for rewritten response heads (same lifetime as the response parser's). */
let scratch = Buffer.allocUnsafe(16 * 1024);

/** Whether bytes[at, at + name.length) equal lowercase `name`, ignoring ASCII case. */
function nameAt(bytes: Uint8Array, at: number, name: string): boolean {
  for (let k = 0; k < name.length; k++) if ((bytes[at + k] | 0x20) !== name.charCodeAt(k)) return false;
  return true;
}

/** Whether the field name bytes[at, at + length) is one of `names` (lowercase). */
function isNamed(bytes: Uint8Array, at: number, length: number, names: string[]): boolean {
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (name.length === length && nameAt(bytes, at, name)) return true;
  }
  return false;
}

export class L7Rules {
  /** Response rules, or null when the service rewrites no response. */
  private readonly response: ResponseRules | null;
  /**
   * Header fields carelb adds to its own answers (errors, the fallback page): HSTS, so a
   * browser is told on every response of the service, whoever produced it.
   */
  readonly localHeaders: [string, string][] | null;

  private constructor(vs: VirtualServiceConfig) {
    const drop: string[] = [];
    let lines = '';
    const local: [string, string][] = [];
    if (vs.hsts) {
      // RFC 6797 §6.1: max-age in seconds; includeSubDomains is a bare directive.
      const value = `max-age=${Math.floor(vs.hsts.max_age / 1000)}${vs.hsts.include_subdomains ? '; includeSubDomains' : ''}`;
      drop.push('strict-transport-security');
      lines += `\r\nStrict-Transport-Security: ${value}`;
      local.push(['strict-transport-security', value]);
    }
    this.response = drop.length > 0 || lines !== '' ? { drop, lines } : null;
    this.localHeaders = local.length > 0 ? local : null;
  }

  /** The compiled rules of `vs`, or null when it has none (the common case). */
  static compile(vs: VirtualServiceConfig): L7Rules | null {
    if (!vs.hsts) return null;
    return new L7Rules(vs);
  }

  /**
   * A server's response head (`200 OK\r\nName: value...`, as the response parser gives it)
   * with the response rules applied: fields named in `drop` left out, carelb's lines added.
   * Returns a view on this thread's scratch buffer, valid until the next response head (the
   * same lifetime as the parser's head). Called by an Exchange when the head arrives.
   */
  responseHead(head: Uint8Array): Uint8Array {
    const rules = this.response;
    if (rules === null) return head;
    const lines = rules.lines;
    const need = head.length + lines.length;
    if (scratch.length < need) scratch = Buffer.allocUnsafe(need + 1024);
    const out = scratch;
    const drop = rules.drop;
    let n = 0;
    let lineStart = 0;
    const end = head.length;
    // Line by line: the status line is always kept; a field line is kept unless its name is dropped.
    while (lineStart < end) {
      let lineEnd = lineStart;
      while (lineEnd < end && head[lineEnd] !== 13) lineEnd++;
      let keep = true;
      if (lineStart > 0 && drop.length > 0) {
        let colon = lineStart;
        while (colon < lineEnd && head[colon] !== 0x3a) colon++;
        keep = !isNamed(head, lineStart, colon - lineStart, drop);
      }
      if (keep) {
        if (lineStart > 0) {
          out[n++] = 13;
          out[n++] = 10;
        }
        for (let i = lineStart; i < lineEnd; i++) out[n++] = head[i];
      }
      lineStart = lineEnd + 2;
    }
    n += out.write(lines, n, 'latin1');
    return new Uint8Array(out.buffer, out.byteOffset, n);
  }
}
