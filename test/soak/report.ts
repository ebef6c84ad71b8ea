/**
 * Counting what happened and printing it: requests by kind, outcomes by cause, chaos against
 * outcome, findings with replay commands, the carelb-side counters, memory, the verdict.
 * Pure formatting over the numbers the run collected.
 */
import type { Finding } from './checks';
import { LARGE, type Plan } from './schedule';
import type { Result } from './tracker';
import { seedText } from './prng';

/** Counts by key, printed as a table. */
export class Tally {
  readonly counts = new Map<string, Map<string, number>>();

  add(row: string, column: string): void {
    let cells = this.counts.get(row);
    if (!cells) this.counts.set(row, (cells = new Map()));
    cells.set(column, (cells.get(column) ?? 0) + 1);
  }

  table(title: string, columns?: string[]): string {
    const rows = [...this.counts.keys()].sort();
    const cols = columns ?? [...new Set([...this.counts.values()].flatMap((cells) => [...cells.keys()]))].sort();
    const cell = (row: string, col: string) => String(this.counts.get(row)?.get(col) ?? 0);
    const total = (row: string) => String([...(this.counts.get(row)?.values() ?? [])].reduce((a, b) => a + b, 0));
    const header = [title, 'total', ...cols];
    const body = rows.map((row) => [row, total(row), ...cols.map((col) => cell(row, col))]);
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
    return [line(header), ...body.map(line)].join('\n');
  }
}

export function sizeClass(bytes: number): string {
  if (bytes === 0) return '0 B';
  if (bytes < 16 * 1024) return '<16 KiB';
  if (bytes < LARGE) return '<1 MiB';
  return '1-20 MiB';
}

/** Everything the run counts, fed one result at a time (results themselves are not kept). */
export class Stats {
  readonly byKind = new Tally();
  readonly byService = new Tally();
  readonly bySize = new Tally();
  readonly serverChaos = new Tally();
  readonly clientChaos = new Tally();
  readonly outcomes = new Map<string, number>();
  requests = 0;

  add(result: Result): void {
    const p = result.plan;
    const outcome = simplify(result.outcome);
    this.requests++;
    this.outcomes.set(result.outcome, (this.outcomes.get(result.outcome) ?? 0) + 1);
    this.byKind.add(kindOf(p), outcome);
    this.byService.add(`${p.vs} via ${p.client}`, outcome);
    this.bySize.add(`${p.method === 'POST' ? `up ${sizeClass(p.reqSize)}` : 'no upload'}, down ${p.method === 'HEAD' ? '(HEAD)' : sizeClass(p.respSize)}`, outcome);
    this.serverChaos.add(p.server.kind, outcome);
    this.clientChaos.add(p.clientChaos.kind, outcome);
  }
}

function kindOf(p: Plan): string {
  return `${p.method}${p.method === 'POST' ? ` ${p.reqFraming === 'cl' ? 'CL' : 'chunked'}` : ''} -> ${p.respFraming === 'cl' ? 'CL' : p.respFraming}`;
}

/** Outcome columns stay few: carelb's codes are shown in full in the outcomes list. */
function simplify(outcome: string): string {
  return outcome.startsWith('carelb:') ? 'carelb-error' : outcome;
}

export const OUTCOME_COLUMNS = ['ok', 'carelb-error', 'cut', 'aborted', 'stuck', 'wrong'];

export interface ReportInput {
  seed: number;
  requestedMs: number;
  trafficMs: number;
  concurrency: number;
  only: number[] | null;
  stats: Stats;
  findings: Finding[];
  control: Map<string, number>;
  invariants: Record<string, number> | null;
  threadRestarts: number | null;
  childExit: string | null;
  shutdown: string;
  activeAfterQuiet: string;
  rss: { start: number; mid: number; end: number; growth: { start: number; end: number; growth: number } | null; samples: number };
  probes: { passed: number; total: number };
  carelbProblems: string[];
  /** carelb's counters per service (GET /api/status at the end). */
  carelbView: string[];
  notes: string[];
  replayArgs: string;
  pass: boolean;
}

export function formatReport(r: ReportInput): string {
  const out: string[] = [];
  const seed = seedText(r.seed);
  out.push(`carelb soak report`);
  out.push(`seed ${seed}; traffic ${(r.trafficMs / 1000).toFixed(1)} s of ${(r.requestedMs / 1000).toFixed(0)} s requested; ${r.concurrency} clients in flight at most${r.only ? `; only requests ${r.only.join(',')}` : ''}`);
  out.push(`requests: ${r.stats.requests} ended, the final probes included (${(r.stats.requests / Math.max(1, r.trafficMs / 1000)).toFixed(0)}/s)`);
  out.push('');
  out.push('outcomes by cause:');
  for (const [outcome, count] of [...r.stats.outcomes.entries()].sort((a, b) => b[1] - a[1])) out.push(`  ${outcome.padEnd(28)} ${count}`);
  out.push('');
  out.push(r.stats.byKind.table('requests by kind', OUTCOME_COLUMNS));
  out.push('');
  out.push(r.stats.bySize.table('by size', OUTCOME_COLUMNS));
  out.push('');
  out.push(r.stats.byService.table('by service and client', OUTCOME_COLUMNS));
  out.push('');
  out.push(r.stats.serverChaos.table('server chaos', OUTCOME_COLUMNS));
  out.push('');
  out.push(r.stats.clientChaos.table('client chaos', OUTCOME_COLUMNS));
  out.push('');
  out.push("carelb's own counters:");
  for (const line of r.carelbView) out.push(`  ${line}`);
  out.push(`control operations: ${[...r.control.entries()].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  out.push(`invariants: ${r.invariants ? Object.entries(r.invariants).map(([k, v]) => `${k}=${v}`).join(' ') : 'NOT REPORTED (carelb does not report invariants yet)'}`);
  out.push(`thread_restarts: ${r.threadRestarts ?? 'unknown'}; child: ${r.childExit ?? 'alive until the end'}; shutdown: ${r.shutdown}`);
  out.push(`in-flight after the quiet period: ${r.activeAfterQuiet}`);
  const g = r.rss.growth;
  out.push(
    `RSS (kB): start ${r.rss.start}, mid ${r.rss.mid}, end ${r.rss.end} (${r.rss.samples} samples); second half ` +
      (g ? `${g.start} -> ${g.end} (${(g.growth * 100).toFixed(1)} %, limit 10 %)` : 'too short to judge'),
  );
  out.push(`final probes (every kind of request to well-behaved servers): ${r.probes.passed}/${r.probes.total} correct`);
  const stuck = r.findings.filter((f) => f.kind === 'stuck');
  out.push(`stuck requests: ${stuck.length}`);
  out.push('');
  if (r.findings.length > 0) {
    // Grouped by known pattern first (one bug, many requests), then by kind.
    const groups = new Map<string, Finding[]>();
    for (const f of r.findings) {
      const key = f.signature ? `${f.signature} [${f.kind}]` : f.kind;
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    out.push(`findings (${r.findings.length}):`);
    for (const [key, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
      out.push(`  ${key}: ${list.length}`);
      for (const f of list.slice(0, 6)) out.push(`    - ${f.text}`);
      if (list.length > 6) out.push(`    … ${list.length - 6} more`);
      const indices = [...new Set(list.filter((f) => f.index !== undefined).map((f) => f.index!))].slice(0, 12);
      if (indices.length > 0) {
        // Timing-dependent findings come back more often repeated and with some contention.
        out.push(`    replay alone: CARELB_SOAK_SEED=${seed} npm run soak -- --only ${indices.join(',')} --repeat 4 --concurrency ${Math.min(8, indices.length * 2)}`);
      }
    }
    out.push('');
  }
  if (r.carelbProblems.length > 0) {
    out.push(`carelb warnings and errors (${r.carelbProblems.length}, first 10):`);
    for (const line of r.carelbProblems.slice(0, 10)) out.push(`  ${line}`);
    out.push('');
  }
  if (r.notes.length > 0) {
    out.push('notes (not failures):');
    for (const line of r.notes) out.push(`  - ${line}`);
    out.push('');
  }
  out.push(`replay the whole run: CARELB_SOAK_SEED=${seed} npm run soak -- ${r.replayArgs}`);
  out.push(`verdict: ${r.pass ? 'PASS' : 'FAIL'}`);
  return out.join('\n');
}
