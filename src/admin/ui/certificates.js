// The certificates panel (issue 14): the inventory of GET /api/certificates with expiry
// colours, and for an operate token an upload form (POST /api/certificates) and, per stored
// certificate, an Assign dialog (POST /api/certificates/{name}/assign) that names the change
// before it is made, as the drain confirmation does. A read token sees the table only: the API
// would answer its upload or assignment with 403.
//
// The inventory is fetched when the panel first shows, after every upload and assignment, when
// the config hash in /api/status changes (a reload from elsewhere may have moved a
// certificate), and otherwise once a minute (days left change once a day). Server data is only
// ever written with textContent.

import { api, Unauthorized } from './api.js';
import { $, el } from './dom.js';

const REFRESH_MS = 60_000;
/** Same rule as the API's (admin/certificates.ts): a DNS name or *.domain. */
const HOSTNAME = /^(\*\.)?[A-Za-z0-9.-]+$/;

/** The expiry colour: red when expired or under 14 days, amber under 30, green otherwise. */
export function expiryLevel(daysLeft) {
  if (daysLeft < 14) return 'bad';
  if (daysLeft < 30) return 'warn';
  return 'ok';
}

function daysText(daysLeft) {
  if (daysLeft < 0) return 'expired';
  return daysLeft === 1 ? '1 day' : `${daysLeft} days`;
}

/** "AB:CD:EF:01…9A:BC": enough to tell two certificates apart; the full value is in the title. */
function shortFingerprint(fp) {
  return fp.length > 24 ? `${fp.slice(0, 11)}\u2026${fp.slice(-5)}` : fp;
}

/** The reason in an API answer: its error, then its list of errors, else the HTTP status. */
function reasonOf(res) {
  const body = res.body || {};
  const errors = Array.isArray(body.errors) && body.errors.length ? `: ${body.errors.join('; ')}` : '';
  return body.error ? `${body.error}${errors}` : `HTTP ${res.status}`;
}

function messageOf(error) {
  return error && error.message ? error.message : String(error);
}

/** The base64 of a file, read with FileReader (a data: URL, whose part after the comma is the base64). */
function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      const comma = url.indexOf(',');
      resolve(comma === -1 ? '' : url.slice(comma + 1));
    };
    reader.onerror = () => reject(reader.error || new Error('the file could not be read'));
    reader.readAsDataURL(file);
  });
}

function show(node, text, kind) {
  node.className = text ? kind : '';
  node.textContent = text;
}

export class Certificates {
  /** `changed` runs after an upload or assignment (the dashboard polls /api/status again). */
  constructor(changed) {
    this.changed = changed;
    this.operate = false;
    this.services = [];
    this.configHash = null;
    this.loadedAt = 0;
    this.loading = null;
    this.again = false;
    this.shown = '';
    this.list = [];
    this.busy = false;
    this.pending = null;
    // Bumped at sign-out: a listing that was under way for the previous token is dropped.
    this.generation = 0;
    this.listError = false;

    $('certs').tBodies[0].addEventListener('click', (event) => {
      const b = event.target.closest('button[data-assign]');
      if (b && !b.disabled) this.ask(b.getAttribute('data-assign'));
    });
    $('cert-upload').addEventListener('submit', (event) => {
      event.preventDefault();
      this.upload();
    });
    $('assign-vs').addEventListener('change', () => this.describe());
    $('assign-host').addEventListener('input', () => {
      const host = $('assign-host').value.trim();
      // Refused here, the dialog stays open with the browser's message instead of a 400 later.
      $('assign-host').setCustomValidity(host === '' || HOSTNAME.test(host) ? '' : 'A host name such as fhir.example.org or *.example.org');
      this.describe();
    });
    // Enter in the host name field means "assign" (the form's first button is Cancel, which
    // Enter would otherwise press); the browser still checks the name first.
    $('assign-host').addEventListener('keydown', (event) => {
      if (event.key !== 'Enter' || $('assign-ok').disabled) return;
      event.preventDefault();
      $('assign-host').form.requestSubmit($('assign-ok'));
    });
    $('assign').addEventListener('close', () => {
      const p = this.pending;
      this.pending = null;
      if (p && $('assign').returnValue === 'ok') this.assign(p, $('assign-vs').value, $('assign-host').value.trim());
    });
  }

  /** Called with every /api/status: shows the panel, the controls the role allows, and refreshes when due. */
  update(status) {
    const operate = status.role === 'operate';
    this.services = status.virtual_services.map((vs) => ({ name: vs.name, tls: vs.tls }));
    $('certs-panel').hidden = false;
    $('cert-upload').hidden = !operate;
    $('certs-actions-head').hidden = !operate;
    const roleChanged = operate !== this.operate;
    this.operate = operate;
    if (!operate && $('assign').open) $('assign').close();
    const hashChanged = this.configHash !== null && status.config_hash !== this.configHash;
    this.configHash = status.config_hash;
    if (roleChanged) this.render(this.list);
    if (!this.loadedAt || hashChanged || Date.now() - this.loadedAt >= REFRESH_MS) this.refresh();
  }

  /** Signed out: nothing of the last token's view stays on the page. */
  clear() {
    $('certs-panel').hidden = true;
    if ($('assign').open) $('assign').close();
    this.list = [];
    this.shown = '';
    this.loadedAt = 0;
    this.configHash = null;
    $('certs').tBodies[0].replaceChildren();
    this.generation++;
    this.notice('', '');
    this.uploadResult('', '');
  }

  /** The panel's status line (assignments, listing errors); `kind`: 'busy', 'done' or 'error'. */
  notice(text, kind) {
    // Any other message replaces a listing error; a listing that works again clears only that.
    this.listError = false;
    show($('certs-notice'), text, kind);
  }

  /** The upload form's status line: the API's answer to the upload. */
  uploadResult(text, kind) {
    show($('cert-upload-result'), text, kind);
  }

  /** Fetches the inventory; one request at a time (a call meanwhile fetches once more after it). */
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    const generation = this.generation;
    this.loading = (async () => {
      try {
        const res = await api('/api/certificates');
        if (generation !== this.generation) return;
        if (res.status !== 200 || !Array.isArray(res.body)) throw new Error(reasonOf(res));
        this.loadedAt = Date.now();
        if (this.listError) this.notice('', '');
        this.list = res.body;
        this.render(res.body);
      } catch (error) {
        if (error instanceof Unauthorized || generation !== this.generation) return;
        // Retried at the next poll rather than a minute later.
        this.loadedAt = 0;
        this.notice(`Cannot list the certificates: ${messageOf(error)}`, 'error');
        this.listError = true;
      }
    })().finally(() => {
      this.loading = null;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
    return this.loading;
  }

  /** Redraws the table, only when the list or the role changed (a text selection survives polls). */
  render(list) {
    const signature = JSON.stringify([this.operate, this.loadedAt > 0, list]);
    if (signature === this.shown) return;
    this.shown = signature;
    $('certs-empty').hidden = !this.loadedAt || list.length > 0;
    const tbody = $('certs').tBodies[0];
    tbody.replaceChildren();
    for (const c of list) {
      const level = expiryLevel(c.days_left);
      const tr = el('tr', { 'data-cert': c.name, 'data-expiry': level, 'data-days-left': String(c.days_left) });
      tr.appendChild(el('th', { scope: 'row', class: 'cert-name' }, c.name));
      tr.appendChild(el('td', null, c.subject));
      tr.appendChild(el('td', { class: 'sans' }, c.sans.length ? c.sans.join(', ') : '\u2014'));
      tr.appendChild(el('td', null, c.issuer));
      // The date in UTC (unambiguous in any locale); the exact instant in the title.
      tr.appendChild(el('td', { title: c.not_after }, c.not_after.slice(0, 10)));
      const days = el('td', { class: 'num' });
      days.appendChild(el('span', { class: `badge expiry expiry-${level}` }, daysText(c.days_left)));
      tr.appendChild(days);
      const fp = el('td');
      fp.appendChild(el('code', { class: 'fp', title: c.fingerprint_sha256 }, shortFingerprint(c.fingerprint_sha256)));
      tr.appendChild(fp);
      tr.appendChild(el('td', { class: c.used_by.length ? 'used-by' : 'used-by unused' }, c.used_by.length ? c.used_by.join(', ') : 'not used'));
      const actions = el('td', { class: 'actions' });
      actions.hidden = !this.operate;
      if (c.source === 'store') {
        actions.appendChild(el('button', { type: 'button', 'data-assign': c.name, 'aria-label': `Assign ${c.name}` }, 'Assign\u2026'));
      } else {
        // Files the config names by path are changed in the config, not here.
        actions.appendChild(el('span', { class: 'unused' }, 'file in config'));
      }
      tr.appendChild(actions);
      tbody.appendChild(tr);
    }
    this.setBusy(this.busy);
  }

  setBusy(busy) {
    this.busy = busy;
    $('cert-upload-submit').disabled = busy;
    for (const b of $('certs').querySelectorAll('button[data-assign]')) b.disabled = busy;
  }

  async upload() {
    if (this.busy) return;
    const name = $('cert-name').value.trim();
    const file = $('cert-file').files[0];
    const password = $('cert-password').value;
    if (!name || !file) return this.uploadResult('Give a name and choose a file.', 'error');
    this.setBusy(true);
    this.uploadResult(`Uploading ${file.name} as ${name}\u2026`, 'busy');
    try {
      const data = await readBase64(file);
      const body = { name, data };
      if (password !== '') body.password = password;
      const res = await api('/api/certificates', { method: 'POST', body });
      // The password is not kept in the page, whatever the answer.
      $('cert-password').value = '';
      if (res.status === 201) {
        const b = res.body;
        const warnings = b.warnings && b.warnings.length ? ` Warning: ${b.warnings.join('; ')}.` : '';
        this.uploadResult(`Stored ${b.name}${b.replaced ? ' (it replaced the earlier one)' : ''}: ${b.subject}, issued by ${b.issuer}, expires ${b.not_after.slice(0, 10)} (${daysText(b.days_left)} left), SHA-256 ${b.fingerprint_sha256}, ${b.chain_length} certificate(s) in the chain. Assign it to a virtual service to serve it.${warnings}`, 'done');
        $('cert-name').value = '';
        $('cert-file').value = '';
      } else {
        this.uploadResult(`Could not upload ${name}: ${reasonOf(res)}`, 'error');
      }
    } catch (error) {
      $('cert-password').value = '';
      if (!(error instanceof Unauthorized)) this.uploadResult(`Could not upload ${name}: ${messageOf(error)}`, 'error');
    } finally {
      this.setBusy(false);
    }
    await this.refresh();
    this.changed();
  }

  /** Opens the Assign dialog for a stored certificate: where to, and what will happen. */
  ask(name) {
    const cert = this.list.find((c) => c.name === name);
    if (!cert || !this.operate) return;
    this.pending = cert;
    $('assign-title').textContent = `Assign certificate ${name}`;
    const select = $('assign-vs');
    const previous = select.value;
    select.replaceChildren();
    for (const vs of this.services) {
      // The API refuses a service without tls: (assigning must not turn plain HTTP into HTTPS).
      const option = el('option', { value: vs.name }, vs.tls ? vs.name : `${vs.name} (plain HTTP, no tls: section)`);
      option.disabled = !vs.tls;
      select.appendChild(option);
    }
    const tls = this.services.filter((vs) => vs.tls).map((vs) => vs.name);
    select.value = tls.includes(previous) ? previous : tls.length ? tls[0] : '';
    $('assign-host').value = '';
    $('assign-host').setCustomValidity('');
    this.describe();
    // Escape closes the dialog without touching returnValue: clear the last answer first.
    $('assign').returnValue = '';
    $('assign').showModal();
    select.focus();
  }

  /** The dialog's text and button follow the choice, so the operator confirms exactly this change. */
  describe() {
    const cert = this.pending;
    if (!cert) return;
    const vs = $('assign-vs').value;
    const host = $('assign-host').value.trim();
    const covers = `${cert.name} covers ${cert.sans.length ? cert.sans.join(', ') : 'no names (no SANs)'}.`;
    let text;
    if (!vs) text = 'No virtual service terminates TLS: add a tls: section to one in the config first.';
    else if (host) text = `Sets the certificate of ${vs} for clients asking for ${host} (SNI) to ${cert.name} in the config file, then reloads carelb: new TLS connections for ${host} get ${cert.name}; connections already open finish on theirs. ${covers}`;
    else text = `Makes ${cert.name} the certificate of ${vs} (tls.certificate) in the config file, then reloads carelb: new TLS connections get it; connections already open finish on the old one. ${covers}`;
    $('assign-text').textContent = text;
    $('assign-ok').textContent = vs ? `Assign ${cert.name} to ${vs}` : 'Assign';
    $('assign-ok').disabled = !vs;
  }

  async assign(cert, vs, host) {
    if (this.busy || !vs) return;
    const where = host ? `${vs} for ${host}` : vs;
    this.setBusy(true);
    this.notice(`Assigning ${cert.name} to ${where}: rewriting the config file and reloading\u2026`, 'busy');
    try {
      const body = { virtual_service: vs };
      if (host) body.hostname = host;
      const res = await api(`/api/certificates/${encodeURIComponent(cert.name)}/assign`, { method: 'POST', body });
      if (res.status === 200) {
        // This reload is known: the next poll's new config hash need not fetch the list again.
        this.configHash = res.body.config_hash;
        const warnings = res.body.warnings && res.body.warnings.length ? ` Warning: ${res.body.warnings.join('; ')}.` : '';
        this.notice(`${cert.name} is assigned to ${where} and carelb reloaded (config ${String(res.body.config_hash || '').slice(0, 12)}): new connections get it.${warnings}`, 'done');
      } else {
        this.notice(`Could not assign ${cert.name} to ${where}: ${reasonOf(res)}`, 'error');
      }
    } catch (error) {
      if (!(error instanceof Unauthorized)) this.notice(`Could not assign ${cert.name} to ${where}: ${messageOf(error)}`, 'error');
    } finally {
      this.setBusy(false);
    }
    await this.refresh();
    this.changed();
  }
}
