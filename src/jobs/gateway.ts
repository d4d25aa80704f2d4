import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { QueueEvents, type Job, type JobState } from 'bullmq';
import { errors } from '../errors.js';
import type { RedisClient } from '../redis.js';
import { ChunkAddFault, ChunkAdder, type PackedJobs } from './chunk-add.js';
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

/**
 * `SET key id EX ttl GET` for every key, answering the earlier values in order (`false`
 * becomes a nil reply, where a key had none). EVAL, not EVALSHA: Redis caches the script, and
 * its text is short beside a chunk's keys.
 */
const CLAIM_ORDER_KEYS = `
local ttl = ARGV[#ARGV]
local before = {}
for i, key in ipairs(KEYS) do
  before[i] = redis.call('SET', key, ARGV[i], 'EX', ttl, 'GET') or false
end
return before
`;

/** Set on a job that must wait for an earlier job on the same user or domain. */
export interface Ordered {
  after?: string;
}

/** What the `completed` event says of a job; a `failed` event wakes a wait without it. */
interface JobEnded {
  result: unknown;
}

/** The poll that backs up QueueEvents, whose trimmed stream can miss events under load. */
const POLL_MS = 250;

/** How long a new job may take to reach a replica before the request is refused (503). */
const REPLICA_WAIT_MS = 1000;

/**
 * How long a queue's event stream is still read after the last wait on it has ended. The stream
 * is read only while a request waits: every job added and every step of every job is an event,
 * and an API reading all of them during an import spends a tenth of its time on them.
 */
const LISTEN_IDLE_MS = 30_000;

/** The event stream of one queue, read while requests wait on its jobs. */
interface Listener {
  ready: Promise<QueueEvents>;
  waits: number;
  idle?: NodeJS.Timeout;
}

/**
 * The API's side of the queues: adds jobs, reads their state, and waits (bounded) for them to
 * end. Any Redis failure here is answered 503 at once.
 */
export class JobGateway {
  private readonly listeners = new Map<QueueName, Listener>();
  private readonly waiting = new Map<string, Set<(event?: JobEnded) => void>>();

  private readonly redis: RedisClient;
  private readonly eventsConnection: RedisClient;
  private readonly listenable: ReadonlySet<QueueName>;
  private readonly prefix: string;
  private readonly replicas: number;
  private readonly pollMs: number;
  private readonly listenIdleMs: number;
  /** Once closed, no wait opens a stream: shutdown would not close it. */
  private closed = false;
  private readonly chunks: ChunkAdder;

  /**
   * `connection` is the API's own; `events` is one that may block (see `createRedis`), which
   * BullMQ copies for each queue's event stream; `replicas` is how many replicas must hold a new
   * job before it counts as accepted (see `replicasToConfirm`). `pollMs` and `listenIdleMs`
   * are for tests: the poll behind the event stream, and how long the stream outlives a wait.
   */
  constructor(
    private readonly queues: Queues,
    options: {
      connection: RedisClient;
      events: RedisClient;
      prefix: string;
      listen: QueueName[];
      replicas?: number;
      pollMs?: number;
      listenIdleMs?: number;
    },
  ) {
    this.redis = options.connection;
    this.prefix = options.prefix;
    this.replicas = options.replicas ?? 0;
    this.eventsConnection = options.events;
    this.listenable = new Set(options.listen);
    this.pollMs = options.pollMs ?? POLL_MS;
    this.listenIdleMs = options.listenIdleMs ?? LISTEN_IDLE_MS;
    this.chunks = new ChunkAdder(this.redis, ORDER_TTL_S);
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
    const [job] = await this.submitBulk(type, [{ data, ...options }]);
    return job;
  }

  /**
   * Adds many jobs of one type in two round trips (their order keys, then the jobs), ordered
   * as `submit` orders them; a single job with an order key in one (`ChunkAdder.addOne`). A
   * job whose id exists already is not added again, so a batch sent twice queues each job once.
   * `priority` puts them behind jobs without one (bulk work behind single requests).
   */
  async submitBulk<T extends object>(
    type: JobType,
    items: Array<{ data: T; jobId?: string; orderKey?: string }>,
    options: { priority?: number } = {},
  ): Promise<Array<Job<T & Ordered>>> {
    const queue = this.queues[QUEUE_OF[type]];
    const ids = items.map((item) => item.jobId ?? randomUUID());
    const ordered: Array<T & Ordered> = items.map((item) => ({ ...item.data }));

    const [only] = items;
    if (items.length === 1 && only.orderKey && !options.priority) {
      // A single request: its order key claimed and the job added in one script call.
      const claim = { jobId: ids[0], orderKey: this.orderKeyOf(only.orderKey) };
      return [await this.accepted(() => this.chunks.addOne(queue, type, ordered[0], claim))];
    }
    return this.accepted(async () => {
      const keyed = items.flatMap((item, i) =>
        item.orderKey ? [[item.orderKey, i] as const] : [],
      );
      if (keyed.length > 0) {
        const befores = await this.claimOrderKeys(keyed.map(([key, i]) => [key, ids[i]]));
        befores.forEach((before, n) => {
          const i = keyed[n][1];
          if (typeof before === 'string' && before !== ids[i]) ordered[i].after = before;
        });
      }

      const jobs = ordered.map((data, i) => ({
        name: type,
        data,
        opts: { jobId: ids[i], ...(options.priority ? { priority: options.priority } : {}) },
      }));
      // A single job goes as one command: building a MULTI costs more than the request itself
      // (ioredis copies all of BullMQ's scripts into every pipeline it makes).
      return (
        jobs.length === 1
          ? [await queue.add(type, jobs[0].data, jobs[0].opts)]
          : await queue.addBulk(jobs)
      ) as Array<Job<T & Ordered>>;
    });
  }

  /**
   * Adds a chunk of jobs of one type built elsewhere (an import's reader thread), with the
   * effect of `submitBulk` with a priority: each job after the last one of its order key, none
   * added twice. A few script calls, pipelined, and nothing made a job in this thread (see
   * `ChunkAdder`).
   */
  async submitPacked(type: JobType, jobs: PackedJobs, options: { priority: number }) {
    const queue = this.queues[QUEUE_OF[type]];
    const orderKeyPrefix = this.orderKeyOf('');
    await this.accepted(() =>
      this.chunks.add(queue, type, jobs, { priority: options.priority, orderKeyPrefix }),
    );
  }

  /**
   * A write of new jobs, accepted only once the replicas it needs hold it; any failure of
   * Redis or BullMQ is a 503 (a fault of kitter's own chunk code is not: see `ChunkAddFault`).
   */
  private async accepted<T>(write: () => Promise<T>): Promise<T> {
    try {
      await this.checkReplicas();
      const written = await write();
      await this.confirmReplicated();
      return written;
    } catch (err) {
      if (err instanceof ChunkAddFault) throw err;
      throw errors.queueUnavailable(err);
    }
  }

  /** Where the last job of an order key (a user, a domain) is remembered. */
  private orderKeyOf(key: string): string {
    return `${this.prefix}:order:${key}`;
  }

  /** Points each order key at its new job; answers the job each pointed at before, if any. */
  private async claimOrderKeys(claims: Array<[string, string]>): Promise<unknown[]> {
    if (claims.length === 1) {
      const [key, id] = claims[0];
      return [await this.redis.set(this.orderKeyOf(key), id, 'EX', ORDER_TTL_S, 'GET')];
    }

    // One script call for a whole chunk: 500 SETs in a pipeline cost the API more than the
    // script (a command object each). The keys share the prefix, and in a Redis Cluster its hash
    // tag, so they are in one slot.
    const keys = claims.map(([key]) => this.orderKeyOf(key));
    const args = [...claims.map(([, id]) => id), ORDER_TTL_S];
    return (await this.redis.eval(CLAIM_ORDER_KEYS, keys.length, ...keys, ...args)) as unknown[];
  }

  /**
   * Refuses, before writing anything, while the primary has fewer replicas online than a job
   * must reach: just after a failover (the new primary's replicas still syncing, the old one
   * not yet demoted), and while a replica is down. Waiting in WAIT instead would hold up every
   * request behind it on this connection, a second each.
   */
  private async checkReplicas(): Promise<void> {
    if (this.replicas === 0) return;

    const [role, , replicas] = (await this.redis.call('ROLE')) as [string, unknown, unknown[]];
    const online = role === 'master' ? replicas.length : 0;
    if (online < this.replicas) throw new Error(`${online} of ${this.replicas} replicas online`);
  }

  /**
   * WAIT covers every earlier write of this connection: the jobs, their order keys and the
   * request's idempotency key. A primary replaced between the check and the write reaches no
   * replica and answers 0, and the request is refused rather than accepted into writes about to
   * be lost.
   */
  private async confirmReplicated(): Promise<void> {
    if (this.replicas === 0) return;

    const holding = await this.redis.wait(this.replicas, REPLICA_WAIT_MS);
    if (holding < this.replicas) throw new Error(`${holding} of ${this.replicas} replicas`);
  }

  async find(id: string): Promise<Job | undefined> {
    try {
      const found = await Promise.all(QUEUE_NAMES.map((name) => this.queues[name].getJob(id)));
      return found.find((job): job is Job => job !== undefined && job !== null);
    } catch (err) {
      throw errors.queueUnavailable(err);
    }
  }

  /**
   * Waits until the job ends or `timeoutMs` passes; answers the job's view either way. A job
   * the `completed` event names is answered from the event, with the result it carries,
   * without reading the job back.
   */
  async wait(job: Job, timeoutMs: number): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    const id = job.id!;
    const listener = await this.startListening(job.queueName as QueueName);

    try {
      for (;;) {
        let wake!: (event?: JobEnded) => void;
        const woken = new Promise<JobEnded | undefined>((resolve) => (wake = resolve));
        this.listen(id, wake);

        try {
          const { view, gone } = await this.read(job, true);
          if (gone) {
            // Ended, and removed at once by an operator: the event it ended with still says how.
            const ended = await Promise.race([woken, NOT_YET]);
            if (ended && ended !== 'not yet') return succeededWith(view, ended);
            // Removed while it waited (the board, `DELETE /jobs/{id}`): it will not run again,
            // though an earlier attempt, if any, may have made records.
            throw errors.conflict(`job ${id} was removed before it ended`);
          }
          const left = deadline - Date.now();
          if (view.state === 'succeeded' || view.state === 'failed' || left <= 0) return view;
          const ended = await Promise.race([woken, sleep(Math.min(this.pollMs, left), undefined)]);
          if (ended) return succeededWith(view, ended);
        } finally {
          this.unlisten(id, wake);
        }
      }
    } finally {
      if (listener) this.stopListening(job.queueName as QueueName, listener);
    }
  }

  /**
   * The job as Redis has it now: its state, and its attempts, progress and outcome so far. A
   * job just read from Redis is read again only once it has ended; one held for a while (`held`,
   * as a wait holds the job it added) is read again whatever its state.
   */
  async view(job: Job, held = false): Promise<JobView> {
    return (await this.read(job, held)).view;
  }

  /** `view`, and whether the job is gone from Redis (removed, or kept no longer). */
  private async read(job: Job, held: boolean): Promise<{ view: JobView; gone: boolean }> {
    let state: JobState | 'unknown';
    let fresh: Job | undefined = job;
    try {
      const queue = this.queues[job.queueName as QueueName];
      // The state first: a job read after it says it ended holds what it ended with.
      state = await job.getState();
      if (held || state === 'completed' || state === 'failed') {
        fresh = await queue.getJob(job.id!);
      }
    } catch (err) {
      throw errors.queueUnavailable(err);
    }
    return { view: toView(fresh ?? job, state), gone: state === 'unknown' && !fresh };
  }

  async close(): Promise<void> {
    this.closed = true;
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(
      listeners.map(async (listener) => {
        clearTimeout(listener.idle);
        const events = await listener.ready.catch(() => undefined);
        await events?.close();
      }),
    );
  }

  /**
   * Reads the queue's event stream while a request waits on one of its jobs. A stream opened
   * for this wait is read from where it stood before the job's state is first read, so that no
   * job can end unseen in between. Without a stream (Redis away, or the gateway closed) the
   * wait polls.
   */
  private async startListening(name: QueueName): Promise<Listener | undefined> {
    if (this.closed || !this.listenable.has(name)) return undefined;
    let listener = this.listeners.get(name);
    if (!listener) {
      listener = { ready: this.openEvents(name), waits: 0 };
      this.listeners.set(name, listener);
    }
    clearTimeout(listener.idle);
    listener.waits++;
    try {
      await listener.ready;
    } catch {
      if (this.listeners.get(name) === listener) this.listeners.delete(name);
    }
    return listener;
  }

  /** The last wait on a queue has ended: its stream is closed if no other begins meanwhile. */
  private stopListening(name: QueueName, listener: Listener): void {
    if (--listener.waits > 0) return;
    listener.idle = setTimeout(() => {
      if (this.listeners.get(name) === listener) this.listeners.delete(name);
      listener.ready.then((events) => events.close()).catch(() => undefined);
    }, this.listenIdleMs);
    listener.idle.unref();
  }

  private async openEvents(name: QueueName): Promise<QueueEvents> {
    // Read from the stream's last entry now (routed by its key, so in a Cluster the node that
    // holds it answers): every event after it reaches this wait, however long the reader takes
    // to connect. An empty stream is read from its start.
    const key = this.queues[name].keys.events;
    const [last] = await this.redis.xrevrange(key, '+', '-', 'COUNT', 1);
    const events = new QueueEvents(name, {
      connection: this.eventsConnection,
      prefix: this.prefix,
      lastEventId: last?.[0] ?? '0-0',
    });
    events.on('completed', ({ jobId, returnvalue }) => this.wake(jobId, { result: returnvalue }));
    events.on('failed', ({ jobId }) => this.wake(jobId));
    // Redis outages are reported by the readiness check; QueueEvents reconnects by itself.
    events.on('error', () => undefined);
    return events;
  }

  private listen(id: string, wake: (event?: JobEnded) => void): void {
    let set = this.waiting.get(id);
    if (!set) this.waiting.set(id, (set = new Set()));
    set.add(wake);
  }

  private unlisten(id: string, wake: (event?: JobEnded) => void): void {
    const set = this.waiting.get(id);
    set?.delete(wake);
    if (set?.size === 0) this.waiting.delete(id);
  }

  private wake(id: string, event?: JobEnded): void {
    for (const wake of this.waiting.get(id) ?? []) wake(event);
  }
}

/** Raced after a promise: wins only when that promise has not settled yet. */
const NOT_YET = Promise.resolve('not yet' as const);

/** A job's view as the `completed` event that woke a wait tells its end. */
function succeededWith(view: JobView, ended: JobEnded): JobView {
  return { ...view, state: 'succeeded', progress: 100, result: ended.result ?? null };
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
