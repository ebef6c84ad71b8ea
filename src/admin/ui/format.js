// Number and time formatting for the dashboard. Pure functions.

export function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function ms(v) {
  if (v == null) return '\u2014';
  return v < 10 ? `${v.toFixed(2)} ms` : v < 100 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}

export function rate(v) {
  return v == null ? '\u2014' : v < 10 ? v.toFixed(1) : String(Math.round(v));
}

export function percent(v) {
  return v == null ? '\u2014' : `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %`;
}

export function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 2 ? 'just now' : `${duration(s)} ago`;
}

export function clock(msSinceEpoch) {
  return new Date(msSinceEpoch).toLocaleTimeString();
}
