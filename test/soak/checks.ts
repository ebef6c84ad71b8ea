/**
 * What counts as a sensible end for each request, and what is a finding.
 *
 * - Untouched (server behaved, client behaved, and nothing else can reach it): must be ok.
 *   Slow but in-bounds behaviour (slow server, trickled body, 1xx, slow reader, slow uploader,
 *   Expect: 100-continue, a server that closes the connection after answering, a stale
 *   keep-alive connection under a GET, a server not accepting connections for a while) is
 *   still "behaved": carelb must get those right too.
 * - Chaos-touched: may fail, but only in the ways that chaos explains (a reset server: a cut
 *   or 502 CLB_SERVER_CLOSED; a server that never answers: 504 CLB_SERVER_TIMEOUT; ...).
 * - Never sensible: a wrong answer (bytes, length, another request's answer), a stuck request,
 *   a POST that reached a server twice (it must never be replayed).
 */
import { REPLAY_LIMIT } from '../../src/dataplane/request-body';
import type { Observation } from './servers';
import type { Plan } from './schedule';
import type { Outcome, Result } from './tracker';

/** A response head may take this long from the server's write to the client. */
const HEAD_DELAY_MS = 1000;

export interface Expectation {
  /** Outcomes that are not findings. */
  allowed: Set<Outcome>;
  /** Neither side did anything out of bounds: anything but ok is a finding. */
  untouched: boolean;
  /** Why a non-ok outcome is allowed, for the report ("stale keep-alive", ...). */
  because: string[];
}

const BENIGN_SERVER = new Set(['none', 'slow', 'trickle', 'info', 'close-after']);
const BENIGN_CLIENT = new Set(['none', 'slow-reader', 'slow-upload', 'expect']);

export function expectationFor(plan: Plan): Expectation {
  const allowed = new Set<Outcome>(['ok']);
  const because: string[] = [];
  const server = plan.server.kind;
  const client = plan.clientChaos.kind;
  switch (server) {
    case 'reset':
      allowed.add('cut').add('carelb:CLB_SERVER_CLOSED');
      because.push('the server reset the connection mid-response');
      break;
    case 'stall-head':
      allowed.add('carelb:CLB_SERVER_TIMEOUT');
      because.push('the server never answered');
      break;
    case 'stall-body':
      allowed.add('cut').add('carelb:CLB_SERVER_TIMEOUT');
      because.push('the server stopped mid-body');
      break;
    case 'early':
      allowed.add('cut').add('carelb:CLB_SERVER_CLOSED');
      because.push('the server answered before reading the body');
      break;
    case 'drop-reused':
      // GET and HEAD are retried on a fresh connection: they must succeed. A POST is not replayed.
      if (plan.method === 'POST') {
        allowed.add('carelb:CLB_SERVER_CLOSED');
        because.push('the server closed a reused connection on the POST (not replayed)');
      }
      break;
  }
  switch (client) {
    case 'abort-head':
    case 'abort-upload':
    case 'abort-download':
    case 'abort-wait':
      // The client left: it may have got anything that was not wrong before it did.
      for (const o of ['aborted', 'cut', 'carelb:CLB_SERVER_CLOSED', 'carelb:CLB_SERVER_TIMEOUT', 'carelb:CLB_QUEUE_TIMEOUT'] as Outcome[]) allowed.add(o);
      because.push('the client aborted on purpose');
      break;
    case 'stall-upload':
      allowed.add('carelb:CLB_BODY_TIMEOUT').add('cut');
      allowed.delete('ok');
      because.push(`the client stalled its upload longer than client_body_idle`);
      break;
  }
  // A stalled upload must not succeed, unless the server answered first without reading it.
  if (client === 'stall-upload' && server === 'early') allowed.add('ok');
  if (client === 'stall-upload' && server === 'stall-head') allowed.add('carelb:CLB_SERVER_TIMEOUT');
  let untouched = (BENIGN_SERVER.has(server) || (server === 'drop-reused' && plan.method !== 'POST')) && BENIGN_CLIENT.has(client);
  // Service raw closes idle keep-alive connections on its own: a POST may meet one the server
  // just closed, and is never replayed (RFC 9112 §9.3.1). GET and HEAD are retried: still untouched.
  if (plan.vs === 'raw' && plan.method === 'POST') {
    allowed.add('carelb:CLB_SERVER_CLOSED');
    because.push('raw servers close idle keep-alive connections; a POST is not replayed');
    untouched = false;
  }
  // A server of raw or queue may stop listening for a while (listener-down): a failed connect
  // is retried elsewhere only while the body is held whole, up to REPLAY_LIMIT (retry.ts).
  if (plan.vs !== 'main' && plan.reqSize > REPLAY_LIMIT) {
    allowed.add('carelb:CLB_CONNECT_FAILED');
    because.push(`a body over REPLAY_LIMIT (${REPLAY_LIMIT} B) is not replayed after a failed connect`);
    untouched = false;
  }
  return { allowed, untouched, because };
}

export type FindingKind =
  | 'stuck'
  | 'untouched-failed'
  | 'wrong-answer'
  | 'unexpected-outcome'
  | 'post-replayed'
  | 'head-delayed'
  | 'server-anomaly'
  | 'max-conns'
  | 'invariant'
  | 'thread-restart'
  | 'child-exited'
  | 'active-not-zero'
  | 'rss-growth'
  | 'final-probe'
  | 'control'
  | 'harness';

export interface Finding {
  kind: FindingKind;
  text: string;
  /** Seed index of the request concerned, when there is one. */
  index?: number;
  /** When that request started (to name the control operation just before it). */
  at?: number;
  /** What the finding looks like it is, when a known pattern (groups the report). */
  signature?: string;
}

/** Known patterns of failure: the report groups findings by them (they are hints, not proofs). */
export function signatureOf(result: Result): string | undefined {
  const { plan, detail } = result;
  if (/chunked framing|chunk size|chunk data|HPE_STRICT|HPE_INVALID_CHUNK/i.test(detail)) {
    return 'chunked response framing from carelb is corrupt (a chunk size line followed by other bytes)';
  }
  if (result.outcome === 'wrong' && plan.server.kind === 'reset' && plan.respFraming === 'close') {
    return 'a close-delimited response cut by a server reset reaches the client as complete (clean end, or 200 with Content-Length: 0)';
  }
  if (result.outcome === 'wrong' && /crossed responses/.test(detail)) return "a client got another request's answer";
  return undefined;
}

/** The findings one finished request gives (none for a sensible end). */
export function judgeResult(result: Result, seen: Observation[] | undefined, describePlan: (plan: Result['plan']) => string): Finding[] {
  const findings: Finding[] = [];
  const { plan } = result;
  const expectation = expectationFor(plan);
  const where = `${describePlan(plan)} -> ${result.outcome}${result.detail ? ` (${result.detail})` : ''}; ` +
    `${result.sent} B sent, ${result.received} B received in ${result.ended - result.started} ms, longest gap ${result.maxGapMs} ms` +
    `${result.reusedSocket ? ', on a reused client connection' : ''}; servers saw: ${describeSeen(seen)}`;
  const signature = signatureOf(result);
  if (result.outcome === 'stuck') findings.push({ kind: 'stuck', index: plan.index, at: result.started, text: where, signature });
  else if (result.outcome === 'wrong') findings.push({ kind: 'wrong-answer', index: plan.index, at: result.started, text: where, signature });
  else if (!expectation.allowed.has(result.outcome) && !cutWhileUploading(result, expectation)) {
    findings.push({ kind: expectation.untouched ? 'untouched-failed' : 'unexpected-outcome', index: plan.index, at: result.started, text: where, signature });
  }
  // A response head goes on to the client when it arrives, whatever follows (a slow body, a
  // stall): a client waiting for bytes carelb already has is a client left without an answer.
  // Content-Length heads only: uWS v20.30 writes a chunked response's framing header with its
  // first body bytes, so a chunked or close-delimited head cannot leave before them (README,
  // "Limits of the uWebSockets.js v20.30 front end").
  const answered = plan.respFraming === 'cl' ? seen?.filter((o) => o.headAt > 0).pop() : undefined;
  if (answered) {
    const until = result.headAt > 0 ? result.headAt : result.ended;
    if (until - answered.headAt > HEAD_DELAY_MS && result.outcome !== 'aborted') {
      findings.push({
        kind: 'head-delayed',
        index: plan.index,
        at: result.started,
        signature: `a ${plan.respFraming === 'cl' ? 'Content-Length' : plan.respFraming === 'chunked' ? 'chunked' : 'close-delimited'} response head is held back until body bytes follow`,
        text: `the server sent the head ${until - answered.headAt} ms before it reached the client${result.headAt > 0 ? '' : ' (it never did)'}: ${where}`,
      });
    }
  }
  if (plan.method === 'POST' && seen && seen.length > 1) {
    findings.push({ kind: 'post-replayed', index: plan.index, text: `a POST reached servers ${seen.length} times: ${where}` });
  }
  return findings;
}

/**
 * carelb may fail a request while its body is still arriving (502 CLB_SERVER_CLOSED or
 * CLB_CONNECT_FAILED, where the chaos allows them); it then closes the connection at once, and
 * the client's next write meets a reset before it reads the answer. The request failed either
 * way: a cut during the upload is as sensible as the 502 (carelb has no lingering close,
 * RFC 9112 §9.6; the report's notes count these).
 */
export function cutWhileUploading(result: Result, expectation: Expectation): boolean {
  return (
    result.outcome === 'cut' &&
    result.stage.startsWith('uploading') &&
    result.received === 0 &&
    (expectation.allowed.has('carelb:CLB_SERVER_CLOSED') || expectation.allowed.has('carelb:CLB_CONNECT_FAILED'))
  );
}

function describeSeen(seen: Observation[] | undefined): string {
  if (!seen || seen.length === 0) return 'nothing';
  return seen.map((o) => `${o.server} ${o.method} ${o.bodyBytes} B${o.bodyDone ? '' : ' (unfinished)'}${o.bodyOk ? '' : ' CORRUPT'}${o.answered ? ' answered' : ''}${o.dropped ? ' dropped (reused connection)' : ''}`).join(' | ');
}

/** RSS over the second half of the traffic: median of its first 10 % against median of its last 10 %. */
export function rssGrowth(samples: { t: number; kb: number }[], from: number, to: number): { start: number; end: number; growth: number } | null {
  const half = samples.filter((s) => s.t >= from + (to - from) / 2 && s.t <= to);
  if (half.length < 6) return null;
  const tenth = Math.max(1, Math.round(half.length / 10));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const start = median(half.slice(0, tenth).map((s) => s.kb));
  const end = median(half.slice(-tenth).map((s) => s.kb));
  return { start, end, growth: (end - start) / start };
}
