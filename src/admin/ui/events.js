// The list of the last 50 server transitions (health verdicts and admin states), newest first.

import { $, el } from './dom.js';
import { clock } from './format.js';

let shown = '';

export function renderEvents(events) {
  $('events-panel').hidden = false;
  $('events-empty').hidden = events.length > 0;
  // Redrawn only when the list changed, so a reader's text selection survives polls.
  const signature = events.length ? `${events.length}:${events[events.length - 1].time}` : '0';
  if (signature === shown) return;
  shown = signature;
  const tbody = $('events').tBodies[0];
  tbody.replaceChildren();
  for (const e of [...events].reverse()) {
    const tr = el('tr', { class: `event-${e.kind === 'admin' ? 'admin' : e.to}`, 'data-kind': e.kind, 'data-to': e.to });
    tr.appendChild(el('td', null, clock(Date.parse(e.time))));
    tr.appendChild(el('td', null, `${e.vs}/${e.server}`));
    tr.appendChild(el('td', { class: 'change' }, `${e.kind === 'admin' ? 'admin' : 'health'}: ${e.from} \u2192 ${e.to}`));
    tr.appendChild(el('td', null, e.reason));
    tbody.appendChild(tr);
  }
}
