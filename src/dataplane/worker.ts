/**
 * Data-plane thread entry: the long-running serve task piscina runs once per thread.
 *
 * It maps the shared state, opens a uWS listener for every virtual service (all threads bind
 * the same address and port; the kernel spreads connections, SO_REUSEPORT), runs the
 * timeout sweep, and resolves only when the primary asks it to stop. A thread must close
 * every listener and socket before its loop ends (uWS aborts the whole process otherwise),
 * so a crash is caught here, everything is closed, and only then does the thread exit for
 * piscina to replace it.
 */
import { readlinkSync } from 'node:fs';
import { loadNativeUws, type Uws } from '../native';
import { mapShared } from '../state/layout';
import type { FromThread, ServeTask, ToThread } from './messages';
import { DataPlane } from './plane';
import { ThreadObserver } from './observe';
import { RateTable } from '../state/rate-table';
import { InvariantCounter } from '../state/invariants';
import { ThrottledReporter } from './faults';
import { startCoarseClock, stopCoarseClock } from '../state/coarse-clock';

const SWEEP_INTERVAL_MS = 100;

function threadId(): number {
  // "/proc/thread-self" links to "PID/task/TID".
  return Number(readlinkSync('/proc/thread-self').split('/').pop());
}

/** Resolves after two loop iterations, by which libuv has run the close callbacks of handles closed now. */
function afterCloseCallbacks(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

export default async function serve(task: ServeTask): Promise<string> {
  const { slot, port } = task;
  const send = (message: FromThread) => port.postMessage(message);
  const uws: Uws = loadNativeUws();
  const observer = new ThreadObserver((batch) => send({ type: 'observe', slot, batch }));
  const views = mapShared(task.shared, task.shape);
  const reporter = new ThrottledReporter((kind, message, suppressed) => send({ type: 'report', slot, kind, message, suppressed }));
  const plane = new DataPlane(uws, views, slot, {
    passiveDown: (serverSlot, reason) => send({ type: 'passive-down', slot, serverSlot, reason }),
    observer,
    report: (kind, message) => reporter.report(kind, message),
    invariants: new InvariantCounter(views.stats, views.layout.invariant(slot, 0)),
  }, new RateTable(task.rates));
  send({ type: 'started', slot, tid: threadId() });

  startCoarseClock();
  const sweep = setInterval(() => plane.sweep(Date.now()), SWEEP_INTERVAL_MS);
  let finish: (result: string) => void = () => {};
  const done = new Promise<string>((resolve) => (finish = resolve));

  const closeSockets = () => {
    clearInterval(sweep);
    stopCoarseClock();
    observer.close();
    plane.closeAll();
  };

  const onCrash = (error: unknown) => {
    send({ type: 'crashed', slot, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    // The port stays open so the message above still reaches the primary.
    closeSockets();
    // Let libuv finish closing the handles before the thread goes.
    void afterCloseCallbacks().then(() => process.exit(1));
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);

  const stop = async (graceMs: number) => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([plane.drain(), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    closeSockets();
    port.close();
    // uv_close completes in a later loop turn; the thread must not end before it does.
    await afterCloseCallbacks();
    finish('stopped');
  };

  port.on('message', (message: ToThread) => {
    switch (message.type) {
      case 'stop':
        void stop(message.graceMs);
        break;
      case 'reload':
        void plane.apply(message.config, message.plan).then((failed) => send({ type: 'reloaded', slot, generation: message.generation, failed }));
        break;
      case 'crash':
        if (process.env.CARELB_FAULT_INJECTION === '1') {
          setImmediate(() => {
            throw new Error('fault injection: thread crash requested');
          });
        }
        break;
    }
  });

  let failed: string[];
  try {
    failed = await plane.apply(task.config, task.plan);
  } catch (error) {
    // Cannot start (e.g. a certificate file gone): end like a crash, handles closed and the
    // thread gone, so piscina replaces it with a clean one when the primary retries.
    onCrash(error);
    return done;
  }
  if (failed.length > 0) {
    const vs = task.config.virtual_services.find((v) => v.name === failed[0])!;
    send({ type: 'listen-failed', slot, service: vs.name, address: `${vs.listen.host}:${vs.listen.port}` });
    closeSockets();
    port.close();
    await afterCloseCallbacks();
    return 'listen-failed';
  }
  send({ type: 'listening', slot });
  return done;
}
