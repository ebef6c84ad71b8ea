/**
 * The dashboard page served at `GET /`: one self-contained HTML document (no external
 * resources, no CDN), kept in a .ts module because tsc copies no other files to dist. It asks
 * for the admin token (kept in sessionStorage), polls /api/status every 2 s and updates the
 * tables in place (rows keep keyboard focus), computes requests/s and error rate from two
 * polls, and sends drain/halt/online after a confirmation dialog. Those buttons are shown only
 * to an operate token (/api/status says the token's role); a read token sees the tables and a
 * note. Data is only ever written with textContent, never as HTML.
 *
 * The page's inline script and style are allowed by hash in its Content-Security-Policy, so
 * nothing else can run in it.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root {
  --ink: #1a1a1a; --muted: #545454; --line: #c8c8c8; --bg: #f6f7f8; --card: #ffffff;
  --ok-bg: #dff3e4; --ok-ink: #0b5d23; --warn-bg: #fff1c2; --warn-ink: #6b4a00;
  --bad-bg: #fbe0e0; --bad-ink: #8a1010; --off-bg: #e4e4e4; --off-ink: #333333; --focus: #0b57d0;
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: baseline; padding: 0.75rem 1.25rem; background: #12324a; color: #fff; }
header h1 { margin: 0; font-size: 1.4rem; }
header p { margin: 0; }
#conn { margin-left: auto; }
#conn.error { background: var(--bad-bg); color: var(--bad-ink); padding: 0.1rem 0.5rem; border-radius: 4px; font-weight: 600; }
main { padding: 1rem 1.25rem; }
section.vs { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem 1rem 1rem; margin-bottom: 1.25rem; }
section.vs h2 { margin: 0 0 0.25rem; font-size: 1.25rem; }
.meta { margin: 0 0 0.75rem; color: var(--muted); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; min-width: 60rem; }
caption { text-align: left; position: absolute; left: -10000px; }
th, td { text-align: left; padding: 0.4rem 0.55rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
thead th { font-size: 0.85rem; text-transform: uppercase; letter-spacing: 0.03em; color: var(--muted); }
tbody th { font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; min-width: 4.5rem; text-align: center; padding: 0.1rem 0.5rem; border-radius: 999px; font-weight: 600; border: 1px solid currentColor; }
.badge.up, .badge.online { background: var(--ok-bg); color: var(--ok-ink); }
.badge.down { background: var(--bad-bg); color: var(--bad-ink); }
.badge.drain { background: var(--warn-bg); color: var(--warn-ink); }
.badge.halt { background: var(--off-bg); color: var(--off-ink); }
.check-fail { color: var(--bad-ink); font-weight: 600; }
.actions { white-space: nowrap; }
button { font: inherit; padding: 0.3rem 0.75rem; border-radius: 4px; border: 1px solid #7a7a7a; background: #fff; color: var(--ink); cursor: pointer; }
button:hover:not(:disabled) { background: #eef2f7; }
button:disabled { opacity: 0.45; cursor: not-allowed; }
button.primary { background: var(--focus); border-color: var(--focus); color: #fff; }
button.danger { background: #a31515; border-color: #a31515; color: #fff; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
#login { max-width: 34rem; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 1rem 1.25rem; margin-bottom: 1.25rem; }
#login label { display: block; font-weight: 600; margin-bottom: 0.35rem; }
#login input { width: 100%; font: inherit; padding: 0.4rem; margin-bottom: 0.75rem; border: 1px solid #7a7a7a; border-radius: 4px; }
#notice:not(:empty) { background: var(--card); border-left: 4px solid var(--focus); padding: 0.5rem 0.75rem; margin-bottom: 1rem; }
#notice.error { border-left-color: var(--bad-ink); }
dialog { border: 1px solid var(--line); border-radius: 6px; max-width: 32rem; padding: 1rem 1.25rem; }
dialog::backdrop { background: rgba(0, 0, 0, 0.45); }
dialog h2 { margin-top: 0; font-size: 1.2rem; }
dialog .buttons { display: flex; gap: 0.75rem; justify-content: flex-end; }
.forget { background: transparent; color: #fff; border-color: #9fb3c8; }
[hidden] { display: none !important; }
`;

const SCRIPT = `
'use strict';
(function () {
  var KEY = 'carelb.admin.token';
  var POLL_MS = 2000;
  var ACTIONS = {
    drain: { label: 'Drain', text: 'stops sending new requests to it; requests in flight finish. Use it before maintenance.' },
    halt: { label: 'Halt', text: 'takes it out of service: no requests are sent to it until it is set online again.' },
    online: { label: 'Online', text: 'returns it to service: new requests are sent to it again while its health checks pass.' }
  };
  var token = sessionStorage.getItem(KEY) || '';
  var timer = null;
  var previous = null;
  var sections = new Map();
  var rows = new Map();
  var pending = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }
  function notice(text, isError) {
    var n = $('notice');
    n.className = isError ? 'error' : '';
    n.textContent = text;
  }
  function conn(text, isError) {
    var c = $('conn');
    c.className = isError ? 'error' : '';
    setText(c, text);
  }
  function duration(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function ms(v) { return v == null ? '\\u2014' : v < 10 ? v.toFixed(2) + ' ms' : v < 100 ? v.toFixed(1) + ' ms' : Math.round(v) + ' ms'; }
  function rate(v) { return v == null ? '\\u2014' : v < 10 ? v.toFixed(1) : String(Math.round(v)); }
  function percent(v) { return v == null ? '\\u2014' : (v * 100).toFixed(v < 0.1 ? 2 : 1) + ' %'; }
  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 2 ? 'just now' : duration(s) + ' ago';
  }

  function showLogin(message) {
    clearTimeout(timer);
    $('login').hidden = false;
    $('forget').hidden = true;
    $('login-msg').textContent = message;
    $('token').focus();
  }

  function Unauthorized() {}

  function api(path, options) {
    options = options || {};
    return fetch(path, {
      method: options.method || 'GET',
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store'
    }).then(function (res) {
      if (res.status === 401) {
        sessionStorage.removeItem(KEY);
        token = '';
        showLogin('The admin token was refused. Enter the token from the token file (admin.token_file, by default /etc/carelb/admin.token).');
        throw new Unauthorized();
      }
      return res.json().then(function (body) { return { status: res.status, body: body }; });
    });
  }

  function poll() {
    clearTimeout(timer);
    if (!token) return showLogin('Enter the admin token to see the virtual services.');
    api('/api/status').then(function (res) {
      if (res.status !== 200) throw new Error('HTTP ' + res.status + (res.body && res.body.error ? ': ' + res.body.error : ''));
      render(res.body);
      conn('Live \\u00b7 updated ' + new Date().toLocaleTimeString(), false);
      timer = setTimeout(poll, POLL_MS);
    }).catch(function (error) {
      if (error instanceof Unauthorized) return;
      conn('Cannot reach carelb (' + (error && error.message ? error.message : error) + '); retrying', true);
      timer = setTimeout(poll, POLL_MS);
    });
  }

  function sectionFor(vs) {
    var s = sections.get(vs.name);
    if (s) return s;
    var section = el('section', { 'class': 'vs', 'aria-labelledby': 'vs-' + vs.name });
    section.appendChild(el('h2', { id: 'vs-' + vs.name }, 'Virtual service ' + vs.name));
    var meta = el('p', { 'class': 'meta' });
    section.appendChild(meta);
    var wrap = el('div', { 'class': 'table-wrap' });
    var table = el('table');
    table.appendChild(el('caption', null, 'Servers of ' + vs.name));
    var head = el('tr');
    [['Server'], ['Address'], ['Health'], ['Admin state'], ['Weight', 'num'], ['In flight', 'num'], ['Requests/s', 'num'],
     ['Error rate', 'num'], ['p50', 'num'], ['p99', 'num'], ['Last check'], ['Actions']].forEach(function (h) {
      head.appendChild(el('th', h[1] ? { scope: 'col', 'class': h[1] } : { scope: 'col' }, h[0]));
    });
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el('tbody');
    table.appendChild(tbody);
    wrap.appendChild(table);
    section.appendChild(wrap);
    $('services').appendChild(section);
    s = { section: section, meta: meta, tbody: tbody };
    sections.set(vs.name, s);
    return s;
  }

  function rowFor(vs, server, tbody) {
    var key = vs + '/' + server;
    var r = rows.get(key);
    if (r) return r;
    var tr = el('tr', { 'data-server': key });
    var cells = {};
    ['name', 'address', 'health', 'admin', 'weight', 'active', 'rps', 'errors', 'p50', 'p99', 'check', 'actions'].forEach(function (c) {
      var td = el(c === 'name' ? 'th' : 'td', c === 'name' ? { scope: 'row' } : null);
      if (['weight', 'active', 'rps', 'errors', 'p50', 'p99'].indexOf(c) >= 0) td.className = 'num';
      if (c === 'actions') td.className = 'actions';
      tr.appendChild(td);
      cells[c] = td;
    });
    cells.health.appendChild(el('span', { 'class': 'badge' }));
    cells.admin.appendChild(el('span', { 'class': 'badge' }));
    var buttons = {};
    Object.keys(ACTIONS).forEach(function (action) {
      var b = el('button', { type: 'button', 'data-action': action, 'data-vs': vs, 'data-name': server, 'aria-label': ACTIONS[action].label + ' ' + server + ' in ' + vs }, ACTIONS[action].label);
      cells.actions.appendChild(b);
      cells.actions.appendChild(document.createTextNode(' '));
      buttons[action] = b;
    });
    tbody.appendChild(tr);
    r = { tr: tr, cells: cells, buttons: buttons };
    rows.set(key, r);
    return r;
  }

  /** The HA pair: each node, its VRRP state, the VIPs it holds, and whether the configs agree. */
  function nodeText(label, info) {
    if (!info) return label + ': unknown';
    if (info.error) return label + ': unreachable (' + info.error + ')';
    var held = (info.vrrp && info.vrrp.instances || []).filter(function (i) { return i.state === 'MASTER' && i.vip; })
      .map(function (i) { return i.vip; });
    return label + ' ' + (info.node || '?') + ': VRRP ' + (info.vrrp ? info.vrrp.state : 'unknown') +
      (held.length ? ', holds ' + held.join(', ') : ', holds no VIP') + ', config ' + String(info.shared_hash || info.config_hash || '').slice(0, 12);
  }
  function renderPair(ha) {
    var p = $('ha');
    if (!ha) { p.hidden = true; return; }
    p.hidden = false;
    var self = ha.self, peer = ha.peer;
    var same = self && peer && !peer.error && self.shared_hash && self.shared_hash === peer.shared_hash;
    setText(p, 'HA pair \u00b7 ' + nodeText('this node', self) + ' \u00b7 ' + nodeText('peer', peer) + ' \u00b7 ' +
      (same ? 'configs in sync' : 'configs differ or unknown: check before a failover'));
    p.className = same ? '' : 'check-fail';
  }

  function render(status) {
    var now = Date.parse(status.time);
    var seconds = previous ? (now - previous.time) / 1000 : 0;
    var counts = new Map();
    setText($('summary'), 'version ' + status.version + ' \\u00b7 up ' + duration(status.uptime_s) + ' \\u00b7 ' + status.workers +
      ' threads \\u00b7 config ' + status.config_hash.slice(0, 12) + ' \\u00b7 ' + status.thread_restarts + ' thread restarts');
    renderPair(status.ha);
    // A read token may only look: the API would answer its drain, halt or online with 403.
    var operate = status.role === 'operate';
    var access = $('access');
    access.hidden = operate;
    setText(access, operate ? '' : 'Signed in with a read-only token: drain, halt and online need an operate token');
    var seenVs = new Set(), seenRows = new Set();
    status.virtual_services.forEach(function (vs) {
      seenVs.add(vs.name);
      var s = sectionFor(vs);
      var vsPrev = previous && previous.counts.get(vs.name);
      var vsRate = vsPrev && seconds > 0 ? Math.max(0, vs.requests - vsPrev.requests) / seconds : null;
      counts.set(vs.name, { requests: vs.requests, errors: 0 });
      var errs = Object.keys(vs.errors).filter(function (code) { return vs.errors[code] > 0; })
        .map(function (code) { return code + ' ' + vs.errors[code]; });
      setText(s.meta, 'listens on ' + vs.listen + (vs.tls ? ' (TLS)' : ' (plain HTTP)') + ' \\u00b7 ' + vs.balance + ' \\u00b7 ' +
        vs.active + ' in flight \\u00b7 ' + rate(vsRate) + ' requests/s \\u00b7 p50 ' + ms(vs.latency_ms && vs.latency_ms.p50) +
        ' \\u00b7 p99 ' + ms(vs.latency_ms && vs.latency_ms.p99) + ' \\u00b7 errors answered by carelb: ' + (errs.length ? errs.join(', ') : 'none'));
      vs.servers.forEach(function (server) {
        var key = vs.name + '/' + server.name;
        seenRows.add(key);
        var r = rowFor(vs.name, server.name, s.tbody);
        var prev = previous && previous.counts.get(key);
        var dReq = prev ? server.requests - prev.requests : 0;
        var dErr = prev ? server.errors - prev.errors : 0;
        counts.set(key, { requests: server.requests, errors: server.errors });
        var c = r.cells;
        // Content switching: servers come pool by pool; the pool is shown before the name.
        setText(c.name, server.pool ? server.pool + ' / ' + server.name : server.name);
        setText(c.address, server.address);
        var hb = c.health.firstChild; hb.className = 'badge ' + server.health; setText(hb, server.health);
        var ab = c.admin.firstChild; ab.className = 'badge ' + server.admin; setText(ab, server.admin);
        r.tr.setAttribute('data-admin', server.admin);
        r.tr.setAttribute('data-health', server.health);
        setText(c.weight, String(server.weight));
        setText(c.active, String(server.active));
        setText(c.rps, rate(prev && seconds > 0 ? Math.max(0, dReq) / seconds : null));
        setText(c.errors, percent(prev && dReq > 0 ? Math.max(0, dErr) / dReq : prev ? 0 : null));
        setText(c.p50, ms(server.latency_ms && server.latency_ms.p50));
        setText(c.p99, ms(server.latency_ms && server.latency_ms.p99));
        var check = server.last_check;
        setText(c.check, check ? check.result + ': ' + check.reason + ' (' + ago(check.time) + ')' : 'no active check');
        c.check.className = check && check.result === 'fail' ? 'check-fail' : '';
        Object.keys(r.buttons).forEach(function (action) {
          r.buttons[action].disabled = server.admin === action;
          r.buttons[action].hidden = !operate;
        });
      });
    });
    sections.forEach(function (s, name) { if (!seenVs.has(name)) { s.section.remove(); sections.delete(name); } });
    rows.forEach(function (r, key) { if (!seenRows.has(key)) { r.tr.remove(); rows.delete(key); } });
    previous = { time: now, counts: counts };
  }

  function ask(action, vs, server) {
    pending = { action: action, vs: vs, server: server };
    var a = ACTIONS[action];
    $('confirm-title').textContent = a.label + ' server ' + server + '?';
    $('confirm-text').textContent = a.label + ' ' + server + ' in virtual service ' + vs + ': ' + a.text;
    $('confirm-ok').textContent = a.label + ' ' + server;
    $('confirm-ok').className = action === 'online' ? 'primary' : 'danger';
    // Escape closes the dialog without touching returnValue: clear the last answer first.
    $('confirm').returnValue = '';
    $('confirm').showModal();
    $('confirm-cancel').focus();
  }

  function act(p) {
    var path = '/api/servers/' + encodeURIComponent(p.vs) + '/' + encodeURIComponent(p.server) + '/' + p.action;
    api(path, { method: 'POST' }).then(function (res) {
      if (res.status === 200) notice(p.vs + '/' + p.server + ' is now ' + res.body.admin + '.', false);
      else notice('Could not ' + p.action + ' ' + p.vs + '/' + p.server + ': ' + (res.body && res.body.error ? res.body.error : 'HTTP ' + res.status), true);
      poll();
    }).catch(function (error) {
      if (error instanceof Unauthorized) return;
      notice('Could not ' + p.action + ' ' + p.vs + '/' + p.server + ': ' + (error && error.message ? error.message : error), true);
    });
  }

  $('services').addEventListener('click', function (event) {
    var b = event.target.closest('button[data-action]');
    if (b && !b.disabled) ask(b.getAttribute('data-action'), b.getAttribute('data-vs'), b.getAttribute('data-name'));
  });
  $('confirm').addEventListener('close', function () {
    var p = pending;
    pending = null;
    if (p && $('confirm').returnValue === 'ok') act(p);
  });
  $('login').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('token').value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(KEY, token);
    $('token').value = '';
    $('login').hidden = true;
    $('forget').hidden = false;
    notice('', false);
    poll();
  });
  $('forget').addEventListener('click', function () {
    sessionStorage.removeItem(KEY);
    token = '';
    clearTimeout(timer);
    sections.forEach(function (s) { s.section.remove(); });
    sections.clear();
    rows.clear();
    previous = null;
    $('access').hidden = true;
    conn('Signed out', false);
    showLogin('Token forgotten. Enter it again to continue.');
  });
  document.addEventListener('visibilitychange', function () { if (!document.hidden && token) poll(); });
  if (token) { $('login').hidden = true; $('forget').hidden = false; }
  poll();
})();
`;

function hash(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

/** Content-Security-Policy of the page: only its own inline script and style, and fetches to this origin. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>carelb dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>carelb</h1>
  <p id="summary">connecting&hellip;</p>
  <p id="ha" hidden></p>
  <p id="access" hidden></p>
  <p id="conn" role="status" aria-live="polite"></p>
  <button id="forget" class="forget" type="button" hidden>Forget token</button>
</header>
<main>
  <div id="notice" role="status" aria-live="polite"></div>
  <form id="login" hidden>
    <h2>Sign in</h2>
    <p id="login-msg"></p>
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required>
    <button type="submit" class="primary">Show the dashboard</button>
  </form>
  <div id="services"></div>
</main>
<dialog id="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text">
  <form method="dialog">
    <h2 id="confirm-title"></h2>
    <p id="confirm-text"></p>
    <div class="buttons">
      <button id="confirm-cancel" value="cancel">Cancel</button>
      <button id="confirm-ok" value="ok"></button>
    </div>
  </form>
</dialog>
<script>${SCRIPT}</script>
</body>
</html>
`;
