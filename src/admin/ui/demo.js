// Demo controls (only when /api/status carries `demo`, i.e. under `carelb demo`, and only for
// an operate token): start or stop the built-in client mix, make a demo server sick or well.

import { $, el, setText } from './dom.js';
import { clock } from './format.js';

export function renderDemo(demo, operate, send) {
  const panel = $('demo');
  if (!demo || !operate) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const t = demo.traffic;
  setText($('demo-traffic-text'), t.running
    ? `Demo traffic is running (FHIR search, read, POST and slow calls, at most ${t.max_rps} requests/s) until ${clock(t.ends_at)}; ${t.sent} requests sent.`
    : `Demo traffic is stopped (${t.sent} requests sent so far). Start it to watch the charts move; it stops by itself after ${Math.round(t.run_ms / 60000)} minutes.`);
  $('demo-traffic-start').textContent = t.running ? 'Restart demo traffic' : 'Start demo traffic';
  $('demo-traffic-stop').disabled = !t.running;
  $('demo-traffic-start').onclick = () => send('/api/demo/traffic/start', 'Demo traffic started.');
  $('demo-traffic-stop').onclick = () => send('/api/demo/traffic/stop', 'Demo traffic stopped.');
  const box = $('demo-sick');
  const signature = JSON.stringify(demo.servers);
  if (box.getAttribute('data-signature') === signature) return;
  box.setAttribute('data-signature', signature);
  box.replaceChildren(el('span', null, 'Health checks: '));
  for (const server of demo.servers) {
    const label = server.sick ? `Make ${server.name} well` : `Make ${server.name} sick`;
    const b = el('button', { type: 'button', 'data-demo-server': server.name, class: server.sick ? 'primary' : 'danger' }, label);
    b.onclick = () => send(`/api/demo/servers/${encodeURIComponent(server.name)}/${server.sick ? 'well' : 'sick'}`, server.sick ? `${server.name} answers normally again; its checks bring it back after ${demo.rise} passes.` : `${server.name} now fails every request and its health check; it goes down after ${demo.fall} failed checks.`);
    box.appendChild(b);
  }
}
