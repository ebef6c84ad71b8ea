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
import { randomBytes } from 'node:crypto';
import type { VirtualServiceConfig } from '../config/schema';
import { parseTemplate, type HeaderRulesInput } from '../config/header-rules';
import type { RequestInfo } from './request-head';
import type { SlotPlan } from '../state/plan';
import { coarseClock } from '../state/coarse-clock';

/** Per-request variables of a template (virtual_service is folded into the text at compile time). */
const enum Variable {
  ClientIp,
  Server,
  RequestId,
}

/** A header line with per-request parts: `prefix` then the parts, strings as they are, numbers as Variables. */
interface DynamicLine {
  prefix: string;
  suffix: string;
  parts: (string | Variable)[];
}

/** One side's rules compiled: names to drop, lines fixed at compile time, lines with variables. */
interface SideRules {
  /** Lowercase names of the fields to leave out (set and remove). */
  drop: string[];
  /** Lines whose text never changes, already rendered. */
  fixed: string;
  dynamic: DynamicLine[];
}

/**
 * Compiles `rules` (validated at check: header-rules.ts) into header lines, each as
 * `lead + Name: value + trail` (requests: `Name: value\r\n`; responses: `\r\nName: value`).
 */
function compileSide(rules: HeaderRulesInput | undefined, vsName: string, lead: string, trail: string): SideRules {
  const side: SideRules = { drop: [], fixed: '', dynamic: [] };
  if (!rules) return side;
  const line = (name: string, value: string) => {
    const parsed = parseTemplate(value);
    if (typeof parsed === 'string') throw new Error(`header rule ${name}: ${parsed}`); // refused at check
    const parts: (string | Variable)[] = [];
    for (const part of parsed) {
      const text = typeof part === 'string' ? part : part.variable === 'virtual_service' ? vsName : null;
      if (text !== null) {
        if (typeof parts[parts.length - 1] === 'string') parts[parts.length - 1] += text;
        else parts.push(text);
      } else if (typeof part !== 'string') {
        parts.push(part.variable === 'client_ip' ? Variable.ClientIp : part.variable === 'server' ? Variable.Server : Variable.RequestId);
      }
    }
    const prefix = `${lead}${name}: `;
    if (parts.every((p) => typeof p === 'string')) side.fixed += `${prefix}${parts.join('')}${trail}`;
    else side.dynamic.push({ prefix, suffix: trail, parts });
  };
  for (const [name, value] of Object.entries(rules.set)) {
    side.drop.push(name.toLowerCase());
    line(name, value);
  }
  for (const [name, value] of Object.entries(rules.add)) line(name, value);
  for (const name of rules.remove) side.drop.push(name.toLowerCase());
  return side;
}

/** Renders the lines with variables for one request. */
function renderDynamic(lines: DynamicLine[], client: string, server: string, requestId: string): string {
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    out += line.prefix;
    const parts = line.parts;
    for (let k = 0; k < parts.length; k++) {
      const part = parts[k];
      out += typeof part === 'string' ? part : part === Variable.ClientIp ? client : part === Variable.Server ? server : requestId;
    }
    out += line.suffix;
  }
  return out;
}

/** What the rules took from one request (request-head.ts copyRequest), read again when it is sent and answered. */
export interface L7Request {
  /** The request id passed to the server and logged ('' when request_id is off). */
  requestId: string;
  /** Local index of the server the persistence cookie names, when it is valid; -1 otherwise. */
  sticky: number;
  /** Dates in that cookie (seconds since the epoch; 0 without max_idle/max_life). */
  cookieFirst: number;
  cookieLast: number;
}

/** Longest request id carelb passes on; a longer incoming one is replaced. */
export const REQUEST_ID_MAX = 128;

/**
 * Characters of a valid request id: letters, digits and `-_.:+/=@` (UUIDs, ULIDs, base64,
 * HAProxy's and NGINX's ids). Nothing that could end a header line or escape a JSON string.
 */
const ID_CHAR = new Uint8Array(128);
for (const c of '-_.:+/=@') ID_CHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) ID_CHAR[c] = 1;
for (let c = 65; c <= 90; c++) ID_CHAR[c] = 1;
for (let c = 97; c <= 122; c++) ID_CHAR[c] = 1;

/** Whether `id` may be passed on as it is. */
export function isValidRequestId(id: string): boolean {
  if (id.length === 0 || id.length > REQUEST_ID_MAX) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c >= 128 || ID_CHAR[c] === 0) return false;
  }
  return true;
}

/**
 * Generated ids: a random prefix per thread (48 bits, drawn once when the thread loads this
 * module) and a counter, e.g. `3f9a1c0d2e7b-1a4`. Unique across threads and restarts with
 * overwhelming odds, and per request only a counter increment and one short string: no
 * crypto per request.
 */
const ID_PREFIX = `${randomBytes(6).toString('hex')}-`;
let idCounter = 0;

/** A fresh request id (thread-local counter). */
export function nextRequestId(): string {
  idCounter++;
  return ID_PREFIX + idCounter.toString(36);
}

const NO_NAMES: string[] = [];

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
  /** Response rules (HSTS is a `set` of Strict-Transport-Security), or null when the service rewrites no response. */
  private readonly response: SideRules | null;
  /** Request header rules, or null when there are none. */
  private readonly request: SideRules | null;
  /**
   * Header fields carelb adds to its own answers (errors, the fallback page): HSTS, so a
   * browser is told on every response of the service, whoever produced it.
   */
  readonly localHeaders: [string, string][] | null;
  /** Lowercase name of the request id field, '' when request_id is off. */
  readonly requestIdName: string;
  /** The request id field as written to the server (`\r\nX-Request-Id: `), '' when off. */
  private readonly requestIdLine: string;
  /** Lowercase names of request fields the rules leave out. */
  private readonly requestDrop: string[] = [];
  /** persistence: cookie: the cookie's name ('' when off), `NAME=`, tokens by server, attributes. */
  readonly cookieName: string = '';
  private readonly cookiePrefix: string = '';
  private readonly cookieTokens: string[] = [];
  private readonly cookieLocals = new Map<string, number>();
  /** `\r\nSet-Cookie: NAME=` and `; Path=/; HttpOnly; ...\r\nCache-Control: private`. */
  private readonly setCookieLead: string = '';
  private readonly setCookieTail: string = '';
  /** max_idle, max_life in seconds (0 = off), and the age of the last-seen date after which the cookie is refreshed. */
  private readonly maxIdle: number = 0;
  private readonly maxLife: number = 0;
  private readonly refreshAfter: number = 0;
  /** The persistence cookie's value found by stripCookie in the request being copied ('' when none). */
  foundCookie = '';

  private constructor(vs: VirtualServiceConfig, plan: SlotPlan['vs'][number] | undefined) {
    const cookie = vs.cookie;
    if (cookie && plan?.cookieTokens) {
      this.cookieName = cookie.name;
      this.cookiePrefix = `${cookie.name}=`;
      this.cookieTokens = plan.cookieTokens;
      plan.cookieTokens.forEach((token, local) => this.cookieLocals.set(token, local));
      this.setCookieLead = `\r\nSet-Cookie: ${cookie.name}=`;
      // HAProxy's `nocache`: a response that sets the cookie must not be cached for others
      // (HAProxy sends `Cache-control: private` rather than no-cache="set-cookie", which
      // HTTP/1.0 caches ignore).
      this.setCookieTail =
        `; Path=/${cookie.httponly ? '; HttpOnly' : ''}${cookie.secure ? '; Secure' : ''}; SameSite=${cookie.samesite === 'lax' ? 'Lax' : cookie.samesite === 'strict' ? 'Strict' : 'None'}` +
        '\r\nCache-Control: private';
      this.maxIdle = Math.floor(cookie.max_idle / 1000);
      this.maxLife = Math.floor(cookie.max_life / 1000);
      // The last-seen date is rewritten once a quarter of max_idle has passed, not on every response.
      this.refreshAfter = Math.max(1, Math.floor(this.maxIdle / 4));
    }
    this.requestIdName = vs.request_id ? vs.request_id.header.toLowerCase() : '';
    this.requestIdLine = vs.request_id ? `${vs.request_id.header}: ` : '';
    const request = compileSide(vs.request_headers, vs.name, '', '\r\n');
    this.requestDrop = request.drop;
    this.request = request.fixed !== '' || request.dynamic.length > 0 ? request : null;
    const response = compileSide(vs.response_headers, vs.name, '\r\n', '');
    const local: [string, string][] = [];
    if (vs.hsts) {
      // RFC 6797 §6.1: max-age in seconds; includeSubDomains is a bare directive.
      const value = `max-age=${Math.floor(vs.hsts.max_age / 1000)}${vs.hsts.include_subdomains ? '; includeSubDomains' : ''}`;
      response.drop.push('strict-transport-security');
      response.fixed += `\r\nStrict-Transport-Security: ${value}`;
      local.push(['strict-transport-security', value]);
    }
    this.response = response.drop.length > 0 || response.fixed !== '' || response.dynamic.length > 0 ? response : null;
    this.localHeaders = local.length > 0 ? local : null;
  }

  /** The compiled rules of `vs` (with its slot plan: cookie tokens), or null when it has none (the common case). */
  static compile(vs: VirtualServiceConfig, plan?: SlotPlan['vs'][number]): L7Rules | null {
    if (!vs.hsts && !vs.request_id && !vs.request_headers && !vs.response_headers && vs.persistence !== 'cookie') return null;
    return new L7Rules(vs, plan);
  }

  /**
   * A Cookie field's value without the persistence cookie (RFC 6265 §5.4: `a=1; b=2`), which
   * is kept in `foundCookie`; '' when nothing else is left. Called by copyRequest per Cookie field.
   */
  stripCookie(header: string): string {
    const prefix = this.cookiePrefix;
    if (header.indexOf(prefix) === -1) return header;
    let rest = '';
    let at = 0;
    while (at <= header.length) {
      let end = header.indexOf(';', at);
      if (end === -1) end = header.length;
      let start = at;
      while (start < end && header.charCodeAt(start) === 0x20) start++;
      if (end - start >= prefix.length && header.startsWith(prefix, start)) {
        this.foundCookie = header.slice(start + prefix.length, end).trim();
      } else if (end > start) {
        rest = rest === '' ? header.slice(start, end) : `${rest}; ${header.slice(start, end)}`;
      }
      at = end + 1;
    }
    return rest;
  }

  /** Whether copyRequest leaves out the request field `name` (lowercase). */
  dropsRequestField(name: string): boolean {
    const drop = this.requestDrop;
    for (let i = 0; i < drop.length; i++) if (drop[i] === name) return true;
    return false;
  }

  /**
   * What the rules take from a copied request: the incoming request id when valid, else a
   * fresh one. Called once per request by copyRequest.
   */
  admit(incomingId: string): L7Request {
    let requestId = '';
    if (this.requestIdName !== '') requestId = isValidRequestId(incomingId) ? incomingId : nextRequestId();
    const request: L7Request = { requestId, sticky: -1, cookieFirst: 0, cookieLast: 0 };
    const cookie = this.foundCookie;
    if (cookie !== '') {
      this.foundCookie = '';
      this.readCookie(cookie, request);
    }
    return request;
  }

  /** Fills request.sticky (and the dates) from a persistence cookie's value `TOKEN[.FIRST.LAST]`, if it is valid now. */
  private readCookie(value: string, request: L7Request): void {
    const dot = value.indexOf('.');
    const local = this.cookieLocals.get(dot === -1 ? value : value.slice(0, dot));
    if (local === undefined) return;
    if (this.maxIdle > 0 || this.maxLife > 0) {
      // Dates in base 36 seconds, as carelb wrote them; a cookie without them (or garbled) does not count.
      const second = dot === -1 ? -1 : value.indexOf('.', dot + 1);
      if (second === -1) return;
      const first = parseInt(value.slice(dot + 1, second), 36);
      const last = parseInt(value.slice(second + 1), 36);
      const now = Math.floor(coarseClock.now / 1000);
      if (!(first > 0 && last >= first)) return;
      if (this.maxLife > 0 && now - first > this.maxLife) return;
      if (this.maxIdle > 0 && now - last > this.maxIdle) return;
      request.cookieFirst = first;
      request.cookieLast = last;
    }
    request.sticky = local;
  }

  /**
   * The Set-Cookie (and Cache-Control) lines for a response from server `local`, or '': only
   * when the client's cookie did not name that server (HAProxy's `indirect`: a client with
   * the right cookie is not sent it again), or its last-seen date needs refreshing.
   */
  private setCookie(l7: L7Request, local: number): string {
    if (this.cookieName === '' || local < 0) return '';
    const dated = this.maxIdle > 0 || this.maxLife > 0;
    const now = dated ? Math.floor(coarseClock.now / 1000) : 0;
    if (l7.sticky === local && (!dated || now - l7.cookieLast < this.refreshAfter)) return '';
    const token = this.cookieTokens[local];
    if (!dated) return `${this.setCookieLead}${token}${this.setCookieTail}`;
    const first = l7.sticky === local ? l7.cookieFirst : now;
    return `${this.setCookieLead}${token}.${first.toString(36)}.${now.toString(36)}${this.setCookieTail}`;
  }

  /**
   * The request head for `server`: the copied head with the rules' lines before its blank
   * line. Called by an Exchange each time it sends the request (a retry included).
   */
  requestHead(request: RequestInfo, server: string): string {
    const l7 = request.l7!;
    let lines = '';
    if (this.requestIdLine !== '') lines += `${this.requestIdLine}${l7.requestId}\r\n`;
    const rules = this.request;
    if (rules !== null) {
      lines += rules.fixed;
      if (rules.dynamic.length > 0) lines += renderDynamic(rules.dynamic, request.client, server, l7.requestId);
    }
    if (lines === '') return request.head;
    return request.head.slice(0, -2) + lines + '\r\n';
  }

  /**
   * A server's response head (`200 OK\r\nName: value...`, as the response parser gives it)
   * with the response rules applied: fields named in `drop` left out, carelb's lines added.
   * Returns a view on this thread's scratch buffer, valid until the next response head (the
   * same lifetime as the parser's head). Called by an Exchange when the head arrives.
   */
  responseHead(head: Uint8Array, request: RequestInfo, server: string, local: number): Uint8Array {
    const rules = this.response;
    const setCookie = this.cookieName === '' ? '' : this.setCookie(request.l7!, local);
    if (rules === null && setCookie === '') return head;
    const drop = rules === null ? NO_NAMES : rules.drop;
    let lines = setCookie;
    if (rules !== null) lines = (rules.dynamic.length === 0 ? rules.fixed : rules.fixed + renderDynamic(rules.dynamic, request.client, server, request.l7!.requestId)) + lines;
    const need = head.length + lines.length;
    if (scratch.length < need) scratch = Buffer.allocUnsafe(need + 1024);
    const out = scratch;
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
