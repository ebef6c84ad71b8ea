/**
 * Everything the soak starts is registered here and undone in reverse order, whatever
 * happened: the carelb child (by its PID), servers, sockets, agents, timers, temp dirs.
 */
export class Cleanup {
  private readonly steps: { what: string; undo: () => unknown }[] = [];
  readonly errors: string[] = [];

  add(what: string, undo: () => unknown): void {
    this.steps.push({ what, undo });
  }

  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const { what, undo } = this.steps.pop()!;
      try {
        await undo();
      } catch (error) {
        this.errors.push(`cleanup of ${what} failed: ${(error as Error).message}`);
      }
    }
  }
}

/** A counting semaphore: bounds how many large transfers (or queue requests) are in flight. */
export class Semaphore {
  private waiting: (() => void)[] = [];

  constructor(private free: number) {}

  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** A sleep that `stop()` cuts short: deliberate spacing of operations, never a wait for a condition. */
export class Stopper {
  stopped = false;
  private readonly wakers = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  stop(): void {
    this.stopped = true;
    for (const wake of [...this.wakers]) wake();
  }
}

/** Polls `condition` every `everyMs` until it holds or `limitMs` pass; returns whether it held. */
export async function pollUntil(condition: () => Promise<boolean> | boolean, limitMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
