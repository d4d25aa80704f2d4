import type { Job } from 'bullmq';

import type { WacDomain } from '../clients/wac-core.js';
import { errors } from '../errors.js';
import { hasFields, type DomainDeleteData, type DomainUpdateData } from '../jobs/types.js';
import { fromWacDomain, toWacDomainPatch, type Domain } from '../model/domains.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt } from './failures.js';

/**
 * Changes a domain in wac-core. A domain with users keeps its name: each user carries the name
 * in Keycloak, and renaming them all is not a change one request should make.
 */
export async function updateDomain(
  job: Job<DomainUpdateData>,
  deps: WorkerDeps,
): Promise<{ domain: Domain }> {
  if (!hasFields(job.data, { domainId: 'string', changes: 'object' })) {
    throw await failAttempt(job, errors.validation('the job data is not a domain.update job'));
  }

  const { domainId, changes } = job.data;
  try {
    const current = await deps.wac.getDomain(domainId);
    if (!current) throw errors.notFound(`domain ${domainId}`);

    if (changes.domain !== undefined && changes.domain !== current.domain) {
      const users = await countUsers(deps, current);
      if (users > 0) {
        throw errors.conflict(
          `domain ${current.domain} has ${users} users; a domain with users cannot be renamed`,
        );
      }
    }
    if (changes.parent && !(await deps.wac.findDomainByName(changes.parent))) {
      throw errors.unknownDomain(changes.parent, 'parent');
    }

    const updated = await deps.wac.updateDomain(domainId, toWacDomainPatch(changes));
    return { domain: fromWacDomain(updated) };
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

/** Deletes a domain that has no users and no child domains. */
export async function deleteDomain(job: Job<DomainDeleteData>, deps: WorkerDeps): Promise<null> {
  if (!hasFields(job.data, { domainId: 'string' })) {
    throw await failAttempt(job, errors.validation('the job data is not a domain.delete job'));
  }

  const data = job.data;
  try {
    const current = await deps.wac.getDomain(data.domainId);
    if (!current) {
      if (data.started) return null;
      throw errors.notFound(`domain ${data.domainId}`);
    }

    const users = await countUsers(deps, current);
    if (users > 0) {
      throw errors.conflict(`domain ${current.domain} still has ${users} users; delete them first`);
    }
    const children = await deps.wac.listDomains({ limit: 1000 });
    const child = children.items.find((domain) => domain.parent === current.domain);
    if (child) {
      throw errors.conflict(
        `domain ${current.domain} is the parent of ${child.domain}; delete or move it first`,
      );
    }

    if (!data.started) await job.updateData({ ...data, started: true });
    await deps.wac.deleteDomain(data.domainId);
    return null;
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

/**
 * Users of a domain in either system: wac-core's own count, and Keycloak users whose `domain`
 * attribute names it (which a drift could leave without a wac-core record).
 */
async function countUsers(deps: WorkerDeps, domain: WacDomain): Promise<number> {
  const [inWac, inKeycloak] = await Promise.all([
    deps.wac.countUsersInDomain(domain.id),
    deps.keycloak.countUsers({ attributes: { domain: domain.domain } }),
  ]);
  return Math.max(inWac, inKeycloak);
}
