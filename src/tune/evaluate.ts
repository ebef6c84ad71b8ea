/**
 * Judges live readings against the recommendations. Pure: settings and readings in, rows out.
 */
import { recommendedText, type Rule, type Setting } from './settings';
import type { Reading } from './read';

export type Status = 'OK' | 'WARN';

export interface Row {
  setting: string;
  current: string;
  recommended: string;
  status: Status;
  /** The command that fixes this setting (shown for WARN rows). */
  fix: string;
  /** Why an OK row is OK although no value was read ("n/a"), or why a value could not be read. */
  note?: string;
}

function toNumber(field: string): number {
  if (field === 'unlimited' || field === 'infinity') return Number.POSITIVE_INFINITY;
  // Numbers only: "12abc" is not a number here even though parseInt would say 12.
  return /^-?\d+$/.test(field) ? Number(field) : Number.NaN;
}

function fields(text: string): string[] {
  return text.trim().split(/\s+/).filter(Boolean);
}

/** Whether a live value satisfies a rule. Unparseable values never do. */
export function satisfies(current: string, rule: Rule): boolean {
  switch (rule.compare) {
    case 'at-least': {
      const have = fields(current).map(toNumber);
      const want = fields(rule.value).map(toNumber);
      return have.length === want.length && have.every((n, i) => n >= want[i]);
    }
    case 'at-most': {
      const have = fields(current).map(toNumber);
      return have.length === 1 && have[0] <= toNumber(rule.value);
    }
    case 'exact':
      return fields(current).join(' ') === fields(rule.value).join(' ');
    case 'range-at-least': {
      const have = fields(current).map(toNumber);
      const want = fields(rule.value).map(toNumber);
      if (have.length !== 2 || want.length !== 2 || have.some(Number.isNaN)) return false;
      return have[1] - have[0] >= want[1] - want[0];
    }
    case 'one-of':
      return rule.values.includes(current.trim());
  }
}

/** One row per setting, in the settings' order. A setting with no reading is a WARN. */
export function evaluate(settings: readonly Setting[], readings: ReadonlyMap<string, Reading>): Row[] {
  return settings.map((s): Row => {
    const base = { setting: s.name, recommended: recommendedText(s.rule), fix: s.fix };
    const reading = readings.get(s.name) ?? { state: 'error' as const, detail: 'not read' };
    switch (reading.state) {
      case 'value':
        return { ...base, current: reading.value, status: satisfies(reading.value, s.rule) ? 'OK' : 'WARN' };
      case 'absent':
        return s.whenAbsent === 'warn'
          ? { ...base, current: 'missing', status: 'WARN', note: reading.detail }
          : { ...base, current: 'n/a', status: 'OK', note: s.whenAbsent.note };
      case 'error':
        return { ...base, current: 'unreadable', status: 'WARN', note: reading.detail };
    }
  });
}

/** 0 when every row is OK, 2 when any is WARN (the `tune check` exit code). */
export function exitCode(rows: readonly Row[]): 0 | 2 {
  return rows.some((r) => r.status === 'WARN') ? 2 : 0;
}
