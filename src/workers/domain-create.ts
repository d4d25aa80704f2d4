import type { Job } from 'bullmq';

import { BackendError, errors } from '../errors.js';
import type { DomainCreateData } from '../jobs/types.js';
import { isDomainCreateData } from '../jobs/types.js';
import { fromWacDomain, toWacDomain, type Domain } from '../model/domains.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt } from './failures.js';

/**
 * Creates a domain in wac-core. wac-core gives the id, so a re-run cannot tell its own
 * earlier write by id: a 409 on a re-run is taken as its own only when the job had already
 * sent the domain and the domain found has exactly the fields asked for.
 */
export async function createDomain(
  job: Job<DomainCreateData>,
  deps: WorkerDeps,
): Promise<{ domain: Domain }> {
  if (!isDomainCreateData(job.data)) {
    throw await failAttempt(job, errors.validation('the job data is not a domain.create job'));
  }

  const data = job.data;
  const wanted = toWacDomain(data.domain);
  const sentBefore = data.sent === true;

  try {
    if (wanted.parent && !(await deps.wac.findDomainByName(wanted.parent))) {
      throw errors.unknownDomain(wanted.parent, 'domain.parent');
    }
    if (!sentBefore) await job.updateData({ ...data, sent: true });

    return { domain: fromWacDomain(await deps.wac.createDomain(wanted)) };
  } catch (err) {
    if (sentBefore && err instanceof BackendError && err.kind === 'conflict') {
      const found = await deps.wac.findDomainByName(data.domain.domain);
      const own = found && sameFields(fromWacDomain(found), fromWacDomain({ ...found, ...wanted }));
      if (own) return { domain: fromWacDomain(found) };
    }
    throw await failAttempt(job, err);
  }
}

function sameFields(a: Domain, b: Domain): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
