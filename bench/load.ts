/**
 * The latency table's load: autocannon, in-process, `--connections` HTTP/1.1 keep-alive
 * connections, one request in flight on each (no pipelining: uWS v20.30 closes pipelining
 * clients, and real API clients do not pipeline), at a fixed offered rate (`overallRate`),
 * the same for every proxy in a scenario.
 *
 * What `overallRate` does (autocannon 8, lib/httpClient.js): the rate is split over the
 * connections, and each connection sends its share of a second back to back, then waits for
 * its next 1 s tick. The offered load is exact per second but arrives in bursts, and latency
 * is measured from request write to response end, so there is no queueing before the write
 * ("coordinated omission"). The harness records the burst peak (busiest 100 ms of the window)
 * beside the offered rate so that nobody mistakes this for evenly spaced arrivals.
 *
 * Latencies come from autocannon's per-response `response` events (its responseTime, taken
 * with process.hrtime from request write to response end), recorded in microseconds into our
 * own hdr-histogram-js histogram for the measured window only. autocannon's built-in histogram
 * is not used: it has millisecond resolution and spans the whole run, warm-up included.
 */
import autocannon from 'autocannon';
import { Measurement, type LoadResult, type LoadSpec } from './measure';

export async function runAutocannonLoad(spec: LoadSpec): Promise<LoadResult> {
  const m = new Measurement(spec.rate !== undefined);
  // Hard bounds so the load stops by itself even if our own stop() were never reached.
  const hardSeconds = Math.ceil((spec.warmupMs + spec.durationMs) / 1000) + 5;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const instance = autocannon(
    {
      url: `${spec.tls ? 'https' : 'http'}://${spec.host}:${spec.port}/fhir/r4/Patient/example`,
      connections: spec.connections,
      duration: hardSeconds,
      timeout: 5,
      pipelining: 1,
      // Clients of a TLS virtual service send SNI; autocannon sends none for an IP address.
      ...(spec.tls ? { servername: 'localhost' } : {}),
      ...(spec.rate !== undefined ? { overallRate: spec.rate } : {}),
      maxOverallRequests: 50_000_000,
    },
    () => finish(),
  );
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => m.response(statusCode, responseTimeMs * 1000));
  instance.on('reqError', (err) => m.error(err.message === 'request timed out'));
  await m.run(spec, () => instance.stop());
  // autocannon finishes at its next 1 s sample tick after stop(); it then destroys its sockets.
  await Promise.race([finished, new Promise((r) => setTimeout(r, 3000))]);
  return m.result();
}
