// The dashboard's copy of /api/history: loaded once for the whole window, then extended with
// the few newest samples each poll (a short window), so a poll moves kilobytes, not the full
// 15 minutes. Keyed by "vs" and "vs/server"; an entity missing from a view gets nulls (gaps).

export const CAPACITY = 900;
export const SERIES = ['rps', 'e4xx', 'e5xx', 'eclb', 'p50', 'p99', 'in_flight'];

function nulls(n) {
  return new Array(n).fill(null);
}

export class History {
  constructor() {
    this.time = [];
    this.series = new Map();
  }

  get last() {
    return this.time.length ? this.time[this.time.length - 1] : -Infinity;
  }

  /** Appends the samples of `view` newer than the newest held; true when any were new. */
  merge(view) {
    const start = view.time.findIndex((t) => t > this.last);
    if (start === -1) return false;
    const added = view.time.length - start;
    const before = this.time.length;
    const seen = new Set();
    const take = (key, series) => {
      seen.add(key);
      let mine = this.series.get(key);
      if (!mine) {
        mine = Object.fromEntries(SERIES.map((name) => [name, nulls(before)]));
        this.series.set(key, mine);
      }
      for (const name of SERIES) mine[name].push(...(series ? series[name].slice(start) : nulls(added)));
    };
    for (const vs of view.virtual_services) {
      take(vs.name, vs.series);
      for (const server of vs.servers) take(`${vs.name}/${server.name}`, server.series);
    }
    for (const [key, mine] of this.series) {
      if (!seen.has(key)) for (const name of SERIES) mine[name].push(...nulls(added));
    }
    this.time.push(...view.time.slice(start));
    const excess = this.time.length - CAPACITY;
    if (excess > 0) {
      this.time.splice(0, excess);
      for (const mine of this.series.values()) for (const name of SERIES) mine[name].splice(0, excess);
    }
    return true;
  }

  /** Series of one entity ("vs" or "vs/server"), or null. */
  of(key) {
    return this.series.get(key) || null;
  }
}
