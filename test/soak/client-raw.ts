/**
 * The raw-socket client, for what node:http will not do: a request head cut off halfway,
 * chunked bodies in odd piece sizes, a socket that simply stops reading. One request per
 * connection; the response is read with the strict reader of http1.ts, so a framing mistake
 * by carelb shows up as a wrong answer rather than being smoothed over.
 */
import * as net from 'node:net';
import { upload, wakeOnce, type ClientContext } from './client-http';
import { Content } from './content';
import { ResponseReader, type Head } from './http1';
import type { Plan } from './schedule';
import { judge, type Outcome, type Result, type Tracker } from './tracker';

export function runRawClient(plan: Plan, ctx: ClientContext, tracker: Tracker): Promise<Result> {
  return new Promise((resolve) => {
    const chaos = plan.clientChaos;
    let settled = false;
    let status: number | null = null;
    let head: Head | null = null;
    let socketError = '';
    let timer: NodeJS.Timeout | undefined;
    let onContinue: (() => void) | null = null;
    const verifier = ctx.content.verifier(Content.salt(plan.index, 'response'), plan.method === 'HEAD' ? 0 : plan.respSize);
    const socket = net.connect({ host: '127.0.0.1', port: ctx.portOf(plan.vs), noDelay: true });

    const finish = (outcome: Outcome, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      tracker.end();
      socket.destroy();
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
        reusedSocket: false,
      });
    };
    const abortOnPurpose = () => finish('aborted', `client closed on purpose (${chaos.kind}) while ${tracker.stage}`);
    tracker.onStuck = (idle) => finish('stuck', `no progress for ${idle} ms while ${tracker.stage}`);

    const pauses = chaos.kind === 'slow-reader' ? [...chaos.pauses] : [];
    const reader = new ResponseReader(
      {
        onInfo: (code) => {
          tracker.progress();
          if (code === 100) onContinue?.();
        },
        onHead: (h) => {
          head = h;
          tracker.headAt = Date.now();
          status = h.status;
          tracker.stage = 'downloading';
          onContinue?.();
        },
        onBody: (chunk) => {
          tracker.received += chunk.length;
          verifier.feed(chunk);
          if (chaos.kind === 'abort-download' && tracker.received > chaos.atByte) return abortOnPurpose();
          if (pauses.length > 0 && tracker.received > pauses[0].atByte) {
            const pause = pauses.shift()!;
            socket.pause();
            tracker.pause();
            void tracker.sleep(pause.ms).then(() => {
              tracker.resume();
              if (!settled) socket.resume();
            });
          }
        },
        onEnd: () => {
          const h = head!;
          const verdict = judge(plan, { status: h.status, header: (name) => h.headers.get(name), body: verifier });
          finish(verdict.outcome, verdict.detail);
        },
        onError: (message) => finish('wrong', `malformed response from carelb: ${message}`),
      },
      plan.method,
    );

    socket.on('connect', () => tracker.progress());
    socket.on('data', (chunk: Buffer) => {
      tracker.progress();
      reader.feed(chunk);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => (socketError = `${error.code ?? error.message}`));
    socket.on('close', () => {
      if (settled) return;
      if (reader.close()) return; // a close-delimited body just ended: judged in onEnd
      const what = head ? `after ${tracker.received} body bytes` : 'before the response head';
      finish('cut', `connection closed ${what}${socketError ? ` (${socketError})` : ''} while ${tracker.stage}`);
    });

    if (chaos.kind === 'abort-wait') timer = setTimeout(abortOnPurpose, chaos.ms);

    const lines = [`${plan.method} /soak/${plan.index} HTTP/1.1`, 'host: soak.test'];
    if (plan.method === 'POST') lines.push(plan.reqFraming === 'cl' ? `content-length: ${plan.reqSize}` : 'transfer-encoding: chunked');
    if (chaos.kind === 'expect') lines.push('expect: 100-continue');
    if (plan.closeHeader) lines.push('connection: close');
    const requestHead = `${lines.join('\r\n')}\r\n\r\n`;

    const write = (data: Buffer | string): Promise<void> =>
      new Promise((r) => {
        const n = typeof data === 'string' ? data.length : data.length;
        const ok = socket.write(data, () => {
          tracker.sent += n;
          tracker.progress();
        });
        if (ok || socket.destroyed) r();
        else wakeOnce(socket, r);
      });

    void (async () => {
      await new Promise<void>((r) => {
        socket.once('connect', r);
        socket.once('close', r);
      });
      if (settled || socket.destroyed) return;
      if (chaos.kind === 'abort-head') {
        tracker.stage = `sending ${chaos.atByte} bytes of the head`;
        await write(requestHead.slice(0, chaos.atByte));
        await tracker.sleep(chaos.ms);
        return abortOnPurpose();
      }
      tracker.stage = 'sending the head';
      await write(requestHead);
      if (plan.method !== 'POST') {
        tracker.stage = 'awaiting the response';
        return;
      }
      if (chaos.kind === 'expect') {
        tracker.stage = 'waiting for 100 Continue';
        await Promise.race([new Promise<void>((r) => (onContinue = r)), tracker.sleep(1000)]);
        onContinue = null;
      }
      const chunked = plan.reqFraming === 'chunked';
      await upload(plan, ctx.content, tracker, {
        write: (chunk) => (chunked ? write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, CRLF])) : write(chunk)),
        stop: () => settled || head !== null,
        abort: abortOnPurpose,
      });
      if (settled || head !== null) return;
      if (chunked) await write('0\r\n\r\n');
      tracker.stage = 'awaiting the response';
    })();
  });
}

const CRLF = Buffer.from('\r\n');
