/**
 * Writing files that other processes read (certificates, keys, the config, keepalived's files):
 * through a temporary file in the target's own directory, then rename, so a reader sees the
 * old file or the new one, never half of one (issue 13). The temporary file is created
 * exclusively under a random name (O_CREAT|O_EXCL|O_NOFOLLOW): nothing planted at a predictable
 * name can make the write land elsewhere. Modes are set exactly (fchmod), whatever the umask.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Writes `content` to `path` (its directory must exist) with exactly `mode`; the previous file is replaced atomically. */
export function writeFileAtomic(path: string, content: Buffer | string, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    try {
      fchmodSync(fd, mode);
      const bytes = typeof content === 'string' ? Buffer.from(content) : content;
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already renamed or never created */
    }
    throw error;
  }
}

/**
 * Creates the missing directories from `root` (which exists) down to `dir`, one level at a
 * time with exactly `mode`, refusing to pass through anything that is not a directory (a link
 * planted meanwhile included). Returns the directories it created, outermost first.
 */
export function makeDirsBelow(root: string, dir: string, mode = 0o750): string[] {
  if (dir === root) return [];
  if (!dir.startsWith(`${root}/`)) throw new Error(`${dir} is not under ${root}`);
  const created: string[] = [];
  let current = root;
  for (const part of dir.slice(root.length + 1).split('/')) {
    current = join(current, part);
    try {
      mkdirSync(current, { mode });
      chmodSync(current, mode);
      created.push(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (!lstatSync(current).isDirectory()) throw Object.assign(new Error(`${current} is not a directory`), { code: 'ENOTDIR' });
    }
  }
  return created;
}
