import { Queue, type JobsOptions } from 'bullmq';

import type { RedisClient } from '../redis.js';

export const QUEUE_NAMES = ['provisioning', 'logout', 'imports'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** Job types, which are also BullMQ job names. */
export const JOB_TYPES = {
  userCreate: 'user.create',
  userUpdate: 'user.update',
  userDelete: 'user.delete',
  userLogout: 'user.logout',
  domainCreate: 'domain.create',
  domainUpdate: 'domain.update',
  domainDelete: 'domain.delete',
  domainLogout: 'domain.logout',
  htableCreate: 'htable.create',
  htableDelete: 'htable.delete',
  importCancel: 'import.cancel',
} as const;
export type JobType = (typeof JOB_TYPES)[keyof typeof JOB_TYPES];

export const QUEUE_OF: Record<JobType, QueueName> = {
  'import.cancel': 'imports',
  'user.create': 'provisioning',
  'user.update': 'provisioning',
  'user.delete': 'provisioning',
  'user.logout': 'logout',
  'domain.create': 'provisioning',
  'domain.update': 'provisioning',
  'domain.delete': 'provisioning',
  'domain.logout': 'logout',
  'htable.create': 'provisioning',
  'htable.delete': 'provisioning',
};

export interface RetryPolicy {
  attempts: number;
  backoffMs: number;
  /** How long finished jobs are kept (BullMQ removes them lazily, as later jobs finish). */
  keepSucceededS: number;
  keepFailedS: number;
}

/**
 * Options for every kitter job: retries with exponential backoff and jitter, and finished jobs
 * kept long enough for their status to stay answerable (by default a day, a week when failed),
 * and no longer.
 */
export function jobOptions(policy: RetryPolicy): JobsOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: policy.keepSucceededS },
    removeOnFail: { age: policy.keepFailedS },
  };
}

export type Queues = Record<QueueName, Queue>;

/**
 * The queues as the API uses them. Their connection errors are reported through `onError`
 * (the readiness check says when Redis is down; ioredis reconnects by itself).
 */
export function createQueues(
  connection: RedisClient,
  prefix: string,
  policy: RetryPolicy,
  onError: (err: Error, queue: QueueName) => void,
): Queues {
  const make = (name: QueueName) => {
    const queue = new Queue(name, { connection, prefix, defaultJobOptions: jobOptions(policy) });
    queue.on('error', (err) => onError(err, name));
    return queue;
  };
  return { provisioning: make('provisioning'), logout: make('logout'), imports: make('imports') };
}
