/**
 * The admin API's tokens and their roles (issue 13), loaded once when the admin server starts:
 *
 *   admin.token_file            operate (generated when missing, as before)
 *   admin.tokens[i].file        its role: read or operate (generated when missing)
 *   ha.sync_token_file          sync (generated when missing); the peer holds a copy in its
 *                               ha.peer_token_file
 *
 * Every token must be its own secret: two files holding the same token (or one file named
 * twice) stop the start, since a token's role could not be told. Lookups compare the presented
 * token with every known one in constant time and without stopping at a match.
 */
import type { AdminConfig, HaConfig } from '../config/schema';
import type { Logger } from '../observe/log';
import type { Role } from './roles';
import { loadOrCreateToken, tokenMatches } from './token';

export interface Credential {
  role: Role;
  /** The config key that names the file, e.g. `admin.tokens[0].file`. */
  key: string;
  file: string;
}

export interface Credentials {
  /** The credential whose token is `presented`, or null. */
  identify(presented: string): Credential | null;
  /** True when ha.sync_token_file is set: /api/ha/* can be used at all. */
  readonly hasSync: boolean;
  /** Every token file, for the files a config sync must never write. */
  readonly files: string[];
}

/** Loads (or generates) every token file; throws with the key and the reason when one is unusable or shared. */
export function loadCredentials(admin: AdminConfig, ha: HaConfig | undefined, log: Logger): Credentials {
  const wanted: Credential[] = [{ role: 'operate', key: 'admin.token_file', file: admin.token_file }];
  admin.tokens.forEach((entry, i) => wanted.push({ role: entry.role, key: `admin.tokens[${i}].file`, file: entry.file }));
  if (ha?.sync_token_file) wanted.push({ role: 'sync', key: 'ha.sync_token_file', file: ha.sync_token_file });

  const loaded: { credential: Credential; token: string }[] = [];
  for (const credential of wanted) {
    const same = loaded.find((other) => other.credential.file === credential.file);
    if (same) throw new Error(`${credential.key}: ${credential.file} is also ${same.credential.key}; every role needs its own token file`);
    let result;
    try {
      result = loadOrCreateToken(credential.file);
    } catch (error) {
      throw new Error(`${credential.key}: ${(error as Error).message}`);
    }
    if (result.generated) {
      const what = credential.key === 'admin.token_file' ? 'admin token' : `${credential.role} token (${credential.key})`;
      log.info({ token_file: credential.file, role: credential.role }, `${what} generated in ${credential.file}`);
    }
    if (result.warning) log.warn({ token_file: credential.file }, result.warning);
    const twin = loaded.find((other) => tokenMatches(result.token, other.token));
    if (twin) throw new Error(`${credential.key}: ${credential.file} holds the same token as ${twin.credential.key} (${twin.credential.file}); every role needs its own token`);
    loaded.push({ credential, token: result.token });
  }

  return {
    identify(presented) {
      let found: Credential | null = null;
      // No early exit: the time taken does not tell which (or whether a) token matched.
      for (const entry of loaded) if (tokenMatches(presented, entry.token) && found === null) found = entry.credential;
      return found;
    },
    hasSync: loaded.some((entry) => entry.credential.role === 'sync'),
    files: loaded.map((entry) => entry.credential.file),
  };
}
