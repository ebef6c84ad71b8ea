/**
 * `carelb cert import|csr` (issue 14): the CLI face of the certificate store. Runs in a
 * short-lived CLI process on the host, never inside the running load balancer; it writes the
 * store and prints what it wrote. A running carelb picks a stored certificate up when the
 * config names it (`certificate: NAME`) and is reloaded, or through the admin API's assign.
 *
 * Exit codes: 0 done, 1 refused (the input or the store is wrong), 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { parseStrict, USAGE_EXIT, UsageError } from '../cli-args';
import { DEFAULT_TLS_STORE } from '../config/schema';
import { ImportRefused } from './bundle';
import { KEY_TYPES, makeCsr, type KeyType } from './csr';
import { importCertificate, type ImportResult } from './importer';
import { resolveStore } from './store';

export const CERT_USAGE = `usage: carelb cert <command> [options]

  import FILE --name NAME [--key FILE] [--password-file F] [--store DIR | -c CONFIG]
        Validate and store a certificate: PEM (certificate, chain and key in any order) or
        PKCS#12/PFX (legacy RC2/3DES too). Writes NAME.pem (leaf and intermediates, 0640)
        and NAME.key (0600). Without a key in FILE or --key, the key left by \`cert csr\` for
        NAME is used. Refuses RSA keys under 2048 bits and certificates not valid now.
  csr --name NAME --cn CN --san DNS [--san DNS ...] [--key-type p256|rsa2048|rsa3072]
      [--store DIR | -c CONFIG]
        Make a key (default p256) in the store as NAME.key and a request NAME.csr for a CA.

The store: --store DIR, else tls_store of the config given with -c, else ${DEFAULT_TLS_STORE}.
Reference a stored certificate in the config with tls: { certificate: NAME }.
`;

interface Out {
  write(text: string): unknown;
}

const STORE_OPTIONS = { store: { type: 'string' }, config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } as const;

/** A password file's first line (a trailing newline is not part of the password). */
function readPassword(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  return readFileSync(file, 'utf8').split(/\r?\n/)[0];
}

function storeOf(values: { store?: string; config?: string }): string {
  if (values.store !== undefined && values.config !== undefined) throw new UsageError('give --store or -c, not both');
  return resolveStore(values.store, values.config);
}

export function printImport(result: ImportResult, out: Out, err: Out): void {
  out.write(
    [
      `${result.replaced ? 'replaced' : 'imported'} ${result.name}${result.legacy_pkcs12 ? ' (legacy RC2/3DES PKCS#12)' : ''}${result.paired_stored_key ? ' (paired with the key from cert csr)' : ''}`,
      `  subject:     ${result.subject}`,
      `  SANs:        ${result.sans.join(', ') || '(none)'}`,
      `  issuer:      ${result.issuer}`,
      `  not after:   ${result.not_after} (${result.days_left} days left)`,
      `  sha256:      ${result.fingerprint_sha256}`,
      `  key:         ${result.key_type}; chain: ${result.chain_length} certificate${result.chain_length === 1 ? '' : 's'}`,
      `  files:       ${result.files.cert}, ${result.files.key}`,
      ...result.notes.map((note) => `  note: ${note}`),
      '',
    ].join('\n'),
  );
  for (const warning of result.warnings) err.write(`warning: ${warning}\n`);
}

async function importCommand(args: string[], out: Out, err: Out): Promise<number> {
  const { values, positionals } = parseStrict(args, { ...STORE_OPTIONS, name: { type: 'string' }, key: { type: 'string' }, 'password-file': { type: 'string' } }, 1);
  if (values.help) return usage(out);
  if (positionals.length === 0) throw new UsageError('the certificate FILE is required');
  if (values.name === undefined) throw new UsageError('--name NAME is required');
  const store = storeOf(values);
  const result = await importCertificate({
    store,
    name: values.name,
    data: readFileSync(positionals[0]),
    keyPem: values.key === undefined ? undefined : readFileSync(values.key, 'utf8'),
    password: readPassword(values['password-file']),
  });
  printImport(result, out, err);
  return 0;
}

async function csrCommand(args: string[], out: Out): Promise<number> {
  const { values } = parseStrict(args, { ...STORE_OPTIONS, name: { type: 'string' }, cn: { type: 'string' }, san: { type: 'string', multiple: true }, 'key-type': { type: 'string' } });
  if (values.help) return usage(out);
  if (values.name === undefined) throw new UsageError('--name NAME is required');
  if (values.cn === undefined) throw new UsageError('--cn CN is required');
  const keyType = (values['key-type'] ?? 'p256') as KeyType;
  if (!KEY_TYPES.includes(keyType)) throw new UsageError(`--key-type must be one of ${KEY_TYPES.join(', ')}`);
  const sans = (values.san as unknown as string[] | undefined) ?? [];
  const result = await makeCsr({ store: storeOf(values), name: values.name, cn: values.cn, sans, keyType });
  out.write(`key:  ${result.key} (${keyType}, 0600)\nCSR:  ${result.csr}\n  subject: ${result.subject}\n  SANs:    ${result.sans.join(', ')}\n`);
  out.write(`Send the CSR to the CA, then: carelb cert import SIGNED.pem --name ${values.name}\n`);
  return 0;
}

function usage(out: Out): number {
  out.write(CERT_USAGE);
  return 0;
}

export async function runCert(args: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case 'import':
        return await importCommand(rest, out, err);
      case 'csr':
        return await csrCommand(rest, out);
      case 'help':
      case '-h':
      case '--help':
        return usage(out);
      case undefined:
        throw new UsageError('a command is required');
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err.write(`carelb cert: ${error.message}\n\n${CERT_USAGE}`);
      return USAGE_EXIT;
    }
    if (error instanceof ImportRefused) {
      err.write(`carelb cert: refused: ${error.message}\n`);
      return 1;
    }
    const code = (error as NodeJS.ErrnoException).code;
    err.write(`carelb cert: ${code ? `${(error as NodeJS.ErrnoException).path ?? ''}: ${code}` : (error as Error).message}\n`);
    return 1;
  }
}
