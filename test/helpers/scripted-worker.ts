/**
 * A stand-in for the data-plane serve task (dataplane/worker.ts), for supervisor tests: it
 * speaks the same messages over the same port, and does what the test scripts through shared
 * memory, so start failures, reload failures and slow starts are deterministic. Runs in a
 * real piscina worker thread; opens no sockets.
 */
import type { ServeTask, ToThread } from '../../src/dataplane/messages';

/** Int32 fields of the control buffer (the task's `shared` buffer). */
export const CONTROL = {
  /** 0: listen at once; 1: fail at start (reject); 2: listen once GO is set. */
  START_MODE: 0,
  /** 0: answer reloads; 1: crash (the thread exits) on reload. */
  RELOAD_MODE: 1,
  /** Serve tasks started so far (all slots). */
  STARTS: 2,
  GO: 3,
  /** `marker` of the last config slot 0 applied (start or reload). */
  APPLIED: 4,
  SIZE: 8,
} as const;

/** The scripted worker's "config": the supervisor passes it through without reading it. */
export interface ScriptedConfig {
  pin_workers: false;
  marker: number;
}

export default async function serve(task: ServeTask): Promise<string> {
  const control = new Int32Array(task.shared);
  const { slot, port } = task;
  Atomics.add(control, CONTROL.STARTS, 1);
  const marker = (config: unknown) => (config as ScriptedConfig).marker;
  if (Atomics.load(control, CONTROL.START_MODE) === 1) {
    port.close();
    throw new Error(`scripted start failure in slot ${slot}`);
  }
  if (Atomics.load(control, CONTROL.START_MODE) === 2) {
    // Atomics.waitAsync is in Node 20, not in the ES2022 typings this project compiles against.
    const { waitAsync } = Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number): { async: boolean; value: Promise<string> } };
    const waited = waitAsync(control, CONTROL.GO, 0);
    if (waited.async) await waited.value;
  }
  if (slot === 0) Atomics.store(control, CONTROL.APPLIED, marker(task.config));
  let finish: (value: string) => void = () => {};
  const done = new Promise<string>((resolve) => (finish = resolve));
  port.on('message', (message: ToThread) => {
    if (message.type === 'stop') {
      port.close();
      finish('stopped');
    } else if (message.type === 'reload') {
      if (Atomics.load(control, CONTROL.RELOAD_MODE) === 1) {
        port.postMessage({ type: 'crashed', slot, error: 'Error: scripted failure applying the config' });
        // Exit once the message is on its way, as the real worker does after closing its handles.
        setImmediate(() => process.exit(1));
        return;
      }
      if (slot === 0) Atomics.store(control, CONTROL.APPLIED, marker(message.config));
      port.postMessage({ type: 'reloaded', slot, generation: message.generation, failed: [] });
    }
  });
  port.postMessage({ type: 'listening', slot });
  return done;
}
