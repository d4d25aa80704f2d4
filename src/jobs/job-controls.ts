import type { Job, JobState, JobType as BullState, Queue } from 'bullmq';

import { errors } from '../errors.js';
import type { RedisClient } from '../redis.js';
import { toView, type JobStatus, type JobView } from './gateway.js';
import { QUEUE_NAMES, QUEUE_OF, type JobType, type QueueName, type Queues } from './queues.js';

/** The BullMQ states behind each state the API shows. */
export const BULL_STATES: Record<JobStatus, BullState[]> = {
  queued: ['wait', 'prioritized', 'delayed', 'waiting-children'],
  running: ['active'],
  succeeded: ['completed'],
  failed: ['failed'],
};

const ALL_STATES: BullState[] = Object.values(BULL_STATES).flat();

/** How many job names one round trip reads when a list is filtered by type. */
const NAMES_PER_TRIP = 1_000;

export interface JobFilter {
  state?: JobStatus;
  type?: JobType;
  /** Jobs per page, and the page from 0. */
  max: number;
  page: number;
}

/** One list of one queue: a BullMQ state. */
interface Segment {
  queue: Queue;
  state: BullState;
  ids?: string[];
  count: number;
}

/**
 * The jobs in a state, of a type, a page at a time. They come queue by queue, state by state
 * (in the order of BULL_STATES), and within a state as BullMQ keeps them: the newest first.
 * Without a type only the page is read; BullMQ keeps no index of job names, so with a type
 * every id in the states asked for is read, and their names a thousand per round trip.
 */
export async function listJobs(
  queues: Queues,
  redis: RedisClient,
  filter: JobFilter,
): Promise<{ jobs: JobView[]; total: number }> {
  try {
    const names: QueueName[] = filter.type ? [QUEUE_OF[filter.type]] : [...QUEUE_NAMES];
    const states = filter.state ? BULL_STATES[filter.state] : ALL_STATES;
    const segments = names.flatMap((name) =>
      states.map((state): Segment => ({ queue: queues[name], state, count: 0 })),
    );

    if (filter.type) {
      await Promise.all(segments.map((segment) => keepType(segment, redis, filter.type!)));
    } else {
      await Promise.all(
        segments.map(async (segment) => {
          segment.count = await segment.queue.getJobCountByTypes(segment.state);
        }),
      );
    }

    const total = segments.reduce((sum, segment) => sum + segment.count, 0);
    const page = await readPage(segments, filter.page * filter.max, filter.max);
    return { jobs: page, total };
  } catch (err) {
    throw errors.queueUnavailable(err);
  }
}

/** Reads a segment's ids and keeps those of jobs of one type. */
async function keepType(segment: Segment, redis: RedisClient, type: JobType): Promise<void> {
  const ids = await segment.queue.getRanges([segment.state], 0, -1);
  const kept: string[] = [];

  for (let from = 0; from < ids.length; from += NAMES_PER_TRIP) {
    const chunk = ids.slice(from, from + NAMES_PER_TRIP);
    const pipeline = redis.pipeline();
    for (const id of chunk) pipeline.hget(segment.queue.toKey(id), 'name');
    const answers = (await pipeline.exec()) ?? [];
    answers.forEach(([err, name], i) => {
      if (err) throw err;
      if (name === type) kept.push(chunk[i]);
    });
  }
  segment.ids = kept;
  segment.count = kept.length;
}

/** The jobs from `offset` on, at most `max`, over the segments in order. */
async function readPage(segments: Segment[], offset: number, max: number): Promise<JobView[]> {
  const wanted: Array<{ queue: Queue; state: BullState; id: string }> = [];
  let skip = offset;

  for (const segment of segments) {
    if (wanted.length >= max) break;
    if (skip >= segment.count) {
      skip -= segment.count;
      continue;
    }
    const end = skip + (max - wanted.length) - 1;
    const ids = segment.ids
      ? segment.ids.slice(skip, end + 1)
      : await segment.queue.getRanges([segment.state], skip, end);
    skip = 0;
    wanted.push(...ids.map((id) => ({ queue: segment.queue, state: segment.state, id })));
  }

  const jobs = await Promise.all(
    wanted.map(async ({ queue, state, id }) => {
      const job = await queue.getJob(id);
      // A job removed since its id was read is left out.
      return job ? toView(job, viewState(state)) : undefined;
    }),
  );
  return jobs.filter((job): job is JobView => job !== undefined);
}

function viewState(state: BullState): JobState {
  return state === 'wait' ? 'waiting' : (state as JobState);
}

/** The job of this id in any queue, with its state; 404 when there is none. */
async function findJob(queues: Queues, id: string): Promise<{ job: Job; state: JobState }> {
  let found: { job: Job; state: JobState | 'unknown' } | undefined;
  try {
    for (const name of QUEUE_NAMES) {
      const job = await queues[name].getJob(id);
      if (job) {
        found = { job, state: await job.getState() };
        break;
      }
    }
  } catch (err) {
    throw errors.queueUnavailable(err);
  }
  if (!found || found.state === 'unknown') throw errors.notFound(`job ${id}`);
  return found as { job: Job; state: JobState };
}

/**
 * Runs a failed job again, with its attempts counted afresh. A job whose passwords were taken
 * out of its data when it failed cannot: the client must send the request again.
 */
export async function retryJob(queues: Queues, id: string): Promise<JobView> {
  const { job, state } = await findJob(queues, id);
  if (state !== 'failed') {
    throw errors.conflict(
      `job ${id} is ${toView(job, state).state}; only a failed job can be retried`,
    );
  }
  if ((job.data as { secretsRemoved?: boolean })?.secretsRemoved) {
    throw errors.conflict(
      `job ${id} carried passwords, removed when it failed; send the request again instead`,
    );
  }

  try {
    await retryAfresh(queues[job.queueName as QueueName], job);
  } catch (err) {
    // Another operator retried or removed it in between.
    if (/not in the failed state|Missing key/i.test(String(err))) {
      throw errors.conflict(`job ${id} is no longer failed`);
    }
    throw errors.queueUnavailable(err);
  }
  const fresh = await queues[job.queueName as QueueName].getJob(id);
  return toView(fresh ?? job, 'waiting');
}

/**
 * Puts a failed job back with its attempts, and its starts, counted afresh (the API's retry and
 * the board's). A job that started before is marked so in its data first: its runs may have made
 * records that nothing wrote down (BullMQ fails a job that stalled too often without kitter's
 * code), and `ranBefore` must still tell, so that a cancel of its import lets the row finish
 * (or undo what it made) rather than drop it. The mark is written only while the job is still
 * failed: a retry that overlaps this one (the board and the API at once) may already have set
 * it running, and what its run writes is not overwritten.
 */
export async function retryAfresh(
  queue: Queue,
  job: Job,
  retry: Job['retry'] = job.retry.bind(job),
): Promise<void> {
  const data = job.data as { startedBefore?: boolean } | null;
  if (job.attemptsStarted > 0 && typeof data === 'object' && data && !data.startedBefore) {
    const marked = { ...data, startedBefore: true };
    const redis = queue.opts.connection as RedisClient;
    const id = job.id!;
    await redis.eval(
      DATA_WHILE_FAILED,
      2,
      queue.toKey('failed'),
      queue.toKey(id),
      id,
      JSON.stringify(marked),
    );
    job.data = marked;
  }
  await retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
}

/** KEYS: the queue's failed set, the job. ARGV: its id, its new data. */
const DATA_WHILE_FAILED = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], 'data', ARGV[2])
end
return 0
`;

/** Removes a job that is not running: a running job is owned by its worker until it ends. */
export async function removeJob(queues: Queues, id: string): Promise<void> {
  const { job, state } = await findJob(queues, id);
  if (state === 'active') {
    throw errors.conflict(`job ${id} is running; remove it once it has ended`);
  }

  try {
    await job.remove();
  } catch (err) {
    // BullMQ refuses to remove a job whose lock a worker holds: it started in between.
    if (/locked/i.test(String(err))) {
      throw errors.conflict(`job ${id} is running; remove it once it has ended`);
    }
    throw errors.queueUnavailable(err);
  }
}
