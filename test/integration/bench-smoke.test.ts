/**
 * The benchmark harness in --smoke mode (issue 7, "Benchmark suite"): run for real, as a child
 * process, so the harness cannot rot unnoticed. Asserts only that it works (exit 0, a carelb
 * row with numbers, the report files, no process left behind), never how fast anything is:
 * performance is measured by `npm run bench`, not by tests (DESIGN.md, Measuring).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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

test('bench --smoke runs carelb and the installed anchors, writes JSON, Markdown and SVG, and leaves no process behind', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'carelb-bench-smoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'out');
  // The harness's own temp files (configs, certificates) go under our directory too.
  const work = path.join(dir, 'tmp');
  mkdirSync(work);

  const child = spawn(process.execPath, [RUN, '--smoke', '--scenario', 'plain', '--out', out], {
    cwd: REPO,
    env: { ...process.env, TMPDIR: work },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));

  // Every process the harness starts (backend, each proxy, nginx workers), seen while it runs.
  const seen = new Map<number, string>();
  const watch = setInterval(() => {
    if (child.pid !== undefined) for (const [pid, start] of descendants(child.pid)) seen.set(pid, start);
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearInterval(watch);

  assert.equal(code, 0, `harness exited ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  assert.ok(seen.size >= 2, `expected to see the backend and a proxy as children, saw ${seen.size}`);
  const leftovers = [...seen].filter(([pid, start]) => stillRunning(pid, start));
  assert.deepEqual(leftovers.map(([pid]) => pid), [], 'processes left running after the harness exited');

  const files = readdirSync(out);
  const json = files.find((f) => f.endsWith('.json'));
  assert.ok(json, `no .json in ${files.join(', ')}`);
  const base = json.slice(0, -'.json'.length);
  assert.ok(existsSync(path.join(out, `${base}.md`)), 'no .md report');
  assert.ok(existsSync(path.join(out, `${base}.svg`)), 'no .svg chart');
  assert.match(readFileSync(path.join(out, `${base}.svg`), 'utf8'), /^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);

  const results = JSON.parse(readFileSync(path.join(out, json), 'utf8')) as {
    rows: { scenario: string; proxy: string; status: string; reason?: string; requests: number; cpu_us_per_req: number; non_2xx: number }[];
  };
  const row = results.rows.find((r) => r.proxy === 'carelb' && r.scenario === 'plain');
  assert.ok(row, 'no carelb row for the plain scenario');
  assert.equal(row.status, 'ok', `carelb row: ${row.status} ${row.reason ?? ''}`);
  assert.ok(row.requests > 0, 'carelb completed no requests');
  assert.ok(row.cpu_us_per_req > 0, 'carelb CPU per request was not measured');
  assert.equal(row.non_2xx, 0, 'carelb answered non-2xx');
});
