/**
 * Strict argument parsing for every carelb verb (issue 13): node:util parseArgs with
 * `strict: true`, so an unknown flag (`--conf` for `--config`) or a stray argument is a usage
 * error, never silently ignored. A usage error exits 2 with the verb's usage; errors of the
 * thing being done (an invalid config, an unreachable peer) exit 1.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The command line itself is wrong: the caller prints the message and its usage and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE_EXIT = 2;

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed<T extends Options> {
  values: { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string };
  positionals: string[];
}

/** parseArgs's messages are long and name internals; say what is wrong in one short clause. */
function shortMessage(error: NodeJS.ErrnoException): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1];
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? error.message}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted ?? error.message}"`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const option = /'(-\S+(?:, --\S+)?)/.exec(error.message)?.[1] ?? quoted ?? '';
      return `${option.replace(/ <value>$/, '')} needs a value`;
    }
    default:
      return error.message;
  }
}

/**
 * Parses `args` strictly against `options`; at most `maxPositionals` plain arguments are
 * allowed (0: none). Throws UsageError with a short reason; never exits.
 */
export function parseStrict<T extends Options>(args: string[], options: T, maxPositionals = 0): Parsed<T> {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: maxPositionals > 0 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError(shortMessage(e));
    throw error;
  }
  if (parsed.positionals.length > maxPositionals) throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  return parsed as Parsed<T>;
}
