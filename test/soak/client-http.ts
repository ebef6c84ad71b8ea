/**
 * The node:http client: with a keep-alive agent (connections reused between requests, as
 * browsers and SDKs do) or without one (a connection per request, Connection: close). Plays
 * the client side of a plan: Content-Length or chunked upload, Expect: 100-continue, slow
 * uploads, stalled uploads, slow reading, and aborts at the planned point.
 */
import * as http from 'node:http';
import { Content } from './content';
import { Prng, Stream } from './prng';
import type { Plan } from './schedule';
import { judge, type Outcome, type Result, type Tracker } from './tracker';

export interface ClientContext {
  portOf(vs: Plan['vs']): number;
  content: Content;
  agent: http.Agent;
}

/** Piece sizes on the client side, from the plan's own generator. */
export function clientPieces(plan: Plan): () => number {
  const rng = new Prng(plan.pieceSeed, Stream.Request, 1);
  return () => rng.logInt(256, 64 * 1024);
}

export function runHttpClient(plan: Plan, ctx: ClientContext, tracker: Tracker): Promise<Result> {
  return new Promise((resolve) => {
    const chaos = plan.clientChaos;
    let settled = false;
    let onPurpose = false;
    let status: number | null = null;
    /** A final response started: stop uploading (as curl does). */
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const verifier = ctx.content.verifier(Content.salt(plan.index, 'response'), plan.method === 'HEAD' ? 0 : plan.respSize);

    const headers: http.OutgoingHttpHeaders = { host: 'soak.test' };
    if (plan.method === 'POST') {
      if (plan.reqFraming === 'cl') headers['content-length'] = String(plan.reqSize);
      else headers['transfer-encoding'] = 'chunked';
      if (chaos.kind === 'expect') headers.expect = '100-continue';
    }
    const req = http.request({
      host: '127.0.0.1',
      port: ctx.portOf(plan.vs),
      method: plan.method,
      path: `/soak/${plan.index}`,
      headers,
      agent: plan.client === 'agent' ? ctx.agent : false,
    });

    const finish = (outcome: Outcome, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      tracker.end();
      // A response that ended before the upload did leaves the connection unusable: close it.
      if (outcome !== 'ok' || !req.writableFinished) req.destroy();
      resolve({
        plan,
        outcome,
        detail,
        status,
        started: tracker.started,
        ended: Date.now(),
        sent: tracker.sent,
        received: tracker.received,
        stage: tracker.stage,
        maxGapMs: tracker.maxGapMs,
        headAt: tracker.headAt,
        reusedSocket: req.reusedSocket,
      });
    };
    const abortOnPurpose = () => {
      if (settled) return;
      onPurpose = true;
      finish('aborted', `client closed on purpose (${chaos.kind}) while ${tracker.stage}`);
    };
    tracker.onStuck = (idle) => finish('stuck', `no progress for ${idle} ms while ${tracker.stage}`);

    req.on('socket', () => tracker.progress());
    req.on('information', () => tracker.progress());
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (onPurpose) return;
      finish('cut', `${error.code ?? ''} ${error.message} while ${tracker.stage}`.trim());
    });
    let response: http.IncomingMessage | null = null;
    req.on('close', () => {
      if (settled) return;
      // The socket closed; a response that arrived whole may still be buffered in a paused
      // stream (slow reader): its 'end' comes after resume.
      if (response?.complete) return;
      finish(onPurpose ? 'aborted' : 'cut', `connection closed while ${tracker.stage}${response ? ` after ${tracker.received} body bytes` : ''}`);
    });

    req.on('response', (res) => {
      response = res;
      answered = true;
      tracker.headAt = Date.now();
      status = res.statusCode ?? null;
      tracker.progress();
      tracker.stage = 'downloading';
      const pauses = chaos.kind === 'slow-reader' ? [...chaos.pauses] : [];
      res.on('data', (chunk: Buffer) => {
        tracker.received += chunk.length;
        tracker.progress();
        verifier.feed(chunk);
        if (chaos.kind === 'abort-download' && tracker.received > chaos.atByte) return abortOnPurpose();
        if (pauses.length > 0 && tracker.received > pauses[0].atByte) {
          const pause = pauses.shift()!;
          res.pause();
          tracker.pause();
          void tracker.sleep(pause.ms).then(() => {
            tracker.resume();
            if (!settled) res.resume();
          });
        }
      });
      res.on('end', () => {
        const verdict = judge(plan, { status: res.statusCode!, header: (name) => headerText(res.headers[name]), body: verifier });
        finish(verdict.outcome, verdict.detail);
      });
      res.on('aborted', () => !onPurpose && finish('cut', `response cut after ${tracker.received} body bytes`));
      res.on('error', () => !onPurpose && finish('cut', `response cut after ${tracker.received} body bytes`));
    });

    if (chaos.kind === 'abort-wait') timer = setTimeout(abortOnPurpose, chaos.ms);

    void (async () => {
      if (plan.method !== 'POST') {
        tracker.stage = 'awaiting the response';
        req.end();
        return;
      }
      // node:http holds the head until the first body write: send it now, so a pause before the
      // first body byte is a pause carelb sees.
      req.flushHeaders();
      if (chaos.kind === 'expect') {
        // The body after 100 Continue, or after 1 s without it (curl's rule).
        tracker.stage = 'waiting for 100 Continue';
        await Promise.race([new Promise((r) => req.once('continue', r)), tracker.sleep(1000)]);
      }
      await upload(plan, ctx.content, tracker, {
        write: (chunk) =>
          new Promise<void>((r) => {
            const n = chunk.length;
            const ok = req.write(chunk, () => {
              tracker.sent += n;
              tracker.progress();
            });
            if (ok) r();
            else wakeOnce(req, r);
          }),
        stop: () => settled || answered,
        abort: abortOnPurpose,
      });
      if (!settled && !answered) {
        tracker.stage = 'awaiting the response';
        req.end();
      }
    })();
  });
}

/** Resolves on 'drain' or 'close', whichever comes first, leaving no listener behind. */
export function wakeOnce(emitter: NodeJS.EventEmitter, resolve: () => void): void {
  const wake = () => {
    emitter.off('drain', wake);
    emitter.off('close', wake);
    resolve();
  };
  emitter.on('drain', wake);
  emitter.on('close', wake);
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

export interface UploadOps {
  write(chunk: Buffer): Promise<void>;
  /** True when the upload should stop (request ended, or a final response arrived). */
  stop(): boolean;
  abort(): void;
}

/** Sends the planned body through `ops`, with the client chaos that concerns uploads. */
export async function upload(plan: Plan, content: Content, tracker: Tracker, ops: UploadOps): Promise<void> {
  const chaos = plan.clientChaos;
  const size = plan.reqSize;
  const salt = Content.salt(plan.index, 'request');
  const nextSize = clientPieces(plan);
  // Points where the client stops for a while, and where it gives up.
  const gaps: { at: number; ms: number }[] = [];
  if (chaos.kind === 'slow-upload') {
    // One gap per distinct offset: on a tiny body several would fall on the same byte and add
    // up to a stall longer than client_body_idle.
    const offsets = new Set(Array.from({ length: chaos.pieces - 1 }, (_, p) => Math.floor(((p + 1) * size) / chaos.pieces)));
    for (const at of offsets) gaps.push({ at, ms: chaos.gapMs });
  }
  if (chaos.kind === 'stall-upload') gaps.push({ at: chaos.atByte, ms: chaos.ms });
  const abortAt = chaos.kind === 'abort-upload' ? chaos.atByte : -1;
  tracker.stage = 'uploading';
  let offset = 0;
  while (offset < size && !ops.stop()) {
    const limit = Math.min(size, gaps.length > 0 ? gaps[0].at : size, abortAt >= 0 ? abortAt : size);
    if (offset >= limit) {
      if (abortAt >= 0 && offset >= abortAt) return ops.abort();
      const gap = gaps.shift()!;
      tracker.stage = `pausing the upload ${gap.ms} ms at byte ${offset}`;
      tracker.pause();
      await tracker.sleep(gap.ms);
      tracker.resume();
      tracker.stage = 'uploading';
      continue;
    }
    const n = Math.min(nextSize(), limit - offset);
    await ops.write(content.slice(salt, offset, n));
    offset += n;
  }
  if (abortAt >= 0 && !ops.stop()) ops.abort();
}
