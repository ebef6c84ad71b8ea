/**
 * Prints evaluated rows as a plain-text table (no colours: the output goes to terminals,
 * logs and tickets alike). The fix column is last and unpadded because commands are long;
 * it is filled only for WARN rows. Notes follow the table, numbered.
 */
import type { Row } from './evaluate';

const HEADERS = ['SETTING', 'CURRENT', 'RECOMMENDED', 'STATUS', 'FIX'] as const;

export function formatTable(rows: readonly Row[], options: { summary?: boolean } = {}): string {
  const notes: string[] = [];
  const cells = rows.map((r) => {
    let status: string = r.status;
    if (r.note) {
      notes.push(r.note);
      status += ` [${notes.length}]`;
    }
    return [r.setting, r.current, r.recommended, status, r.status === 'WARN' ? r.fix : '-'];
  });
  const widths = HEADERS.slice(0, -1).map((h, col) => Math.max(h.length, ...cells.map((c) => c[col].length)));
  const line = (c: readonly string[]): string =>
    [...c.slice(0, -1).map((cell, col) => cell.padEnd(widths[col])), c[c.length - 1]].join('  ').trimEnd();

  const out = [line(HEADERS), ...cells.map(line)];
  if (notes.length > 0) {
    out.push('');
    notes.forEach((note, i) => out.push(`[${i + 1}] ${note}`));
  }
  if (options.summary === false) return `${out.join('\n')}\n`;
  const warn = rows.filter((r) => r.status === 'WARN').length;
  out.push('');
  out.push(
    warn === 0
      ? `${rows.length} settings checked: all OK.`
      : `${rows.length} settings checked: ${rows.length - warn} OK, ${warn} WARN. ` +
          '`carelb tune apply` fixes the sysctls; see tuning/README.md for the rest.',
  );
  return `${out.join('\n')}\n`;
}
