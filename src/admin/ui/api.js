// The admin token and the admin API calls.
//
// The token lives in sessionStorage (gone with the tab). `carelb demo` prints the dashboard URL
// with the token in the fragment (#token=...): a fragment is never sent to the server nor
// logged by it (RFC 3986 §3.5), and it is taken once at load and removed from the address bar
// and the history entry (history.replaceState), so it is not left in a bookmark or a
// screenshot of the URL.

const KEY = 'carelb.admin.token';

export class Unauthorized extends Error {}

export function takeTokenFromFragment() {
  if (!location.hash.startsWith('#token=')) return;
  let value = '';
  try {
    value = decodeURIComponent(location.hash.slice('#token='.length)).trim();
  } catch {
    // A mangled link (a stray %): the prompt asks for the token instead.
  }
  history.replaceState(null, '', location.pathname + location.search);
  if (value) sessionStorage.setItem(KEY, value);
}

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

let onRefused = () => {};

/** `handler` runs when the API refuses the token (401); the token is forgotten first. */
export function whenRefused(handler) {
  onRefused = handler;
}

/**
 * Calls the admin API; `options.body`, when given, is sent as JSON. Resolves { status, body };
 * rejects with Unauthorized on 401.
 */
export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token.get()}` };
  const init = { method: options.method || 'GET', headers, cache: 'no-store' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    token.clear();
    onRefused();
    throw new Unauthorized();
  }
  return { status: res.status, body: await res.json() };
}
