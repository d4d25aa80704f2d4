import type { Job } from 'bullmq';

import { toView, type JobGateway, type JobView } from '../jobs/gateway.js';
import { unavailableFor, type ApiContext } from './middleware.js';

export interface WaitPolicy {
  /** How long a write waits for its job unless the client says otherwise. */
  syncTimeoutMs: number;
}

/** The longest `Prefer: wait=N` honoured, in seconds. */
const MAX_WAIT_S = 60;

/**
 * How long the client wants to wait, from the `Prefer` header (RFC 7240): `respond-async`
 * answers at once, `wait=N` waits up to N seconds.
 */
export function waitTimeMs(ctx: ApiContext, policy: WaitPolicy): number {
  const prefer = ctx.get('Prefer').toLowerCase();
  if (prefer === '') return policy.syncTimeoutMs;

  const tokens = prefer.split(/[,;]/).map((token) => token.trim());
  if (tokens.includes('respond-async')) return 0;

  const wait = tokens.find((token) => token.startsWith('wait='));
  const seconds = wait ? Number(wait.slice('wait='.length)) : NaN;
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, MAX_WAIT_S) * 1000;
  return policy.syncTimeoutMs;
}

/**
 * Answers a write: waits for its job as the client prefers, then gives the result as the
 * synchronous answer (`status`, and the job's result as the body), the job's error, or 202 with the
 * job's address when it is not done yet.
 */
export async function answerJob(
  ctx: ApiContext,
  gateway: JobGateway,
  job: Job,
  policy: WaitPolicy,
  status: number,
  /** The job was added by this request: answered at once, it is queued without asking Redis. */
  added = false,
): Promise<void> {
  const timeoutMs = waitTimeMs(ctx, policy);
  // Set first: an error while waiting (the job removed, Redis away) names the job too.
  ctx.set('Kitter-Job', job.id!);
  let view: JobView;
  if (timeoutMs > 0) view = await gateway.wait(job, timeoutMs);
  else view = added ? toView(job, 'waiting') : await gateway.view(job);

  if (view.state === 'succeeded') {
    ctx.status = status;
    ctx.body = status === 204 ? undefined : view.result;
    return;
  }
  if (view.state === 'failed' && view.error) {
    if (view.error.status === 503) unavailableFor(ctx);
    else ctx.status = view.error.status;
    ctx.body = { error: view.error.error, code: view.error.code };
    return;
  }
  accepted(ctx, view);
}

export function accepted(ctx: ApiContext, view: JobView): void {
  ctx.status = 202;
  ctx.set('Location', `/jobs/${view.id}`);
  if (timeoutPreferred(ctx)) ctx.set('Preference-Applied', 'respond-async');
  ctx.body = { job: view };
}

function timeoutPreferred(ctx: ApiContext): boolean {
  return ctx.get('Prefer').toLowerCase().includes('respond-async');
}
