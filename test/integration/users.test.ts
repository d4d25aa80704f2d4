import { expect } from 'chai';
import { Redis } from 'ioredis';

import { PASSWORD, SIP_PASSWORD, userBody, waitForJob } from '../support/fixtures.js';
import { API_TOKEN, startStack, type Stack } from '../support/stack.js';

describe('creating users through the queue', function () {
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack();
    const created = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    expect(created.status).to.equal(201);
  });

  afterEach(async () => {
    await stack.close();
  });

  it('creates the user in Keycloak and wac-core, with its SIP mapping', async () => {
    const answer = await stack.call('POST', '/users', userBody('ada'));

    expect(answer.status).to.equal(201);
    expect(answer.headers.get('kitter-job')).to.be.a('string');
    expect(answer.body.user).to.deep.include({
      username: 'ada',
      email: 'ada@example.com',
      first_name: 'Ada',
      last_name: 'Lovelace',
      enabled: true,
      email_verified: false,
    });
    expect(answer.body.user.attributes).to.deep.equal({
      domain: 'example.com',
      phone_number: '+34612345678',
      capabilities: ['+chat', '-whiteboard'],
      sip_mapping: {
        username: 'sip-ada',
        password: '********',
        sip_domain: 'sip.example.com',
        sip_auth_proxy: 'sip:127.0.0.1:15060',
      },
    });

    const [keycloakUser] = stack.keycloak.users();
    expect(keycloakUser).to.deep.include({ id: answer.body.user.id, username: 'ada' });
    expect(keycloakUser.attributes).to.deep.include({
      domain: ['example.com'],
      phone_number: ['+34612345678'],
    });

    const [domain] = stack.wac.domains();
    const [wacUser] = stack.wac.users();
    expect(wacUser).to.deep.include({
      domain: domain.id,
      username: 'ada',
      externalId: keycloakUser.id,
      capabilities: ['+chat', '-whiteboard'],
      mobilePhone: ['+34612345678'],
    });
    const [mapping] = stack.wac.sipMappings();
    expect(mapping.ownerUri).to.equal(`wac-user:${wacUser.id}`);
    expect(mapping.credential).to.deep.equal({
      username: 'sip-ada',
      password: SIP_PASSWORD,
      domain: 'sip.example.com',
      authProxy: 'sip:127.0.0.1:15060',
    });
  });

  it('reads the user back from both systems, passwords masked', async () => {
    const created = await stack.call('POST', '/users', userBody('grace'));

    const read = await stack.call('GET', '/users/example.com/grace');

    expect(read.status).to.equal(200);
    expect(read.body).to.deep.equal(created.body.user);
  });

  it('answers 404 for a user of another domain or nobody', async () => {
    await stack.call('POST', '/domains', { domain: { domain: 'other.com' } });
    await stack.call('POST', '/users', userBody('grace'));

    expect((await stack.call('GET', '/users/other.com/grace')).status).to.equal(404);
    expect((await stack.call('GET', '/users/example.com/nobody')).status).to.equal(404);
  });

  it('answers 409 when the username is taken, and changes nothing in either system', async () => {
    await stack.call('POST', '/users', userBody('ada'));
    const before = { keycloak: stack.keycloak.users(), wac: stack.wac.users() };

    const again = await stack.call('POST', '/users', userBody('ADA', { email: 'new@example.com' }));

    expect(again.status).to.equal(409);
    expect(again.body).to.deep.equal({
      error: 'Keycloak refused create user: User exists with same username',
      code: 'conflict',
    });
    expect(stack.keycloak.users()).to.deep.equal(before.keycloak);
    expect(stack.wac.users()).to.deep.equal(before.wac);
    expect(stack.wac.sipMappings()).to.have.length(1);
  });

  it('answers 409 when the email is taken by another user', async () => {
    await stack.call('POST', '/users', userBody('ada'));

    const other = await stack.call('POST', '/users', userBody('bob', { email: 'ada@example.com' }));

    expect(other.status).to.equal(409);
    expect(other.body.error).to.include('User exists with same email');
    expect(stack.keycloak.users().map((user) => user.username)).to.deep.equal(['ada']);
  });

  it('refuses a user of an unknown domain with 400, and writes nothing to Keycloak', async () => {
    const body = userBody('ada');
    body.user.attributes.domain = 'nowhere.org';

    const answer = await stack.call('POST', '/users', body);

    expect(answer.status).to.equal(400);
    expect(answer.body.code).to.equal('unknown_domain');
    expect(answer.body.error).to.equal('domain "nowhere.org" does not exist');
    expect(stack.keycloak.users()).to.deep.equal([]);
    expect(stack.wac.users()).to.deep.equal([]);
  });

  it('answers 202 with the job at once when asked, and the job ends succeeded', async () => {
    const answer = await stack.call('POST', '/users', userBody('ada'), {
      prefer: 'respond-async',
    });

    expect(answer.status).to.equal(202);
    const location = answer.headers.get('location');
    expect(location).to.equal(`/jobs/${answer.body.job.id}`);
    expect(answer.body.job).to.include({ type: 'user.create' });
    expect(answer.body.job.state).to.be.oneOf(['queued', 'running']);

    let job = answer.body.job;
    for (let i = 0; i < 100 && job.state !== 'succeeded'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      job = (await stack.call('GET', location!)).body.job;
    }
    expect(job.state).to.equal('succeeded');
    expect(job.result.user).to.include({ username: 'ada' });
    expect(job.error).to.equal(null);
    expect(job.finished_at).to.be.a('string');
  });

  it('retries a transient wac-core failure and creates the user exactly once', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 503, paths: '^POST /sapi/users' });
    const pending = stack.call('POST', '/users', userBody('ada'));
    await new Promise((resolve) => setTimeout(resolve, 150));
    const refusals = stack.wac.faults.counts.errors;
    stack.wac.faults.reset();

    const answer = await pending;

    expect(refusals).to.be.greaterThan(0);
    expect(answer.status).to.equal(201);
    expect(stack.keycloak.users()).to.have.length(1);
    expect(stack.wac.users()).to.have.length(1);
    expect(stack.wac.sipMappings()).to.have.length(1);
    const job = (await stack.call('GET', `/jobs/${answer.headers.get('kitter-job')}`)).body.job;
    expect(job.attempts).to.be.greaterThan(1);
  });

  it('retries from what the failed attempt made, and keeps it with the finished job', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 503, paths: '^POST /sapi/sipMappings' });
    const pending = stack.call('POST', '/users', userBody('ada'));
    while (stack.wac.faults.counts.errors === 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The first attempt's records, saved as it failed, before its retry.
    const jobKey = `${stack.config.queuePrefix}:provisioning:${await onlyJobId()}`;
    const redis = new Redis(stack.config.redisUrl);
    let saved: { progress?: Record<string, string> } = {};
    for (let tries = 0; tries < 100 && !saved.progress; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      saved = JSON.parse((await redis.hget(jobKey, 'data')) ?? '{}');
    }
    stack.wac.faults.reset();

    const answer = await pending;

    expect(answer.status).to.equal(201);
    expect(saved).to.have.property('progress').that.has.keys('keycloakId', 'wacUserId');
    const creates = (calls: Record<string, number>, path: RegExp) =>
      Object.entries(calls)
        .filter(([route]) => path.test(route))
        .reduce((sum, [, count]) => sum + count, 0);
    // Each record was asked for once: the retry did not create and then adopt them.
    expect(creates(stack.keycloak.calls.all(), /^POST \/admin\/realms\/[^/]+\/users$/)).to.equal(1);
    expect(creates(stack.wac.calls.all(), /^POST \/sapi\/users$/)).to.equal(1);
    const ended = JSON.parse((await redis.hget(jobKey, 'data'))!);
    await redis.quit();
    expect(ended.progress).to.deep.equal({
      keycloakId: answer.body.user.id,
      wacUserId: stack.wac.users()[0].id,
      sipMappingId: stack.wac.sipMappings()[0].id,
    });
    expect(ended).to.include({ secretsRemoved: true, endedAs: 'succeeded' });
    expect(ended).not.to.have.property('secrets');
  });

  /** The id of the one user.create job in the queue. */
  async function onlyJobId(): Promise<string> {
    const redis = new Redis(stack.config.redisUrl);
    const keys = await redis.keys(`${stack.config.queuePrefix}:provisioning:*-*-*-*-*`);
    const creates = [];
    for (const key of keys) {
      if ((await redis.type(key)) !== 'hash') continue;
      if ((await redis.hget(key, 'name')) === 'user.create') creates.push(key.split(':').pop()!);
    }
    await redis.quit();
    expect(creates).to.have.length(1);
    return creates[0];
  }

  it('answers 202 with the attempts made so far when the wait ends first', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 503, paths: '^POST /sapi/users' });
    try {
      const answer = await stack.call('POST', '/users', userBody('ada'), { prefer: 'wait=1' });

      expect(answer.status).to.equal(202);
      // An attempt has failed by then (the next waits for the second wac-core asked for).
      expect(answer.body.job.attempts).to.be.at.least(1);
      expect(answer.body.job.state).to.not.equal('succeeded');
    } finally {
      stack.wac.faults.reset();
    }
  });

  it('gets a new token when Keycloak’s expires in the middle of a run', async () => {
    await stack.call('POST', '/users', userBody('ada'));
    stack.keycloak.expireAllTokens();

    const second = await stack.call('POST', '/users', userBody('bob'));

    expect(second.status).to.equal(201);
    const job = (await stack.call('GET', `/jobs/${second.headers.get('kitter-job')}`)).body.job;
    expect(job.attempts).to.equal(1);
    expect(stack.wac.users()).to.have.length(2);
  });

  it('undoes the Keycloak user when wac-core refuses the user for good', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });

    const answer = await stack.call('POST', '/users', userBody('ada'));

    expect(answer.status).to.equal(400);
    expect(answer.body.code).to.equal('backend_rejected');
    expect(answer.body.error).to.match(/^wac-core rejected create user/);
    expect(answer.body.error).to.include('undone: removed the Keycloak user');
    expect(stack.keycloak.users()).to.deep.equal([]);
    expect(stack.wac.users()).to.deep.equal([]);
  });

  it('names what an undo could not remove, and reconciliation finds it', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
    stack.keycloak.faults.set({ error_rate: 1, error_status: 503, paths: '^DELETE /admin' });

    const answer = await stack.call('POST', '/users', userBody('ada'));
    stack.keycloak.faults.reset();
    stack.wac.faults.reset();
    const drift = await stack.call('GET', '/reconcile?domain=example.com');

    const left = stack.keycloak.users();
    expect(answer.status).to.equal(400);
    expect(left).to.have.length(1);
    expect(answer.body.error).to.include(
      `undo incomplete, left behind: the Keycloak user ${left[0].id}`,
    );
    expect(drift.body.drift).to.have.length(1);
    expect(drift.body.drift[0]).to.include({ kind: 'keycloak_only', keycloak_id: left[0].id });
  });

  it('adopts the Keycloak user its own earlier run created before a crash', async () => {
    // An earlier run of job "crashed-job" created the Keycloak user, then died before it
    // could save the id; the re-run meets a 409 and must take that user as its own.
    stack.keycloak.seedUsers([
      { username: 'ada', email: 'ada@example.com', attributes: { kitter_job: ['crashed-job'] } },
    ]);
    const { Queue } = await import('bullmq');
    const redis = new Redis(stack.config.redisUrl);
    const queue = new Queue('provisioning', {
      connection: redis,
      prefix: stack.config.queuePrefix,
    });
    const { splitSecrets } = await import('../../src/model/users.js');
    const { spec } = splitSecrets(userBody('ada').user as never);
    await queue.add('user.create', { v: 1, user: spec }, { jobId: 'crashed-job', attempts: 3 });

    const job = await waitForJob(stack, 'crashed-job');

    await queue.close();
    await redis.quit();
    expect(job.state).to.equal('succeeded');
    expect(stack.keycloak.users()).to.have.length(1);
    expect(stack.wac.users()[0].externalId).to.equal(stack.keycloak.users()[0].id);
  });

  it('keeps passwords out of answers, job status, logs and Redis', async () => {
    const answer = await stack.call('POST', '/users', userBody('ada'), { prefer: 'wait=10' });
    const job = await stack.call('GET', `/jobs/${answer.headers.get('kitter-job')}`);

    const redis = new Redis(stack.config.redisUrl);
    const keys = await redis.keys(`${stack.config.queuePrefix}:*`);
    const dumps: string[] = [];
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'hash') dumps.push(JSON.stringify(await redis.hgetall(key)));
      if (type === 'string') dumps.push(String(await redis.get(key)));
      if (type === 'list') dumps.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      if (type === 'stream') dumps.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    }
    await redis.quit();

    const everything = [
      JSON.stringify(answer.body),
      JSON.stringify(job.body),
      ...stack.logs,
      ...dumps,
    ];
    expect(keys.length).to.be.greaterThan(0);
    for (const text of everything) {
      expect(text).not.to.include(PASSWORD);
      expect(text).not.to.include(SIP_PASSWORD);
      expect(text).not.to.include(API_TOKEN);
    }
  });
});
