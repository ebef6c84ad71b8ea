/**
 * Running the system `openssl` binary (issue 14). carelb hands PKCS#12 and CSRs to it rather
 * than to an npm library or hand-written ASN.1: it is the implementation that Windows-exported
 * PFX files are tested against, it is already on every host that runs carelb (node links the
 * same OpenSSL 3), it gets the distribution's security updates, and its `-legacy` provider
 * decrypts the RC2/3DES bags older Windows CAs still produce, which node:crypto cannot
 * (it has no PKCS#12 API at all). Secrets go through stdin, never argv (argv is visible in ps).
 * Primary or CLI only; asynchronous, so the admin server keeps answering while it runs.
 */
import { spawn } from 'node:child_process';

export interface OpensslResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** How long one openssl run may take: key generation (RSA 3072) is the slowest, well under this. */
const OPENSSL_TIMEOUT_MS = 30_000;

/** Runs `openssl ARGS` with `input` on stdin; never rejects for a non-zero exit (the caller reads code and stderr). */
export function openssl(args: string[], input: Buffer | string = ''): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: OPENSSL_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new Error('the openssl command is not installed (apt-get install openssl)') : error));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
    // openssl may exit before reading all of stdin (a bad option): that EPIPE is not our error.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** The first line of openssl's complaint that says something (it prints a stack of internal frames). */
export function opensslReason(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trim()).filter(Boolean);
  const useful = lines.find((line) => !/^[0-9A-F]{8,}:error:/.test(line)) ?? lines[0] ?? 'openssl failed';
  const reason = /:error:[0-9A-F]+:[^:]*:[^:]*:[^:]*:(.*)$/.exec(lines.find((line) => /:error:/.test(line)) ?? '')?.[1];
  return reason && useful === lines[0] ? reason : useful;
}
