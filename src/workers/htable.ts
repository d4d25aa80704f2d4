import type { Job } from 'bullmq';

import type { WacHtableEntry } from '../clients/wac-core.js';
import { BackendError, errors } from '../errors.js';
import {
  hasFields,
  isHtableCreateData,
  type HtableCreateData,
  type HtableDeleteData,
} from '../jobs/types.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt } from './failures.js';

/**
 * Creates a caller-id entry. The name is the entry's key, so a 409 on a re-run (the earlier
 * attempt's answer was lost) is this job's own write when the entry found holds the value
 * asked for; any other 409 means the name is taken.
 */
export async function createHtableEntry(
  job: Job<HtableCreateData>,
  deps: WorkerDeps,
): Promise<WacHtableEntry> {
  if (!isHtableCreateData(job.data)) {
    throw await failAttempt(job, errors.validation('the job data is not an htable.create job'));
  }

  const data = job.data;
  const sentBefore = data.sent === true;
  try {
    if (!sentBefore) await job.updateData({ ...data, sent: true });
    return await createOrAdopt(deps, data.entry, sentBefore);
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

async function createOrAdopt(
  deps: WorkerDeps,
  { name, value }: WacHtableEntry,
  sentBefore: boolean,
): Promise<WacHtableEntry> {
  try {
    const created = await deps.wac.createHtableEntry({ name, value });
    return { name: created.name, value: created.value };
  } catch (err) {
    if (!(err instanceof BackendError && err.kind === 'conflict')) throw err;

    const found = sentBefore ? await deps.wac.findHtableEntry(name) : undefined;
    if (found?.value === value) return { name, value };
    throw errors.conflict(`the htable already has an entry named "${name}"`);
  }
}

/** Deletes a caller-id entry; a re-run that finds it gone has already done the work. */
export async function deleteHtableEntry(
  job: Job<HtableDeleteData>,
  deps: WorkerDeps,
): Promise<null> {
  if (!hasFields(job.data, { name: 'string' })) {
    throw await failAttempt(job, errors.validation('the job data is not an htable.delete job'));
  }

  const data = job.data;
  try {
    if (!data.started) await job.updateData({ ...data, started: true });

    const deleted = await deps.wac.deleteHtableEntry(data.name);
    if (!deleted && !data.started) throw errors.notFound(`htable entry ${data.name}`);
    return null;
  } catch (err) {
    throw await failAttempt(job, err);
  }
}
