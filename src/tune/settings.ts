/**
 * The kernel and process settings carelb recommends for a dedicated load balancer, declared
 * once (Envoy's "declare stats once" idea): `carelb tune check` reads and judges them,
 * `carelb tune apply` renders the sysctl.d file from them, and a unit test asserts that
 * tuning/sysctl.conf carries the same keys and values, so the playbook, the file and the
 * check cannot drift apart. The reasoning behind each value is in tuning/README.md.
 *
 * Pure data and pure functions: no I/O here.
 */

/** How the live value is compared with the recommendation. */
export type Rule =
  /** Numeric, field by field for multi-field values ("4096 131072 33554432"); "unlimited" passes. */
  | { compare: 'at-least'; value: string }
  /** Numeric, single field: lower is better (timeouts). */
  | { compare: 'at-most'; value: string }
  /** Text equality after collapsing whitespace. */
  | { compare: 'exact'; value: string }
  /** "low high" port range: passes when the live range holds at least as many ports. */
  | { compare: 'range-at-least'; value: string }
  /** The live value is one of a few acceptable words (THP: madvise or never). */
  | { compare: 'one-of'; values: readonly string[] };

/** Where the live value comes from. Paths are absolute; the reader prefixes its root. */
export type Source =
  /** A sysctl: `key` as sysctl(8) spells it, `path` its /proc/sys file. */
  | { kind: 'sysctl'; key: string; path: string }
  /** One row of a process's limits file; the soft limit is the one that is enforced. */
  | { kind: 'limit'; path: string; limit: string }
  /** A glob with one `*` directory segment (one file per CPU); the distinct values, joined by ",". */
  | { kind: 'per-cpu'; path: string }
  /** A sysfs choice file such as "always [madvise] never": the word in brackets. */
  | { kind: 'bracketed'; path: string };

export interface Setting {
  /** What the table shows: the sysctl key, or a short name for non-sysctl settings. */
  readonly name: string;
  readonly source: Source;
  readonly rule: Rule;
  /** The command that fixes a WARN on this host (not persistent for non-sysctl settings: see `why`). */
  readonly fix: string;
  /** One line: why carelb wants this. Used as the comment in the rendered sysctl.d file. */
  readonly why: string;
  /**
   * When the source file does not exist: 'warn', or a note meaning "nothing to tune here"
   * (cpufreq hidden in a VM, conntrack not loaded), reported as OK with the note.
   */
  readonly whenAbsent: 'warn' | { readonly note: string };
}

function sysctl(key: string, rule: Rule, why: string, whenAbsent: Setting['whenAbsent'] = 'warn'): Setting {
  const value = rule.compare === 'one-of' ? rule.values[0] : rule.value;
  const quoted = /\s/.test(value) ? `"${value}"` : value;
  return {
    name: key,
    source: { kind: 'sysctl', key, path: `/proc/sys/${key.replace(/\./g, '/')}` },
    rule,
    fix: `sysctl -w ${key}=${quoted}`,
    why,
    whenAbsent,
  };
}

/** The recommended nofile limit; also the LimitNOFILE of deploy/'s systemd unit and tuning/limits.conf. */
export const RECOMMENDED_NOFILE = 1048576;

export const SETTINGS: readonly Setting[] = Object.freeze([
  sysctl(
    'net.core.somaxconn',
    { compare: 'at-least', value: '65535' },
    'ceiling on every listen() backlog (accept queue); uWS asks for 512 per listener, other listeners may ask for more',
  ),
  sysctl(
    'net.ipv4.tcp_max_syn_backlog',
    { compare: 'at-least', value: '65535' },
    'half-open connections kept per listener before SYNs are dropped (when syncookies are off)',
  ),
  sysctl(
    'net.ipv4.tcp_migrate_req',
    { compare: 'exact', value: '1' },
    'a reload with new certificates closes the old listener; queued connections move to the new one instead of being reset',
    { note: 'kernel before 5.14: no migration of queued connections' },
  ),
  sysctl(
    'net.core.netdev_max_backlog',
    { compare: 'at-least', value: '16384' },
    'per-CPU queue of received packets waiting for the stack (RPS, loopback); drops show in /proc/net/softnet_stat',
  ),
  sysctl(
    'net.ipv4.ip_local_port_range',
    { compare: 'range-at-least', value: '1024 65535' },
    'ephemeral ports for connections to servers: ~64k concurrent + TIME_WAIT per server address instead of ~28k',
  ),
  sysctl(
    'net.ipv4.tcp_tw_reuse',
    { compare: 'exact', value: '1' },
    'outgoing connections to servers may reuse a TIME_WAIT port when timestamps prove it safe',
  ),
  sysctl(
    'net.ipv4.tcp_fin_timeout',
    { compare: 'at-most', value: '15' },
    'seconds an orphaned connection waits in FIN_WAIT_2 for the peer\'s FIN (not the TIME_WAIT length)',
  ),
  sysctl(
    'net.ipv4.tcp_slow_start_after_idle',
    { compare: 'exact', value: '0' },
    'keep-alive connections keep their congestion window across idle gaps instead of restarting slow start',
  ),
  sysctl(
    'net.core.rmem_max',
    { compare: 'at-least', value: '33554432' },
    'largest receive buffer a socket may request with SO_RCVBUF (32 MB)',
  ),
  sysctl(
    'net.core.wmem_max',
    { compare: 'at-least', value: '33554432' },
    'largest send buffer a socket may request with SO_SNDBUF (32 MB)',
  ),
  sysctl(
    'net.ipv4.tcp_rmem',
    { compare: 'at-least', value: '4096 131072 33554432' },
    'TCP receive buffer min / initial / autotuning max in bytes',
  ),
  sysctl(
    'net.ipv4.tcp_wmem',
    { compare: 'at-least', value: '4096 16384 33554432' },
    'TCP send buffer min / initial / autotuning max in bytes (slow clients of large responses)',
  ),
  sysctl(
    'fs.file-max',
    { compare: 'at-least', value: '2097152' },
    'system-wide open files: two sockets per proxied connection, plus everything else on the host',
  ),
  sysctl(
    'fs.nr_open',
    { compare: 'at-least', value: String(RECOMMENDED_NOFILE) },
    'ceiling for any process\'s nofile limit; LimitNOFILE above it fails',
  ),
  sysctl(
    'net.netfilter.nf_conntrack_max',
    { compare: 'at-least', value: '1048576' },
    'conntrack entries (only if a stateful firewall loaded nf_conntrack); a full table drops new connections',
    { note: 'nf_conntrack is not loaded: connections are not tracked, nothing to size' },
  ),
  {
    name: 'nofile (open files per process)',
    source: { kind: 'limit', path: '/proc/self/limits', limit: 'Max open files' },
    rule: { compare: 'at-least', value: String(RECOMMENDED_NOFILE) },
    fix: `systemctl edit carelb  # [Service] LimitNOFILE=${RECOMMENDED_NOFILE}; shells: tuning/limits.conf`,
    why: 'every client and server connection is a file descriptor',
    whenAbsent: 'warn',
  },
  {
    name: 'CPU frequency governor',
    source: { kind: 'per-cpu', path: '/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor' },
    rule: { compare: 'exact', value: 'performance' },
    fix: 'cpupower frequency-set -g performance  # persist: tuned profile or a boot unit',
    why: 'no ramp-up latency when load arrives in bursts',
    whenAbsent: { note: 'cpufreq is not exposed (typical in VMs): the hypervisor or firmware controls frequency' },
  },
  {
    name: 'transparent hugepages',
    source: { kind: 'bracketed', path: '/sys/kernel/mm/transparent_hugepage/enabled' },
    rule: { compare: 'one-of', values: ['madvise', 'never'] },
    fix: 'echo madvise > /sys/kernel/mm/transparent_hugepage/enabled  # persist: transparent_hugepage=madvise on the kernel command line',
    why: 'THP "always" adds compaction stalls (p99.9) and RSS bloat to a Node.js heap',
    whenAbsent: { note: 'the kernel has no transparent hugepage support' },
  },
]);

/** The settings `tune apply` writes to the sysctl.d file. */
export function sysctlSettings(settings: readonly Setting[] = SETTINGS): Setting[] {
  return settings.filter((s) => s.source.kind === 'sysctl');
}

/** The recommendation as the table prints it. */
export function recommendedText(rule: Rule): string {
  switch (rule.compare) {
    case 'at-least':
      return rule.value.includes(' ') ? `>= ${rule.value} (each)` : `>= ${rule.value}`;
    case 'at-most':
      return `<= ${rule.value}`;
    case 'exact':
      return rule.value;
    case 'range-at-least':
      return `${rule.value} (or wider)`;
    case 'one-of':
      return rule.values.join(' or ');
  }
}

/** The value a sysctl.d file sets for this rule. */
export function sysctlFileValue(rule: Rule): string {
  return rule.compare === 'one-of' ? rule.values[0] : rule.value;
}

/**
 * Renders the sysctl.d file `tune apply` installs. Settings whose source may be absent
 * (nf_conntrack_max before the module loads) get the "-" prefix, which systemd-sysctl reads
 * as "ignore if the key does not exist"; `tune apply` loads the file with `sysctl -e` for
 * the same reason.
 *
 * `leaveAlone` maps a setting name to a live value that already satisfies the rule in
 * its own way (somaxconn 262144, a RAM-scaled fs.file-max, a wider port range): that line is
 * written commented out, so applying never lowers a host's stronger tuning nor pins a
 * kernel-computed default. Without it the output is the pure recommendation.
 */
export function renderSysctlConf(settings: readonly Setting[] = SETTINGS, leaveAlone: ReadonlyMap<string, string> = new Map()): string {
  const lines = [
    '# carelb: kernel settings for a dedicated load balancer.',
    '# Written by `carelb tune apply`; explained in tuning/README.md. Check with `carelb tune check`.',
    '',
  ];
  for (const s of sysctlSettings(settings)) {
    if (s.source.kind !== 'sysctl') continue;
    lines.push(`# ${s.why}`);
    const line = `${s.whenAbsent === 'warn' ? '' : '-'}${s.source.key} = ${sysctlFileValue(s.rule)}`;
    const live = leaveAlone.get(s.name);
    if (live === undefined) {
      lines.push(line);
    } else {
      lines.push(`# not set: this host's ${live} already satisfies ${recommendedText(s.rule)}`);
      lines.push(`# ${line}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * Parses sysctl.d text into key → value (whitespace collapsed). Comments (# or ;) and blank
 * lines are skipped; a leading "-" (ignore-if-missing) is dropped from the key. Lines that
 * are not `key = value` are returned in `bad` so a test can reject them.
 */
export function parseSysctlConf(text: string): { values: Map<string, string>; bad: string[] } {
  const values = new Map<string, string>();
  const bad: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) {
      bad.push(raw);
      continue;
    }
    const key = line.slice(0, eq).trim().replace(/^-/, '');
    const value = line.slice(eq + 1).trim().split(/\s+/).join(' ');
    if (!/^[a-z0-9_.\-/]+$/i.test(key) || value === '') {
      bad.push(raw);
      continue;
    }
    values.set(key, value);
  }
  return { values, bad };
}
