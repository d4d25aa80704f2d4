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
 * Users read before the place the last user of the page before should be: deletions before it
 * move it up by as many places, and it is found among them (see `logoutDomain`).
 */
const LOOK_BACK = 20;

/**
 * Walks in a row that log nobody out because the domain's list moved under each of them: then
 * the job fails with a reason, rather than walking for ever.
 */
const MAX_IDLE_WALKS = 5;

/**
 * Logs out every user of a domain: walks the domain's users in Keycloak page by page, ends
 * each one's sessions with at most `logoutFanOut` calls in flight, and saves after each page
 * how far it got, so a re-run after a crash goes on from there instead of starting over.
 *
 * Keycloak pages by offset over the users sorted by username: a user created meanwhile before
 * the place a walk has reached moves every later user one place down (one would be logged out
 * twice), and a user deleted moves them up (one would be passed over). So each page is read
 * with a few users before it, and goes on after the last user of the page before, wherever
 * that user now is. When that user is not there (deleted itself, or more than `LOOK_BACK` users
 * before it), the domain is walked again from the start, logging out only the users this run
 * has not. (A count of the domain's users before and after would miss a deletion and a
 * creation that balance out.) Progress is `{done, total}`.
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
    // A run that crashed saved where it was and its last user: it goes on after that user. One
    // saved before the last user was kept (or none) starts over: the list may have moved.
    const resume = data.cursor && data.after ? { from: data.cursor, after: data.after } : undefined;
    // Those a crashed run logged out count too, until a walk starts over from the first user.
    let before = resume?.from ?? 0;
    let shown = 0;
    const doneCount = () => (shown = Math.max(shown, before + done.size));
    const progress = () =>
      job.updateProgress({ done: doneCount(), total: Math.max(total, doneCount()) });
    await progress();

    /**
     * The users after `after` (the last user of the page before, which was at `from - 1`), and
     * where the read ended; `undefined` when `after` is not found.
     */
    const readPage = async (from: number, after: string | undefined) => {
      const first = after === undefined ? from : Math.max(0, from - 1 - LOOK_BACK);
      const max = PAGE + (after === undefined ? 0 : from - first);
      const rows = await keycloak.findUsers({ ...filter, first, max });
      const at = after === undefined ? -1 : rows.findIndex((user) => user.id === after);
      if (after !== undefined && at === -1) return undefined;
      return { users: rows.slice(at + 1), end: first + rows.length, last: rows.length < max };
    };

    /** Walks from `from`; false when the list moved under it and `after` was lost. */
    const walk = async (from: number, after: string | undefined): Promise<boolean> => {
      let page = await readPage(from, after);
      for (;;) {
        if (!page) return false;
        const { users, end, last } = page;
        const lastUser = users.at(-1)?.id ?? after;
        // The next page is read while this one is logged out, so no logout waits for it.
        const next = last ? undefined : readPage(end, lastUser);
        next?.catch(() => undefined);
        const fresh = users.filter((user) => !done.has(user.id!));
        await mapLimited(fresh, deps.settings.logoutFanOut, async (user) => {
          await logoutIgnoringGone(deps, user.id!);
          done.add(user.id!);
        });
        after = lastUser;
        await job.updateData({ ...data, cursor: end, after });
        await progress();
        if (!next) return true;
        page = await next;
      }
    };

    let idle = 0;
    let whole = await walk(resume?.from ?? 0, resume?.after);
    while (!whole) {
      const doneBefore = done.size;
      deps.logger.info(
        { jobId: job.id, domain: data.domain },
        "the domain's users moved while it was logged out: walking it once more",
      );
      before = 0;
      whole = await walk(0, undefined);
      idle = done.size > doneBefore ? 0 : idle + 1;
      if (!whole && idle >= MAX_IDLE_WALKS) {
        throw errors.conflict(
          `the users of domain "${data.domain}" kept changing while it was logged out ` +
            `(${MAX_IDLE_WALKS} walks in a row found no one left to log out before the list ` +
            'moved): log it out again once they are settled',
        );
      }
    }
    // Every user the domain has now was logged out (those deleted meanwhile may be counted).
    const result = { done: doneCount(), total: doneCount() };
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
