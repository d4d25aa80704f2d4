import type { Job } from 'bullmq';

import type { JobType } from '../jobs/queues.js';
import type { ApiDeps } from './deps.js';
import type { ApiContext } from './middleware.js';
import { answerJob } from './respond.js';

export interface WriteOptions {
  /** Writes with the same key (one user, one domain) are carried out in the order accepted. */
  orderKey?: string;
  /** The status of the synchronous answer; its body is the job's result. */
  status: number;
  /** Answer 202 at once unless the client asks to wait (`Prefer: wait=N`). */
  asyncByDefault?: boolean;
}

/**
 * Turns a validated write into a job and answers it: honours `Idempotency-Key` (a repeat gets
 * the same job), then waits for the job as the client prefers.
 */
export async function submitWrite<T extends object>(
  ctx: ApiContext,
  deps: ApiDeps,
  type: JobType,
  data: T,
  options: WriteOptions,
): Promise<void> {
  const key = ctx.get('Idempotency-Key');
  let job: Job | undefined;
  let jobId: string | undefined;

  if (key) {
    const claim = await deps.idempotency.claim(key, ctx.method, ctx.path, ctx.request.body);
    jobId = claim.jobId;
    if (!claim.fresh) {
      ctx.set('Idempotent-Replayed', 'true');
      job = await deps.gateway.find(claim.jobId);
    }
  }

  // A replayed key whose job is gone (never added, or removed) adds it under the same id.
  const added = !job;
  job ??= await deps.gateway.submit(type, data, { jobId, orderKey: options.orderKey });

  const policy = {
    syncTimeoutMs: options.asyncByDefault ? 0 : deps.config.syncTimeoutMs,
  };
  await answerJob(ctx, deps.gateway, job, policy, options.status, added);
}
