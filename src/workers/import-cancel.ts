import type { Job } from 'bullmq';

import { errors } from '../errors.js';
import { hasFields, type ImportCancelData } from '../jobs/types.js';
import { mapLimited } from '../limit.js';
import type { ImportView } from '../imports/store.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt, ranBefore } from './failures.js';

/** Row jobs looked at, and removed, at once. */
const IN_FLIGHT = 50;

/**
 * Cancels an import: rows not started are removed from the queue and counted as cancelled;
 * rows running go on and count as they end; rows done stay done. The API has marked the import
 * cancelled already (and workers drop its rows as they reach them meanwhile); this clears the
 * queue of the rest, from the last row back, away from where workers take rows. Safe to run
 * twice: a row already removed is simply not found again.
 */
export async function cancelImport(
  job: Job<ImportCancelData>,
  deps: WorkerDeps,
): Promise<{ import: ImportView }> {
  if (!hasFields(job.data, { importId: 'string' }) || !deps.queues?.provisioning) {
    throw await failAttempt(job, errors.validation('the job data is not an import.cancel job'));
  }

  const { importId } = job.data;
  const provisioning = deps.queues.provisioning;
  try {
    const outcome = await deps.imports.cancel(importId);
    if (outcome === 'missing') throw errors.notFound(`import ${importId}`);
    if (outcome === 'finished') throw errors.importFinished(importId);

    const last = await deps.imports.lastRow(importId);
    const rows = Array.from({ length: Math.max(0, last - 1) }, (_, i) => last - i);
    await mapLimited(rows, IN_FLIGHT, async (row) => {
      const removed = await removeIfWaiting(provisioning, `imp-${importId}-r${row}`);
      if (removed) await deps.imports.recordOutcome(importId, row, 'cancelled');
    });

    return { import: (await deps.imports.get(importId))! };
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

/**
 * Removes a job that has never started; a running job is locked and stays. So does one that
 * ran before (waiting for its retry, or handed back after a crash): it may have made records,
 * and it goes on to finish them, or to undo them when it fails for good.
 */
async function removeIfWaiting(
  queue: NonNullable<WorkerDeps['queues']>['provisioning'] & object,
  jobId: string,
): Promise<boolean> {
  const job = await queue.getJob(jobId);
  if (!job || ranBefore(job, false)) return false;
  const state = await job.getState();
  if (!['waiting', 'prioritized', 'delayed', 'waiting-children'].includes(state)) return false;
  try {
    return (await queue.remove(jobId)) === 1;
  } catch {
    return false;
  }
}
