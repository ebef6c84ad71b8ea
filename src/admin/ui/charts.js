// History charts drawn with uPlot (the global `uPlot`, loaded from /ui/vendor/ by index.html):
// one chart per virtual service (requests/s on the left axis, p99 ms on the right) with the
// servers' transitions marked as vertical lines, and a row of sparklines per server.

import { el } from './dom.js';

const MARK_COLORS = { down: '#c62828', up: '#2e7d32', admin: '#c77700' };
const SPARKS = [
  { label: 'req/s', value: (s, i) => s.rps[i], stroke: '#0b57d0' },
  { label: 'errors/s (5xx + carelb)', value: (s, i) => (s.e5xx[i] == null && s.eclb[i] == null ? null : (s.e5xx[i] || 0) + (s.eclb[i] || 0)), stroke: '#a31515' },
  { label: 'p99 ms', value: (s, i) => s.p99[i], stroke: '#6a3d9a' },
  { label: 'in flight', value: (s, i) => s.in_flight[i], stroke: '#12324a' },
];

/** Whole seconds only on the time axis: samples are 1 s apart, sub-second ticks would be noise. */
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900];

/** 0 to the maximum, padded so a flat line at 0 or at the top is drawn inside the plot, not clipped on its edge. */
const padded = (_u, _min, max) => {
  const top = Math.max(1, max);
  return [-top * 0.06, top * 1.06];
};

function seconds(time) {
  return time.map((t) => t / 1000);
}

/** uPlot plugin: a vertical line per transition at its time, colored by kind. */
function markers(getEvents) {
  return {
    hooks: {
      draw: (u) => {
        const { ctx } = u;
        const { left, top, width, height } = u.bbox;
        ctx.save();
        ctx.lineWidth = 2 * devicePixelRatio;
        for (const e of getEvents()) {
          const x = Math.round(u.valToPos(Date.parse(e.time) / 1000, 'x', true));
          if (x < left || x > left + width) continue;
          ctx.strokeStyle = e.kind === 'admin' ? MARK_COLORS.admin : MARK_COLORS[e.to] || MARK_COLORS.admin;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };
}

function widthOf(node, fallback) {
  return Math.max(320, node.clientWidth || fallback);
}

export class ServiceChart {
  constructor(container, name) {
    this.container = container;
    this.name = name;
    this.events = [];
    this.plot = new uPlot(
      {
        width: widthOf(container, 900),
        height: 200,
        plugins: [markers(() => this.events)],
        scales: { x: { time: true }, rps: { auto: true, range: (_u, min, max) => [0, Math.max(1, max)] }, ms: { auto: true, range: (_u, min, max) => [0, Math.max(1, max)] } },
        series: [
          {},
          { label: 'requests/s', scale: 'rps', stroke: '#0b57d0', width: 2, fill: 'rgba(11,87,208,0.08)', spanGaps: false },
          { label: 'p99 ms', scale: 'ms', stroke: '#a31515', width: 1.5, spanGaps: false },
        ],
        axes: [{ incrs: TIME_INCRS }, { scale: 'rps', label: 'requests/s' }, { scale: 'ms', side: 1, label: 'p99 ms', grid: { show: false } }],
      },
      [[], [], []],
      container,
    );
  }

  update(history, events) {
    const s = history.of(this.name);
    if (!s) return;
    this.events = events.filter((e) => e.vs === this.name);
    this.plot.setData([seconds(history.time), s.rps, s.p99]);
    // For tests and curious users: how many seconds had traffic in the drawn window.
    this.container.setAttribute('data-points', String(s.rps.filter((v) => v != null && v > 0).length));
  }

  resize() {
    this.plot.setSize({ width: widthOf(this.container, 900), height: 200 });
  }

  destroy() {
    this.plot.destroy();
  }
}

/** One row per server: its name and four sparklines. */
export class ServerSparks {
  constructor(container, vs, server) {
    this.key = `${vs}/${server}`;
    this.row = el('div', { class: 'spark-row', 'data-sparks': this.key });
    this.row.appendChild(el('span', { class: 'spark-name' }, server));
    this.plots = SPARKS.map((spec) => {
      const cell = el('div', { class: 'spark' });
      cell.appendChild(el('span', { class: 'spark-label' }, spec.label));
      this.row.appendChild(cell);
      return new uPlot(
        {
          width: 170,
          height: 40,
          legend: { show: false },
          cursor: { show: false },
          scales: { x: { time: true }, y: { range: padded } },
          axes: [{ show: false }, { show: false }],
          series: [{}, { stroke: spec.stroke, width: 1.25, fill: `${spec.stroke}22` }],
        },
        [[], []],
        cell,
      );
    });
    container.appendChild(this.row);
  }

  update(history) {
    const s = history.of(this.key);
    if (!s) return;
    const x = seconds(history.time);
    SPARKS.forEach((spec, k) => this.plots[k].setData([x, history.time.map((_t, i) => spec.value(s, i))]));
  }

  destroy() {
    for (const p of this.plots) p.destroy();
    this.row.remove();
  }
}
