/**
 * Installing the files of an accepted config sync, all or nothing (issue 13): each file goes
 * through writeFileAtomic (exclusive random temporary file, exact mode, rename); the previous
 * content and mode of every file touched is kept in memory, and missing directories are
 * created below the sync root only. rollback() puts every file back (or removes it when it did
 * not exist) and removes the directories this install created. Primary only; synchronous.
 */
import { lstatSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { makeDirsBelow, writeFileAtomic } from './atomic-write';

interface Backup {
  path: string;
  /** Previous content and mode, or null when the file did not exist. */
  previous: { content: Buffer; mode: number } | null;
}

function backupOf(path: string): Backup {
  try {
    return { path, previous: { content: readFileSync(path), mode: lstatSync(path).mode & 0o7777 } };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path, previous: null };
    throw error;
  }
}

export class Installer {
  private readonly backups: Backup[] = [];
  private readonly createdDirs: string[] = [];

  /** `root`: the sync root's real path; every file installed lies under it. */
  constructor(private readonly root: string) {}

  /** Writes `content` to `path` with exactly `mode` (or the previous file's mode when `mode` is 'keep'). Throws on failure; call rollback then. */
  install(path: string, content: Buffer, mode: number | { keep: number }): void {
    const backup = backupOf(path);
    this.backups.push(backup);
    this.createdDirs.push(...makeDirsBelow(this.root, dirname(path)));
    const exact = typeof mode === 'number' ? mode : (backup.previous?.mode ?? mode.keep);
    writeFileAtomic(path, content, exact);
  }

  /** Puts back everything install() changed, newest first; returns what could not be restored. */
  rollback(): string[] {
    const failed: string[] = [];
    for (const backup of this.backups.reverse()) {
      try {
        if (backup.previous) writeFileAtomic(backup.path, backup.previous.content, backup.previous.mode);
        else unlinkSync(backup.path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !backup.previous) continue;
        failed.push(`${backup.path}: could not be restored (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
      }
    }
    for (const dir of this.createdDirs.reverse()) {
      try {
        rmdirSync(dir);
      } catch {
        /* not empty (something else was put there) or gone: leave it */
      }
    }
    this.backups.length = 0;
    this.createdDirs.length = 0;
    return failed;
  }
}
