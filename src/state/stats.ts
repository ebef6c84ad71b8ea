/**
 * Counter names, declared once (Envoy's ALL_CLUSTER_STATS idea): the shared-memory slots, the
 * JSON status and the metrics text are all generated from these lists.
 */

/** Per server, summed over threads. bytes_* count body bytes. */
export const SERVER_STATS = [
  'requests',
  'responses_1xx',
  'responses_2xx',
  'responses_3xx',
  'responses_4xx',
  'responses_5xx',
  'failures',
  'retries',
  'connect_failures',
  'bytes_in',
  'bytes_out',
] as const;

/** Per virtual service, summed over threads. `responses_*` include carelb's own error responses. */
export const VS_STATS = [
  'requests',
  'responses_1xx',
  'responses_2xx',
  'responses_3xx',
  'responses_4xx',
  'responses_5xx',
  'client_aborts',
  'bytes_in',
  'bytes_out',
] as const;

export type ServerStat = (typeof SERVER_STATS)[number];
export type VsStat = (typeof VS_STATS)[number];

export const S = Object.fromEntries(SERVER_STATS.map((n, i) => [n, i])) as Record<ServerStat, number>;
export const V = Object.fromEntries(VS_STATS.map((n, i) => [n, i])) as Record<VsStat, number>;

/** Index of `responses_Nxx` for a status code, relative to `responses_1xx`. */
export function statusClassOffset(status: number): number {
  const klass = (status / 100) | 0;
  return klass < 1 ? 4 : klass > 5 ? 4 : klass - 1;
}
