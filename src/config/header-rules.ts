/**
 * Header rules (issue 14): `request_headers` and `response_headers`, each with `set`, `add`
 * and `remove`. Validated once, at `carelb check`, load and reload, and parsed here into
 * templates (literal parts and variable slots) that the data plane compiles into header
 * lines (src/dataplane/l7.ts). Pure: no I/O.
 *
 * What can never come out of a rule: a CR, LF or any other control character (a value may
 * only hold visible ASCII, space and tab, and the four variables expand to text checked
 * elsewhere: client_ip is an address carelb formatted, virtual_service and server are config
 * names (NAME_PATTERN), request_id is validated or generated, l7.ts); and a rule on a field
 * carelb frames or sets itself.
 */

/** Variables a value may use, as `{name}`. */
export const TEMPLATE_VARIABLES = ['client_ip', 'virtual_service', 'server', 'request_id'] as const;
export type TemplateVariable = (typeof TEMPLATE_VARIABLES)[number];

/** A value split into literal text and variables, in order. */
export type TemplatePart = string | { variable: TemplateVariable };

/**
 * Request fields carelb frames or sets itself: Host (the request's own), the framing fields,
 * hop-by-hop fields (RFC 9110 §7.6.1; Expect is answered by uWS), and X-Forwarded-* (carelb
 * writes them, and a rule that changed them would let a client's address be misreported).
 */
export const RESERVED_REQUEST_FIELDS: Record<string, string> = {
  host: 'carelb passes the client’s Host on as it came',
  'content-length': 'carelb frames the request body itself',
  'transfer-encoding': 'carelb frames the request body itself',
  connection: 'hop-by-hop: carelb manages its server connections itself (RFC 9110 §7.6.1)',
  'keep-alive': 'hop-by-hop (RFC 9110 §7.6.1)',
  'proxy-connection': 'hop-by-hop (RFC 9110 §7.6.1)',
  te: 'hop-by-hop (RFC 9110 §7.6.1)',
  trailer: 'hop-by-hop (RFC 9110 §7.6.1)',
  upgrade: 'hop-by-hop (RFC 9110 §7.6.1)',
  expect: 'answered by the front end itself (100 Continue)',
  'x-forwarded-for': 'carelb writes the client’s address itself',
  'x-forwarded-proto': 'carelb sets it itself',
  'x-forwarded-host': 'carelb sets it itself',
  'x-forwarded-port': 'carelb sets it itself',
};

/** Response fields carelb or its front end frames or writes itself. */
export const RESERVED_RESPONSE_FIELDS: Record<string, string> = {
  'content-length': 'carelb frames the response body itself',
  'transfer-encoding': 'carelb frames the response body itself',
  connection: 'hop-by-hop: carelb decides whether the client connection stays open (RFC 9110 §7.6.1)',
  'keep-alive': 'hop-by-hop (RFC 9110 §7.6.1)',
  'proxy-connection': 'hop-by-hop (RFC 9110 §7.6.1)',
  te: 'hop-by-hop (RFC 9110 §7.6.1)',
  trailer: 'hop-by-hop (RFC 9110 §7.6.1)',
  upgrade: 'hop-by-hop (RFC 9110 §7.6.1)',
  date: 'the front end writes Date itself',
};

/** Longest value a rule may hold (before expansion). */
export const HEADER_VALUE_MAX = 1024;

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;

/** Why `name` is not a field name, or null. */
export function headerNameProblem(name: string): string | null {
  return TOKEN.test(name) ? null : `"${name}" is not a header name (1-64 token characters, RFC 9110 §5.1)`;
}

/**
 * Splits `value` into a template, or returns why it is refused: control characters (CR and
 * LF above all: they would split the field and let a value inject headers, RFC 9110 §5.5),
 * non-ASCII, braces outside a known `{variable}`, or a value longer than HEADER_VALUE_MAX.
 */
export function parseTemplate(value: string): TemplatePart[] | string {
  if (value.length > HEADER_VALUE_MAX) return `is longer than ${HEADER_VALUE_MAX} characters`;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 13 || c === 10) return 'contains CR or LF: a value could split the field and inject headers (RFC 9110 §5.5)';
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return `contains the control character 0x${c.toString(16).padStart(2, '0')} (RFC 9110 §5.5)`;
    if (c > 0x7e) return 'contains a non-ASCII character: header values are ASCII here';
  }
  const parts: TemplatePart[] = [];
  let at = 0;
  while (at < value.length) {
    const open = value.indexOf('{', at);
    const close = value.indexOf('}', at);
    if (open === -1) {
      if (close !== -1) return 'has a "}" outside a {variable}';
      parts.push(value.slice(at));
      break;
    }
    if (close !== -1 && close < open) return 'has a "}" outside a {variable}';
    if (open > at) parts.push(value.slice(at, open));
    const end = value.indexOf('}', open);
    if (end === -1) return 'has a "{" that is not closed';
    const variable = value.slice(open + 1, end);
    if (!(TEMPLATE_VARIABLES as readonly string[]).includes(variable)) return `uses {${variable}}: only ${TEMPLATE_VARIABLES.map((v) => `{${v}}`).join(', ')} exist`;
    parts.push({ variable: variable as TemplateVariable });
    at = end + 1;
  }
  return parts;
}

export interface HeaderRulesInput {
  set: Record<string, string>;
  add: Record<string, string>;
  remove: string[];
}

/**
 * Every problem of one side's rules, as [path under the side's key, reason]. `reserved`: the
 * fields carelb frames on that side; `extraReserved`: fields other rules own (the request id
 * field, HSTS), with why.
 */
export function headerRuleProblems(rules: HeaderRulesInput, reserved: Record<string, string>, extraReserved: Record<string, string>, hasRequestId: boolean): [(string | number)[], string][] {
  const problems: [(string | number)[], string][] = [];
  const seen = new Map<string, string>();
  const checkName = (path: (string | number)[], name: string, kind: string) => {
    const problem = headerNameProblem(name);
    if (problem !== null) return problems.push([path, problem]);
    const lower = name.toLowerCase();
    const why = reserved[lower] ?? extraReserved[lower];
    if (why !== undefined) problems.push([path, `${name} cannot be changed by a rule: ${why}`]);
    const before = seen.get(lower);
    if (before !== undefined && !(before === 'add' && kind === 'add')) problems.push([path, `${name} is already in ${before}: a field goes in one of set, add, remove`]);
    seen.set(lower, kind);
  };
  for (const [name, value] of Object.entries(rules.set)) {
    checkName(['set', name], name, 'set');
    checkValue(['set', name], value);
  }
  for (const [name, value] of Object.entries(rules.add)) {
    checkName(['add', name], name, 'add');
    checkValue(['add', name], value);
  }
  rules.remove.forEach((name, i) => checkName(['remove', i], name, 'remove'));
  return problems;

  function checkValue(path: (string | number)[], value: string): void {
    const parsed = parseTemplate(value);
    if (typeof parsed === 'string') problems.push([path, parsed]);
    else if (!hasRequestId && parsed.some((part) => typeof part !== 'string' && part.variable === 'request_id')) problems.push([path, 'uses {request_id}: add request_id to the virtual service']);
  }
}
