import { UnrecoverableError, type Job } from 'bullmq';

import { ApiError, BackendError, apiErrorOf, errors } from '../errors.js';
import { encodeFailure } from '../jobs/outcome.js';

/** True when no retry will follow this attempt. */
export function isFinalAttempt(job: Job): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

/**
 * True when the job has run before: an earlier attempt, or a run its worker died in, may have
 * made records. `runningNow` for a job being run (BullMQ has counted this start already). A
 * retry by hand counts starts afresh and marks the job instead (`retryAfresh`).
 */
export function ranBefore(job: Job, runningNow: boolean): boolean {
  const earlierStarts = job.attemptsStarted - (runningNow ? 1 : 0);
  const data = job.data as { progress?: unknown; startedBefore?: boolean };
  return earlierStarts > 0 || data.progress !== undefined || data.startedBefore === true;
}

export function isRetryable(err: unknown): boolean {
  return err instanceof BackendError && err.retryable;
}

/** How a job failure is told to the client who asked for the job. */
export function apiErrorOfFailure(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof BackendError) return apiErrorOf(err);
  return errors.internal();
}

/**
 * Ends an attempt that threw. A transient failure with attempts left is thrown again for
 * BullMQ to retry with backoff. Anything else fails the job for good: first `undo` takes back
 * what the job wrote, then the job fails at once with a reason the API can answer with.
 */
export async function failAttempt(
  job: Job,
  err: unknown,
  undo?: () => Promise<string>,
): Promise<never> {
  if (isRetryable(err) && !isFinalAttempt(job)) throw err;

  const failure = apiErrorOfFailure(err);
  const undone = undo ? await undo() : '';
  const message = undone ? `${failure.message}; ${undone}` : failure.message;
  const final = new UnrecoverableError(
    encodeFailure(new ApiError(failure.status, failure.code, message)),
  );
  // Kept for the job's log line, which names the backend failure behind the reason.
  throw Object.assign(final, { cause: err });
}

/**
 * A job run again after its passwords were removed, as it ended (a retry by hand, or a run whose
 * end was lost), and that still needs them: it fails with a reason instead of running without.
 */
export function secretsGone(): UnrecoverableError {
  const reason = new ApiError(
    409,
    'conflict',
    "this job's passwords were removed when it ended; send the request again",
  );
  return new UnrecoverableError(encodeFailure(reason));
}

/**
 * Reads back what an earlier run of the job made and left to stand (it succeeded, but its end
 * was lost): a failure is retried, or fails the job, but undoes nothing.
 */
export async function readingOnly<T>(job: Job, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw await failAttempt(job, err);
  }
}
