/**
 * One bench at a time per machine. Two runs at once share both CPUs and invalidate each
 * other's numbers without either noticing, so a run takes a lock directory in /tmp (mkdir is
 * atomic) holding the owner's PID and start time, and waits for a running one to finish. A
 * lock whose owner is gone is taken over. /tmp is fixed on purpose, not os.tmpdir(): TMPDIR
 * differs between callers (the smoke test sets its own) and the lock must be shared.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const LOCK_DIR = '/tmp/carelb-bench.lock';
const OWNER = path.join(LOCK_DIR, 'owner');

function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The live owner's PID, or undefined when the lock is free or stale. */
function liveOwner(): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(OWNER, 'utf8');
  } catch {
    // Lock directory without owner: just being created, or left by a crash between the two
    // steps. Judge by age.
    try {
      const age = Date.now() - fs.statSync(LOCK_DIR).mtimeMs;
      return age < 5000 ? -1 : undefined;
    } catch {
      return undefined;
    }
  }
  const [pid, start] = text.trim().split(' ');
  return startTime(Number(pid)) === start ? Number(pid) : undefined;
}

let held = false;

function tryTake(): boolean {
  try {
    fs.mkdirSync(LOCK_DIR);
  } catch {
    return false;
  }
  fs.writeFileSync(OWNER, `${process.pid} ${startTime(process.pid) ?? ''}\n`);
  held = true;
  return true;
}

/** Releases the lock if this process holds it. Synchronous: safe in an 'exit' handler. */
export function releaseLock(): void {
  if (!held) return;
  held = false;
  fs.rmSync(LOCK_DIR, { recursive: true, force: true });
}

/**
 * Takes the lock, waiting up to waitMs for another run to finish. Returns undefined once held,
 * or a note when it gave up waiting (the run then goes ahead, flagged).
 */
export async function acquireLock(waitMs: number, onWait: (ownerPid: number) => void): Promise<string | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (tryTake()) return undefined;
    const owner = liveOwner();
    if (owner === undefined) {
      // Stale: its owner died without cleaning up. Remove and retry.
      fs.rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      return `another bench run${owner > 0 ? ` (pid ${owner})` : ''} was running at the same time: both runs' numbers are disturbed`;
    }
    if (owner > 0) onWait(owner);
    await new Promise((r) => setTimeout(r, 500));
  }
}
