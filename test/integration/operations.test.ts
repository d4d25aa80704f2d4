import { expect } from 'chai';

import { API_TOKEN, startStack, type Stack } from '../support/stack.js';
import { PASSWORD, SIP_PASSWORD, until, userBody, waitForJob } from '../support/fixtures.js';
import { sample } from '../support/metrics.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startService } from '../../src/service.js';

/** A user without passwords: its job carries no secrets, so it can be retried by hand. */
function plainUser(username: string) {
  return {
    user: { username, email: `${username}@example.com`, attributes: { domain: 'example.com' } },
  };
}

async function jobState(stack: Stack, id: string): Promise<string> {
  return (await stack.call('GET', `/jobs/${id}`)).body.job.state;
}

function provisioning(answer: { body: any }) {
  return answer.body.queues.find((queue: { name: string }) => queue.name === 'provisioning');
}

describe('operations', function () {
  this.timeout(30_000);
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack();
    stack.wac.seedDomain({ domain: 'example.com' });
  });

  afterEach(async () => {
    await stack.close();
  });

  describe('after 5 users created and 2 refused by wac-core', () => {
    let failed: string[];

    beforeEach(async () => {
      for (let i = 0; i < 5; i++) {
        expect((await stack.call('POST', '/users', userBody(`ok${i}`))).status).to.equal(201);
      }
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
      failed = [];
      for (const name of ['bad0', 'bad1']) {
        const answer = await stack.call('POST', '/users', plainUser(name));
        expect(answer.status).to.equal(400);
        failed.push(answer.headers.get('kitter-job')!);
      }
      stack.wac.faults.reset();
    });

    it('counts them in GET /queues: by state and per minute', async () => {
      const answer = await stack.call('GET', '/queues');
      const queue = provisioning(answer);

      expect(answer.status).to.equal(200);
      expect(answer.body.queues.map((q: { name: string }) => q.name)).to.deep.equal([
        'provisioning',
        'logout',
        'imports',
      ]);
      expect(queue.counts).to.deep.equal({
        waiting: 0,
        active: 0,
        delayed: 0,
        prioritized: 0,
        waiting_children: 0,
        completed: 5,
        failed: 2,
      });
      expect(queue.last_hour).to.deep.equal({ completed: 5, failed: 2 });
      expect(queue.per_minute.completed).to.have.length(60);
      expect(queue.paused).to.equal(false);
      expect(queue.workers).to.equal(1);
      expect(queue.oldest_waiting_s).to.equal(null);
    });

    it('shows them in /metrics: queue depth, jobs, backend calls, HTTP requests', async () => {
      const answer = await stack.call('GET', '/metrics');
      const text = answer.body as string;
      const create = { type: 'user.create' };

      expect(answer.status).to.equal(200);
      expect(answer.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
      expect(
        sample(text, 'kitter_queue_jobs', { queue: 'provisioning', state: 'completed' }),
      ).to.equal(5);
      expect(
        sample(text, 'kitter_queue_jobs', { queue: 'provisioning', state: 'failed' }),
      ).to.equal(2);
      expect(sample(text, 'kitter_queue_jobs', { queue: 'logout', state: 'waiting' })).to.equal(0);
      expect(sample(text, 'kitter_queue_paused', { queue: 'provisioning' })).to.equal(0);
      expect(sample(text, 'kitter_queue_workers', { queue: 'provisioning' })).to.equal(1);
      expect(sample(text, 'kitter_queue_readable')).to.equal(1);
      expect(sample(text, 'kitter_jobs_total', { ...create, outcome: 'succeeded' })).to.equal(5);
      expect(sample(text, 'kitter_jobs_total', { ...create, outcome: 'failed' })).to.equal(2);
      expect(
        sample(text, 'kitter_job_attempts_total', { ...create, outcome: 'succeeded' }),
      ).to.equal(5);
      expect(
        sample(text, 'kitter_job_attempt_duration_seconds_count', { ...create, outcome: 'failed' }),
      ).to.equal(2);
      expect(
        sample(text, 'kitter_job_duration_seconds_bucket', { ...create, le: '+Inf' }),
      ).to.equal(5);
      const wacCreate = { backend: 'wac-core', operation: 'create user' };
      expect(
        sample(text, 'kitter_backend_requests_total', { ...wacCreate, status: '201' }),
      ).to.equal(5);
      expect(
        sample(text, 'kitter_backend_requests_total', { ...wacCreate, status: '400' }),
      ).to.equal(2);
      const kcCreate = { backend: 'keycloak', operation: 'create user', status: '2xx' };
      expect(sample(text, 'kitter_backend_requests_total', kcCreate)).to.equal(7);
      expect(sample(text, 'kitter_backend_request_duration_seconds_count', wacCreate)).to.equal(7);
      const posts = { method: 'POST', route: '/users' };
      expect(sample(text, 'kitter_http_requests_total', { ...posts, status: '201' })).to.equal(5);
      expect(sample(text, 'kitter_http_requests_total', { ...posts, status: '400' })).to.equal(2);
      expect(sample(text, 'kitter_http_request_duration_seconds_count', posts)).to.equal(7);
      expect(sample(text, 'process_cpu_user_seconds_total')).to.be.a('number');
      expect(sample(text, 'nodejs_heap_size_used_bytes')).to.be.greaterThan(0);
    });

    it('lists them at GET /jobs by state and type, a page at a time', async () => {
      const failedCreates = await stack.call('GET', '/jobs?state=failed&type=user.create');
      const succeeded = await stack.call('GET', '/jobs?state=succeeded');
      const all = await stack.call('GET', '/jobs');
      const first = await stack.call('GET', '/jobs?state=failed&paginate[max]=1');
      const second = await stack.call('GET', '/jobs?state=failed&paginate[max]=1&paginate[page]=1');
      const past = await stack.call('GET', '/jobs?state=failed&paginate[max]=1&paginate[page]=2');
      const none = await stack.call('GET', '/jobs?state=running&type=user.create');
      const bad = await stack.call('GET', '/jobs?state=stuck');

      expect(failedCreates.status).to.equal(200);
      expect(failedCreates.body.total).to.equal(2);
      expect(failedCreates.body.jobs.map((job: { id: string }) => job.id).sort()).to.deep.equal(
        [...failed].sort(),
      );
      expect(failedCreates.body.jobs[0].error.code).to.equal('backend_rejected');
      expect(succeeded.body.total).to.equal(5);
      const states = succeeded.body.jobs.map((job: { state: string }) => job.state);
      expect(states).to.deep.equal(Array(5).fill('succeeded'));
      expect(all.body.total).to.equal(7);
      expect([first.body.total, first.body.jobs.length]).to.deep.equal([2, 1]);
      expect([second.body.total, second.body.jobs.length]).to.deep.equal([2, 1]);
      expect(second.body.jobs[0].id).not.to.equal(first.body.jobs[0].id);
      expect(past.body).to.deep.equal({ jobs: [], total: 2 });
      expect(none.body).to.deep.equal({ jobs: [], total: 0 });
      expect(bad.status).to.equal(400);
    });

    it('runs a failed job again once the fault is fixed, and it succeeds', async () => {
      const retried = await stack.call('POST', `/jobs/${failed[0]}/retry`);
      const job = await waitForJob(stack, failed[0]);

      expect(retried.status).to.equal(202);
      expect(retried.headers.get('location')).to.equal(`/jobs/${failed[0]}`);
      expect(retried.body.job.state).to.equal('queued');
      expect(job.state).to.equal('succeeded');
      expect(job.attempts).to.equal(1);
      // The first run's Keycloak user was undone: the retry made a new one, tied to wac-core.
      const user = stack.keycloak.users().find((u) => u.username === 'bad0')!;
      const wacUser = stack.wac.users().find((u) => u.username === 'bad0')!;
      expect(wacUser.externalId).to.equal(user.id);
      expect(job.result.user.id).to.equal(user.id);
    });

    it('refuses to retry a job that has not failed, or whose passwords are gone', async () => {
      const done = (await stack.call('GET', '/jobs?state=succeeded&paginate[max]=1')).body.jobs[0];
      const notFailed = await stack.call('POST', `/jobs/${done.id}/retry`);
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
      const withPasswords = await stack.call('POST', '/users', userBody('secretive'));
      const id = withPasswords.headers.get('kitter-job')!;
      const passwordsGone = await stack.call('POST', `/jobs/${id}/retry`);
      const missing = await stack.call('POST', '/jobs/no-such-job/retry');

      expect(notFailed.status).to.equal(409);
      expect(notFailed.body.error).to.equal(
        `job ${done.id} is succeeded; only a failed job can be retried`,
      );
      expect(passwordsGone.status).to.equal(409);
      expect(passwordsGone.body.error).to.include('send the request again');
      expect(missing.status).to.equal(404);
    });

    it('removes a finished job, which is then gone', async () => {
      const removed = await stack.call('DELETE', `/jobs/${failed[1]}`);
      const after = await stack.call('GET', `/jobs/${failed[1]}`);
      const again = await stack.call('DELETE', `/jobs/${failed[1]}`);

      expect(removed.status).to.equal(204);
      expect(after.status).to.equal(404);
      expect(again.status).to.equal(404);
      expect((await stack.call('GET', '/jobs?state=failed')).body.total).to.equal(1);
    });
  });

  it('pauses a queue: jobs wait, are counted, can be removed, and run once resumed', async () => {
    const paused = await stack.call('POST', '/queues/provisioning/pause');
    const async = { prefer: 'respond-async' };
    const kept = (await stack.call('POST', '/users', plainUser('later'), async)).body.job.id;
    const dropped = (await stack.call('POST', '/users', plainUser('never'), async)).body.job.id;
    await new Promise((resolve) => setTimeout(resolve, 500));

    const whilePaused = provisioning(await stack.call('GET', '/queues'));
    const states = [await jobState(stack, kept), await jobState(stack, dropped)];
    const removed = await stack.call('DELETE', `/jobs/${dropped}`);
    const resumed = await stack.call('POST', '/queues/provisioning/resume');
    const job = await waitForJob(stack, kept);

    expect(paused.status).to.equal(200);
    expect(paused.body.queue.paused).to.equal(true);
    expect(states).to.deep.equal(['queued', 'queued']);
    expect(whilePaused.paused).to.equal(true);
    expect(whilePaused.counts.waiting).to.equal(2);
    expect(whilePaused.oldest_waiting_s).to.be.within(0.4, 10);
    expect(removed.status).to.equal(204);
    expect(resumed.body.queue.paused).to.equal(false);
    expect(job.state).to.equal('succeeded');
    expect(stack.keycloak.users().map((user) => user.username)).to.deep.equal(['later']);
  });

  it('answers a request whose job is removed while it waits: 409, not 202 at its end', async () => {
    await stack.call('POST', '/queues/provisioning/pause');
    const started = Date.now();
    const pending = stack.call('POST', '/users', plainUser('never'), { prefer: 'wait=20' });
    let id: string | undefined;
    await until('the job to be queued', async () => {
      id = (await stack.call('GET', '/jobs?state=queued&type=user.create')).body.jobs[0]?.id;
      return id !== undefined;
    });

    const removed = await stack.call('DELETE', `/jobs/${id}`);
    const answer = await pending;

    expect(removed.status).to.equal(204);
    expect(answer.status).to.equal(409);
    expect(answer.headers.get('kitter-job')).to.equal(id);
    expect(answer.body).to.deep.equal({
      error: `job ${id} was removed before it ended`,
      code: 'conflict',
    });
    expect(Date.now() - started).to.be.lessThan(15_000);
  });

  it('answers 404 for an unknown queue', async () => {
    const answer = await stack.call('POST', '/queues/nope/pause');

    expect(answer.status).to.equal(404);
    expect(answer.body).to.deep.equal({ error: 'queue "nope" not found', code: 'not_found' });
  });

  it('refuses to remove a running job', async () => {
    stack.wac.faults.set({ latency_ms: 1500, paths: '^POST /sapi/users' });
    const id = (await stack.call('POST', '/users', plainUser('slow'), { prefer: 'respond-async' }))
      .body.job.id;
    await until('the job to run', async () => (await jobState(stack, id)) === 'running');

    const refused = await stack.call('DELETE', `/jobs/${id}`);
    const job = await waitForJob(stack, id);

    expect(refused.status).to.equal(409);
    expect(refused.body.error).to.equal(`job ${id} is running; remove it once it has ended`);
    expect(job.state).to.equal('succeeded');
  });

  describe('readiness', () => {
    it('is ready when Redis, Keycloak and wac-core answer', async () => {
      const answer = await stack.call('GET', '/health/ready', undefined, { authorization: '' });

      expect(answer.status).to.equal(200);
      expect(answer.body.checks).to.deep.equal({ redis: 'ok', keycloak: 'ok', wac_core: 'ok' });
    });

    for (const [name, down] of [
      ['keycloak', (s: Stack) => s.keycloak.faults.set({ down: true })],
      ['wac_core', (s: Stack) => s.wac.faults.set({ down: true })],
    ] as const) {
      it(`answers 503 naming ${name} within a few seconds while it is down`, async () => {
        await stack.call('GET', '/health/ready');
        down(stack);

        const started = Date.now();
        const answer = await stack.call('GET', '/health/ready', undefined, { authorization: '' });

        expect(answer.status).to.equal(503);
        expect(answer.body.error).to.equal(`not ready: ${name} unreachable`);
        expect(answer.body.checks[name]).not.to.equal('ok');
        expect(Date.now() - started).to.be.lessThan(3_000);
      });
    }

    it('answers /health/live whatever the backends do', async () => {
      stack.keycloak.faults.set({ down: true });
      stack.wac.faults.set({ down: true });

      const answer = await stack.call('GET', '/health/live', undefined, { authorization: '' });

      expect(answer.status).to.equal(200);
    });
  });

  it('logs each request and each job attempt with the request id, and no secret', async () => {
    const headers = { 'x-request-id': 'ops-log-test-1' };
    await stack.call('POST', '/users', userBody('logged'), headers);
    stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
    await stack.call('POST', '/users', plainUser('refused'), { 'x-request-id': 'ops-log-test-2' });

    const lines = stack.logs.map((line) => JSON.parse(line));
    const request = lines.find((l) => l.msg === 'request' && l.requestId === 'ops-log-test-1');
    const job = lines.find((l) => l.msg === 'job' && l.requestId === 'ops-log-test-1');
    const failure = lines.find((l) => l.msg === 'job' && l.requestId === 'ops-log-test-2');

    expect(request).to.include({ method: 'POST', route: '/users', path: '/users', status: 201 });
    expect(request.ms).to.be.a('number');
    expect(job).to.include({ type: 'user.create', attempt: 1, outcome: 'succeeded' });
    expect(job.jobId).to.be.a('string');
    expect(job.ms).to.be.a('number');
    expect(failure).to.include({ outcome: 'failed', level: 40 });
    expect(failure.backend).to.deep.equal({
      name: 'wac-core',
      operation: 'create user',
      kind: 'rejected',
      status: 400,
    });
    const all = stack.logs.join('');
    expect(all).not.to.include(PASSWORD);
    expect(all).not.to.include(SIP_PASSWORD);
    expect(all).not.to.include(API_TOKEN);
  });

  it('serves /metrics of a worker-only process on its own port, behind the tokens', async () => {
    const config = loadConfig('worker', { ...stack.env, KITTER_METRICS_PORT: '0' });
    const worker = await startService(config, createLogger('silent'), { api: false, worker: true });
    try {
      const bearer = { authorization: `Bearer ${API_TOKEN}` };
      const refused = await fetch(`${worker.metricsUrl}/metrics`);
      const answer = await fetch(`${worker.metricsUrl}/metrics`, { headers: bearer });
      const text = await answer.text();

      expect(refused.status).to.equal(401);
      expect(answer.status).to.equal(200);
      expect(text).to.include('# TYPE kitter_job_attempts_total counter');
      expect(text).to.include('process_cpu_user_seconds_total');
      expect(text).not.to.include('kitter_queue_jobs');
    } finally {
      await worker.close();
    }
  });
});
