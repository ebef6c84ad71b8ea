// One section per virtual service: a summary line, the history chart, the servers table (live
// numbers from two polls of /api/status, action buttons) and the servers' sparklines. Tables
// are updated in place, so a row keeps keyboard focus across polls.

import { $, el, setText } from './dom.js';
import { ago, duration, ms, percent, rate } from './format.js';

export const ACTIONS = {
  drain: { label: 'Drain', text: 'stops sending new requests to it; requests in flight finish. Use it before maintenance.' },
  halt: { label: 'Halt', text: 'takes it out of service: no requests are sent to it until it is set online again.' },
  online: { label: 'Online', text: 'returns it to service: new requests are sent to it again while its health checks pass.' },
};

const COLUMNS = [['Server'], ['Address'], ['Health'], ['Admin state'], ['Weight', 'num'], ['In flight', 'num'], ['Requests/s', 'num'], ['Error rate', 'num'], ['p50', 'num'], ['p99', 'num'], ['Last check'], ['Actions']];
const CELLS = ['name', 'address', 'health', 'admin', 'weight', 'active', 'rps', 'errors', 'p50', 'p99', 'check', 'actions'];
const NUMERIC = new Set(['weight', 'active', 'rps', 'errors', 'p50', 'p99']);

export class Services {
  constructor(container) {
    this.container = container;
    this.sections = new Map();
    this.rows = new Map();
    this.previous = null;
  }

  /** The section of a virtual service (its chart and sparklines containers), or undefined. */
  section(name) {
    return this.sections.get(name);
  }

  names() {
    return [...this.sections.keys()];
  }

  clear() {
    for (const s of this.sections.values()) s.section.remove();
    this.sections.clear();
    this.rows.clear();
    this.previous = null;
  }

  sectionFor(vs) {
    let s = this.sections.get(vs.name);
    if (s) return s;
    const section = el('section', { class: 'vs', 'aria-labelledby': `vs-${vs.name}` });
    section.appendChild(el('h2', { id: `vs-${vs.name}` }, `Virtual service ${vs.name}`));
    const meta = el('p', { class: 'meta' });
    section.appendChild(meta);
    section.appendChild(el('p', { class: 'chart-title' }, 'Requests/s and p99 latency, last 15 minutes'));
    // A canvas says nothing to a screen reader: the label says what it shows and where the numbers are.
    const chart = el('div', { class: 'chart', 'data-chart': vs.name, 'data-points': '0', role: 'img', 'aria-label': `Requests per second and p99 latency of ${vs.name} over the last 15 minutes; the table below has the current numbers and the event list the transitions` });
    section.appendChild(chart);
    const wrap = el('div', { class: 'table-wrap' });
    const table = el('table');
    table.appendChild(el('caption', null, `Servers of ${vs.name}`));
    const head = el('tr');
    for (const [label, cls] of COLUMNS) head.appendChild(el('th', cls ? { scope: 'col', class: cls } : { scope: 'col' }, label));
    const thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = el('tbody');
    table.appendChild(tbody);
    wrap.appendChild(table);
    section.appendChild(wrap);
    const sparks = el('div', { class: 'sparks', 'aria-label': `Last 15 minutes per server of ${vs.name}` });
    section.appendChild(sparks);
    this.container.appendChild(section);
    s = { section, meta, tbody, chart, sparks };
    this.sections.set(vs.name, s);
    return s;
  }

  rowFor(vs, server, tbody) {
    const key = `${vs}/${server}`;
    let r = this.rows.get(key);
    if (r) return r;
    const tr = el('tr', { 'data-server': key });
    const cells = {};
    for (const c of CELLS) {
      const td = el(c === 'name' ? 'th' : 'td', c === 'name' ? { scope: 'row' } : null);
      if (NUMERIC.has(c)) td.className = 'num';
      if (c === 'actions') td.className = 'actions';
      tr.appendChild(td);
      cells[c] = td;
    }
    cells.health.appendChild(el('span', { class: 'badge' }));
    cells.admin.appendChild(el('span', { class: 'badge' }));
    const buttons = {};
    for (const [action, a] of Object.entries(ACTIONS)) {
      const b = el('button', { type: 'button', 'data-action': action, 'data-vs': vs, 'data-name': server, 'aria-label': `${a.label} ${server} in ${vs}` }, a.label);
      cells.actions.appendChild(b);
      cells.actions.appendChild(document.createTextNode(' '));
      buttons[action] = b;
    }
    tbody.appendChild(tr);
    r = { tr, cells, buttons };
    this.rows.set(key, r);
    return r;
  }

  /** Updates every section and row from one /api/status document. */
  render(status) {
    const now = Date.parse(status.time);
    const seconds = this.previous ? (now - this.previous.time) / 1000 : 0;
    const counts = new Map();
    // A read token may only look: the API would answer its drain, halt or online with 403.
    const operate = status.role === 'operate';
    const seenVs = new Set();
    const seenRows = new Set();
    for (const vs of status.virtual_services) {
      seenVs.add(vs.name);
      const s = this.sectionFor(vs);
      const vsPrev = this.previous && this.previous.counts.get(vs.name);
      const vsRate = vsPrev && seconds > 0 ? Math.max(0, vs.requests - vsPrev.requests) / seconds : null;
      counts.set(vs.name, { requests: vs.requests, errors: 0 });
      const errs = Object.keys(vs.errors).filter((code) => vs.errors[code] > 0).map((code) => `${code} ${vs.errors[code]}`);
      setText(s.meta, `listens on ${vs.listen}${vs.tls ? ' (TLS)' : ' (plain HTTP)'} \u00b7 ${vs.balance} \u00b7 ${vs.active} in flight \u00b7 ${rate(vsRate)} requests/s \u00b7 p50 ${ms(vs.latency_ms && vs.latency_ms.p50)} \u00b7 p99 ${ms(vs.latency_ms && vs.latency_ms.p99)} \u00b7 errors answered by carelb: ${errs.length ? errs.join(', ') : 'none'}`);
      for (const server of vs.servers) {
        const key = `${vs.name}/${server.name}`;
        seenRows.add(key);
        const r = this.rowFor(vs.name, server.name, s.tbody);
        const prev = this.previous && this.previous.counts.get(key);
        const dReq = prev ? server.requests - prev.requests : 0;
        const dErr = prev ? server.errors - prev.errors : 0;
        counts.set(key, { requests: server.requests, errors: server.errors });
        const c = r.cells;
        // Content switching: servers come pool by pool; the pool is shown before the name.
        setText(c.name, server.pool ? `${server.pool} / ${server.name}` : server.name);
        setText(c.address, server.address);
        const hb = c.health.firstChild;
        hb.className = `badge ${server.health}`;
        setText(hb, server.health);
        const ab = c.admin.firstChild;
        ab.className = `badge ${server.admin}`;
        setText(ab, server.admin);
        r.tr.setAttribute('data-admin', server.admin);
        r.tr.setAttribute('data-health', server.health);
        setText(c.weight, String(server.weight));
        setText(c.active, String(server.active));
        setText(c.rps, rate(prev && seconds > 0 ? Math.max(0, dReq) / seconds : null));
        setText(c.errors, percent(prev && dReq > 0 ? Math.max(0, dErr) / dReq : prev ? 0 : null));
        setText(c.p50, ms(server.latency_ms && server.latency_ms.p50));
        setText(c.p99, ms(server.latency_ms && server.latency_ms.p99));
        const check = server.last_check;
        setText(c.check, check ? `${check.result}: ${check.reason} (${ago(check.time)})` : 'no active check');
        c.check.className = check && check.result === 'fail' ? 'check-fail' : '';
        for (const [action, b] of Object.entries(r.buttons)) {
          b.disabled = server.admin === action;
          b.hidden = !operate;
        }
      }
    }
    for (const [name, s] of this.sections) if (!seenVs.has(name)) { s.section.remove(); this.sections.delete(name); }
    for (const [key, r] of this.rows) if (!seenRows.has(key)) { r.tr.remove(); this.rows.delete(key); }
    this.previous = { time: now, counts };
  }
}

/** The header line: version, uptime, threads, config, restarts. */
export function summaryText(status) {
  return `version ${status.version} \u00b7 up ${duration(status.uptime_s)} \u00b7 ${status.workers} threads \u00b7 config ${status.config_hash.slice(0, 12)} \u00b7 ${status.thread_restarts} thread restarts`;
}

/** The HA pair: each node, its VRRP state, the VIPs it holds, and whether the configs agree. */
function nodeText(label, info) {
  if (!info) return `${label}: unknown`;
  if (info.error) return `${label}: unreachable (${info.error})`;
  const held = ((info.vrrp && info.vrrp.instances) || []).filter((i) => i.state === 'MASTER' && i.vip).map((i) => i.vip);
  return `${label} ${info.node || '?'}: VRRP ${info.vrrp ? info.vrrp.state : 'unknown'}${held.length ? `, holds ${held.join(', ')}` : ', holds no VIP'}, config ${String(info.shared_hash || info.config_hash || '').slice(0, 12)}`;
}

export function renderPair(ha) {
  const p = $('ha');
  if (!ha) {
    p.hidden = true;
    return;
  }
  p.hidden = false;
  const { self, peer } = ha;
  const same = self && peer && !peer.error && self.shared_hash && self.shared_hash === peer.shared_hash;
  setText(p, `HA pair \u00b7 ${nodeText('this node', self)} \u00b7 ${nodeText('peer', peer)} \u00b7 ${same ? 'configs in sync' : 'configs differ or unknown: check before a failover'}`);
  p.className = same ? '' : 'check-fail';
}
