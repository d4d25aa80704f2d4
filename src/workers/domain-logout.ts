import type { Job } from 'bullmq';

import { BackendError, errors } from '../errors.js';
import { hasFields, type DomainLogoutData } from '../jobs/types.js';
import { mapLimited } from '../limit.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt } from './failures.js';

/** Users read from Keycloak a page. */
const PAGE = 100;

export interface LogoutResult {
  done: number;
  total: number;
}

/**
 * Logs out every user of a domain: walks the domain's users in Keycloak page by page, ends
 * each one's sessions with at most `logoutFanOut` calls in flight, and saves after each page
 * how far it got, so a re-run after a crash goes on from there instead of starting over.
 * Progress is `{done, total}`.
 */
export async function logoutDomain(
  job: Job<DomainLogoutData>,
  deps: WorkerDeps,
): Promise<LogoutResult> {
  if (!hasFields(job.data, { domainId: 'string', domain: 'string' })) {
    throw await failAttempt(job, errors.validation('the job data is not a domain.logout job'));
  }

  const data = job.data;
  const { keycloak } = deps;
  const filter = { attributes: { domain: data.domain } };
  let cursor = data.cursor ?? 0;

  try {
    // The total counts users already done before a crash, plus those still to do.
    const total = await keycloak.countUsers(filter);
    await job.updateProgress({ done: cursor, total: Math.max(total, cursor) });

    const readPage = (first: number) => keycloak.findUsers({ ...filter, first, max: PAGE });
    let page = await readPage(cursor);
    for (;;) {
      // The next page is read while this one is logged out, so no logout waits for it.
      const next = page.length < PAGE ? undefined : readPage(cursor + page.length);
      next?.catch(() => undefined);
      await mapLimited(page, deps.settings.logoutFanOut, (user) =>
        logoutIgnoringGone(deps, user.id!),
      );

      cursor += page.length;
      await job.updateData({ ...data, cursor });
      await job.updateProgress({ done: cursor, total: Math.max(total, cursor) });
      if (!next) return { done: cursor, total: Math.max(total, cursor) };
      page = await next;
    }
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

/** A user deleted while its domain is being logged out has no sessions left to end. */
async function logoutIgnoringGone(deps: WorkerDeps, userId: string): Promise<void> {
  try {
    await deps.keycloak.logout(userId);
  } catch (err) {
    if (err instanceof BackendError && err.kind === 'not_found') return;
    throw err;
  }
}
