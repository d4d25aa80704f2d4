import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

import { errors } from '../../src/errors.js';
import { encodeFailure } from '../../src/jobs/outcome.js';
import { SecretBox } from '../../src/jobs/secrets.js';
import { splitSecrets, type UserInput } from '../../src/model/users.js';
import { userBody, waitForJob } from '../support/fixtures.js';
import { startStack, type Stack } from '../support/stack.js';

/**
 * A job that runs again after a crash finds what its earlier run left. Each case below sets up
 * the state a crash at one step boundary leaves, in the backends and in the job's saved
 * progress, and checks that the re-run finishes the work with nothing made twice.
 */
describe('jobs run again after a crash at any step', function () {
  let stack: Stack;
  let redis: Redis;
  let provisioning: Queue;
  let domainId: string;

  beforeEach(async () => {
    stack = await startStack();
    domainId = stack.wac.seedDomain({ domain: 'example.com' }).id;
    redis = new Redis(stack.config.redisUrl);
    provisioning = new Queue('provisioning', {
      connection: redis,
      prefix: stack.config.queuePrefix,
    });
  });

  afterEach(async () => {
    await provisioning.close();
    await redis.quit();
    await stack.close();
  });

  const box = () => new SecretBox(stack.config.secretKey);

  function createJobData(progress: Record<string, string>) {
    const { spec, secrets } = splitSecrets(userBody('ada').user as UserInput);
    return { v: 1, user: spec, secrets: box().seal(secrets), progress };
  }

  /** What an earlier run made, by step. */
  const made = {
    keycloak: (jobId: string) =>
      stack.keycloak.seedUsers([
        {
          username: 'ada',
          email: 'ada@example.com',
          enabled: true,
          attributes: { domain: ['example.com'], kitter_job: [jobId] },
        },
      ])[0],
    wac: (keycloakId: string) =>
      stack.wac.seedUsers([
        { domain: domainId, username: 'ada', email: 'ada@example.com', externalId: keycloakId },
      ])[0].id,
    sip: async (wacUserId: string) => {
      const answer = await fetch(`${stack.wac.baseUrl}/sipMappings`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${await stack.keycloak.issueToken()}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          ownerUri: `wac-user:${wacUserId}`,
          credential: { username: 'sip-ada', password: 'sip-Secret-4242' },
        }),
      });
      return ((await answer.json()) as { id: string }).id;
    },
    /** Every record, with the progress that saved each. */
    everything: async (jobId: string) => {
      const keycloakId = made.keycloak(jobId);
      const wacUserId = made.wac(keycloakId);
      return { keycloakId, wacUserId, sipMappingId: await made.sip(wacUserId) };
    },
  };

  const createCases: Array<{
    boundary: string;
    leave: (jobId: string) => Promise<Record<string, string>>;
  }> = [
    {
      boundary: 'after Keycloak made the user, before its id was saved',
      leave: async (jobId) => (made.keycloak(jobId), {}),
    },
    {
      boundary: 'after the Keycloak id was saved, before wac-core was asked',
      leave: async (jobId) => ({ keycloakId: made.keycloak(jobId) }),
    },
    {
      boundary: 'after wac-core made the user, before its id was saved',
      leave: async (jobId) => {
        const keycloakId = made.keycloak(jobId);
        made.wac(keycloakId);
        return { keycloakId };
      },
    },
    {
      boundary: 'after the wac-core id was saved, before the SIP mapping was asked',
      leave: async (jobId) => {
        const keycloakId = made.keycloak(jobId);
        return { keycloakId, wacUserId: made.wac(keycloakId) };
      },
    },
    {
      boundary: 'after wac-core made the SIP mapping, before its id was saved',
      leave: async (jobId) => {
        const keycloakId = made.keycloak(jobId);
        const wacUserId = made.wac(keycloakId);
        await made.sip(wacUserId);
        return { keycloakId, wacUserId };
      },
    },
    {
      boundary: 'after every step was saved, before the job was marked done',
      leave: (jobId) => made.everything(jobId),
    },
  ];

  for (const { boundary, leave } of createCases) {
    it(`user.create finishes once when it crashed ${boundary}`, async () => {
      const jobId = `crashed-create-${createCases.findIndex((c) => c.boundary === boundary)}`;
      const progress = await leave(jobId);

      await provisioning.add('user.create', createJobData(progress), { jobId, attempts: 3 });
      const job = await waitForJob(stack, jobId);

      expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
      expect(stack.keycloak.users()).to.have.length(1);
      expect(stack.wac.users()).to.have.length(1);
      expect(stack.wac.sipMappings()).to.have.length(1);
      const keycloakId = stack.keycloak.users()[0].id;
      expect(stack.wac.users()[0].externalId).to.equal(keycloakId);
      expect(stack.wac.sipMappings()[0].ownerUri).to.equal(`wac-user:${stack.wac.users()[0].id}`);
      expect(job.result.user).to.include({ id: keycloakId, username: 'ada' });
    });
  }

  // The passwords are removed as a job ends, just before BullMQ marks it done. When that mark is
  // lost (the job's lock lapsed while Redis failed over, or its worker died in between), the job
  // runs again without them.
  it('user.create run again after its passwords were removed ends as it would have', async () => {
    const jobId = 'ended-but-not-marked';
    const progress = await made.everything(jobId);
    const { secrets: _sealed, ...withoutSecrets } = createJobData(progress);

    await provisioning.add(
      'user.create',
      { ...withoutSecrets, secretsRemoved: true, endedAs: 'succeeded' },
      { jobId, attempts: 3 },
    );
    const job = await waitForJob(stack, jobId);

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.result.user).to.include({ id: progress.keycloakId, username: 'ada' });
    expect(job.result.user.attributes.sip_mapping).to.include({ username: 'sip-ada' });
    expect(stack.keycloak.users()).to.have.length(1);
    expect(stack.wac.users()).to.have.length(1);
    expect(stack.wac.sipMappings()).to.have.length(1);
  });

  it('an import row run again after its passwords were removed ends as it would have', async () => {
    const jobId = 'row-ended-but-not-marked';
    const progress = await made.everything(jobId);
    const { secrets: _sealed, ...row } = importRowJobData(progress);
    const cells = { ...row.import.cells, sip_username: 'sip-ada' };
    // As a job written before runs recorded how they ended (no `endedAs`): its progress decides.
    const data = { ...row, import: { ...row.import, cells }, secretsRemoved: true };

    await provisioning.add('user.create', data, { jobId, attempts: 3 });
    const job = await waitForJob(stack, jobId);

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.result.user).to.include({ id: progress.keycloakId, username: 'ada' });
    expect(job.result.user.attributes.sip_mapping).to.include({ username: 'sip-ada' });
  });

  it('a re-run whose read-back fails for good undoes nothing an earlier run made', async () => {
    const jobId = 'ended-read-back-fails';
    const progress = await made.everything(jobId);
    const { secrets: _sealed, ...withoutSecrets } = createJobData(progress);
    stack.keycloak.faults.set({ error_rate: 1, error_status: 503, paths: '^GET /admin' });

    const data = { ...withoutSecrets, secretsRemoved: true, endedAs: 'succeeded' };
    await provisioning.add('user.create', data, { jobId, attempts: 1 });
    const job = await waitForJob(stack, jobId);

    expect(job.state).to.equal('failed');
    expect(stack.keycloak.users()).to.have.length(1);
    expect(stack.wac.users()).to.have.length(1);
    expect(stack.wac.sipMappings()).to.have.length(1);
  });

  it('a re-run of a job that had failed for good fails again with the same reason', async () => {
    const jobId = 'failed-not-marked-create';
    const progress = await made.everything(jobId);
    const { secrets: _sealed, ...withoutSecrets } = createJobData(progress);
    const reason = encodeFailure(errors.conflict('username "ada" is taken'));

    const data = { ...withoutSecrets, secretsRemoved: true, endedAs: 'failed', failedWith: reason };
    await provisioning.add('user.create', data, { jobId, attempts: 3 });
    const job = await waitForJob(stack, jobId);

    expect(job.state).to.equal('failed');
    expect(job.error).to.deep.equal({
      status: 409,
      code: 'conflict',
      error: 'username "ada" is taken',
    });
  });

  it('a re-run of an import row dropped by a cancel stays cancelled', async () => {
    const jobId = 'dropped-not-marked';
    const { secrets: _sealed, ...row } = importRowJobData({});

    const data = { ...row, secretsRemoved: true, endedAs: 'cancelled' };
    await provisioning.add('user.create', data, { jobId, attempts: 3 });
    const job = await waitForJob(stack, jobId);

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.result).to.have.property('cancelled');
    expect(stack.keycloak.users()).to.deep.equal([]);
  });

  it('user.create without its passwords fails with the reason when a step needs them', async () => {
    const jobId = 'passwords-gone-early';
    const keycloakId = made.keycloak(jobId);
    const wacUserId = made.wac(keycloakId);
    // The SIP mapping, which needs its password, was not made.
    const { secrets: _sealed, ...withoutSecrets } = createJobData({ keycloakId, wacUserId });

    await provisioning.add(
      'user.create',
      { ...withoutSecrets, secretsRemoved: true },
      { jobId, attempts: 3 },
    );
    const job = await waitForJob(stack, jobId);

    expect(job.state).to.equal('failed');
    expect(job.error).to.deep.include({ status: 409, code: 'conflict' });
    expect(job.error.error).to.match(/passwords were removed/);
    expect(stack.wac.sipMappings()).to.deep.equal([]);
    // Nothing it made is undone: the request can be sent again once the user is removed.
    expect(stack.keycloak.users()).to.have.length(1);
  });

  it('user.create does not adopt a user another job made', async () => {
    made.keycloak('someone-elses-job');

    await provisioning.add('user.create', createJobData({}), { jobId: 'mine', attempts: 3 });
    const job = await waitForJob(stack, 'mine');

    expect(job.state).to.equal('failed');
    expect(job.error).to.deep.include({ status: 409, code: 'conflict' });
    expect(stack.keycloak.users()[0].attributes.kitter_job).to.deep.equal(['someone-elses-job']);
    expect(stack.wac.users()).to.deep.equal([]);
  });

  /** An import row's job: the row's cells without passwords, and the passwords sealed. */
  function importRowJobData(progress: Record<string, string>, sealWith = box()) {
    const cells = { username: 'Ada', domain: 'example.com', email: 'ada@example.com' };
    const secrets = sealWith.seal({ password: 'Secret-Pass-4242' });
    return { v: 1, import: { id: 'some-import', row: 2, cells }, secrets, progress };
  }

  it('an import row job finishes once when it crashed after Keycloak made the user', async () => {
    const jobId = 'crashed-import-row';
    const keycloakId = made.keycloak(jobId);

    await provisioning.add('user.create', importRowJobData({ keycloakId }), {
      jobId,
      attempts: 3,
    });
    const job = await waitForJob(stack, jobId);

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(stack.keycloak.users()).to.have.length(1);
    expect(stack.wac.users()).to.have.length(1);
    expect(stack.wac.users()[0]).to.include({ username: 'ada', externalId: keycloakId });
    expect(job.result.user).to.include({ id: keycloakId, username: 'ada' });
  });

  it('undoes an import row job whose passwords cannot be opened (another key)', async () => {
    const jobId = 'unreadable-import-row';
    const keycloakId = made.keycloak(jobId);
    const otherKey = new SecretBox('a-key-this-stack-does-not-have');

    await provisioning.add('user.create', importRowJobData({ keycloakId }, otherKey), {
      jobId,
      attempts: 1,
    });
    const job = await waitForJob(stack, jobId);

    expect(job.state).to.equal('failed');
    expect(job.error.error).to.include(`removed the Keycloak user ${keycloakId}`);
    expect(stack.keycloak.users()).to.deep.equal([]);
    expect(stack.wac.users()).to.deep.equal([]);
  });

  const deleteCases: Array<{ boundary: string; leave: (keycloakId: string) => Promise<void> }> = [
    {
      boundary: 'after the SIP mapping was deleted',
      leave: async () => {
        const mapping = stack.wac.sipMappings()[0];
        await wacDelete(`/sipMappings/${mapping.id}`);
      },
    },
    {
      boundary: 'after the wac-core user was deleted',
      leave: async () => {
        await wacDelete(`/sipMappings/${stack.wac.sipMappings()[0].id}`);
        await wacDelete(`/users/${stack.wac.users()[0].id}`);
      },
    },
    {
      boundary: 'after everything was deleted, before the job was marked done',
      leave: async (keycloakId) => {
        await wacDelete(`/sipMappings/${stack.wac.sipMappings()[0].id}`);
        await wacDelete(`/users/${stack.wac.users()[0].id}`);
        stack.keycloak.reset();
        expect(stack.keycloak.users().find((user) => user.id === keycloakId)).to.equal(undefined);
      },
    },
  ];

  for (const { boundary, leave } of deleteCases) {
    it(`user.delete finishes when it crashed ${boundary}`, async () => {
      const created = await stack.call('POST', '/users', userBody('ada'));
      const keycloakId = created.body.user.id;
      await leave(keycloakId);

      await provisioning.add(
        'user.delete',
        { v: 1, userId: keycloakId, started: true },
        { jobId: 'crashed-delete', attempts: 3 },
      );
      const job = await waitForJob(stack, 'crashed-delete');

      expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
      expect(stack.keycloak.users()).to.deep.equal([]);
      expect(stack.wac.users()).to.deep.equal([]);
      expect(stack.wac.sipMappings()).to.deep.equal([]);
    });
  }

  it('user.update writes the same end state when it crashed after the Keycloak step', async () => {
    const created = await stack.call('POST', '/users', userBody('ada'));
    const keycloakId = created.body.user.id;
    const before = {
      keycloak: stack.keycloak.users()[0],
      wac: stack.wac.users()[0],
    };
    // The earlier run wrote Keycloak, then died before wac-core.
    await stack.call('PATCH', `/users/${keycloakId}`, { first_name: 'Augusta' });
    const patch = { first_name: 'Augusta', attributes: { capabilities: ['+chat'] } };

    await provisioning.add(
      'user.update',
      { v: 1, userId: keycloakId, patch, before },
      { jobId: 'crashed-update', attempts: 3 },
    );
    const job = await waitForJob(stack, 'crashed-update');

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(stack.keycloak.users()[0].firstName).to.equal('Augusta');
    expect(stack.wac.users()[0]).to.deep.include({
      displayName: 'Augusta Lovelace',
      capabilities: ['+chat'],
    });
  });

  it('user.update run again after its passwords went, as it succeeded, reads back', async () => {
    const created = await stack.call('POST', '/users', userBody('ada'));
    const keycloakId = created.body.user.id;
    await stack.call('PATCH', `/users/${keycloakId}`, { first_name: 'Augusta' });
    // The run that made this change removed the password and succeeded; its end was lost. The
    // job's patch, written again, would show: it is not.
    const patch = { first_name: 'Not-Again' };

    const data = { v: 1, userId: keycloakId, patch, secretsRemoved: true, endedAs: 'succeeded' };
    await provisioning.add('user.update', data, { jobId: 'updated-not-marked', attempts: 3 });
    const job = await waitForJob(stack, 'updated-not-marked');

    expect(job.state, JSON.stringify(job.error)).to.equal('succeeded');
    expect(job.result.user).to.include({ id: keycloakId, first_name: 'Augusta' });
    expect(stack.keycloak.users()[0].firstName).to.equal('Augusta');
  });

  it('user.update run again after its passwords were removed as it failed fails', async () => {
    const created = await stack.call('POST', '/users', userBody('ada'));
    const keycloakId = created.body.user.id;
    const patch = { first_name: 'Not-Again' };

    const data = { v: 1, userId: keycloakId, patch, secretsRemoved: true, endedAs: 'failed' };
    await provisioning.add('user.update', data, { jobId: 'failed-not-marked', attempts: 3 });
    const job = await waitForJob(stack, 'failed-not-marked');

    expect(job.state).to.equal('failed');
    expect(job.error.error).to.match(/passwords were removed/);
    expect(stack.keycloak.users()[0].firstName).to.equal('Ada');
  });

  it('domain.create adopts the domain its own earlier run sent, and no other', async () => {
    stack.wac.seedDomain({ domain: 'mine.example.com', origins: ['/.*/'] });
    stack.wac.seedDomain({ domain: 'theirs.example.com', origins: ['https://x'] });
    const asked = (domain: string) => ({ v: 1, domain: { domain, origins: ['/.*/'] }, sent: true });

    await provisioning.add('domain.create', asked('mine.example.com'), { jobId: 'crashed-mine' });
    await provisioning.add('domain.create', asked('theirs.example.com'), {
      jobId: 'crashed-theirs',
    });
    const mine = await waitForJob(stack, 'crashed-mine');
    const theirs = await waitForJob(stack, 'crashed-theirs');

    expect(mine.state).to.equal('succeeded');
    expect(mine.result.domain).to.include({ domain: 'mine.example.com' });
    expect(theirs.state).to.equal('failed');
    expect(theirs.error).to.deep.include({ status: 409, code: 'conflict' });
    expect(stack.wac.domains()).to.have.length(3);
  });

  async function wacDelete(path: string) {
    const answer = await fetch(`${stack.wac.baseUrl}${path}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${await stack.keycloak.issueToken()}` },
    });
    expect(answer.status).to.equal(204);
  }
});
