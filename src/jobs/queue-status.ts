import type { Metrics as QueueMetrics, Queue } from 'bullmq';

import type { QueueName } from './queues.js';

/** The states `GET /queues` counts, as BullMQ names them (v6 has no separate paused list). */
export const COUNTED_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'completed',
  'failed',
] as const;
export type CountedState = (typeof COUNTED_STATES)[number];

/** How far back the per-minute figures go; also the `maxDataPoints` every worker keeps. */
export const METRICS_MINUTES = 60;

export interface QueueStatus {
  name: QueueName;
  paused: boolean;
  /** Live workers (Redis connections BullMQ named for this queue); null when Redis hides them. */
  workers: number | null;
  /** By state; `waiting-children` is written `waiting_children`, like every key of the API. */
  counts: Record<string, number>;
  /** Seconds since the oldest job that waits to start was added; null when none waits. */
  oldest_waiting_s: number | null;
  /** Jobs that ended each minute, newest first: `[0]` is the minute under way. */
  per_minute: { completed: number[]; failed: number[] };
  /** The sums of `per_minute`. */
  last_hour: { completed: number; failed: number };
}

/** Everything an operator wants to know about one queue, read from Redis now. */
export async function readQueueStatus(queue: Queue, now = Date.now()): Promise<QueueStatus> {
  const [counts, paused, workers, completed, failed, oldest] = await Promise.all([
    queue.getJobCounts(...COUNTED_STATES),
    queue.isPaused(),
    countWorkers(queue),
    queue.getMetrics('completed', 0, METRICS_MINUTES - 1),
    queue.getMetrics('failed', 0, METRICS_MINUTES - 1),
    oldestWaiting(queue),
  ]);

  const perMinute = {
    completed: minutesOf(completed, now),
    failed: minutesOf(failed, now),
  };
  return {
    name: queue.name as QueueName,
    paused,
    workers,
    counts: Object.fromEntries(
      COUNTED_STATES.map((state) => [state.replace('-', '_'), counts[state] ?? 0]),
    ),
    oldest_waiting_s: oldest === undefined ? null : Math.max(0, (now - oldest) / 1000),
    per_minute: perMinute,
    last_hour: { completed: sum(perMinute.completed), failed: sum(perMinute.failed) },
  };
}

/**
 * BullMQ's metrics as one count per minute, newest first. BullMQ writes a minute's count only
 * when a job ends in a later minute (see its collectMetrics.lua): `data[0]` is the minute
 * before the last write (`prevTS`), and the jobs that ended since that write, all within
 * prevTS's minute, are `count - prevCount`. Minutes after it saw no job end at all.
 */
export function minutesOf(metrics: QueueMetrics, now: number, minutes = METRICS_MINUTES) {
  const counts: number[] = Array(minutes).fill(0);
  const { count, prevTS, prevCount } = metrics.meta;
  if (!prevTS) return counts;

  // Another process's clock may run a little ahead of this one's.
  const ago = Math.max(0, minuteOf(now) - minuteOf(prevTS));
  if (ago < minutes) counts[ago] += count - prevCount;
  metrics.data.forEach((ended, k) => {
    if (ago + 1 + k < minutes) counts[ago + 1 + k] += ended;
  });
  return counts;
}

function minuteOf(ms: number): number {
  return Math.floor(ms / 60_000);
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

/**
 * Worker connections, from CLIENT LIST. Where the provider refuses CLIENT (some managed Redis
 * services), BullMQ answers one made-up entry without `rawname`: the count is then unknown.
 */
async function countWorkers(queue: Queue): Promise<number | null> {
  const workers = await queue.getWorkers();
  return workers.every((worker) => worker.rawname) ? workers.length : null;
}

/**
 * When the oldest job waiting to start was added: the tail of the wait list (new jobs go in
 * at its head) or the head of the prioritized set (bulk imports), whichever is older. Delayed
 * jobs (retries in their backoff) are not waiting to start yet.
 */
async function oldestWaiting(queue: Queue): Promise<number | undefined> {
  const [waiting, prioritized] = await Promise.all([
    queue.getJobs(['wait'], 0, 0, true),
    queue.getJobs(['prioritized'], 0, 0, true),
  ]);
  const times = [...waiting, ...prioritized]
    .map((job) => job?.timestamp)
    .filter((time): time is number => typeof time === 'number');
  return times.length > 0 ? Math.min(...times) : undefined;
}
