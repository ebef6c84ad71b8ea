/**
 * The benchmark harness in --smoke mode (issues 7 and 12): run for real, as a child process,
 * with wrk (capacity table) and paced (latency table) against carelb and HAProxy, so the
 * harness cannot rot unnoticed. Asserts only that it works and that its report keeps its
 * rules: rows in both tables with a saturation / rate-achieved verdict, ratios only from
 * counted rows, the report files, no process left behind. Never how fast anything is, nor
 * whether this machine saturated anything: performance is measured by `npm run bench`, not
 * by tests (DESIGN.md, Measuring).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const REPO = path.resolve(__dirname, '../../..');
const RUN = path.join(REPO, 'dist/bench/run.js');

/** pid → start time of every process below `root`, read from /proc. */
function descendants(root: number): Map<number, string> {
  const info = new Map<number, { ppid: number; start: string }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      info.set(Number(entry), { ppid: Number(fields[1]), start: fields[19] });
    } catch {
      // Gone while we looked.
    }
  }
  const out = new Map<number, string>();
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    for (const [pid, { ppid, start }] of info) {
      if (ppid === parent && !out.has(pid)) {
        out.set(pid, start);
        queue.push(pid);
      }
    }
  }
  return out;
}

function stillRunning(pid: number, start: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie has exited; only its parent's wait is missing.
    return fields[19] === start && fields[0] !== 'Z';
  } catch {
    return false;
  }
}

test('bench rejects an unknown flag and a stray argument with exit 2 and the usage', () => {
  for (const args of [['--smoke', '--no-such-flag'], ['--smoke', 'plain'], ['--duration', '1500ms'], ['--smoke', '--load', 'paced,autocannon']]) {
    const r = spawnSync(process.execPath, [RUN, ...args], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /usage: npm run bench/, `${args.join(' ')}: no usage on stderr`);
  }
});

interface SmokeRound {
  counted: boolean;
  not_counted?: string;
  proxy_cpu_pct: number;
  offered_rps?: number;
  send_p50_us?: number;
  max_backlog?: number;
}

interface SmokeRow {
  table: string;
  load: string;
  scenario: string;
  proxy: string;
  status: string;
  reason?: string;
  counted: boolean;
  rounds_ok: number;
  rounds_counted: number;
  medians_over: string;
  requests: number;
  cpu_us_per_req: number;
  non_2xx: number;
  offered_rps?: number;
  per_round: SmokeRound[];
}

interface SmokeRatio {
  table: string;
  scenario: string;
  anchor: string;
  values: Record<string, number>;
}

test('bench --smoke with wrk and paced: both tables, a verdict on every round, ratios only from counted rows, no process left behind', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'carelb-bench-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'out');
  // The harness's own temp files (configs, certificates, wrk's script) go under our directory too.
  const work = path.join(dir, 'tmp');
  mkdirSync(work);

  const args = [RUN, '--smoke', '--scenario', 'plain', '--compare', 'haproxy', '--load', 'wrk,paced', '--out', out];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env: { ...process.env, TMPDIR: work },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));

  // Every process the harness starts (backends, each proxy, nginx workers, wrk, paced), seen while it runs.
  const seen = new Map<number, string>();
  const watch = setInterval(() => {
    if (child.pid !== undefined) for (const [pid, start] of descendants(child.pid)) seen.set(pid, start);
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearInterval(watch);

  assert.equal(code, 0, `harness exited ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  assert.ok(seen.size >= 3, `expected to see the backends and a proxy as children, saw ${seen.size}`);
  const leftovers = [...seen].filter(([pid, start]) => stillRunning(pid, start));
  assert.deepEqual(leftovers.map(([pid]) => pid), [], 'processes left running after the harness exited');
  assert.deepEqual(readdirSync(work), [], 'the harness left temp files behind');

  const files = readdirSync(out);
  const json = files.find((f) => f.endsWith('.json'));
  assert.ok(json, `no .json in ${files.join(', ')}`);
  const base = json.slice(0, -'.json'.length);
  assert.ok(existsSync(path.join(out, `${base}.svg`)), 'no .svg chart');
  assert.match(readFileSync(path.join(out, `${base}.svg`), 'utf8'), /^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);
  const md = readFileSync(path.join(out, `${base}.md`), 'utf8');
  assert.match(md, /### Capacity[\s\S]*Rule: [\s\S]*saturated rounds/, 'the capacity table or its rule is missing from the report');
  assert.match(md, /### Latency at equal offered load[\s\S]*Rule: [\s\S]*offered req\/s/, 'the latency table or its rule is missing from the report');

  const results = JSON.parse(readFileSync(path.join(out, json), 'utf8')) as { rows: SmokeRow[]; ratios: SmokeRatio[]; ratios_withheld: SmokeRatio[] };
  const row = (table: string, proxy: string): SmokeRow => {
    const r = results.rows.find((x) => x.table === table && x.proxy === proxy && x.scenario === 'plain');
    assert.ok(r, `no ${table} row for ${proxy}`);
    return r;
  };
  for (const proxy of ['carelb', 'haproxy']) {
    const cap = row('capacity', proxy);
    assert.equal(cap.load, 'wrk');
    assert.equal(cap.status, 'ok', `${proxy} capacity row: ${cap.status} ${cap.reason ?? ''}`);
    assert.ok(cap.requests > 0, `${proxy} completed no requests under wrk`);
    assert.ok(cap.cpu_us_per_req > 0, `${proxy} CPU per request was not measured`);
    assert.equal(cap.non_2xx, 0, `${proxy} answered non-2xx under wrk`);
    const lat = row('latency', proxy);
    assert.equal(lat.load, 'paced');
    assert.equal(lat.status, 'ok', `${proxy} latency row: ${lat.status} ${lat.reason ?? ''}`);
    assert.ok(lat.requests > 0, `${proxy} completed no requests under paced`);
    // paced's own figures reach the JSON: latency from the write beside the one from due time.
    for (const p of lat.per_round) assert.ok((p.send_p50_us ?? 0) > 0 && typeof p.max_backlog === 'number', `${proxy}: paced's send latency or backlog missing`);
    for (const r of [cap, lat]) {
      // The verdict is there whatever it is: this machine may or may not saturate anything.
      assert.equal(typeof r.counted, 'boolean');
      assert.equal(r.rounds_ok, r.per_round.length);
      assert.equal(r.rounds_counted, r.per_round.filter((p) => p.counted).length);
      assert.equal(r.counted, r.rounds_counted > 0);
      assert.equal(r.medians_over, r.counted ? 'counted rounds' : 'all rounds');
      for (const p of r.per_round) {
        assert.equal(typeof p.counted, 'boolean');
        if (!p.counted) assert.match(p.not_counted ?? '', r.table === 'capacity' ? /^not saturated/ : /^(rate not achieved|not achieved cleanly)/);
      }
    }
  }
  // Equal offered load: one rate for every proxy of the latency table.
  const rates = new Set(results.rows.filter((r) => r.table === 'latency').flatMap((r) => [r.offered_rps, ...r.per_round.map((p) => p.offered_rps)]));
  assert.equal(rates.size, 1, `latency rows were offered different rates: ${[...rates].join(', ')}`);
  assert.ok(([...rates][0] ?? 0) > 0);

  // Ratios: exactly the pairs where both rows counted; every other pair is withheld with a reason.
  for (const table of ['capacity', 'latency']) {
    const both = row(table, 'carelb').counted && row(table, 'haproxy').counted;
    const ratio = results.ratios.filter((r) => r.table === table && r.anchor === 'haproxy');
    const held = results.ratios_withheld.filter((r) => r.table === table && r.anchor === 'haproxy');
    assert.equal(ratio.length, both ? 1 : 0, `${table}: a ratio from a row that did not count, or a missing one`);
    assert.equal(held.length, both ? 0 : 1, `${table}: a withheld ratio is not explained`);
    for (const r of ratio) for (const v of Object.values(r.values)) assert.ok(Number.isFinite(v) && v > 0);
  }
});
