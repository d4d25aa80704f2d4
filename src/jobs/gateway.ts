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
  /** 0–100. */
  progress: number;
  /** For jobs that fan out over many users: how many are done, of how many. */
  done?: number;
  total?: number;
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

/** How long the last job of an order key is remembered: longer than any job waits. */
const ORDER_TTL_S = 24 * 3600;

/** Set on a job that must wait for an earlier job on the same user or domain. */
export interface Ordered {
  after?: string;
}

/** The poll that backs up QueueEvents, whose trimmed stream can miss events under load. */
const POLL_MS = 250;

/**
 * The API's side of the queues: adds jobs, reads their state, and waits (bounded) for them to
 * end. Any Redis failure here is answered 503 at once.
 */
export class JobGateway {
  private readonly events = new Map<QueueName, QueueEvents>();
  private readonly waiting = new Map<string, Set<() => void>>();

  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(
    private readonly queues: Queues,
    options: { connection: Redis; prefix: string; listen: QueueName[] },
  ) {
    this.redis = options.connection;
    this.prefix = options.prefix;
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

  /**
   * Adds a job. Jobs given the same `orderKey` (one user, one domain) run in the order they were
   * submitted: each job names the one before it in `after`, and a worker does not start a job
   * whose predecessor is still pending. Jobs with different keys run in parallel.
   */
  async submit<T extends object>(
    type: JobType,
    data: T,
    options: { jobId?: string; orderKey?: string } = {},
  ): Promise<Job<T & Ordered>> {
    const queue = this.queues[QUEUE_OF[type]];
    const jobId = options.jobId ?? randomUUID();

    try {
      const ordered: T & Ordered = { ...data };
      if (options.orderKey) {
        const key = `${this.prefix}:order:${options.orderKey}`;
        const before = await this.redis.set(key, jobId, 'EX', ORDER_TTL_S, 'GET');
        if (before && before !== jobId) ordered.after = before;
      }
      return (await queue.add(type, ordered, { jobId })) as Job<T & Ordered>;
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
  const fanOut = fanOutOf(job.progress);
  let progress = typeof job.progress === 'number' ? job.progress : 0;
  if (fanOut) progress = fanOut.total > 0 ? Math.floor((100 * fanOut.done) / fanOut.total) : 0;
  if (status === 'succeeded') progress = 100;

  return {
    id: job.id!,
    type: job.name,
    state: status,
    progress,
    ...fanOut,
    attempts: job.attemptsStarted ?? job.attemptsMade,
    created_at: new Date(job.timestamp).toISOString(),
    finished_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    result: status === 'succeeded' ? (job.returnvalue ?? null) : null,
    error: status === 'failed' ? decodeFailure(job.failedReason) : null,
  };
}

function fanOutOf(progress: unknown): { done: number; total: number } | undefined {
  const p = progress as { done?: unknown; total?: unknown } | null;
  if (typeof p?.done !== 'number' || typeof p.total !== 'number') return undefined;
  return { done: p.done, total: p.total };
}
