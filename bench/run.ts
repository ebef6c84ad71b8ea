/**
 * `npm run bench`: carelb side by side with HAProxy and NGINX, two tables (DESIGN.md, Measuring):
 *   capacity: wrk drives each proxy to saturation; rows below 95 % proxy CPU do not count;
 *   latency:  paced (or autocannon) offers every proxy the same fixed rate (50 % of HAProxy's
 *             capacity); a round counts when the proxy achieved it without errors.
 * Starts the reference backends, then per scenario runs the capacity rounds, then the latency
 * rounds; in each round every proxy in turn (order rotated every round so no proxy always goes
 * first). Writes <timestamp>.json, .md and .svg and prints the tables. See bench/README.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startBackends } from './backends';
import { generateCerts } from './certs';
import { installCleanup, stopAll } from './children';
import { latencyLoad, parseBenchArgs, USAGE, type Scenario } from './cli-args';
import { clockTicks } from './cpu';
import { planLayout, pinSelf } from './layout';
import { acquireLock, releaseLock } from './lock';
import { buildPaced } from './paced';
import { ProgressLine } from './progress';
import { carelb } from './proxies/carelb';
import { haproxy } from './proxies/haproxy';
import { nginx } from './proxies/nginx';
import type { ProxyDriver } from './proxies/types';
import { markdown } from './report';
import { ratios, RowBuilder, type BenchResults, type LoadTool, type Row } from './results';
import { FOREIGN_CPU_WARN_PCT, measureOnce, noisy, type Env, type Measured } from './round';
import { RULE_TEXT, type Table } from './rules';
import { chart } from './svg';
import { wrkUnavailable } from './wrk';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** How long a run waits for another bench run on the machine to finish. */
const LOCK_WAIT_MS = 30 * 60_000;
/** The latency table's offered rate, as a share of HAProxy's measured capacity. */
const LATENCY_RATE_SHARE = 0.5;

function machine(): string {
  let model = os.cpus()[0]?.model ?? 'unknown CPU';
  model = model.replace(/\s+/g, ' ').trim();
  return `${model}, ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}`;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

interface TablePlan {
  table: Table;
  load: LoadTool;
  scenario: Scenario;
  rate?: number;
  rateBasis?: string;
}

/**
 * Every round of one table and scenario, for every runnable proxy, order rotated per round.
 * A window shared with other jobs on the machine is measured again (--noisy-retries), keeping
 * the least disturbed try.
 */
async function runTable(env: Env, drivers: ProxyDriver[], skipped: Map<string, string>, plan: TablePlan): Promise<RowBuilder[]> {
  const { opts, layout, progress } = env;
  const builders = new Map(drivers.map((d) => [d.name, new RowBuilder(plan.table, plan.load, plan.scenario, d.name)]));
  for (const b of builders.values()) {
    if (plan.rate !== undefined) b.offeredRps = plan.rate;
    if (plan.rateBasis !== undefined) b.rateBasis = plan.rateBasis;
  }
  for (const d of drivers) {
    const why = skipped.get(d.name);
    if (why) builders.get(d.name)?.fail('unavailable', why);
  }
  const runnable = drivers.filter((d) => !skipped.has(d.name));
  for (let round = 1; round <= opts.rounds; round++) {
    // Rotate the order each round: carelb,haproxy,nginx → haproxy,nginx,carelb → ...
    const order = runnable.map((_, i) => runnable[(i + round - 1) % runnable.length]);
    for (const d of order) {
      const b = builders.get(d.name) as RowBuilder;
      // A config refused once will be refused again; a failure to start or serve may be
      // passing (e.g. a rebuild under way), so that proxy gets its next round anyway.
      if (b.status === 'unsupported' || b.status === 'unavailable') continue;
      let best: Measured | undefined;
      let attempt = 1;
      for (; ; attempt++) {
        const m = await measureOnce(env, d, { ...plan, round }, b);
        if (!m) break;
        if (!best || m.result.foreign_cpu_pct + m.result.load_foreign_cpu_pct < best.result.foreign_cpu_pct + best.result.load_foreign_cpu_pct) best = m;
        if (!noisy(layout, m.result) || attempt > opts.noisyRetries) break;
        progress.log(`[${plan.table} ${plan.scenario} ${round}/${opts.rounds}] ${d.name}: measuring this round again (${attempt}/${opts.noisyRetries}): the window was shared with other processes`);
        // Give a short burst of other work a moment to pass.
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
      if (best) b.add({ ...best.result, attempts: attempt }, best.histogram);
    }
  }
  return [...builders.values()];
}

/**
 * The latency table's rate for a scenario: --rate, else 50 % of HAProxy's median wrk req/s in
 * this run (its saturated rounds if any). Every proxy gets the same rate either way, which is
 * what makes the table's rows comparable; the basis says how good the 50 % is.
 */
function latencyRate(opts: Env['opts'], capacityRows: Row[]): { rate: number; basis: string } | string {
  if (opts.rate !== undefined) return { rate: opts.rate, basis: '--rate' };
  const h = capacityRows.find((r) => r.proxy === 'haproxy');
  if (!h || h.status !== 'ok' || h.rounds_ok === 0) return `no HAProxy capacity in this run (${h ? `${h.status}: ${h.reason ?? ''}` : 'not measured'}); pass --rate N`;
  const rate = Math.max(1, Math.round(h.rps * LATENCY_RATE_SHARE));
  const basis = h.counted
    ? `${LATENCY_RATE_SHARE * 100} % of HAProxy's wrk capacity (${Math.round(h.rps)} req/s, median of ${h.rounds_counted} saturated round(s))`
    : `${LATENCY_RATE_SHARE * 100} % of HAProxy's wrk req/s (${Math.round(h.rps)}), but HAProxy was NOT saturated in any round: that is a lower bound of its capacity; the rate is still the same for every proxy`;
  return { rate, basis };
}

async function main(): Promise<number> {
  const parsed = parseBenchArgs(process.argv.slice(2));
  if (typeof parsed === 'string') {
    process.stderr.write(`bench: ${parsed}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const opts = parsed;
  if (opts.loads.includes('wrk')) {
    const why = wrkUnavailable();
    if (why) {
      process.stderr.write(`bench: the capacity table needs wrk: ${why}\n`);
      return 1;
    }
  }
  const latLoad = latencyLoad(opts.loads);
  let pacedBin: string | undefined;
  if (latLoad === 'paced' && opts.scenarios.some((s) => s !== 'handshake')) {
    // Built from bench/paced/paced.c into bench/.build/ when missing or older than the source.
    try {
      pacedBin = buildPaced();
    } catch (err) {
      process.stderr.write(`bench: the latency table needs paced: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  const progress = new ProgressLine();
  const started = new Date();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'carelb-bench-'));
  installCleanup(() => {
    releaseLock();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const layout = planLayout(opts.workers, opts.pin, opts.loadCpus);
  const notes = [...layout.notes];
  // Smoke runs only prove the harness works; they do not wait behind a long measurement.
  const lockNote = await acquireLock(opts.smoke ? 0 : LOCK_WAIT_MS, (pid) =>
    progress.update('lock', `waiting for another bench run (pid ${pid}) to finish`),
  );
  if (lockNote) {
    notes.push(lockNote);
    progress.log(`note: ${lockNote}`);
  }
  if (layout.load !== undefined) {
    const pinErr = pinSelf(layout.load);
    if (pinErr) notes.push(pinErr);
  }

  // Proxies: carelb always, then the anchors asked for that are installed.
  const drivers: ProxyDriver[] = [carelb];
  const anchors: Record<string, ProxyDriver> = { haproxy, nginx };
  for (const a of opts.compare) drivers.push(anchors[a]);
  const skipped = new Map<string, string>();
  for (const d of drivers) {
    const why = d.unavailable();
    if (why) {
      skipped.set(d.name, why);
      progress.log(`note: ${d.name} skipped: ${why}`);
    }
  }
  const versions: Record<string, string> = {};
  for (const d of drivers) if (!skipped.has(d.name)) versions[d.name] = d.version();

  // Generated even for plain-only runs: it takes a fraction of a second and keeps one path.
  const certs = generateCerts(path.join(tmp, 'certs'), opts.cert);
  const backendOpts = { kind: opts.backend, cpus: layout.load, workDir: tmp };
  const env: Env = {
    opts,
    layout,
    tmp,
    certs,
    plainBackends: opts.scenarios.some((s) => s !== 'bridge') ? await startBackends(backendOpts) : [],
    tlsBackends: opts.scenarios.includes('bridge') ? await startBackends({ ...backendOpts, certs }) : [],
    progress,
    ...(pacedBin !== undefined ? { pacedBin } : {}),
  };
  progress.log(
    `bench: ${opts.scenarios.join(',')} × ${drivers.map((d) => d.name).join(',')}, load ${opts.loads.join(',')}, ${opts.rounds} round(s), ` +
      `${opts.warmupMs / 1000}s warm-up + ${opts.durationMs / 1000}s window, ${opts.connections} connections, ${layout.description}`,
  );

  const rows: Row[] = [];
  for (const scenario of opts.scenarios) {
    // Handshakes have their own load (a new TLS connection per request) and only a capacity row.
    let capacity: Row[] = [];
    if (scenario === 'handshake') {
      capacity = (await runTable(env, drivers, skipped, { table: 'capacity', load: 'tls-loop', scenario })).map((b) => b.build());
    } else if (opts.loads.includes('wrk')) {
      capacity = (await runTable(env, drivers, skipped, { table: 'capacity', load: 'wrk', scenario })).map((b) => b.build());
    }
    rows.push(...capacity);
    if (scenario === 'handshake' || latLoad === undefined) continue;
    const rate = latencyRate(opts, capacity);
    if (typeof rate === 'string') {
      for (const d of drivers) {
        const b = new RowBuilder('latency', latLoad, scenario, d.name);
        b.skip(rate);
        rows.push(b.build());
      }
      progress.log(`note: latency ${scenario} skipped: ${rate}`);
      continue;
    }
    progress.log(`latency ${scenario}: offering ${rate.rate} req/s to every proxy (${rate.basis})`);
    const latency = await runTable(env, drivers, skipped, { table: 'latency', load: latLoad, scenario, rate: rate.rate, rateBasis: rate.basis });
    const built = latency.map((b) => b.build());
    rows.push(...built);
    const measured = built.filter((r) => r.status === 'ok' && r.rounds_ok > 0);
    if (measured.length > 0 && measured.every((r) => !r.counted)) {
      if (latLoad === 'paced') {
        const busy = Math.max(...measured.map((r) => r.load_cpu_busy_pct));
        notes.push(`latency ${scenario}: no proxy achieved ${rate.rate} req/s cleanly; if the load side could not offer it (load CPU up to ${Math.round(busy)} % busy; per round: max_backlog, max_send_lag_us in the JSON), run again with a lower --rate`);
      } else {
        const peak = Math.max(...measured.map((r) => r.burst_peak_rps ?? 0));
        notes.push(`latency ${scenario}: no proxy achieved ${rate.rate} req/s; if the load generator could not offer it (busiest 100 ms: ${Math.round(peak)} req/s), run again with a lower --rate`);
      }
    }
  }
  progress.clear();

  // Say so when the bench did not have its CPUs to itself: such numbers should not be quoted.
  if (layout.proxy !== undefined) {
    for (const r of rows) {
      if (r.rounds_ok === 0) continue;
      const worst = r.spread.foreign_cpu_pct[1];
      if (worst > FOREIGN_CPU_WARN_PCT) {
        notes.push(`${r.table} ${r.scenario} ${r.proxy}: other work (processes, or network softirq not charged to the proxy) used up to ${worst.toFixed(0)}% of CPU ${layout.proxy} during a window; treat those numbers as disturbed`);
      }
      const worstLoad = r.spread.load_foreign_cpu_pct[1];
      if (layout.load !== undefined && worstLoad > FOREIGN_CPU_WARN_PCT) {
        notes.push(`${r.table} ${r.scenario} ${r.proxy}: other processes used up to ${worstLoad.toFixed(0)}% of the load CPU ${layout.load} during a window; the load side was disturbed`);
      }
    }
  }
  const { ratios: ratioList, withheld } = ratios(rows);
  const results: BenchResults = {
    meta: {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
      machine: machine(),
      hostname: os.hostname(),
      pinning: layout.description,
      proxy_cores: layout.proxyCores,
      versions,
      options: opts,
      clk_tck: clockTicks(),
      backend: `${opts.backend} ×2 (every proxy balances over both), 55-byte JSON body, keep-alive`,
      cert: opts.cert,
      rules: RULE_TEXT,
      load_source: {
        capacity: `wrk -t1 -c${opts.connections} (${opts.warmupMs / 1000} s warm-up run, then a ${opts.durationMs / 1000} s measured run); req/s, latency and errors from wrk's own done() hook; handshake: ${opts.connections} in-process tls.connect loops`,
        latency:
          latLoad === 'autocannon'
            ? 'autocannon in the harness, overallRate = the offered rate: each connection spends its per-second quota back to back, then waits for the next second (burst_peak_rps shows the bursts); latency = request write to response end, µs, hdr-histogram-js over the window only'
            : `paced (bench/paced/paced.c, C, one thread, pinned to the load CPU), -c${opts.connections}: request k due at t0 + k/rate on one schedule over all connections, sent on an idle connection or queued (max_backlog); latency = due time to the response's last byte (coordinated omission corrected; send_p*_us: from the write), requests due in the window; req/s = responses completed in the window ÷ window; window edges from paced's stderr`,
      },
      cpu_source: '/proc/PID/stat utime+stime of the proxy process tree (all threads, nginx workers), delta over the window, ÷ responses in the window',
      notes,
    },
    rows,
    ratios: ratioList,
    ratios_withheld: withheld,
  };

  const outDir = opts.out === undefined ? path.join(REPO_ROOT, 'bench', 'results') : path.resolve(opts.out);
  fs.mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, stamp(started));
  const md = markdown(results);
  fs.writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n');
  fs.writeFileSync(`${base}.md`, md);
  fs.writeFileSync(`${base}.svg`, chart(results));
  process.stdout.write('\n' + md + '\n');
  const rel = path.relative(process.cwd(), base);
  process.stdout.write(`wrote ${rel.startsWith('..') ? base : rel}.json, .md, .svg\n`);

  await stopAll();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    // The exit handler kills every child by PID and removes the temp directory.
    process.exit(1);
  },
);
