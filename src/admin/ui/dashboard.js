// The carelb dashboard (issue 15): live status every 2 s from /api/status, 15 minutes of 1 s
// history from /api/history drawn with uPlot, the last 50 server transitions, and the
// drain/halt/online actions behind a confirmation dialog (operate token only), and the
// certificates panel (issue 14: inventory for every token, upload and assign for operate).

import { api, takeTokenFromFragment, token, Unauthorized, whenRefused } from './api.js';
import { Certificates } from './certificates.js';
import { ServerSparks, ServiceChart } from './charts.js';
import { renderDemo } from './demo.js';
import { $, setText } from './dom.js';
import { renderEvents } from './events.js';
import { History } from './history.js';
import { ACTIONS, renderPair, Services, summaryText } from './services.js';

const POLL_MS = 2000;

takeTokenFromFragment();

const services = new Services($('services'));
// After an upload or assignment: the status (config hash) changed too.
const certificates = new Certificates(() => poll());
let history = new History();
const charts = new Map();
const sparks = new Map();
let timer = null;
let running = null;
let again = false;
let pending = null;

function notice(text, isError) {
  const n = $('notice');
  n.className = isError ? 'error' : '';
  n.textContent = text;
}

function conn(text, isError) {
  const c = $('conn');
  c.className = isError ? 'error' : '';
  setText(c, text);
}

function showLogin(message) {
  clearTimeout(timer);
  $('login').hidden = false;
  $('forget').hidden = true;
  $('login-msg').textContent = message;
  $('token').focus();
}

whenRefused(() => showLogin('The admin token was refused. Enter the token from the token file (admin.token_file, by default /etc/carelb/admin.token).'));

function forgetCharts() {
  for (const c of charts.values()) c.destroy();
  for (const s of sparks.values()) s.destroy();
  charts.clear();
  sparks.clear();
  history = new History();
}

/** Creates charts for new sections and rows, drops those of removed ones. */
function syncCharts(status) {
  const wantedCharts = new Set();
  const wantedSparks = new Set();
  for (const vs of status.virtual_services) {
    const s = services.section(vs.name);
    wantedCharts.add(vs.name);
    if (!charts.has(vs.name)) charts.set(vs.name, new ServiceChart(s.chart, vs.name));
    for (const server of vs.servers) {
      const key = `${vs.name}/${server.name}`;
      wantedSparks.add(key);
      if (!sparks.has(key)) sparks.set(key, new ServerSparks(s.sparks, vs.name, server.name));
    }
  }
  for (const [name, c] of charts) if (!wantedCharts.has(name)) { c.destroy(); charts.delete(name); }
  for (const [key, s] of sparks) if (!wantedSparks.has(key)) { s.destroy(); sparks.delete(key); }
}

/** Fetches the whole window first, then only what is newer than the last sample held. */
async function refreshHistory() {
  const behind = history.time.length ? Math.ceil((Date.now() - history.last) / 1000) + 5 : Infinity;
  const window = behind > 900 ? '15m' : `${Math.max(10, behind)}s`;
  const res = await api(`/api/history?window=${window}`);
  if (res.status !== 200) throw new Error(`history: HTTP ${res.status}${res.body && res.body.error ? `: ${res.body.error}` : ''}`);
  history.merge(res.body);
  for (const c of charts.values()) c.update(history, res.body.events);
  for (const s of sparks.values()) s.update(history);
  renderEvents(res.body.events);
}

async function send(path, done) {
  try {
    const res = await api(path, { method: 'POST' });
    notice(res.status === 200 ? done : `Could not do it: ${res.body && res.body.error ? res.body.error : `HTTP ${res.status}`}`, res.status !== 200);
  } catch (error) {
    if (!(error instanceof Unauthorized)) notice(`Could not do it: ${error && error.message ? error.message : error}`, true);
  }
  poll();
}

async function pollOnce() {
  if (!token.get()) return showLogin('Enter the admin token to see the virtual services.');
  try {
    const res = await api('/api/status');
    if (res.status !== 200) throw new Error(`HTTP ${res.status}${res.body && res.body.error ? `: ${res.body.error}` : ''}`);
    const status = res.body;
    setText($('summary'), summaryText(status));
    renderPair(status.ha);
    const operate = status.role === 'operate';
    const access = $('access');
    access.hidden = operate;
    setText(access, operate ? '' : 'Signed in with a read-only token: drain, halt, online and certificate upload and assignment need an operate token');
    services.render(status);
    certificates.update(status);
    renderDemo(status.demo, operate, send);
    syncCharts(status);
    await refreshHistory();
    conn(`Live \u00b7 updated ${new Date().toLocaleTimeString()}`, false);
  } catch (error) {
    if (error instanceof Unauthorized) return;
    conn(`Cannot reach carelb (${error && error.message ? error.message : error}); retrying`, true);
  }
  clearTimeout(timer);
  timer = setTimeout(poll, POLL_MS);
}

/** One poll at a time: a call while one runs makes it run once more right after. */
function poll() {
  clearTimeout(timer);
  if (running) {
    again = true;
    return;
  }
  running = pollOnce().finally(() => {
    running = null;
    if (again) {
      again = false;
      poll();
    }
  });
}

function ask(action, vs, server) {
  pending = { action, vs, server };
  const a = ACTIONS[action];
  $('confirm-title').textContent = `${a.label} server ${server}?`;
  $('confirm-text').textContent = `${a.label} ${server} in virtual service ${vs}: ${a.text}`;
  $('confirm-ok').textContent = `${a.label} ${server}`;
  $('confirm-ok').className = action === 'online' ? 'primary' : 'danger';
  // Escape closes the dialog without touching returnValue: clear the last answer first.
  $('confirm').returnValue = '';
  $('confirm').showModal();
  $('confirm-cancel').focus();
}

async function act(p) {
  const path = `/api/servers/${encodeURIComponent(p.vs)}/${encodeURIComponent(p.server)}/${p.action}`;
  try {
    const res = await api(path, { method: 'POST' });
    if (res.status === 200) notice(`${p.vs}/${p.server} is now ${res.body.admin}.`, false);
    else notice(`Could not ${p.action} ${p.vs}/${p.server}: ${res.body && res.body.error ? res.body.error : `HTTP ${res.status}`}`, true);
    poll();
  } catch (error) {
    if (error instanceof Unauthorized) return;
    notice(`Could not ${p.action} ${p.vs}/${p.server}: ${error && error.message ? error.message : error}`, true);
  }
}

$('services').addEventListener('click', (event) => {
  const b = event.target.closest('button[data-action]');
  if (b && !b.disabled) ask(b.getAttribute('data-action'), b.getAttribute('data-vs'), b.getAttribute('data-name'));
});
$('confirm').addEventListener('close', () => {
  const p = pending;
  pending = null;
  if (p && $('confirm').returnValue === 'ok') act(p);
});
$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  token.set(value);
  $('token').value = '';
  $('login').hidden = true;
  $('forget').hidden = false;
  notice('', false);
  poll();
});
$('forget').addEventListener('click', () => {
  token.clear();
  clearTimeout(timer);
  services.clear();
  certificates.clear();
  forgetCharts();
  $('access').hidden = true;
  $('demo').hidden = true;
  $('events-panel').hidden = true;
  conn('Signed out', false);
  showLogin('Token forgotten. Enter it again to continue.');
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && token.get()) poll();
});
window.addEventListener('resize', () => {
  for (const c of charts.values()) c.resize();
});
if (token.get()) {
  $('login').hidden = true;
  $('forget').hidden = false;
}
poll();
