import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { QueueEvents, type Job, type JobState } from 'bullmq';
import type { Redis } from 'ioredis';

import { errors } from '../errors.js';
import { decodeFailure, type JobError } from './outcome.js';
import { QUEUE_NAMES, QUEUE_OF, type JobType, type QueueName, type Queues } from './queues.js';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** A job as the API shows it. */
export interface JobView {
  id: string;
  type: string;
  state: JobStatus;
  progress: number | Record<string, unknown>;
  attempts: number;
  created_at: string;
  finished_at: string | null;
  result: unknown;
  error: JobError | null;
}

const STATUS_OF: Partial<Record<JobState | 'unknown', JobStatus>> = {
  active: 'running',
  completed: 'succeeded',
  failed: 'failed',
};

/** The poll that backs up QueueEvents, whose trimmed stream can miss events under load. */
const POLL_MS = 250;

/**
 * The API's side of the queues: adds jobs, reads their state, and waits (bounded) for them to
 * end. Any Redis failure here is answered 503 at once.
 */
export class JobGateway {
  private readonly events = new Map<QueueName, QueueEvents>();
  private readonly waiting = new Map<string, Set<() => void>>();

  constructor(
    private readonly queues: Queues,
    options: { connection: Redis; prefix: string; listen: QueueName[] },
  ) {
    for (const name of options.listen) {
      const events = new QueueEvents(name, {
        connection: options.connection.duplicate({ maxRetriesPerRequest: null }),
        prefix: options.prefix,
      });
      events.on('completed', ({ jobId }) => this.wake(jobId));
      events.on('failed', ({ jobId }) => this.wake(jobId));
      // Redis outages are reported by the readiness check; QueueEvents reconnects by itself.
      events.on('error', () => undefined);
      this.events.set(name, events);
    }
  }

  async submit<T>(type: JobType, data: T, jobId: string = randomUUID()): Promise<Job<T>> {
    const queue = this.queues[QUEUE_OF[type]];
    try {
      return (await queue.add(type, data, { jobId })) as Job<T>;
    } catch {
      throw errors.queueUnavailable();
    }
  }

  async find(id: string): Promise<Job | undefined> {
    try {
      const found = await Promise.all(QUEUE_NAMES.map((name) => this.queues[name].getJob(id)));
      return found.find((job): job is Job => job !== undefined && job !== null);
    } catch {
      throw errors.queueUnavailable();
    }
  }

  /** Waits until the job ends or `timeoutMs` passes; answers the job's view either way. */
  async wait(job: Job, timeoutMs: number): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    const id = job.id!;

    for (;;) {
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      this.listen(id, wake);

      try {
        const view = await this.view(job);
        const left = deadline - Date.now();
        if (view.state === 'succeeded' || view.state === 'failed' || left <= 0) return view;
        await Promise.race([woken, sleep(Math.min(POLL_MS, left))]);
      } finally {
        this.unlisten(id, wake);
      }
    }
  }

  async view(job: Job): Promise<JobView> {
    let state: JobState | 'unknown';
    let fresh: Job | undefined;
    try {
      state = await job.getState();
      const queue = this.queues[job.queueName as QueueName];
      fresh = state === 'completed' || state === 'failed' ? await queue.getJob(job.id!) : job;
    } catch {
      throw errors.queueUnavailable();
    }
    return toView(fresh ?? job, state);
  }

  async close(): Promise<void> {
    await Promise.all([...this.events.values()].map((events) => events.close()));
  }

  private listen(id: string, wake: () => void): void {
    let set = this.waiting.get(id);
    if (!set) this.waiting.set(id, (set = new Set()));
    set.add(wake);
  }

  private unlisten(id: string, wake: () => void): void {
    const set = this.waiting.get(id);
    set?.delete(wake);
    if (set?.size === 0) this.waiting.delete(id);
  }

  private wake(id: string): void {
    for (const wake of this.waiting.get(id) ?? []) wake();
  }
}

export function toView(job: Job, state: JobState | 'unknown'): JobView {
  const status = STATUS_OF[state] ?? 'queued';
  const progress =
    typeof job.progress === 'object' ? job.progress : status === 'succeeded' ? 100 : 0;

  return {
    id: job.id!,
    type: job.name,
    state: status,
    progress: progress as JobView['progress'],
    attempts: job.attemptsStarted ?? job.attemptsMade,
    created_at: new Date(job.timestamp).toISOString(),
    finished_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    result: status === 'succeeded' ? (job.returnvalue ?? null) : null,
    error: status === 'failed' ? decodeFailure(job.failedReason) : null,
  };
}
