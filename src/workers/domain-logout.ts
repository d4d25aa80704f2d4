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
 * Keycloak pages by offset, so a user deleted meanwhile from a page already walked moves every
 * later user one place up, and one of them would be passed over: when the domain has fewer
 * users at the end than at the start, it is walked once more. Progress is `{done, total}`.
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

  try {
    // The total counts users already done before a crash, plus those still to do.
    const total = await keycloak.countUsers(filter);
    let cursor = data.cursor ?? 0;
    const progress = () => job.updateProgress({ done: cursor, total: Math.max(total, cursor) });
    await progress();

    const readPage = (first: number) => keycloak.findUsers({ ...filter, first, max: PAGE });
    const walk = async (from: number, afterPage: (walked: number) => Promise<unknown>) => {
      let walked = from;
      let page = await readPage(walked);
      for (;;) {
        // The next page is read while this one is logged out, so no logout waits for it.
        const next = page.length < PAGE ? undefined : readPage(walked + page.length);
        next?.catch(() => undefined);
        await mapLimited(page, deps.settings.logoutFanOut, (user) =>
          logoutIgnoringGone(deps, user.id!),
        );
        walked += page.length;
        await afterPage(walked);
        if (!next) return walked;
        page = await next;
      }
    };

    cursor = await walk(cursor, async (walked) => {
      cursor = walked;
      await job.updateData({ ...data, cursor });
      await progress();
    });

    const left = await keycloak.countUsers(filter);
    if (left < total) {
      deps.logger.info(
        { jobId: job.id, domain: data.domain, before: total, after: left },
        'users were deleted while their domain was logged out: walking it once more',
      );
      // Logging out a user twice does no harm; passing one over would.
      const again = await walk(0, async () => undefined);
      await job.updateProgress({ done: again, total: again });
      return { done: again, total: again };
    }
    return { done: cursor, total: Math.max(total, cursor) };
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
