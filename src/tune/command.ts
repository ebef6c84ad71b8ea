/**
 * `carelb tune check|apply`: the CLI face of src/tune/. Runs on the main thread of a
 * short-lived CLI process, never inside the running load balancer.
 *
 *   tune check [--pid PID]             table of live vs recommended; exit 0 all OK, 2 any WARN
 *   tune apply [--dry-run] [--file F]  write the sysctl.d file (default /etc/sysctl.d/60-carelb.conf),
 *                                      load it with `sysctl -e -p F`, read the values back
 *
 * Exit codes: 0 success, 1 usage or I/O error, 2 check found warnings.
 */
import { execFile } from 'node:child_process';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { evaluate, exitCode, satisfies } from './evaluate';
import { readLive, type Reading } from './read';
import { renderSysctlConf, SETTINGS, sysctlFileValue, sysctlSettings, type Setting } from './settings';
import { formatTable } from './table';

export const DEFAULT_SYSCTL_FILE = '/etc/sysctl.d/60-carelb.conf';

export const USAGE = `Usage: carelb tune <command>

  check [--pid PID]              Compare live kernel and process settings with the recommended
                                 ones; exit 0 when all are OK, 2 when any is WARN.
                                 --pid: read the nofile limit of that process (the running
                                 carelb) instead of this command's own.
  apply [--dry-run] [--file F]   Write the recommended sysctls to F (default
                                 ${DEFAULT_SYSCTL_FILE}), load them with sysctl -e -p F
                                 and read them back. Settings the host already satisfies
                                 with another value are left alone, never lowered.
                                 --dry-run: print the file and the command, change nothing.

Why each value, and the settings apply cannot make (IRQ affinity, governor, THP, NUMA,
workers and pinning): tuning/README.md.
`;

export interface SysctlResult {
  code: number;
  output: string;
}

export interface TuneOptions {
  /** Directory standing for "/" when reading live values (tests). Default "/". */
  root?: string;
  /** Loads a sysctl file; default runs `sysctl -e -p FILE`. Tests replace it. */
  loadSysctlFile?: (file: string) => Promise<SysctlResult>;
}

/** `sysctl -e`: a key whose module is not loaded (nf_conntrack) is skipped, not an error. */
export function sysctlLoadCommand(file: string): string[] {
  return ['sysctl', '-e', '-p', file];
}

function defaultLoadSysctlFile(file: string): Promise<SysctlResult> {
  const [cmd, ...args] = sysctlLoadCommand(file);
  return new Promise((resolve) => {
    execFile(cmd, args, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if (!err) return resolve({ code: 0, output });
      const code = typeof err.code === 'number' ? err.code : 1;
      resolve({ code, output: output || `${err.message}\n` });
    });
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function check(args: string[], out: NodeJS.WritableStream, options: TuneOptions): Promise<number> {
  const { values } = parseArgs({ args, options: { pid: { type: 'string' } }, strict: true, allowPositionals: false });
  let pid: number | undefined;
  if (values.pid !== undefined) {
    if (!/^\d+$/.test(values.pid) || Number(values.pid) < 1) {
      out.write(`carelb tune check: --pid needs a process id, got "${values.pid}"\n`);
      return 1;
    }
    pid = Number(values.pid);
  }
  const readings = await readLive(SETTINGS, { root: options.root, pid });
  const rows = evaluate(SETTINGS, readings);
  out.write(formatTable(rows));
  if (pid === undefined) {
    out.write('nofile is this command\'s own limit; for the running service use --pid "$(systemctl show -p MainPID --value carelb)".\n');
  }
  return exitCode(rows);
}

/**
 * Live values of sysctls that already satisfy their rule but differ from the recommendation
 * (a wider port range, a larger somaxconn, a RAM-scaled fs.file-max): `apply` leaves those
 * alone instead of lowering or pinning them.
 */
function satisfiedLiveValues(settings: readonly Setting[], readings: ReadonlyMap<string, Reading>): Map<string, string> {
  const keep = new Map<string, string>();
  for (const s of settings) {
    const reading = readings.get(s.name);
    if (reading?.state !== 'value') continue;
    if (satisfies(reading.value, s.rule) && reading.value !== sysctlFileValue(s.rule)) keep.set(s.name, reading.value);
  }
  return keep;
}

async function apply(args: string[], out: NodeJS.WritableStream, options: TuneOptions): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { 'dry-run': { type: 'boolean', default: false }, file: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const file = values.file ?? DEFAULT_SYSCTL_FILE;
  if (file === '') {
    out.write('carelb tune apply: --file needs a path\n');
    return 1;
  }
  const settings = sysctlSettings(SETTINGS);
  const before = await readLive(settings, { root: options.root });
  const content = renderSysctlConf(settings, satisfiedLiveValues(settings, before));
  const command = sysctlLoadCommand(file).join(' ');

  if (values['dry-run']) {
    out.write(`Would write ${file}:\n\n${content}\nWould run: ${command}\n(dry run: nothing changed)\n`);
    return 0;
  }

  const previous = await readFile(file, 'utf8').catch(() => undefined);
  if (previous === content) {
    out.write(`${file} is already up to date.\n`);
  } else {
    // Write beside the target and rename, so a crash never leaves a half-written sysctl.d file.
    const temp = `${file}.tmp-${process.pid}`;
    try {
      await writeFile(temp, content, { mode: 0o644 });
      await rename(temp, file);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      out.write(`carelb tune apply: cannot write ${file}: ${errorMessage(err)}\n`);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        out.write('Run it as root (sudo carelb tune apply), or --dry-run to see what it would do.\n');
      }
      return 1;
    }
    out.write(`Wrote ${file}.\n`);
  }

  const load = options.loadSysctlFile ?? defaultLoadSysctlFile;
  out.write(`Running: ${command}\n`);
  let result: SysctlResult;
  try {
    result = await load(file);
  } catch (err) {
    out.write(`carelb tune apply: ${command} failed: ${errorMessage(err)}\n`);
    return 1;
  }
  if (result.output) out.write(result.output.endsWith('\n') ? result.output : `${result.output}\n`);
  if (result.code !== 0) {
    out.write(`carelb tune apply: ${command} exited with ${result.code}; ${file} stays in place and applies at next boot.\n`);
    return 1;
  }

  // sysctl(8) exits 0 even when the kernel rejects a value (EINVAL, read-only in a container),
  // so success is judged by reading the values back.
  const after = evaluate(settings, await readLive(settings, { root: options.root }));
  const failed = after.filter((r) => r.status === 'WARN');
  if (failed.length > 0) {
    out.write(`carelb tune apply: ${failed.length} setting(s) did not take effect:\n\n${formatTable(failed, { summary: false })}`);
    return 1;
  }
  out.write(
    'Loaded and verified. Not set by apply: nofile (LimitNOFILE in carelb.service), CPU governor, transparent hugepages, ' +
      'IRQ affinity, NUMA and worker pinning: see tuning/README.md. Check all with `carelb tune check`.\n',
  );
  return 0;
}

/** Entry for `carelb tune ...`; `args` excludes "tune". Resolves to the process exit code. */
export async function runTune(args: string[], out: NodeJS.WritableStream, options: TuneOptions = {}): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case 'check':
        return await check(rest, out, options);
      case 'apply':
        return await apply(rest, out, options);
      case 'help':
      case '--help':
      case '-h':
        out.write(USAGE);
        return 0;
      case undefined:
        out.write(`carelb tune: missing command\n\n${USAGE}`);
        return 1;
      default:
        out.write(`carelb tune: unknown command "${sub}"\n\n${USAGE}`);
        return 1;
    }
  } catch (err) {
    // parseArgs throws on unknown options and missing option values.
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      out.write(`carelb tune ${sub}: ${errorMessage(err)}\n\n${USAGE}`);
      return 1;
    }
    throw err;
  }
}
