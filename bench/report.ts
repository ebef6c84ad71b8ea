/** The Markdown report: printed on stdout at the end and written next to the JSON. */
import type { BenchResults, Metric, Row } from './results';

function fmt(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min–max)" when there was more than one round, else the value alone. */
function cell(row: Row, k: Metric, scale: number, digits: number): string {
  const m = fmt(row[k] / scale, digits);
  if (row.rounds_ok < 2) return m;
  const [lo, hi] = row.spread[k];
  return `${m} (${fmt(lo / scale, digits)}–${fmt(hi / scale, digits)})`;
}

function rowLine(r: Row): string {
  if (r.status !== 'ok') {
    const what = r.status === 'unavailable' ? 'skipped' : r.status;
    return `| ${r.scenario} | ${r.proxy} | ${what}: ${(r.reason ?? '').replace(/\|/g, '\\|')} ||||||||||`;
  }
  const note = r.reason ? ` ⚠ ${r.rounds_failed} round(s) failed: ${r.reason.replace(/\|/g, '\\|')}` : '';
  return [
    '',
    r.scenario,
    r.proxy + note,
    cell(r, 'rps', 1, 0),
    cell(r, 'p50_us', 1000, 2),
    cell(r, 'p90_us', 1000, 2),
    cell(r, 'p99_us', 1000, 2),
    cell(r, 'p99_9_us', 1000, 2),
    `**${cell(r, 'cpu_us_per_req', 1, 1)}**`,
    cell(r, 'proxy_cpu_pct', 1, 0),
    fmt(r.loadgen_cpu_pct + r.backend_cpu_pct, 0),
    fmt(r.peak_rss_kb / 1024, 1),
    `${r.errors} / ${r.timeouts} / ${r.non_2xx}`,
    '',
  ].join(' | ').trim();
}

export function markdown(res: BenchResults): string {
  const m = res.meta as {
    started: string;
    machine: string;
    command: string;
    pinning: string;
    versions: Record<string, string>;
    notes: string[];
  };
  const lines: string[] = [];
  lines.push(`## carelb bench, ${m.started}`, '');
  lines.push(`- Command: \`${m.command}\``);
  lines.push(`- Machine: ${m.machine}`);
  lines.push(`- Pinning: ${m.pinning}`);
  lines.push(`- Versions: ${Object.values(m.versions).join('; ')}`);
  for (const n of m.notes) lines.push(`- Note: ${n}`);
  lines.push('');
  lines.push('| scenario | proxy | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU µs/req | proxy CPU % | load CPU % | peak RSS MB | errors / timeouts / non-2xx |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of res.rows) lines.push(rowLine(r));
  lines.push('');
  lines.push('Medians over rounds, (min–max) in brackets. CPU µs/req = utime+stime of the proxy process(es) over the measured window ÷ responses in it.');
  lines.push('proxy CPU % = proxy CPU time ÷ window (100 = one CPU). load CPU % = load generator + backend on the load CPU; near 100 with proxy CPU % well below 100 means the load side, not the proxy, set the pace.');
  if (res.rows.some((r) => r.scenario === 'handshake')) {
    lines.push('handshake rows: req/s = full TLS handshakes per second (one request each), CPU µs per handshake, latency = connect + handshake + request + response.');
  }
  if (res.ratios.length > 0) {
    lines.push('', '| scenario | carelb ÷ | CPU µs/req ratio | req/s ratio |', '|---|---|--:|--:|');
    for (const r of res.ratios) lines.push(`| ${r.scenario} | ${r.anchor} | ${fmt(r.cpu_per_req, 2)} | ${fmt(r.rps, 2)} |`);
    lines.push('', 'CPU ratio below 1 = carelb spends less CPU per request than the anchor; req/s ratio above 1 = carelb served more.');
  }
  return lines.join('\n') + '\n';
}
