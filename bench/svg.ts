/**
 * A dependency-free SVG chart of a run: from the capacity table, throughput bars and
 * CPU-per-request bars per proxy per scenario (median, with min–max whiskers; rows that were
 * not saturated drawn grey and labelled so); from the latency table (and handshakes), one
 * latency-percentile panel per scenario (curves per proxy, log axes as HdrHistogram plots
 * use, so tails stay visible next to medians).
 */
import type { BenchResults, Row } from './results';

const COLORS: Record<string, string> = { carelb: '#1f6fb4', haproxy: '#2ca02c', nginx: '#e8710a' };
const W = 960;
const FONT = 'font-family="sans-serif"';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function text(x: number, y: number, s: string, extra = ''): string {
  // An attribute may appear once per element (XML): default the size only when not given.
  const size = extra.includes('font-size=') ? '' : ' font-size="12"';
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${FONT}${size} ${extra}>${esc(s)}</text>`;
}

/** A "nice" axis maximum: 1, 2 or 5 × 10^k at or above v. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function shortNum(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toPrecision(3)}k`;
  return n >= 100 ? `${Math.round(n)}` : `${+n.toFixed(1)}`;
}

interface BarMetric {
  title: string;
  key: 'rps' | 'cpu_us_per_req';
  unit: (scenario: string) => string;
}

const THROUGHPUT: BarMetric = {
  title: 'Capacity (wrk): throughput, median over saturated rounds, whiskers = min–max; grey = not saturated',
  key: 'rps',
  unit: (s) => (s === 'handshake' ? 'handshakes/s' : 'req/s'),
};
const CPU: BarMetric = {
  title: 'Capacity (wrk): CPU time of the proxy per request (µs, lower is better); grey = not saturated',
  key: 'cpu_us_per_req',
  unit: (s) => (s === 'handshake' ? 'µs/handshake' : 'µs/req'),
};

/**
 * One small bar panel per scenario, each with its own axis: handshakes/s and keep-alive
 * req/s differ by two orders of magnitude, so a shared axis would hide the handshake bars.
 */
function barPanels(metric: BarMetric, rows: Row[], proxies: string[], scenarios: string[], y0: number): { svg: string; height: number } {
  const h = 260;
  const k = metric.key;
  const parts: string[] = [text(20, y0 + 16, metric.title, 'font-weight="bold" font-size="13"')];
  const pw = (W - 20) / Math.max(1, scenarios.length);
  scenarios.forEach((s, si) => {
    const x0 = 10 + si * pw;
    const left = x0 + 50;
    const right = x0 + pw - 15;
    const top = y0 + 50;
    const bottom = y0 + h - 30;
    const ok = rows.filter((r) => r.scenario === s && r.status === 'ok' && r.rounds_ok > 0);
    const max = niceMax(Math.max(1, ...ok.map((r) => r.spread[k][1])));
    const y = (v: number): number => bottom - ((bottom - top) * v) / max;
    parts.push(text((left + right) / 2, y0 + 38, `${s} (${metric.unit(s)})`, 'text-anchor="middle" font-weight="bold"'));
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      parts.push(`<line x1="${left}" x2="${right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
      parts.push(text(left - 5, y(v) + 4, shortNum(v), 'text-anchor="end" font-size="10"'));
    }
    const barW = (right - left) / Math.max(1, proxies.length);
    proxies.forEach((p, pi) => {
      const x = left + pi * barW;
      const cx = x + barW / 2;
      parts.push(text(cx, bottom + 14, p, 'text-anchor="middle" font-size="10"'));
      const r = ok.find((row) => row.proxy === p);
      if (!r) {
        const status = rows.find((row) => row.scenario === s && row.proxy === p)?.status ?? 'n/a';
        parts.push(text(cx, bottom - 6, status === 'ok' ? 'n/a' : status, 'text-anchor="middle" fill="#999" font-size="10"'));
        return;
      }
      const fill = r.counted ? (COLORS[p] ?? '#888') : '#ccc';
      const tip = `${p} ${s}: ${r[k].toFixed(1)} ${metric.unit(s)}${r.counted ? '' : ' (not saturated: does not count)'}`;
      parts.push(`<rect x="${(x + 6).toFixed(1)}" y="${y(r[k]).toFixed(1)}" width="${(barW - 12).toFixed(1)}" height="${(bottom - y(r[k])).toFixed(1)}" fill="${fill}"><title>${esc(tip)}</title></rect>`);
      if (!r.counted) parts.push(text(cx, bottom - 6, 'not saturated', 'text-anchor="middle" fill="#555" font-size="9"'));
      const [lo, hi] = r.spread[k];
      parts.push(`<path d="M${cx.toFixed(1)} ${y(lo).toFixed(1)}V${y(hi).toFixed(1)}M${(cx - 5).toFixed(1)} ${y(lo).toFixed(1)}h10M${(cx - 5).toFixed(1)} ${y(hi).toFixed(1)}h10" stroke="#333" fill="none"/>`);
      parts.push(text(cx, y(hi) - 4, shortNum(r[k]), 'text-anchor="middle" font-size="10"'));
    });
    parts.push(`<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);
  });
  return { svg: parts.join('\n'), height: h };
}

/** x position of a percentile on the usual 1/(1-p) log axis: 50 → log10 2, 99.99 → 4. */
function pctX(p: number): number {
  return Math.log10(100 / (100 - p));
}

function latencyPanel(rows: Row[], scenario: string, proxies: string[], x0: number, y0: number, w: number, h: number): string {
  const left = x0 + 60;
  const right = x0 + w - 35;
  const top = y0 + 30;
  const bottom = y0 + h - 35;
  const withCurves = rows.filter((r) => r.scenario === scenario && r.curve.length > 0);
  const title = scenario === 'handshake' ? 'Latency percentiles, handshake loops' : `Latency at equal offered load, ${scenario}`;
  const parts: string[] = [text(left, y0 + 18, `${title} (ms, log scale)`, 'font-weight="bold"')];
  const all = withCurves.flatMap((r) => r.curve.map((c) => c.latency_us / 1000));
  const lo = Math.max(0.001, Math.min(...all, 1e9));
  const hi = Math.max(...all, lo * 10);
  const lmin = Math.floor(Math.log10(lo));
  const lmax = Math.ceil(Math.log10(hi));
  const xmin = pctX(50);
  const xmax = pctX(99.99);
  const X = (p: number): number => left + ((right - left) * (pctX(p) - xmin)) / (xmax - xmin);
  const Y = (ms: number): number => bottom - ((bottom - top) * (Math.log10(ms) - lmin)) / Math.max(1, lmax - lmin);
  for (let e = lmin; e <= lmax; e++) {
    const v = 10 ** e;
    parts.push(`<line x1="${left}" x2="${right}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(text(left - 6, Y(v) + 4, `${+v.toPrecision(3)}`, 'text-anchor="end"'));
  }
  for (const p of [50, 90, 99, 99.9, 99.99]) {
    parts.push(`<line x1="${X(p).toFixed(1)}" x2="${X(p).toFixed(1)}" y1="${top}" y2="${bottom}" stroke="#eee"/>`);
    parts.push(text(X(p), bottom + 16, `p${p}`, 'text-anchor="middle"'));
  }
  if (withCurves.length === 0) parts.push(text((left + right) / 2, (top + bottom) / 2, 'no data', 'text-anchor="middle" fill="#999"'));
  for (const p of proxies) {
    const r = withCurves.find((row) => row.proxy === p);
    if (!r) continue;
    const d = r.curve.map((c, i) => `${i ? 'L' : 'M'}${X(c.percentile).toFixed(1)} ${Y(Math.max(lo, c.latency_us / 1000)).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" stroke="${COLORS[p] ?? '#888'}" stroke-width="2" fill="none"><title>${esc(p)}</title></path>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#333"/>`);
  return parts.join('\n');
}

export function chart(res: BenchResults): string {
  const proxies = [...new Set(res.rows.map((r) => r.proxy))];
  const scenarios = [...new Set(res.rows.map((r) => r.scenario))];
  const parts: string[] = [];
  let y = 10;
  parts.push(text(20, y + 14, `carelb bench ${String(res.meta.started)}: ${String(res.meta.machine)}`, 'font-size="13"'));
  // Legend.
  proxies.forEach((p, i) => {
    const lx = 20 + i * 120;
    parts.push(`<rect x="${lx}" y="${y + 24}" width="14" height="14" fill="${COLORS[p] ?? '#888'}"/>`);
    parts.push(text(lx + 20, y + 36, p));
  });
  y += 44;
  const capacity = res.rows.filter((r) => r.table === 'capacity');
  const capScenarios = [...new Set(capacity.map((r) => r.scenario))];
  if (capacity.length > 0) {
    for (const metric of [THROUGHPUT, CPU]) {
      const panel = barPanels(metric, capacity, proxies, capScenarios, y);
      parts.push(panel.svg);
      y += panel.height;
    }
  }
  // wrk gives percentiles, not histograms: curves come from the latency table and handshakes.
  const curveRows = res.rows.filter((r) => r.table === 'latency' || r.load === 'tls-loop');
  const curveScenarios = scenarios.filter((s) => curveRows.some((r) => r.scenario === s));
  const pw = W / 2;
  const ph = 280;
  curveScenarios.forEach((s, i) => {
    parts.push(latencyPanel(curveRows, s, proxies, (i % 2) * pw, y + Math.floor(i / 2) * ph, pw, ph));
  });
  const height = y + Math.ceil(curveScenarios.length / 2) * ph + 10;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}">
<rect width="100%" height="100%" fill="#fff"/>
${parts.join('\n')}
</svg>
`;
}
