/**
 * `carelb ha`: the keepalived pair (issue 8).
 *
 *   render   write keepalived.conf and the check and notify scripts from the ha: section
 *   sync     push the validated config and the files it references to the peer's admin API
 *   handoff  before carelb stops: give up the virtual IPs and wait until they have left
 *   resume   when carelb starts: clear the handoff flag
 *   peer     the peer's node name, config hashes and VRRP state (its /api/ha/peer)
 *
 * Exit status: 0 done, 2 a wrong command line (with the usage), 1 anything else, with the
 * reasons on `err`.
 */
import { chownSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readToken } from '../admin/token';
import { parseStrict, USAGE_EXIT, UsageError } from '../cli-args';
import { loadConfigFile, loadConfigText } from '../config/load';
import type { Config, HaConfig } from '../config/schema';
import { parseDuration } from '../config/units';
import { checkConfigFiles } from '../config/config-files';
import { peerOptionsFor, buildSyncBody, peerStatus, pushConfig, type PeerOptions } from './client';
import { writeFileAtomic } from './atomic-write';
import { sharedHash } from './config-text';
import { PLAINTEXT_WARNING, pushOptions, sendProblem, sendsPlaintext } from './transport';
import { DEFAULT_AUDIT_LOG, DEFAULT_CHECK_SCRIPT, DEFAULT_NOTIFY_SCRIPT, renderCheckScript, renderErrors, renderKeepalivedConf, renderNotifyScript } from './keepalived';
import { runConfigTest } from './config-test';
import { heldVips, releaseFile, stateDir as defaultStateDir, writeRelease } from './state';

type Out = NodeJS.WritableStream;

export const HA_USAGE = `usage: carelb ha <command> -c FILE [options]

commands:
  render    write the keepalived configuration (ha.keepalived_conf) and its check and notify scripts
  sync      push this config and every certificate, key, CA and passphrase file it references
            to the peer's admin API over TLS (ha.peer_admin, the peer's sync token in
            ha.peer_token_file; needs admin.tls with ca, or ha.allow_plaintext_sync)
  handoff   give up this node's virtual IPs and wait until they have left (run before stopping carelb)
  resume    clear the handoff flag (run when carelb starts)
  peer      show the peer's node name, config hashes and VRRP state

options:
  -c, --config FILE       the carelb config (required except for resume)
  --out PATH              render: keepalived.conf path (default: ha.keepalived_conf)
  --check-script PATH     render: check script (default ${DEFAULT_CHECK_SCRIPT})
  --notify-script PATH    render: notify script (default ${DEFAULT_NOTIFY_SCRIPT})
  --audit-log PATH        render: audit log the notify script appends to (default ${DEFAULT_AUDIT_LOG})
  --state-dir DIR         state directory shared with keepalived (default CARELB_HA_STATE_DIR or /var/lib/carelb/ha)
  --src-ip ADDRESS        render: unicast_src_ip (default: the interface's primary address)
  --stdout                render: print keepalived.conf (secret masked) instead of writing files
  --ca FILE               sync, peer: CA of the peer admin API's certificate (instead of admin.tls.ca)
  --timeout DURATION      handoff: longest wait for the addresses to leave (default 10s)
`;

class HaError extends Error {}

interface Parsed {
  command?: string;
  config?: string;
  out?: string;
  checkScript?: string;
  notifyScript?: string;
  auditLog?: string;
  stateDir?: string;
  srcIp?: string;
  ca?: string;
  timeout?: string;
  stdout: boolean;
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  out: { type: 'string' },
  'check-script': { type: 'string' },
  'notify-script': { type: 'string' },
  'audit-log': { type: 'string' },
  'state-dir': { type: 'string' },
  'src-ip': { type: 'string' },
  ca: { type: 'string' },
  timeout: { type: 'string' },
  stdout: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Strict parse (cli-args.ts): unknown options and a second positional throw UsageError (exit 2). */
function parseHaArgs(args: string[]): Parsed {
  const { values, positionals } = parseStrict(args, OPTIONS, 1);
  return {
    command: values.help ? 'help' : positionals[0],
    config: values.config,
    out: values.out,
    checkScript: values['check-script'],
    notifyScript: values['notify-script'],
    auditLog: values['audit-log'],
    stateDir: values['state-dir'],
    srcIp: values['src-ip'],
    ca: values.ca,
    timeout: values.timeout,
    stdout: values.stdout === true,
  };
}

function loadHa(path: string | undefined): { config: Config; ha: HaConfig; text: string } {
  if (!path) throw new UsageError('-c FILE is required');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HaError(`${path}: cannot read config: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const loaded = loadConfigText(text, path);
  if (!loaded.ok) throw new HaError(`${path}: invalid config\n${loaded.errors.map((e) => `  ${e}`).join('\n')}`);
  if (!loaded.config.ha) throw new HaError(`${path} has no ha: section`);
  return { config: loaded.config, ha: loaded.config.ha, text };
}

/** The admin API serves TLS when its section has `tls` (a later addition to the schema). */
function peerOptions(config: Config, parsed: Parsed): PeerOptions {
  if (parsed.ca) {
    try {
      return { tls: { ca: readFileSync(parsed.ca, 'utf8') } };
    } catch (error) {
      throw new HaError(`--ca: cannot read ${parsed.ca}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
  return peerOptionsFor(config);
}

/** Writes a file through an exclusive temporary file and rename, creating its directory. */
function writeAtomic(path: string, text: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  writeFileAtomic(path, text, mode);
}

/** uid and gid of a local user from /etc/passwd, or null. */
function userIds(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields[0] === name) return { uid: Number(fields[2]), gid: Number(fields[3]) };
    }
  } catch {
    /* no passwd file */
  }
  return null;
}

function render(parsed: Parsed, out: Out, err: Out): number {
  const { config, ha } = loadHa(parsed.config);
  const errors = renderErrors(ha);
  if (!config.admin) errors.push('admin: is required: keepalived checks carelb through the admin API /healthz');
  if (errors.length > 0) throw new HaError(`${parsed.config}: cannot render the keepalived configuration\n${errors.map((e) => `  ${e}`).join('\n')}`);
  const admin = config.admin!.listen;
  let authPass: string | undefined;
  if (ha.auth_secret_file) {
    try {
      authPass = readFileSync(ha.auth_secret_file, 'utf8').split('\n')[0].trim();
    } catch (error) {
      throw new HaError(`ha.auth_secret_file: cannot read ${ha.auth_secret_file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    if (authPass.length === 0) throw new HaError(`ha.auth_secret_file: ${ha.auth_secret_file} is empty`);
    if (authPass.length > 8) err.write('note: keepalived uses only the first 8 characters of the VRRP secret\n');
  } else {
    err.write('warning: ha.auth_secret_file is not set: VRRP adverts are not authenticated\n');
  }
  const state = parsed.stateDir ?? defaultStateDir();
  const checkScript = parsed.checkScript ?? DEFAULT_CHECK_SCRIPT;
  const notifyScript = parsed.notifyScript ?? DEFAULT_NOTIFY_SCRIPT;
  const conf = renderKeepalivedConf(ha, { admin, adminTls: Boolean(config.admin?.tls), authPass, unicastSrcIp: parsed.srcIp, checkScript, notifyScript, stateDir: state, source: parsed.config });
  if (parsed.stdout) {
    out.write(authPass === undefined ? conf : conf.replace(/auth_pass \S+/g, 'auth_pass ********'));
    return 0;
  }
  const confPath = parsed.out ?? ha.keepalived_conf;
  try {
    // The conf holds the VRRP secret: readable by root (keepalived) only.
    writeAtomic(confPath, conf, 0o600);
    writeAtomic(checkScript, renderCheckScript({ admin, adminTls: Boolean(config.admin?.tls), node: process.execPath }), 0o755);
    writeAtomic(notifyScript, renderNotifyScript({ stateDir: state, auditLog: parsed.auditLog ?? DEFAULT_AUDIT_LOG, checkScript }), 0o755);
    mkdirSync(state, { recursive: true, mode: 0o755 });
  } catch (error) {
    throw new HaError(`cannot write: ${(error as Error).message}`);
  }
  // The notify script runs as script_user and writes the state directory; carelb (same user) writes the release flag.
  const ids = userIds(ha.check_script_user);
  if (ids && process.getuid?.() === 0) {
    try {
      chownSync(state, ids.uid, ids.gid);
    } catch (error) {
      err.write(`warning: cannot give ${state} to ${ha.check_script_user}: ${(error as NodeJS.ErrnoException).code}\n`);
    }
  } else if (!ids) err.write(`warning: user ${ha.check_script_user} (ha.check_script_user) does not exist on this host\n`);
  out.write(`wrote ${confPath} (node ${ha.node_name}, ${ha.vips.length} VRRP instance${ha.vips.length === 1 ? '' : 's'}), ${checkScript}, ${notifyScript}\n`);
  const outcome = runConfigTest(confPath, conf);
  switch (outcome.kind) {
    case 'ok':
      out.write('keepalived --config-test: OK. Apply with: systemctl reload keepalived\n');
      return 0;
    case 'not-installed':
      err.write('note: keepalived is not installed here (apt-get install keepalived)\n');
      return 0;
    case 'known-bug':
      // Not a verdict on the file: see config-test.ts and docs/ha.md.
      err.write(
        `warning: keepalived ${outcome.version} cannot check this file (its config-test bug); it was written but not checked.\n` +
          `  keepalived -t kills itself with SIGTERM when enable_script_security is set and a script has its own user\n` +
          `  (acassen/keepalived#2587, #2617, fixed in 2.2.8). See docs/ha.md.\n` +
          (outcome.output ? `  keepalived printed:\n${indent(outcome.output)}\n` : ''),
      );
      out.write('Apply with: systemctl reload keepalived (keepalived logs what it refuses: journalctl -u keepalived)\n');
      return 0;
    case 'failed':
      err.write(`keepalived --config-test failed: ${outcome.reason}\n${outcome.output ? indent(outcome.output) : '  (keepalived printed nothing)'}\n`);
      return 1;
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}

async function sync(parsed: Parsed, out: Out, err: Out): Promise<number> {
  const { config, ha, text } = loadHa(parsed.config);
  // Keys and passphrases travel with the config: TLS both ways, or the operator's explicit consent.
  const problem = sendProblem(config);
  if (problem) throw new HaError(`${parsed.config}: not pushed: ${problem}`);
  if (sendsPlaintext(config)) err.write(`warning: ${PLAINTEXT_WARNING}\n`);
  let options: PeerOptions;
  try {
    options = pushOptions(config, parsed.ca === undefined ? undefined : readFileSync(parsed.ca, 'utf8'));
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ? `--ca: cannot read ${parsed.ca}: ${(error as NodeJS.ErrnoException).code}` : (error as Error).message;
    throw new HaError(reason);
  }
  const files = checkConfigFiles(config);
  for (const warning of files.warnings) err.write(`warning: ${warning}\n`);
  if (files.errors.length > 0) throw new HaError(`${parsed.config}: not pushed, the config's files are invalid\n${files.errors.map((e) => `  ${e}`).join('\n')}`);
  let body;
  try {
    body = buildSyncBody(text, config, parsed.config!);
  } catch (error) {
    throw new HaError((error as Error).message);
  }
  const target = ha.peer_admin ? `${ha.peer_admin.host}:${ha.peer_admin.port}` : '(ha.peer_admin not set)';
  let answer;
  try {
    answer = await pushConfig(ha, body, readToken, options);
  } catch (error) {
    throw new HaError((error as Error).message);
  }
  if (!answer.ok) {
    err.write(`the peer at ${target} refused the config; it keeps running its previous one:\n${answer.errors.map((e) => `  ${e}`).join('\n')}\n`);
    return 1;
  }
  const mine = sharedHash(text);
  out.write(`peer ${target}: config written and reloaded (${answer.files_written.length} file${answer.files_written.length === 1 ? '' : 's'})\n`);
  out.write(`  peer config_hash ${answer.config_hash}\n  shared_hash ${answer.shared_hash} ${answer.shared_hash === mine ? '(same as this node: in sync)' : `(this node: ${mine} — DIFFERENT)`}\n`);
  return answer.shared_hash === mine ? 0 : 1;
}

async function handoff(parsed: Parsed, out: Out, err: Out): Promise<number> {
  const state = parsed.stateDir ?? defaultStateDir();
  const timeoutMs = parsed.timeout === undefined ? 10_000 : parseDuration(parsed.timeout);
  if (timeoutMs === undefined) throw new HaError(`--timeout: "${parsed.timeout}" is not a duration`);
  const loaded = parsed.config ? loadConfigFile(parsed.config) : null;
  const ha = loaded?.ok ? loaded.config.ha : undefined;
  const heldBefore = ha ? heldVips(ha) : [];
  // keepalived puts the instances in FAULT as soon as this file says 1 (inotify): the addresses
  // leave now, while carelb still serves. Written even when the config is broken.
  const started = Date.now();
  writeRelease(state, true);
  if (!ha) {
    err.write(`released (${releaseFile(state)}), but cannot tell which addresses to wait for: ${loaded && !loaded.ok ? loaded.errors[0] : 'no ha: section'}\n`);
    return 0;
  }
  if (heldBefore.length === 0) {
    out.write(`released: this node (${ha.node_name}) holds none of the virtual IPs\n`);
    return 0;
  }
  let held = heldVips(ha);
  while (held.length > 0 && Date.now() - started < timeoutMs) {
    await sleep(20);
    held = heldVips(ha);
  }
  if (held.length > 0) {
    err.write(`still holding ${held.join(', ')} after ${timeoutMs} ms: is keepalived running with the rendered configuration?\n`);
    return 1;
  }
  const left = Date.now() - started;
  // carelb keeps serving until the peer has taken the addresses (its gratuitous ARP sends the
  // clients there): requests that still arrive here meanwhile, through the address lingering
  // on lo, are answered instead of refused.
  // A healthy peer takes over within one advert interval of our priority-0 advert; waiting much
  // longer for a peer that is down only delays the stop.
  const deadline = Math.min(started + timeoutMs, Date.now() + 3 * ha.advert_int + 1000);
  const taken = await waitForPeer(ha, heldBefore, deadline, parsed, loaded!.ok ? loaded!.config : undefined);
  out.write(`released: ${heldBefore.join(', ')} left ${ha.node_name} in ${left} ms; ${taken}\n`);
  return 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until the peer reports MASTER for every address in `vips` (or the deadline); says what happened. */
async function waitForPeer(ha: HaConfig, vips: string[], deadline: number, parsed: Parsed, config: Config | undefined): Promise<string> {
  const since = Date.now();
  if (!ha.peer_admin || !ha.peer_token_file || !config) {
    // Without the peer's API: a backup takes over within one advert interval of the priority-0 advert.
    const wait = Math.min(2 * ha.advert_int, Math.max(0, deadline - since));
    await sleep(wait);
    return `waited ${wait} ms for the peer (ha.peer_admin/peer_token_file not set)`;
  }
  const options = peerOptions(config, parsed);
  let last = 'no answer';
  while (Date.now() < deadline) {
    const info = await peerStatus(ha, readToken, { ...options, timeoutMs: 500 });
    if ('error' in info) last = info.error;
    else {
      const masters = new Set(info.vrrp.instances.filter((i) => i.state === 'MASTER' && i.vip).map((i) => i.vip!.split('/')[0]));
      if (vips.every((vip) => masters.has(vip))) return `peer ${info.node ?? '?'} is MASTER after ${Date.now() - since} ms`;
      last = `peer ${info.node ?? '?'} is ${info.vrrp.state}`;
    }
    await sleep(50);
  }
  return `the peer did not report MASTER in time (${last})`;
}

async function peer(parsed: Parsed, out: Out): Promise<number> {
  const { config, ha, text } = loadHa(parsed.config);
  const info = await peerStatus(ha, readToken, peerOptions(config, parsed));
  if ('error' in info) throw new HaError(`peer: ${info.error}`);
  out.write(`${JSON.stringify({ self: { node: ha.node_name, shared_hash: sharedHash(text) }, peer: info }, null, 2)}\n`);
  return 0;
}

export async function runHa(args: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  try {
    const parsed = parseHaArgs(args);
    switch (parsed.command) {
      case 'render':
        return render(parsed, out, err);
      case 'sync':
        return await sync(parsed, out, err);
      case 'handoff':
        return await handoff(parsed, out, err);
      case 'resume':
        writeRelease(parsed.stateDir ?? defaultStateDir(), false);
        out.write(`resumed: ${releaseFile(parsed.stateDir ?? defaultStateDir())} cleared\n`);
        return 0;
      case 'peer':
        return await peer(parsed, out);
      case 'help':
        out.write(HA_USAGE);
        return 0;
      case undefined:
        throw new UsageError('a command is required');
      default:
        throw new UsageError(`unknown command "${parsed.command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err.write(`carelb ha: ${error.message}\n\n${HA_USAGE}`);
      return USAGE_EXIT;
    }
    if (error instanceof HaError) {
      err.write(`carelb ha: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
