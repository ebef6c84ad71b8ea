/**
 * keepalived configuration and helper scripts rendered from the `ha:` section (issue 8). carelb
 * drives keepalived (VRRP, the engine operators already trust) rather than reimplementing it.
 * Pure: text in, text out; `ha/command.ts` reads secrets and writes the files.
 *
 * Choices, each for a reason:
 * - Every instance starts in state BACKUP with `nopreempt` (unless `preempt: true`): the node
 *   with the higher priority wins the first election, and a node that recovers does not take an
 *   address back (a second interruption for no gain). keepalived only honours nopreempt with
 *   an initial state of BACKUP.
 * - `chk_carelb` has no `weight`: a failing check puts the instance in FAULT, which releases
 *   the address whatever the peer's priority. With a weight, a dead carelb would only lower the
 *   priority, and a peer whose own check fails, or a priority gap larger than the weight,
 *   leaves the address on a node that cannot serve.
 * - `carelb_release` (vrrp_track_file, weight 0): a non-zero value in the release file puts the
 *   instances in FAULT at once (inotify, no polling). `carelb ha handoff` writes it before
 *   carelb stops, so the address moves while carelb still serves: a planned stop fails no
 *   request, a crash is detected by the check within `fall` intervals.
 * - Unicast VRRP to the peer (`unicast_peer`): works on networks that filter multicast and
 *   keeps the adverts between the two nodes.
 * - `notify` runs one script for every transition; it records the state for `/api/ha/peer`,
 *   appends a line to carelb's audit log and, when the node leaves MASTER, keeps the address
 *   on `lo` for a few seconds (see renderNotifyScript): runs as root for that.
 */
import type { HaConfig, HostPort } from '../config/schema';

export const DEFAULT_CHECK_SCRIPT = '/usr/local/lib/carelb/check-carelb';
export const DEFAULT_NOTIFY_SCRIPT = '/usr/local/lib/carelb/notify-carelb';
export const DEFAULT_AUDIT_LOG = '/var/log/carelb/audit.log';
export const DEFAULT_LINGER_SECONDS = 10;

export interface RenderOptions {
  /** Where this node's carelb admin API listens (`admin.listen`); the check calls its /healthz. */
  admin: HostPort;
  /** https when the admin API serves TLS (the check then skips verification: it is this node's own loopback). */
  adminTls?: boolean;
  /** VRRP auth_pass (keepalived uses the first 8 characters); omitted: no authentication block. */
  authPass?: string;
  /** Source address of the unicast adverts; default: the interface's primary address. */
  unicastSrcIp?: string;
  checkScript?: string;
  notifyScript?: string;
  /** The state directory (release flag, per-instance state files). */
  stateDir: string;
  /** Seconds a released address stays on `lo` (see renderNotifyScript); 0: off. Default 10. */
  lingerSeconds?: number;
  /** Where the config came from, for the header comment. */
  source?: string;
}

export interface InstancePlan {
  name: string;
  vip: string;
  virtualRouterId: number;
  priority: number;
}

/** One VRRP instance per VIP: `carelb_1`, `carelb_2`, ... with virtual_router_id, +1, +2 ... */
export function instancePlan(ha: HaConfig): InstancePlan[] {
  return ha.vips.map((vip, i) => ({ name: `carelb_${i + 1}`, vip: vip.address, virtualRouterId: ha.virtual_router_id + i, priority: vip.priority ?? ha.priority }));
}

/** Everything in `ha` that keepalived cannot take, as `ha.key: reason` messages (empty when renderable). */
export function renderErrors(ha: HaConfig): string[] {
  const errors: string[] = [];
  if (ha.advert_int < 1000 || ha.advert_int % 1000 !== 0) errors.push(`ha.advert_int: must be whole seconds of at least 1s (VRRPv2 carries seconds), got ${ha.advert_int}ms`);
  if (ha.advert_int > 255_000) errors.push('ha.advert_int: at most 255s');
  if (ha.virtual_router_id + ha.vips.length - 1 > 255) errors.push(`ha.virtual_router_id: ${ha.virtual_router_id} + ${ha.vips.length - 1} (one id per extra VIP) exceeds 255`);
  if (ha.peer.includes(':')) errors.push('ha.peer: IPv6 VRRP is not supported by carelb ha render; use an IPv4 peer address');
  ha.vips.forEach((vip, i) => {
    if (vip.address.includes(':')) errors.push(`ha.vips[${i}].address: IPv6 virtual IPs are not supported by carelb ha render`);
    const prefix = Number(vip.address.split('/')[1]);
    const octets = vip.address.split('/')[0].split('.').map(Number);
    if (!vip.address.includes(':') && (prefix > 32 || octets.some((o) => o > 255))) errors.push(`ha.vips[${i}].address: ${vip.address} is not an IPv4 address/prefix`);
  });
  return errors;
}

/** Where the check connects: an admin API listening on every address is reached over loopback. */
export function adminUrl(admin: HostPort, tls = false): string {
  const host = admin.host === '0.0.0.0' ? '127.0.0.1' : admin.host === '::' ? '::1' : admin.host;
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${admin.port}/healthz`;
}

function quoted(text: string): string {
  if (/["\\\n]/.test(text)) throw new Error(`cannot put ${JSON.stringify(text)} in a keepalived string`);
  return `"${text}"`;
}

/** keepalived.conf for this node. Throws when `renderErrors(ha)` is not empty. */
export function renderKeepalivedConf(ha: HaConfig, options: RenderOptions): string {
  const errors = renderErrors(ha);
  if (errors.length > 0) throw new Error(errors.join('; '));
  const seconds = ha.advert_int / 1000;
  const check = options.checkScript ?? DEFAULT_CHECK_SCRIPT;
  const notify = options.notifyScript ?? DEFAULT_NOTIFY_SCRIPT;
  const release = `${options.stateDir.replace(/\/$/, '')}/release`;
  const lines: string[] = [
    `# keepalived configuration of carelb node ${ha.node_name}, rendered by \`carelb ha render\`${options.source ? ` from ${options.source}` : ''}.`,
    '# Do not edit: change the ha: section and render again.',
    '',
    'global_defs {',
    `    router_id ${ha.node_name}`,
    '    # scripts run as script_user, and only from paths that no other user can write',
    '    enable_script_security',
    `    script_user ${ha.check_script_user}`,
    '}',
    '',
    `# This node's carelb: a dead, stopped or hung carelb fails /healthz. No weight: failing puts`,
    `# the instances in FAULT, which always gives the addresses up.`,
    'vrrp_script chk_carelb {',
    `    script ${quoted(check)}`,
    `    interval ${seconds}`,
    `    timeout ${Math.max(1, seconds)}`,
    '    fall 2',
    '    rise 2',
    '}',
    '',
    '# `carelb ha handoff` writes 1 here before carelb stops: FAULT at once, the addresses move',
    '# while carelb still serves. Weight 0: any non-zero value is a failure.',
    'track_file carelb_release {',
    `    file ${quoted(release)}`,
    '    weight 0',
    '    init_file 0',
    '}',
  ];
  for (const plan of instancePlan(ha)) {
    lines.push(
      '',
      `vrrp_instance ${plan.name} {`,
      '    state BACKUP',
      `    interface ${ha.interface}`,
      `    virtual_router_id ${plan.virtualRouterId}`,
      `    priority ${plan.priority}`,
      `    advert_int ${seconds}`,
    );
    if (!ha.preempt) lines.push('    # a recovered node does not take the address back (no second interruption)', '    nopreempt');
    if (options.unicastSrcIp) lines.push(`    unicast_src_ip ${options.unicastSrcIp}`);
    lines.push('    unicast_peer {', `        ${ha.peer}`, '    }');
    if (options.authPass !== undefined) {
      const pass = options.authPass.slice(0, 8);
      if (!/^[!-~]{1,8}$/.test(pass) || pass.includes('"')) throw new Error('ha.auth_secret_file: the secret must start with 1-8 printable characters without spaces or quotes');
      lines.push('    authentication {', '        auth_type PASS', `        auth_pass ${pass}`, '    }');
    }
    lines.push(
      '    virtual_ipaddress {',
      `        ${plan.vip} dev ${ha.interface}`,
      '    }',
      '    track_script {',
      '        chk_carelb',
      '    }',
      '    track_file {',
      '        carelb_release',
      '    }',
      '    # root: the address lingers on lo after a transition out of MASTER (notify script)',
      `    notify ${quoted(`${notify} ${ha.node_name} ${plan.vip} ${ha.interface} ${options.lingerSeconds ?? DEFAULT_LINGER_SECONDS}`)} root`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

export interface CheckScriptOptions {
  admin: HostPort;
  adminTls?: boolean;
  /** Node binary for hosts without curl. */
  node: string;
}

/**
 * The check keepalived runs every interval: exit 0 only when this node's carelb answers
 * /healthz with 2xx within 1 s. curl when installed, else a node one-liner.
 */
export function renderCheckScript(options: CheckScriptOptions): string {
  const url = adminUrl(options.admin, options.adminTls);
  const insecure = options.adminTls ? ' -k' : '';
  const nodeCheck = [
    `const u=new URL(process.argv[1]);`,
    `const m=require(u.protocol==='https:'?'https':'http');`,
    `const r=m.get(u,{timeout:1000,rejectUnauthorized:false},(s)=>{s.resume();process.exit(s.statusCode>=200&&s.statusCode<300?0:1)});`,
    `r.on('timeout',()=>process.exit(1));r.on('error',()=>process.exit(1));`,
  ].join('');
  return [
    '#!/bin/sh',
    '# keepalived check of this node\'s carelb (rendered by `carelb ha render`): exit 0 only when',
    '# carelb\'s admin API answers /healthz with 2xx within 1 s. A dead, stopped or hung carelb fails.',
    `URL='${url}'`,
    'if command -v curl >/dev/null 2>&1; then',
    `  exec curl -fsS${insecure} --noproxy '*' -o /dev/null --max-time 1 "$URL"`,
    'fi',
    `exec '${options.node}' -e '${nodeCheck.replace(/'/g, "'\\''")}' "$URL"`,
    '',
  ].join('\n');
}

export interface NotifyScriptOptions {
  stateDir: string;
  auditLog: string;
  /** The check script: the address lingers only while carelb still answers. */
  checkScript?: string;
}

/**
 * keepalived's notify script, run as root for every transition. keepalived calls it as
 *   SCRIPT NODE VIP IFACE LINGER  INSTANCE|GROUP NAME STATE PRIORITY
 * (the first four from the rendered `notify` line). It
 * - writes the instance's state file (replaced atomically; read by /api/ha/peer);
 * - appends one JSON line to carelb's audit log:
 *   {"time","audit":true,"source":"keepalived","action":"vrrp","target","result","node","instance","state","vip","priority","linger"};
 * - on leaving MASTER in a handoff (release flag 1, carelb still answering its check), keeps
 *   the address on `lo` (as /32) for LINGER seconds. keepalived has
 *   removed it from IFACE, so new clients follow the peer's gratuitous ARP, but clients whose
 *   ARP cache still points here, and requests this node is still answering, keep working until
 *   the peer's ARP reaches them: without it, every request in flight at the moment of removal
 *   is lost (its answer can no longer leave with the address as source). Only when
 *   arp_ignore >= 1 and arp_announce >= 2 on IFACE (deploy/ha/sysctl), so that this node never
 *   answers or announces ARP for the address it gave up; otherwise skipped ("linger":"off: ...").
 *   Not after a crash: with nothing listening, the address would turn dropped packets (which
 *   the clients retransmit, to the peer by then) into refused connections.
 * Every argument is checked against a strict pattern first, so nothing needs JSON escaping.
 */
export function renderNotifyScript(options: NotifyScriptOptions): string {
  return [
    '#!/bin/sh',
    '# keepalived notify script of carelb (rendered by `carelb ha render`): records each VRRP',
    '# transition for carelb\'s /api/ha/peer and in its audit log; lets a released address linger',
    '# on lo so that requests in flight at the moment of a failover are not lost.',
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    `STATE_DIR='${options.stateDir}'`,
    `AUDIT_LOG='${options.auditLog}'`,
    `CHECK='${options.checkScript ?? DEFAULT_CHECK_SCRIPT}'`,
    'node=$1 vip=$2 iface=$3 linger=$4 type=$5 instance=$6 state=$7 priority=${8:-0}',
    'ok() { printf %s "$1" | grep -Eq "^$2\\$"; }',
    'ok "$node" "[A-Za-z0-9_.-]{1,64}" && ok "$vip" "[0-9.]{7,15}/[0-9]{1,2}" && ok "$iface" "[A-Za-z0-9_.:@-]{1,15}" && ok "$linger" "[0-9]{1,4}" \\',
    '  && ok "$instance" "[A-Za-z0-9_.-]{1,64}" && ok "$state" "[A-Z]{1,16}" && ok "$priority" "[0-9]{1,3}" \\',
    '  || { echo "notify-carelb: unexpected arguments: $*" >&2; exit 2; }',
    '[ "$type" = INSTANCE ] || exit 0',
    'time=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)',
    'file="$STATE_DIR/$instance.json"',
    'previous=$(sed -n \'s/.*"state":"\\([A-Z]*\\)".*/\\1/p\' "$file" 2>/dev/null)',
    'address=${vip%/*}',
    'lingered=no',
    'if [ "$state" = MASTER ]; then',
    '  ip -4 addr del "$address/32" dev lo 2>/dev/null',
    'elif [ "$previous" = MASTER ] && [ "$linger" -gt 0 ]; then',
    '  effective() { a=$(cat "/proc/sys/net/ipv4/conf/all/$1" 2>/dev/null || echo 0); i=$(cat "/proc/sys/net/ipv4/conf/$iface/$1" 2>/dev/null || echo 0); [ "$a" -gt "$i" ] && echo "$a" || echo "$i"; }',
    '  if [ "$(cat "$STATE_DIR/release" 2>/dev/null)" != 1 ]; then',
    '    lingered="no: not a handoff"',
    '  elif ! "$CHECK" >/dev/null 2>&1; then',
    '    lingered="no: carelb is not answering"',
    '  elif [ "$(effective arp_ignore)" -ge 1 ] && [ "$(effective arp_announce)" -ge 2 ]; then',
    '    ip -4 addr add "$address/32" dev lo 2>/dev/null',
    '    setsid sh -c \'sleep "$1"; ip -4 addr del "$2/32" dev lo 2>/dev/null\' linger "$linger" "$address" </dev/null >/dev/null 2>&1 &',
    '    lingered="${linger}s on lo"',
    '  else',
    '    lingered="off: set arp_ignore=1 and arp_announce=2 on $iface"',
    '  fi',
    'fi',
    'mkdir -p "$STATE_DIR" && printf \'{"time":"%s","node":"%s","instance":"%s","state":"%s","vip":"%s","priority":%s}\\n\' \\',
    '  "$time" "$node" "$instance" "$state" "$vip" "$priority" > "$STATE_DIR/.$instance.tmp" && mv -f "$STATE_DIR/.$instance.tmp" "$file"',
    'mkdir -p "$(dirname "$AUDIT_LOG")" && printf \'{"time":"%s","audit":true,"source":"keepalived","action":"vrrp","target":"%s","result":"%s","node":"%s","instance":"%s","state":"%s","vip":"%s","priority":%s,"linger":"%s","msg":"vrrp transition"}\\n\' \\',
    '  "$time" "$instance" "$state" "$node" "$instance" "$state" "$vip" "$priority" "$lingered" >> "$AUDIT_LOG"',
    'exit 0',
    '',
  ].join('\n');
}
