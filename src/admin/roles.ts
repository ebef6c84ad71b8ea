/**
 * Who may do what on the admin API (issue 13). Pure: no I/O, no state.
 *
 *   role      from                              may
 *   read      admin.tokens (role: read)         every GET: status, certificates, history, events, metrics
 *   operate   admin.token_file, admin.tokens    everything read may, and POST drain, halt,
 *             (role: operate)                   online, reload, certificate upload and assign
 *   sync      ha.sync_token_file                /api/ha/* only (the HA peer: its state, config push)
 *
 * The sync token is deliberately not a superset of operate: a peer that can push a config must
 * not also drain servers, and an operator token must not be able to push configs and files.
 */

export type Role = 'read' | 'operate' | 'sync';

/** What a request needs: to look, to change state, or to be the HA peer. */
export type Need = 'read' | 'operate' | 'sync';

/** The need of an authenticated request. /api/ha/* is the peer's; other GETs look; anything else changes. */
export function needOf(method: string, path: string): Need {
  if (path.startsWith('/api/ha/')) return 'sync';
  return method === 'GET' || method === 'HEAD' ? 'read' : 'operate';
}

export function allows(role: Role, need: Need): boolean {
  switch (need) {
    case 'sync':
      return role === 'sync';
    case 'operate':
      return role === 'operate';
    case 'read':
      return role === 'read' || role === 'operate';
  }
}

/** Why `role` may not do what `need` asks, as the 403 body says it. */
export function refusalReason(role: Role, need: Need): string {
  if (need === 'sync') return `the /api/ha/ endpoints take the HA sync token (ha.sync_token_file) only; this is a ${role} token`;
  if (role === 'sync') return 'the HA sync token is accepted on /api/ha/ only';
  return `a ${role} token may only look (status, certificates, metrics): drain, halt, online, reload and certificate upload or assign need an operate token`;
}
