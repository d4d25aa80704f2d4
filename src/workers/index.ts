import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';

import { BackendError } from '../errors.js';
import type { Ordered } from '../jobs/gateway.js';
import { decodeFailure } from '../jobs/outcome.js';
import type { EndedAs, ImportRow } from '../jobs/types.js';
import { METRICS_MINUTES } from '../jobs/queue-status.js';
import { settleWithin } from '../limit.js';
import { JOB_TYPES, QUEUE_NAMES, type JobType, type QueueName } from '../jobs/queues.js';
import type { Metrics } from '../metrics.js';
import { isRedisAway, redisTrouble, type RedisClient } from '../redis.js';
import type { WorkerDeps } from './deps.js';
import { isFinalAttempt, ranBefore, secretsGone } from './failures.js';
import { deleteDomain, updateDomain } from './domain-change.js';
import { cancelImport } from './import-cancel.js';
import { createDomain } from './domain-create.js';
import { logoutDomain } from './domain-logout.js';
import { createHtableEntry, deleteHtableEntry } from './htable.js';
import { createUser } from './user-create.js';
import { deleteUser, logoutUser } from './user-delete.js';
import { updateUser } from './user-update.js';

type Processor = (job: Job, deps: WorkerDeps) => Promise<unknown>;

const PROCESSORS: Record<JobType, Processor> = {
  [JOB_TYPES.userCreate]: createUser,
  [JOB_TYPES.userUpdate]: updateUser,
  [JOB_TYPES.userDelete]: deleteUser,
  [JOB_TYPES.userLogout]: logoutUser,
  [JOB_TYPES.domainCreate]: createDomain,
  [JOB_TYPES.domainUpdate]: updateDomain,
  [JOB_TYPES.domainDelete]: deleteDomain,
  [JOB_TYPES.domainLogout]: logoutDomain,
  [JOB_TYPES.htableCreate]: createHtableEntry,
  [JOB_TYPES.htableDelete]: deleteHtableEntry,
  [JOB_TYPES.importCancel]: cancelImport,
};

export interface WorkerOptions {
  connection: RedisClient;
  prefix: string;
  /** Jobs of the provisioning queue one process runs at once. */
  concurrency: number;
  /** Jobs of the logout queue one process runs at once (each fans out on its own). */
  logoutConcurrency: number;
  /** How long a worker holds a job without renewing its lock before others take it over. */
  lockMs: number;
  /** Jobs a second each queue starts, across all workers; 0 for no limit. */
  ratePerSecond: number;
  /** Where each attempt is counted; none in tests that do not look. */
  metrics?: Pick<Metrics, 'jobAttempt'>;
}

export interface RunningWorkers {
  workers: Worker[];
  /** Stops taking jobs and waits for active ones, at most `deadlineMs`. */
  close(deadlineMs?: number): Promise<void>;
}

/** How long a job waits before it looks again at the job it must follow. */
const FOLLOW_DELAY_MS = 100;

/** How long the whole queue pauses when a backend answers 429 or 503. */
const BACKOFF_PAUSE_MS = 1000;

/**
 * How often a job may lose its lock (its worker died or stalled) and still run again. BullMQ
 * allows one; crashes during a rolling restart can take a job's worker twice.
 */
const MAX_STALLS = 5;

const UNLIMITED = 1_000_000;

export function startWorkers(deps: WorkerDeps, options: WorkerOptions): RunningWorkers {
  const { connection, prefix } = options;
  // Lookups of the jobs that others must follow; the workers themselves never add jobs.
  const lookups = new Map(
    QUEUE_NAMES.map((name) => {
      const queue = new Queue(name, { connection, prefix });
      queue.on('error', (err) => deps.logger.debug({ err: err.message }, 'queue error'));
      return [name, queue];
    }),
  );

  const withQueues: WorkerDeps = { ...deps, queues: Object.fromEntries(lookups) };
  const cancelled = new CancelledImports(deps.imports);
  const running = new RunningJobs();

  const trouble = redisTrouble(deps.logger);
  const start = (name: QueueName, concurrency: number) => {
    const queue = lookups.get(name)!;
    const worker: Worker = new Worker(
      name,
      (job, token) =>
        running.track(
          runJob(job, token, {
            ...{ queue, worker, deps: withQueues, cancelled },
            metrics: options.metrics,
          }),
        ),
      {
        connection,
        prefix,
        concurrency,
        lockDuration: options.lockMs,
        stalledInterval: options.lockMs,
        maxStalledCount: MAX_STALLS,
        // A limiter must be set for worker.rateLimit() to pause the queue; its own rate is the
        // configured pace toward the backends, or none.
        limiter: { max: options.ratePerSecond || UNLIMITED, duration: 1000 },
        // Jobs ended per minute, for GET /queues; BullMQ counts only when every worker of a
        // queue sets the same value.
        metrics: { maxDataPoints: METRICS_MINUTES },
      },
    );
    // Redis away: each of a worker's connections reports each try to reconnect (a hundred lines
    // in an outage of seconds), said once a second at most; anything else, each time.
    worker.on('error', (err) => {
      if (isRedisAway(err)) trouble(err, name);
      else deps.logger.error({ err: String(err), queue: name }, 'worker error');
    });
    return worker;
  };

  const workers = [
    start('provisioning', options.concurrency),
    start('logout', options.logoutConcurrency),
    start('imports', 1),
  ];
  let closing: Promise<void> | undefined;

  return {
    workers,
    close(deadlineMs = 30_000) {
      closing ??= closeWithin(workers, deadlineMs, running, connection).finally(() =>
        Promise.all([...lookups.values()].map((queue) => queue.close())),
      );
      return closing;
    },
  };
}

/**
 * Puts a job back for a moment while the job it must follow (an earlier write on the same user
 * or domain) has not ended. A predecessor that failed or is gone no longer holds anyone up.
 */
async function followPredecessor(job: Job, token: string | undefined, queue: Queue) {
  const after = (job.data as Ordered)?.after;
  if (!after) return;

  const state = await queue.getJobState(after);
  if (state === 'completed' || state === 'failed' || state === 'unknown') return;

  await job.moveToDelayed(Date.now() + FOLLOW_DELAY_MS, token);
  throw new DelayedError();
}

interface JobContext {
  queue: Queue;
  worker: Worker;
  deps: WorkerDeps;
  cancelled: CancelledImports;
  metrics?: Pick<Metrics, 'jobAttempt'>;
}

async function runJob(job: Job, token: string | undefined, context: JobContext) {
  const { deps } = context;
  await followPredecessor(job, token, context.queue);

  const started = Date.now();
  const fields = {
    jobId: job.id,
    type: job.name,
    attempt: job.attemptsMade + 1,
    requestId: (job.data as { requestId?: string })?.requestId,
  };
  const processor = PROCESSORS[job.name as JobType];
  if (!processor) throw new UnrecoverableError(`500 internal_error: unknown job type ${job.name}`);

  const row = (job.data as { import?: ImportRow }).import;
  const ended = job.data as SecretsCarrier;
  try {
    const dropped = ended.secretsRemoved && ended.endedAs === 'cancelled';
    if (row && (dropped || (!ranBefore(job, true) && (await context.cancelled.has(row.id))))) {
      // A row of a cancelled import that had not started: dropped, as the cancel would have.
      // One that ran before (a retry, a re-run after a crash) goes on, and its undo with it;
      // so does this one if dropping it fails (Redis away): its retry runs it.
      await removeSecrets(job, 'cancelled');
      await deps.imports.recordOutcome(row.id, row.row, 'cancelled');
      deps.logger.info({ ...fields, outcome: 'cancelled' }, 'job');
      return { cancelled: `import ${row.id} was cancelled before this row started` };
    }
    // A run after the run that removed the passwords ended, its end lost (see
    // ENDS_WITHOUT_SECRETS): one that had failed for good fails again, with the same reason.
    if (ended.secretsRemoved && ended.endedAs === 'failed') {
      throw new UnrecoverableError(ended.failedWith ?? secretsGone().message);
    }
    if (ended.secretsRemoved && !ENDS_WITHOUT_SECRETS.has(job.name)) throw secretsGone();
    const result = await processor(job, deps);
    await removeSecrets(job, 'succeeded');
    await recordImportRow(job, deps, 'succeeded');
    const ms = Date.now() - started;
    context.metrics?.jobAttempt(job.name, 'succeeded', ms / 1000, job.timestamp);
    deps.logger.info({ ...fields, outcome: 'succeeded', ms }, 'job');
    return result;
  } catch (err) {
    const final = err instanceof UnrecoverableError || isFinalAttempt(job);
    if (final) {
      await removeSecrets(job, 'failed', (err as Error).message);
      await recordImportRow(job, deps, 'failed', (err as Error).message);
    }
    if (slowsTheQueue(err)) await context.worker.rateLimit(BACKOFF_PAUSE_MS);

    const outcome = final ? 'failed' : 'retrying';
    const ms = Date.now() - started;
    context.metrics?.jobAttempt(job.name, outcome, ms / 1000, job.timestamp);
    deps.logger[final ? 'warn' : 'info'](
      { ...fields, outcome, ms, reason: (err as Error).message, backend: backendOf(err) },
      'job',
    );
    throw err;
  }
}

/** How long a worker trusts what it read of an import's state before it reads it again. */
const CANCELLED_FOR_MS = 1000;

/**
 * Whether an import has been cancelled, read at most once a second per import: a cancel is
 * seen by every row that starts after it, a second late at most, without a read per row.
 */
class CancelledImports {
  private readonly seen = new Map<string, { cancelled: boolean; at: number }>();

  constructor(private readonly imports: WorkerDeps['imports']) {}

  async has(id: string): Promise<boolean> {
    const now = Date.now();
    const known = this.seen.get(id);
    if (known && (known.cancelled || now - known.at < CANCELLED_FOR_MS)) return known.cancelled;

    // Unread (Redis away a moment), the row runs as if its import were not cancelled: a cancel
    // is kept in any case by the job clearing the queue, and a failed read here must not fail
    // the row and make its retry look like one that ran before.
    const cancelled = await this.imports.isCancelled(id).catch(() => undefined);
    if (cancelled === undefined) return false;
    // Imports come and go: the map never holds more than the few read in the last second.
    for (const [other, { at }] of this.seen)
      if (now - at >= CANCELLED_FOR_MS) this.seen.delete(other);
    this.seen.set(id, { cancelled, at: now });
    return cancelled;
  }
}

/**
 * Counts the outcome of an import's row once it is final, and keeps a failed row, with its
 * reason, for the import's error report.
 */
async function recordImportRow(
  job: Job,
  deps: WorkerDeps,
  outcome: 'succeeded' | 'failed',
  failure?: string,
): Promise<void> {
  const row = (job.data as { import?: ImportRow }).import;
  if (!row) return;

  if (outcome === 'failed') {
    const reason = decodeFailure(failure).error;
    await deps.imports.rejectRow(row.id, { row: row.row, cells: row.cells, reason });
  }
  await deps.imports.recordOutcome(row.id, row.row, outcome);
}

/**
 * The backend failure behind an attempt that failed, for its log line: thrown as is when the
 * job will retry, the cause of the UnrecoverableError that ends it otherwise.
 */
function backendOf(err: unknown) {
  const cause = (err as { cause?: unknown })?.cause;
  const failure = err instanceof BackendError ? err : cause instanceof BackendError ? cause : null;
  if (!failure) return undefined;
  const { backend, operation, kind, status } = failure;
  return { name: backend, operation, kind, status };
}

interface SecretsCarrier {
  secrets?: string;
  secretsRemoved?: boolean;
  endedAs?: EndedAs;
  failedWith?: string;
}

/**
 * Jobs that can end a run after their passwords were removed, when the run that removed them
 * succeeded but its end was lost (its lock lapsed while Redis failed over, or its worker died
 * before BullMQ marked it done) and the job runs again: they read back what was made.
 */
const ENDS_WITHOUT_SECRETS = new Set<string>([JOB_TYPES.userCreate, JOB_TYPES.userUpdate]);

/**
 * A finished job keeps no secrets, not even sealed: they are removed as it ends, and a job
 * run again after that which still needs them fails with a reason (`secretsGone`).
 */
async function removeSecrets(job: Job, endedAs: EndedAs, failedWith?: string): Promise<void> {
  const data = job.data as SecretsCarrier;
  if (!data.secrets) return;

  const { secrets: _secrets, ...rest } = data;
  await job.updateData({ ...rest, secretsRemoved: true, endedAs, failedWith });
}

/** 429, and 503 (a backend shedding load), pause the whole queue rather than hammer it. */
function slowsTheQueue(err: unknown): boolean {
  return err instanceof BackendError && (err.kind === 'rate_limited' || err.status === 503);
}

/** The jobs this process is running, and a way to wait until there are none. */
class RunningJobs {
  private active = 0;
  private waiting: Array<() => void> = [];

  get count(): number {
    return this.active;
  }

  async track<T>(run: Promise<T>): Promise<T> {
    this.active++;
    try {
      return await run;
    } finally {
      if (--this.active === 0) for (const wake of this.waiting.splice(0)) wake();
    }
  }

  idle(): Promise<void> {
    return this.active === 0
      ? Promise.resolve()
      : new Promise((resolve) => this.waiting.push(resolve));
  }
}

/**
 * How long BullMQ's close may take, once this process runs no job, while Redis is away: it
 * never returns then, and there is nothing left to wait for.
 */
const CLOSE_WHEN_IDLE_MS = 1_000;

/**
 * `Worker.close()` waits for active jobs without a deadline, and while Redis is away it does
 * not return at all. So the workers wait for it until the deadline; but while Redis is away,
 * only until a moment after the last job of this process has ended (a job picked up as the
 * close began is waited for with Redis there). Past the deadline the close is left to itself
 * (BullMQ has no way to cut it short: `close(true)` during a close only waits for the same):
 * active jobs stay in Redis and go back to the queue when their lock lapses, to be run again
 * (every processor is safe to run twice).
 */
async function closeWithin(
  workers: Worker[],
  deadlineMs: number,
  running: RunningJobs,
  connection: RedisClient,
): Promise<void> {
  const graceful = Promise.all(workers.map((worker) => worker.close()));
  let over = false;
  // Settles once no job of this process runs, Redis is away, and BullMQ has had a moment more.
  const idleWhileRedisAway = async () => {
    while (!over) {
      await running.idle();
      if ((await settleWithin(graceful, CLOSE_WHEN_IDLE_MS)) === 'done') return;
      if (connection.status !== 'ready' && running.count === 0) return;
    }
  };
  await settleWithin(Promise.race([graceful, idleWhileRedisAway()]), deadlineMs);
  over = true;
}
