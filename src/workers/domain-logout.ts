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
 * Walks, at most, while the domain's list keeps moving under the walk; then the job fails with
 * a reason, rather than walking for ever.
 */
const MAX_WALKS = 5;

/**
 * Logs out every user of a domain: walks the domain's users in Keycloak page by page, ends
 * each one's sessions with at most `logoutFanOut` calls in flight, and saves after each page
 * how far it got, so a re-run after a crash goes on from there instead of starting over.
 *
 * Keycloak pages by offset over the users sorted by username, so a user deleted meanwhile from
 * a page already walked moves every later user one place up, and one of them would be passed
 * over (a user created meanwhile moves them down, and one would be logged out twice). So each
 * page is read from one place earlier, the last user of the page before: found there, the list
 * has not moved before it, whatever was deleted and created (a count would miss a deletion and
 * a creation that balance out); not found, the domain is walked once more from the start,
 * logging out only the users this run has not. Progress is `{done, total}`.
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
    /** Users this run has logged out; a walk over again skips them. */
    const done = new Set<string>();
    // Those a crashed run logged out count too, until a walk starts over from the first user.
    let before = data.cursor ?? 0;
    let shown = 0;
    const doneCount = () => (shown = Math.max(shown, before + done.size));
    const progress = () =>
      job.updateProgress({ done: doneCount(), total: Math.max(total, doneCount()) });
    await progress();

    /**
     * A page of users from `from`, read from one place earlier when `after` (the last user of
     * the page before) is known: `undefined` when that place no longer holds it.
     */
    const readPage = async (from: number, after: string | undefined) => {
      if (from === 0 || after === undefined) {
        return keycloak.findUsers({ ...filter, first: from, max: PAGE });
      }
      const [anchor, ...page] = await keycloak.findUsers({
        ...filter,
        first: from - 1,
        max: PAGE + 1,
      });
      return anchor?.id === after ? page : undefined;
    };

    /** Walks from `from`; false when the list moved under it. */
    const walk = async (from: number, after: string | undefined): Promise<boolean> => {
      let walked = from;
      let page = await readPage(walked, after);
      for (;;) {
        if (!page) return false;
        const last = page.at(-1)?.id;
        // The next page is read while this one is logged out, so no logout waits for it.
        const next = page.length < PAGE ? undefined : readPage(walked + page.length, last);
        next?.catch(() => undefined);
        const fresh = page.filter((user) => !done.has(user.id!));
        await mapLimited(fresh, deps.settings.logoutFanOut, async (user) => {
          await logoutIgnoringGone(deps, user.id!);
          done.add(user.id!);
        });
        walked += page.length;
        await job.updateData({ ...data, cursor: walked, after: last });
        await progress();
        if (!next) return true;
        page = await next;
      }
    };

    let walks = 1;
    let whole = await walk(before, data.after);
    while (!whole) {
      if (++walks > MAX_WALKS) {
        throw errors.conflict(
          `the users of domain "${data.domain}" kept changing while it was logged out ` +
            `(walked ${MAX_WALKS} times): log it out again once they are settled`,
        );
      }
      deps.logger.info(
        { jobId: job.id, domain: data.domain, walks },
        "the domain's users moved while it was logged out: walking it once more",
      );
      before = 0;
      whole = await walk(0, undefined);
    }
    const result = { done: doneCount(), total: Math.max(total, doneCount()) };
    await job.updateProgress(result);
    return result;
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
