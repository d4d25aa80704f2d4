import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';

import { JOB_TYPES, type JobType } from '../jobs/queues.js';
import type { WorkerDeps } from './deps.js';
import { createDomain } from './domain-create.js';
import { createUser } from './user-create.js';

type Processor = (job: Job, deps: WorkerDeps) => Promise<unknown>;

const PROCESSORS: Record<JobType, Processor> = {
  [JOB_TYPES.userCreate]: createUser,
  [JOB_TYPES.domainCreate]: createDomain,
};

export interface WorkerOptions {
  connection: Redis;
  prefix: string;
  concurrency: number;
}

export interface RunningWorkers {
  workers: Worker[];
  /** Stops taking jobs and waits for active ones, at most `deadlineMs`. */
  close(deadlineMs?: number): Promise<void>;
}

export function startWorkers(deps: WorkerDeps, options: WorkerOptions): RunningWorkers {
  const provisioning = new Worker('provisioning', (job) => runJob(job, deps), {
    connection: options.connection,
    prefix: options.prefix,
    concurrency: options.concurrency,
  });

  provisioning.on('error', (err) => deps.logger.error({ err: String(err) }, 'worker error'));

  const workers = [provisioning];
  let closing: Promise<void> | undefined;

  return {
    workers,
    close(deadlineMs = 30_000) {
      closing ??= closeWithin(workers, deadlineMs);
      return closing;
    },
  };
}

async function runJob(job: Job, deps: WorkerDeps): Promise<unknown> {
  const started = Date.now();
  const context = {
    jobId: job.id,
    type: job.name,
    attempt: job.attemptsMade + 1,
    requestId: (job.data as { requestId?: string })?.requestId,
  };
  const processor = PROCESSORS[job.name as JobType];
  if (!processor) throw new UnrecoverableError(`500 internal_error: unknown job type ${job.name}`);

  try {
    const result = await processor(job, deps);
    deps.logger.info({ ...context, outcome: 'succeeded', ms: Date.now() - started }, 'job');
    return result;
  } catch (err) {
    const final = err instanceof UnrecoverableError;
    const level = final ? 'warn' : 'info';
    const outcome = final ? 'failed' : 'retrying';
    deps.logger[level](
      { ...context, outcome, ms: Date.now() - started, reason: (err as Error).message },
      'job',
    );
    throw err;
  }
}

/**
 * `Worker.close()` waits for active jobs without a deadline. Past the deadline, the workers are
 * closed with `force`: their active jobs stay in Redis and go back to the queue when their lock
 * lapses, to be run again (every processor is safe to run twice).
 */
async function closeWithin(workers: Worker[], deadlineMs: number): Promise<void> {
  const graceful = Promise.all(workers.map((worker) => worker.close()));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), deadlineMs);
  });

  const outcome = await Promise.race([graceful.then(() => 'done' as const), deadline]);
  clearTimeout(timer);
  if (outcome === 'late') await Promise.all(workers.map((worker) => worker.close(true)));
}
