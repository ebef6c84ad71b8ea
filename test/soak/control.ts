/**
 * The control plane and the servers' own life under traffic, spaced by the schedule's delays:
 * - reloads: the config rewritten with new weights, then POST /api/reload or SIGHUP to the
 *   child's PID;
 * - drain/online of a server through the admin API;
 * - listener-down: a raw server stops accepting connections for a while (its open
 *   connections keep working), so carelb's connects to it fail and must go elsewhere.
 * At most one server per service is impaired (drained or not listening) at a time, so an
 * untouched request always has somewhere to go.
 */
import type { CarelbChild } from './carelb';
import type { Stopper } from './cleanup';
import type { Finding } from './checks';
import { controlFor, type ControlOp, type Vs } from './schedule';
import type { SoakServer } from './servers';

type Impairment = { server: number; how: 'drain' | 'down' } | null;

export class Control {
  readonly counts = new Map<string, number>();
  readonly log: { t: number; text: string }[] = [];
  private readonly impaired: Record<Vs, Impairment> = { main: null, raw: null, queue: null };
  /** Listeners down now: each resolves when its server listens again. */
  private readonly relistening = new Set<Promise<void>>();
  sighups = 0;

  constructor(
    private readonly child: CarelbChild,
    private readonly seed: number,
    private readonly servers: Record<Vs, SoakServer[]>,
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
    let text: string = op.kind;
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
          const vs = op.vs as 'main' | 'raw';
          const now = this.impaired[vs];
          if (op.kind === 'drain' && now === null) {
            await this.setState(vs, op.server, 'drain');
            text = `drain ${this.servers[vs][op.server].name}`;
          } else if (now?.how === 'drain') {
            // Bring the drained one back (a second drain in the service becomes an online).
            await this.setState(vs, now.server, 'online');
            text = `online ${this.servers[vs][now.server].name}`;
          } else {
            // Nothing to bring back, or the service's other server is not listening: an online
            // of a server that is online already (must be harmless).
            await this.setState(vs, op.server, 'online');
            text = `online ${this.servers[vs][op.server].name} (already online)`;
          }
          break;
        }
        case 'listener-down': {
          const vs = op.vs;
          if (this.impaired[vs] !== null) {
            text = `listener-down ${vs} skipped (a server is already impaired)`;
            break;
          }
          const server = this.servers[vs][op.server];
          this.impaired[vs] = { server: op.server, how: 'down' };
          text = `listener-down ${server.name} for ${op.downMs} ms`;
          const back = server.stopListening(op.downMs).then(
            () => {
              this.impaired[vs] = null;
              this.relistening.delete(back);
            },
            (error: Error) => {
              this.relistening.delete(back);
              this.fail(op, `${server.name} could not listen again: ${error.message}`);
            },
          );
          this.relistening.add(back);
          break;
        }
      }
      this.count(op.kind);
      this.log.push({ t, text: `${text} (control #${op.index})` });
    } catch (error) {
      this.fail(op, (error as Error).message);
    }
  }

  private async setState(vs: 'main' | 'raw', server: number, verb: 'drain' | 'online'): Promise<void> {
    const name = this.servers[vs][server].name;
    const reply = await this.child.admin('POST', `/api/servers/${vs}/${name}/${verb}`);
    if (reply.status !== 200 || reply.json.admin !== verb) throw new Error(`POST /api/servers/${vs}/${name}/${verb} answered ${reply.status}: ${JSON.stringify(reply.json)}`);
    if (verb === 'drain') this.impaired[vs] = { server, how: 'drain' };
    else if (this.impaired[vs]?.how === 'drain') this.impaired[vs] = null;
  }

  /** Every server listening and online again (before the final probes). */
  async restoreAll(): Promise<void> {
    await Promise.all([...this.relistening]);
    for (const vs of ['main', 'raw'] as const) {
      const now = this.impaired[vs];
      if (now?.how === 'drain') await this.setState(vs, now.server, 'online');
    }
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
