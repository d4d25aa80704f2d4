import { UnrecoverableError, type Job } from 'bullmq';
import { expect } from 'chai';

import type { DomainLogoutData } from '../../src/jobs/types.js';
import { createLogger } from '../../src/logger.js';
import type { WorkerDeps } from '../../src/workers/deps.js';
import { logoutDomain } from '../../src/workers/domain-logout.js';

/**
 * A domain's users as Keycloak pages them (sorted, by offset), with a hook called on every
 * read that may change the list, as other administrators do while a logout walks it.
 */
function fakeKeycloak(count: number, onRead: (first: number, list: string[]) => void) {
  const list = Array.from({ length: count }, (_, i) => `user-${String(i).padStart(4, '0')}`);
  const loggedOut = new Map<string, number>();
  const keycloak = {
    countUsers: async () => list.length,
    findUsers: async ({ first = 0, max = 100 }: { first?: number; max?: number }) => {
      onRead(first, list);
      return list.slice(first, first + max).map((id) => ({ id, username: id }));
    },
    logout: async (id: string) => {
      loggedOut.set(id, (loggedOut.get(id) ?? 0) + 1);
    },
  };
  return { keycloak, list, loggedOut };
}

function fakeJob(data: Partial<DomainLogoutData> = {}) {
  const job = {
    id: 'logout-1',
    data: { v: 1, domainId: 'd-1', domain: 'example.com', ...data } as DomainLogoutData,
    opts: { attempts: 1 },
    attemptsMade: 0,
    progress: undefined as unknown,
    updateProgress: async (progress: unknown) => void (job.progress = progress),
    updateData: async (next: DomainLogoutData) => void (job.data = next),
  };
  return job;
}

function depsOf(keycloak: unknown): WorkerDeps {
  return {
    keycloak,
    logger: createLogger('silent'),
    settings: { logoutFanOut: 7 },
  } as unknown as WorkerDeps;
}

describe('domain logout', () => {
  it('logs out every user once when the list holds still, in pages of any size', async () => {
    for (const count of [0, 1, 99, 100, 101, 250]) {
      const { keycloak, loggedOut } = fakeKeycloak(count, () => undefined);
      const job = fakeJob();

      const result = await logoutDomain(job as unknown as Job<DomainLogoutData>, depsOf(keycloak));

      expect(result, `${count} users`).to.deep.equal({ done: count, total: count });
      expect(loggedOut.size, `${count} users`).to.equal(count);
      expect(
        [...loggedOut.values()].every((times) => times === 1),
        `${count}`,
      ).to.equal(true);
    }
  });

  it('fails with a reason when the list moves under every walk and nobody is left', async () => {
    // From the fourth page on, every read that looks for the last user of the page before
    // finds it deleted just then: each walk over again finds its first page done, and loses
    // its place at the second.
    let moving = false;
    const { keycloak, loggedOut } = fakeKeycloak(400, (first, list) => {
      if (first >= 200) moving = true;
      if (moving && first > 0) list.splice(first + 20, 1);
    });
    const job = fakeJob();

    const failure = await logoutDomain(
      job as unknown as Job<DomainLogoutData>,
      depsOf(keycloak),
    ).then(
      () => undefined,
      (err: unknown) => err,
    );

    expect(failure).to.be.instanceOf(UnrecoverableError);
    expect((failure as Error).message).to.match(
      /^409 conflict: the users of domain "example.com" kept changing while it was logged out/,
    );
    expect(loggedOut.size).to.equal(300);
  });
});
