/**
 * Reads the live values of the settings from /proc and /sys. Every path is resolved under a
 * root directory (default "/") so tests can point the reader at a fake tree in a temp dir.
 * Never throws for a missing or unreadable file: that becomes an 'absent' or 'error' reading
 * for the evaluator to judge.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Setting, Source } from './settings';

export type Reading =
  | { state: 'value'; value: string }
  | { state: 'absent'; detail: string }
  | { state: 'error'; detail: string };

export interface ReadOptions {
  /** Directory that stands for "/"; default "/". */
  root?: string;
  /** Read the limits of this process instead of the reader's own (/proc/self/limits). */
  pid?: number;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function failure(path: string, err: unknown): Reading {
  if (isMissing(err)) return { state: 'absent', detail: `${path} does not exist` };
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? String(err);
  return { state: 'error', detail: `cannot read ${path}: ${code}` };
}

async function readText(root: string, path: string): Promise<{ text: string } | { reading: Reading }> {
  try {
    return { text: await readFile(join(root, path), 'utf8') };
  } catch (err) {
    return { reading: failure(path, err) };
  }
}

/** Collapses runs of whitespace (sysctls such as tcp_rmem are tab-separated). */
function normalize(text: string): string {
  return text.trim().split(/\s+/).join(' ');
}

/** The soft limit from a /proc/PID/limits row such as "Max open files  1024  524288  files". */
export function parseLimit(limitsText: string, limit: string): string | undefined {
  for (const line of limitsText.split('\n')) {
    if (!line.startsWith(limit)) continue;
    const fields = line.slice(limit.length).trim().split(/\s+/);
    return fields[0] || undefined;
  }
  return undefined;
}

/** The bracketed choice in "always [madvise] never". */
export function parseBracketed(text: string): string | undefined {
  return /\[([^\]]+)\]/.exec(text)?.[1];
}

/** Expands a path with `*` in whole directory segments (cpu* → cpu0, cpu1, ...). */
async function expandGlob(root: string, path: string): Promise<string[]> {
  let prefixes = ['/'];
  for (const segment of path.split('/').filter(Boolean)) {
    if (!segment.includes('*')) {
      prefixes = prefixes.map((p) => join(p, segment));
      continue;
    }
    const pattern = new RegExp(`^${segment.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    const next: string[] = [];
    for (const prefix of prefixes) {
      let entries: string[];
      try {
        entries = await readdir(join(root, prefix));
      } catch {
        continue;
      }
      for (const entry of entries.sort(naturalOrder)) if (pattern.test(entry)) next.push(join(prefix, entry));
    }
    prefixes = next;
  }
  return prefixes;
}

function naturalOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

async function readSource(source: Source, options: Required<Pick<ReadOptions, 'root'>> & ReadOptions): Promise<Reading> {
  const { root } = options;
  switch (source.kind) {
    case 'sysctl': {
      const got = await readText(root, source.path);
      return 'reading' in got ? got.reading : { state: 'value', value: normalize(got.text) };
    }
    case 'limit': {
      const path = options.pid === undefined ? source.path : source.path.replace('/proc/self/', `/proc/${options.pid}/`);
      const got = await readText(root, path);
      if ('reading' in got) return got.reading;
      const soft = parseLimit(got.text, source.limit);
      return soft === undefined
        ? { state: 'error', detail: `no "${source.limit}" row in ${path}` }
        : { state: 'value', value: soft };
    }
    case 'per-cpu': {
      const files = await expandGlob(root, source.path);
      if (files.length === 0) return { state: 'absent', detail: `no file matches ${source.path}` };
      const distinct: string[] = [];
      for (const file of files) {
        const got = await readText(root, file);
        if ('reading' in got) {
          // A CPU going offline between readdir and read is not worth a WARN; other errors are.
          if (got.reading.state === 'absent') continue;
          return got.reading;
        }
        const value = normalize(got.text);
        if (!distinct.includes(value)) distinct.push(value);
      }
      if (distinct.length === 0) return { state: 'absent', detail: `no file matches ${source.path}` };
      return { state: 'value', value: distinct.join(',') };
    }
    case 'bracketed': {
      const got = await readText(root, source.path);
      if ('reading' in got) return got.reading;
      const chosen = parseBracketed(got.text);
      return chosen === undefined
        ? { state: 'error', detail: `no [choice] in ${source.path}: "${normalize(got.text)}"` }
        : { state: 'value', value: chosen };
    }
  }
}

/** Reads every setting's live value; the map is keyed by setting name. */
export async function readLive(settings: readonly Setting[], options: ReadOptions = {}): Promise<Map<string, Reading>> {
  const opts = { ...options, root: options.root ?? '/' };
  const readings = await Promise.all(settings.map((s) => readSource(s.source, opts)));
  return new Map(settings.map((s, i) => [s.name, readings[i]]));
}
