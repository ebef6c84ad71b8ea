/**
 * The control plane under traffic: reloads (the config rewritten with new weights, then
 * POST /api/reload or SIGHUP to the child's PID) and drain/online of one server at a time,
 * spaced by the schedule's delays. At most one server of a service is drained at once, so
 * an untouched request always has a server.
 */
import type { CarelbChild } from './carelb';
import type { Stopper } from './cleanup';
import type { Finding } from './checks';
import { controlFor, type ControlOp } from './schedule';

export class Control {
  readonly counts = new Map<string, number>();
  readonly log: { t: number; text: string }[] = [];
  /** Server index drained per service, or null. */
  private readonly drained: Record<'main' | 'raw', number | null> = { main: null, raw: null };
  sighups = 0;

  constructor(
    private readonly child: CarelbChild,
    private readonly seed: number,
    private readonly names: Record<'main' | 'raw', string[]>,
    private readonly findings: Finding[],
  ) {}

  async run(stopper: Stopper): Promise<void> {
    for (let k = 0; k < 100_000 && !stopper.stopped; k++) {
      const op = controlFor(this.seed, k);
      await stopper.sleep(op.delayMs);
      if (stopper.stopped || this.child.exit) return;
      await this.apply(op);
    }
  }

  private count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  private async apply(op: ControlOp): Promise<void> {
    const t = Date.now();
    try {
      switch (op.kind) {
        case 'reload-api': {
          this.child.writeConfig(op.weights);
          const reply = await this.child.admin('POST', '/api/reload');
          if (reply.status !== 200 || reply.json.ok !== true) this.fail(op, `POST /api/reload answered ${reply.status}: ${JSON.stringify(reply.json)}`);
          break;
        }
        case 'reload-sighup':
          this.child.writeConfig(op.weights);
          process.kill(this.child.pid, 'SIGHUP');
          this.sighups++;
          break;
        case 'drain':
        case 'online': {
          const vs = op.vs;
          let server: number = op.server;
          let verb: 'drain' | 'online' = op.kind;
          // Never drain both servers of a service: bring back the drained one instead.
          if (verb === 'drain' && this.drained[vs] !== null && this.drained[vs] !== server) verb = 'online';
          if (verb === 'online' && this.drained[vs] !== null) server = this.drained[vs]!;
          await this.setState(vs, server, verb);
          break;
        }
      }
      this.count(op.kind);
      this.log.push({ t, text: `${op.kind}${op.kind === 'drain' || op.kind === 'online' ? ` ${op.vs}` : ''} (control #${op.index})` });
    } catch (error) {
      this.fail(op, (error as Error).message);
    }
  }

  async setState(vs: 'main' | 'raw', server: number, verb: 'drain' | 'online'): Promise<void> {
    const name = this.names[vs][server];
    const reply = await this.child.admin('POST', `/api/servers/${vs}/${name}/${verb}`);
    if (reply.status !== 200 || reply.json.admin !== verb) throw new Error(`POST /api/servers/${vs}/${name}/${verb} answered ${reply.status}: ${JSON.stringify(reply.json)}`);
    this.drained[vs] = verb === 'drain' ? server : null;
  }

  /** Brings every drained server back (before the final probes). */
  async allOnline(): Promise<void> {
    for (const vs of ['main', 'raw'] as const) if (this.drained[vs] !== null) await this.setState(vs, this.drained[vs]!, 'online');
  }

  /** The control operation nearest before `t`, for failure reports. */
  before(t: number): string {
    for (let i = this.log.length - 1; i >= 0; i--) if (this.log[i].t <= t) return `${this.log[i].text} ${t - this.log[i].t} ms before`;
    return 'none before';
  }

  private fail(op: ControlOp, text: string): void {
    this.count(`${op.kind} failed`);
    this.findings.push({ kind: 'control', text: `control #${op.index} ${op.kind}: ${text}` });
  }
}
