/**
 * Loading and validating a config: YAML text in, a frozen Config or a list of
 * `path.to.key: reason` errors out. Called by the primary (start, reload) and by `carelb check`.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { ZodIssue } from 'zod';
import { configSchema, type Config } from './schema';

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Renders a zod path as `virtual_services[0].servers[1].weight`. */
function formatPath(path: (string | number)[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${part}` : part;
  return out || '(top level)';
}

function formatIssue(issue: ZodIssue): string[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key`);
  }
  if (issue.code === 'invalid_union') {
    // "workers: auto | integer" style unions: report the first branch's reason, not zod's generic text.
    const nested = issue.unionErrors.flatMap((e) => e.issues).find((i) => i.code !== 'invalid_type');
    if (nested) return formatIssue(nested);
    return [`${formatPath(issue.path)}: has the wrong type`];
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined') {
    return [`${formatPath(issue.path)}: is required`];
  }
  return [`${formatPath(issue.path)}: ${issue.message}`];
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Validates an already-parsed document (from YAML or built in code). */
export function validateConfig(document: unknown): LoadResult {
  const result = configSchema.safeParse(document ?? {});
  if (!result.success) return { ok: false, errors: result.error.issues.flatMap(formatIssue) };
  return { ok: true, config: deepFreeze(result.data) };
}

/** Parses YAML text and validates it. `source` names the file in messages. */
export function loadConfigText(text: string, source: string): LoadResult {
  let document: unknown;
  try {
    document = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    const reason = error instanceof YAMLParseError ? error.message.split('\n')[0] : String(error);
    return { ok: false, errors: [`${source}: not valid YAML: ${reason}`] };
  }
  return validateConfig(document);
}

/** Reads and validates a config file. */
export function loadConfigFile(path: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return { ok: false, errors: [`${path}: cannot read config: ${(error as NodeJS.ErrnoException).code ?? String(error)}`] };
  }
  return loadConfigText(text, path);
}

/** The number of data-plane threads a config asks for. */
export function workerCount(config: Config): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}
