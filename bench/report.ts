/**
 * The Markdown report, printed on stdout at the end and written next to the JSON: the capacity
 * table (wrk, saturated), the latency table (paced or autocannon, equal offered rate), each with its
 * rule, and the ratios from counted rows only, with the withheld ones and why.
 */
import { median, type BenchResults, type Metric, type Ratio, type Row } from './results';
import { MIN_ROUNDS_FOR_HEADLINE, RULE_TEXT, type Table } from './rules';

function fmt(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)" when the median is over more than one round, else the value alone. */
function cell(row: Row, k: Metric, scale: number, digits: number): string {
  const m = fmt(row[k] / scale, digits);
  const n = row.medians_over === 'counted rounds' ? row.rounds_counted : row.rounds_ok;
  if (n < 2) return m;
  const [lo, hi] = row.spread[k];
  return `${m} (${fmt(lo / scale, digits)}–${fmt(hi / scale, digits)})`;
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** The row has no numbers: one cell says why, the rest stay empty. */
function noNumbers(r: Row, columns: number): string | undefined {
  if (r.status === 'ok' && r.rounds_ok > 0) return undefined;
  const what = r.status === 'unavailable' ? 'skipped' : r.status;
  return `| ${r.scenario} | ${r.proxy} | ${what}: ${esc(r.reason ?? '')} ${'|'.repeat(columns - 2)}`;
}

function failedNote(r: Row): string {
  return r.reason ? ` ⚠ ${r.rounds_failed} round(s) failed: ${esc(r.reason)}` : '';
}

function capacityLine(r: Row): string {
  const header = 12;
  const empty = noNumbers(r, header);
  if (empty) return empty;
  const verdict = r.counted ? `${r.rounds_counted}/${r.rounds_ok}` : `**not saturated** (0/${r.rounds_ok})`;
  const unitNote = r.load === 'tls-loop' ? ' (handshakes)' : '';
  return [
    '',
    r.scenario,
    r.proxy + unitNote + failedNote(r),
    verdict,
    cell(r, 'rps', 1, 0),
    `**${cell(r, 'cpu_us_per_req', 1, 1)}**`,
    cell(r, 'proxy_cpu_pct', 1, 0),
    cell(r, 'proxy_cpuset_busy_pct', 1, 0),
    cell(r, 'load_cpu_busy_pct', 1, 0),
    cell(r, 'p50_us', 1000, 2),
    cell(r, 'p99_us', 1000, 2),
    fmt(r.peak_rss_kb / 1024, 1),
    `${r.errors} / ${r.timeouts} / ${r.non_2xx}`,
    '',
  ]
    .join(' | ')
    .trim();
}

/** paced's own lateness, p50 / p99 in ms: medians over the same rounds as the row's other cells. */
function pacedLag(r: Row): string {
  const use = r.per_round.filter((p) => r.medians_over === 'all rounds' || p.counted);
  const med = (k: 'gen_lag_p50_us' | 'gen_lag_p99_us'): number => median(use.map((p) => p[k] ?? 0)) / 1000;
  return `${fmt(med('gen_lag_p50_us'), 2)} / ${fmt(med('gen_lag_p99_us'), 2)}`;
}

function latencyLine(r: Row): string {
  const paced = r.load === 'paced';
  const header = paced ? 14 : 13;
  const empty = noNumbers(r, header);
  if (empty) return empty;
  const verdict = r.counted ? `${r.rounds_counted}/${r.rounds_ok}` : `**not achieved** (0/${r.rounds_ok})`;
  return [
    '',
    r.scenario,
    r.proxy + failedNote(r),
    fmt(r.offered_rps ?? 0, 0),
    cell(r, 'rps', 1, 0),
    verdict,
    fmt(r.burst_peak_rps ?? 0, 0),
    cell(r, 'p50_us', 1000, 2),
    cell(r, 'p99_us', 1000, 2),
    cell(r, 'p99_9_us', 1000, 2),
    ...(paced ? [pacedLag(r)] : []),
    `**${cell(r, 'cpu_us_per_req', 1, 1)}**`,
    cell(r, 'proxy_cpu_pct', 1, 0),
    fmt(r.peak_rss_kb / 1024, 1),
    `${r.errors} / ${r.timeouts} / ${r.non_2xx}`,
    '',
  ]
    .join(' | ')
    .trim();
}

function ratioLines(table: Table, list: Ratio[]): string[] {
  const lines: string[] = [];
  if (table === 'capacity') {
    lines.push('| scenario | carelb ÷ | CPU µs/req | req/s | counted rounds (carelb, anchor) |', '|---|---|--:|--:|---|');
    for (const r of list) lines.push(`| ${r.scenario} | ${r.anchor} | **${fmt(r.values.cpu_us_per_req, 2)}** | ${fmt(r.values.rps, 2)} | ${r.carelb_rounds}, ${r.anchor_rounds}${r.indicative ? ' (indicative)' : ''} |`);
  } else {
    lines.push('| scenario | carelb ÷ | p50 | p99 | p99.9 | CPU µs/req | counted rounds (carelb, anchor) |', '|---|---|--:|--:|--:|--:|---|');
    for (const r of list) {
      const v = r.values;
      lines.push(`| ${r.scenario} | ${r.anchor} | ${fmt(v.p50, 2)} | **${fmt(v.p99, 2)}** | ${fmt(v.p99_9, 2)} | ${fmt(v.cpu_us_per_req, 2)} | ${r.carelb_rounds}, ${r.anchor_rounds}${r.indicative ? ' (indicative)' : ''} |`);
    }
  }
  return lines;
}

function section(res: BenchResults, table: Table): string[] {
  const rows = res.rows.filter((r) => r.table === table);
  if (rows.length === 0) return [];
  const lines: string[] = [];
  if (table === 'capacity') {
    lines.push('### Capacity: every proxy driven to saturation (wrk)', '');
    lines.push(`Rule: ${RULE_TEXT.capacity}`, '');
    lines.push('| scenario | proxy | saturated rounds | req/s | CPU µs/req | proxy CPU % | its CPU busy % | load CPU % | p50 ms | p99 ms | peak RSS MB | errors / timeouts / non-2xx |');
    lines.push('|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const r of rows) lines.push(capacityLine(r));
    lines.push('');
    lines.push('req/s: wrk\'s own count ÷ its runtime. CPU µs/req = utime+stime of the proxy process(es) over the window ÷ responses. proxy CPU %: the proxy process\'s utime+stime ÷ window, 100 = one CPU. its CPU busy %: the proxy\'s pinned CPU(s) from /proc/stat, softirq and other processes included (a gap to proxy CPU % = something else used that CPU). load CPU %: busy time of the load CPU (wrk, backends, and the kernel\'s loopback softirq work) from /proc/stat; near 100 with proxy CPU below the rule means the load side set the pace. p50/p99: wrk\'s, at saturation (a queue, not a latency figure: see the latency table).');
    if (rows.some((r) => r.load === 'tls-loop')) lines.push('handshake rows: a new TLS connection per request from in-process tls.connect loops (not wrk); req/s = handshakes/s, CPU µs per handshake.');
  } else {
    const load = rows[0].load;
    lines.push(`### Latency at equal offered load (${load === 'paced' ? 'paced: open loop, evenly spaced, from due time' : 'autocannon, fixed rate'})`, '');
    lines.push(`Rule: ${RULE_TEXT.latency}`, '');
    const bases = [...new Set(rows.filter((r) => r.rate_basis).map((r) => `${r.scenario}: ${r.offered_rps ?? 0} req/s = ${r.rate_basis ?? ''}`))];
    for (const b of bases) lines.push(`- Offered rate, ${b}`);
    if (bases.length) lines.push('');
    const lagColumn = load === 'paced' ? ' paced lag p50 / p99 ms |' : '';
    lines.push(`| scenario | proxy | offered req/s | achieved req/s | achieved rounds | burst peak req/s | p50 ms | p99 ms | p99.9 ms |${lagColumn} CPU µs/req | proxy CPU % | peak RSS MB | errors / timeouts / non-2xx |`);
    lines.push(`|---|---|--:|--:|---|--:|--:|--:|--:|${load === 'paced' ? '--:|' : ''}--:|--:|--:|--:|`);
    for (const r of rows) lines.push(latencyLine(r));
    lines.push('');
    if (load === 'paced') {
      lines.push('paced sends request k at t0 + k/rate, evenly spaced over all connections; a due request with no idle connection waits. p50/p99/p99.9 run from each request\'s **due time** to the last byte of its response (coordinated omission corrected, as wrk2), over the requests due in the window; the same from the write are in the JSON (send_p*_us), with max_backlog and max_send_lag_us. paced lag: how long requests waited while a connection was idle, i.e. paced\'s own lateness (timer wake-up on this VM, a busy load CPU); it is inside p50/p99 and not the proxy\'s. burst peak = the busiest 100 ms of responses in the window × 10: near the offered rate when the load is paced. achieved req/s = responses completed in the window ÷ window. CPU µs/req = proxy utime+stime over the window ÷ those responses.');
    } else {
      lines.push('autocannon\'s overallRate is a per-connection quota per second: each connection sends its share back to back, then waits for the next second. burst peak = the busiest 100 ms of the window × 10: the rate the proxy actually saw during the bursts. Latency = request write to response end (no queueing before the write).');
    }
  }
  const list = res.ratios.filter((r) => r.table === table);
  const held = res.ratios_withheld.filter((r) => r.table === table);
  lines.push('');
  if (list.length > 0) {
    lines.push(...ratioLines(table, list));
    lines.push('');
    lines.push(
      `Ratios are carelb ÷ anchor of medians over counted rounds only (${table === 'capacity' ? 'saturated' : 'offered rate achieved'}); below 1 = carelb lower${table === 'capacity' ? ' (req/s: above 1 = carelb faster)' : ''}. "indicative": fewer than ${MIN_ROUNDS_FOR_HEADLINE} counted rounds on a side.`,
    );
  } else {
    lines.push('No ratio: no pair of counted rows.');
  }
  for (const w of held) lines.push(`- No ratio for ${w.scenario} carelb ÷ ${w.anchor}: ${esc(w.reason)}`);
  lines.push('');
  return lines;
}

export function markdown(res: BenchResults): string {
  const m = res.meta as {
    started: string;
    machine: string;
    command: string;
    pinning: string;
    backend: string;
    versions: Record<string, string>;
    notes: string[];
  };
  const lines: string[] = [];
  lines.push(`## carelb bench, ${m.started}`, '');
  lines.push(`- Command: \`${m.command}\``);
  lines.push(`- Machine: ${m.machine}`);
  lines.push(`- Pinning: ${m.pinning}`);
  lines.push(`- Backends: ${m.backend}`);
  lines.push(`- Versions: ${Object.values(m.versions).join('; ')}`);
  for (const n of m.notes) lines.push(`- Note: ${n}`);
  lines.push('');
  lines.push('Cells are medians over the counted rounds (over all rounds when none counted), (min–max) in brackets; errors are sums over all rounds, warm-up included; peak RSS is the worst round.', '');
  lines.push(...section(res, 'capacity'));
  lines.push(...section(res, 'latency'));
  return lines.join('\n') + '\n';
}
