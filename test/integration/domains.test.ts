import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

import { createUser, until, waitForJob } from '../support/fixtures.js';
import { CLIENT_SECRET, startStack, type Stack } from '../support/stack.js';

describe('managing domains', function () {
  let stack: Stack;
  let domainId: string;

  beforeEach(async () => {
    stack = await startStack();
    const created = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    domainId = created.body.domain.id;
  });

  afterEach(async () => {
    await stack.close();
  });

  it('reads a domain by id; 404 for an unknown id, 400 for something that is no id', async () => {
    const found = await stack.call('GET', `/domains/${domainId}`);
    const unknown = await stack.call('GET', '/domains/0123456789abcdef01234567');
    const bad = await stack.call('GET', '/domains/example.com');

    expect(found.status).to.equal(200);
    expect(found.body.domain).to.include({ id: domainId, domain: 'example.com' });
    expect(unknown.status).to.equal(404);
    expect(bad.status).to.equal(400);
    expect(bad.body.details[0].path).to.equal('id');
  });

  it('changes the fields a PATCH names and keeps the others', async () => {
    await stack.call('PATCH', `/domains/${domainId}`, { origins: ['https://a.example.com'] });

    const answer = await stack.call('PATCH', `/domains/${domainId}`, {
      enable_anonymous: true,
      services: { meetings: ['enabled'] },
    });

    expect(answer.status).to.equal(200);
    expect(answer.body.domain).to.deep.include({
      domain: 'example.com',
      enable_anonymous: true,
      origins: ['https://a.example.com'],
      services: { meetings: ['enabled'] },
    });
    expect(stack.wac.domains()[0]).to.deep.include({ enableAnonymous: true });
  });

  it('renames a domain without users, and refuses to rename one with users', async () => {
    const renamed = await stack.call('PATCH', `/domains/${domainId}`, { domain: 'example.org' });
    expect(renamed.status).to.equal(200);
    expect(renamed.body.domain.domain).to.equal('example.org');

    await createUser(stack, 'ada', { attributes: { domain: 'example.org' } });
    const refused = await stack.call('PATCH', `/domains/${domainId}`, { domain: 'example.net' });

    expect(refused.status).to.equal(409);
    expect(refused.body.error).to.equal(
      'domain example.org has 1 users; a domain with users cannot be renamed',
    );
    expect(stack.wac.domains()[0].domain).to.equal('example.org');
  });

  it('deletes a domain only once it has no users and no child domains', async () => {
    const id = await createUser(stack, 'ada');
    const child = await stack.call('POST', '/domains', {
      domain: { domain: 'sub.example.com', parent: 'example.com' },
    });

    const withUsers = await stack.call('DELETE', `/domains/${domainId}`);
    await stack.call('DELETE', `/users/${id}`);
    const withChild = await stack.call('DELETE', `/domains/${domainId}`);
    await stack.call('DELETE', `/domains/${child.body.domain.id}`);
    const deleted = await stack.call('DELETE', `/domains/${domainId}`);

    expect(withUsers.status).to.equal(409);
    expect(withUsers.body.error).to.include('still has 1 users');
    expect(withChild.status).to.equal(409);
    expect(withChild.body.error).to.include('parent of sub.example.com');
    expect(deleted.status).to.equal(204);
    expect(stack.wac.domains()).to.deep.equal([]);
    expect((await stack.call('GET', `/domains/${domainId}`)).status).to.equal(404);
  });

  describe('logging out a domain', () => {
    /**
     * Logs the domain out with each logout taking 30 ms (a page of 100 takes 300 ms, 10 at a
     * time), runs `meanwhile` once page 1 is under way, and waits for the job's end.
     */
    async function logoutWhile(ids: string[], meanwhile: () => Promise<unknown>) {
      stack.keycloak.faults.set({ latency_ms: 30, paths: '/logout$' });
      const answer = await stack.call('POST', `/domains/${domainId}/logout`);
      await until('page 1 under way', () => stack.keycloak.logoutCount(ids[5]) > 0);
      await meanwhile();
      return waitForJob(stack, answer.body.job.id, 20_000);
    }

    /** Those of `ids` not logged out exactly once. */
    const notOnce = (ids: string[]) => ids.filter((id) => stack.keycloak.logoutCount(id) !== 1);

    it('answers 202 and logs out every user of the domain, reporting done and total', async () => {
      const ids = seedDomainUsers(stack, 250);
      const outsider = stack.keycloak.seedUsers([
        { username: 'outsider', enabled: true, attributes: { domain: ['other.com'] } },
      ]);

      const answer = await stack.call('POST', `/domains/${domainId}/logout`);

      expect(answer.status).to.equal(202);
      expect(answer.headers.get('location')).to.equal(`/jobs/${answer.body.job.id}`);
      const job = await waitForJob(stack, answer.body.job.id);
      expect(job).to.include({ type: 'domain.logout', state: 'succeeded', progress: 100 });
      expect([job.done, job.total]).to.deep.equal([250, 250]);
      expect(ids.every((id) => stack.keycloak.logoutCount(id) === 1)).to.equal(true);
      expect(stack.keycloak.logoutCount(outsider[0])).to.equal(0);
    });

    it('passes no user over when one is deleted from a page already walked', async () => {
      const ids = seedDomainUsers(stack, 250);
      // Each page takes 300 ms (100 logouts of 30 ms, 10 at a time). Page 2 is read as page 1
      // starts, page 3 as page 2 starts: a user of page 1 deleted in between moves user200 to
      // where page 2 ends, already read, and page 3 then starts at user201.
      const job = await logoutWhile(ids, () => deleteKeycloakUser(stack, ids[0]));

      expect(notOnce(ids.slice(1))).to.deep.equal([]);
      expect(job.state).to.equal('succeeded');
      // The deleted user was logged out (or found gone) before it was deleted: 250 in all.
      expect([job.done, job.total]).to.deep.equal([250, 250]);
    });

    it('passes no user over when a deletion and a creation balance out', async () => {
      const ids = seedDomainUsers(stack, 250);
      // As above, and a user created at the end of the list keeps the domain's count as it was.
      let late = '';
      const job = await logoutWhile(ids, async () => {
        await deleteKeycloakUser(stack, ids[0]);
        [late] = stack.keycloak.seedUsers([
          { username: 'zz-late', enabled: true, attributes: { domain: ['example.com'] } },
        ]);
      });

      expect(notOnce([...ids.slice(1), late])).to.deep.equal([]);
      expect(job.state).to.equal('succeeded');
      expect([job.done, job.total]).to.deep.equal([251, 251]);
    });

    it('walks again, logging out those left, when the last user it read is deleted', async () => {
      const ids = seedDomainUsers(stack, 250);
      // Page 3 is read from page 2's last user, ids[199]: deleted while page 1 is under way, it
      // is not there to say where page 3 starts.
      const job = await logoutWhile(ids, () => deleteKeycloakUser(stack, ids[199]));

      expect(notOnce(ids.filter((id) => id !== ids[199]))).to.deep.equal([]);
      expect(job.state).to.equal('succeeded');
      // ids[199] counts when page 2 was read before it was deleted (its logout found it gone).
      expect(job.done).to.be.oneOf([249, 250]);
      expect(job.total).to.equal(job.done);
      expect(stack.logs.join('')).to.include('walking it once more');
    });

    it('goes on where a crashed run stopped instead of starting over', async () => {
      const ids = seedDomainUsers(stack, 250);
      // The state a run leaves when it dies after its first page: cursor 100 and its last user.
      const job = await runSavedLogout(stack, 'resumed-logout', { cursor: 100, after: ids[99] });

      expect(job.state).to.equal('succeeded');
      expect(ids.slice(0, 100).every((id) => stack.keycloak.logoutCount(id) === 0)).to.equal(true);
      expect(ids.slice(100).every((id) => stack.keycloak.logoutCount(id) === 1)).to.equal(true);
    });

    it('goes on after the last user a crashed run saved, wherever the list moved it', async () => {
      const ids = seedDomainUsers(stack, 250);
      // A run died after its first page (cursor 100, its last user ids[99]); then a user of that
      // page was deleted, and ids[100] is now where ids[99] was.
      await deleteKeycloakUser(stack, ids[10]);
      const job = await runSavedLogout(stack, 'resumed-moved', { cursor: 100, after: ids[99] });

      expect(job.state).to.equal('succeeded');
      expect(ids.slice(0, 100).filter((id) => stack.keycloak.logoutCount(id) !== 0)).to.deep.equal(
        [],
      );
      expect(ids.slice(100).filter((id) => stack.keycloak.logoutCount(id) !== 1)).to.deep.equal([]);
    });

    it('starts over when a crashed run saved where it was but not its last user', async () => {
      const ids = seedDomainUsers(stack, 250);
      await deleteKeycloakUser(stack, ids[10]);
      const job = await runSavedLogout(stack, 'resumed-unanchored', { cursor: 100 });

      expect(job.state).to.equal('succeeded');
      const left = ids.filter((id) => id !== ids[10]);
      expect(left.filter((id) => stack.keycloak.logoutCount(id) !== 1)).to.deep.equal([]);
      expect([job.done, job.total]).to.deep.equal([249, 249]);
    });

    it('goes on, without starting over, while users are created before its place', async () => {
      const ids = seedDomainUsers(stack, 300);
      // Each page takes about 200 ms; a user that sorts first arrives every 40 ms, and moves
      // every user the walk has not reached one place down.
      stack.keycloak.faults.set({ latency_ms: 20, paths: '/logout$' });
      const answer = await stack.call('POST', `/domains/${domainId}/logout`);
      let created = 0;
      const creating = setInterval(() => {
        stack.keycloak.seedUsers([
          {
            username: `a-new-${created++}`,
            enabled: true,
            attributes: { domain: ['example.com'] },
          },
        ]);
      }, 40);
      const job = await waitForJob(stack, answer.body.job.id, 20_000).finally(() =>
        clearInterval(creating),
      );

      expect(job.state, JSON.stringify(job)).to.equal('succeeded');
      expect(created).to.be.greaterThan(10);
      expect(ids.filter((id) => stack.keycloak.logoutCount(id) !== 1)).to.deep.equal([]);
      expect(stack.logs.join('')).not.to.include('walking it once more');
    });

    it('does not hold up user provisioning while a large domain is logged out', async () => {
      seedDomainUsers(stack, 400);
      stack.keycloak.faults.set({ latency_ms: 50, paths: '/logout$' });
      const logout = await stack.call('POST', `/domains/${domainId}/logout`);

      const created = await stack.call('POST', '/users', {
        user: { username: 'newcomer', attributes: { domain: 'example.com' } },
      });
      const during = (await stack.call('GET', `/jobs/${logout.body.job.id}`)).body.job;

      expect(created.status).to.equal(201);
      expect(during.state).to.equal('running');
      expect(during.done).to.be.lessThan(400);
    });
  });
});

/** Queues a domain logout as a crashed run left it (`cursor`, `after`), and waits for its end. */
async function runSavedLogout(
  stack: Stack,
  jobId: string,
  saved: { cursor: number; after?: string },
): Promise<Record<string, unknown> & { state: string; done: number; total: number }> {
  const redis = new Redis(stack.config.redisUrl);
  const queue = new Queue('logout', { connection: redis, prefix: stack.config.queuePrefix });
  try {
    const domain = stack.wac.domains().find((d) => d.domain === 'example.com')!;
    await queue.add(
      'domain.logout',
      { v: 1, domainId: domain.id, domain: domain.domain, ...saved },
      {
        jobId,
      },
    );
    return await waitForJob(stack, jobId);
  } finally {
    await queue.close();
    await redis.quit();
  }
}

/** Deletes a user in the Keycloak emulator as an administrator would, behind kitter's back. */
async function deleteKeycloakUser(stack: Stack, id: string): Promise<void> {
  const base = stack.keycloak.url;
  const token = await fetch(`${base}/realms/quobis/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: 'kitter',
      client_secret: CLIENT_SECRET,
    }),
  });
  const { access_token: accessToken } = (await token.json()) as { access_token: string };
  const deleted = await fetch(`${base}/admin/realms/quobis/users/${id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${accessToken}` },
  });
  if (deleted.status !== 204) throw new Error(`deleting ${id}: ${deleted.status}`);
}

/** `count` Keycloak users of example.com, user000 on, in Keycloak only; answers their ids. */
function seedDomainUsers(stack: Stack, count: number): string[] {
  return stack.keycloak.seedUsers(
    Array.from({ length: count }, (_, i) => ({
      username: `user${String(i).padStart(3, '0')}`,
      enabled: true,
      attributes: { domain: ['example.com'] },
    })),
  );
}
