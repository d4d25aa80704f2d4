import { expect } from 'chai';
import { Redis } from 'ioredis';

import { createRedis } from '../../src/redis.js';
import { until, userBody, waitForJob } from '../support/fixtures.js';
import { startWorkerProcess } from '../support/processes.js';
import { startRedisServer, type RedisServer } from '../support/redis.js';
import { startStack, type Stack } from '../support/stack.js';

describe('crashes, shutdowns and outages', function () {
  this.timeout(60_000);

  describe('a worker process that dies', () => {
    let stack: Stack;

    beforeEach(async () => {
      // The API in this process; the workers in processes of their own, to be killed.
      stack = await startStack({ KITTER_JOB_LOCK_MS: '1500' }, { api: true, worker: false });
      stack.wac.seedDomain({ domain: 'example.com' });
    });

    afterEach(async () => {
      await stack.close();
    });

    it('finishes, after SIGKILL mid-job and a restart, the job once and only once', async () => {
      // wac-core answers slowly: the worker is killed between the Keycloak and wac-core steps.
      stack.wac.faults.set({ latency_ms: 1000, paths: '^POST /sapi/users' });
      const first = await startWorkerProcess(stack);
      const accepted = await stack.call('POST', '/users', userBody('ada'), {
        prefer: 'respond-async',
      });
      await until('the Keycloak user', () => stack.keycloak.users().length === 1);

      first.child.kill('SIGKILL');
      expect((await first.exited).signal).to.equal('SIGKILL');
      const second = await startWorkerProcess(stack);
      const job = await waitForJob(stack, accepted.body.job.id, 20_000);
      second.child.kill('SIGTERM');
      await second.exited;

      expect(job.state).to.equal('succeeded');
      expect(stack.keycloak.users()).to.have.length(1);
      expect(stack.wac.users()).to.have.length(1);
      expect(stack.wac.users()[0].externalId).to.equal(stack.keycloak.users()[0].id);
      expect(stack.wac.sipMappings()).to.have.length(1);
    });

    it('lets active jobs finish on SIGTERM, then exits 0', async () => {
      stack.wac.faults.set({ latency_ms: 800, paths: '^POST /sapi/users' });
      const worker = await startWorkerProcess(stack);
      const accepted = await stack.call('POST', '/users', userBody('ada'), {
        prefer: 'respond-async',
      });
      await until('the Keycloak user', () => stack.keycloak.users().length === 1);

      worker.child.kill('SIGTERM');
      const exit = await worker.exited;
      const job = (await stack.call('GET', `/jobs/${accepted.body.job.id}`)).body.job;

      expect(exit.code).to.equal(0);
      expect(job.state).to.equal('succeeded');
      expect(stack.wac.users()).to.have.length(1);
    });

    it('hands a job back to the queue when it outlasts the shutdown deadline', async () => {
      stack.wac.faults.set({ latency_ms: 3000, paths: '^POST /sapi/users' });
      const impatient = await startWorkerProcess(stack, { KITTER_SHUTDOWN_DEADLINE_MS: '100' });
      const accepted = await stack.call('POST', '/users', userBody('ada'), {
        prefer: 'respond-async',
      });
      await until('the Keycloak user', () => stack.keycloak.users().length === 1);

      impatient.child.kill('SIGTERM');
      const exit = await impatient.exited;
      stack.wac.faults.reset();
      const next = await startWorkerProcess(stack);
      const job = await waitForJob(stack, accepted.body.job.id, 20_000);
      next.child.kill('SIGTERM');
      await next.exited;

      expect(exit.code).to.equal(0);
      expect(job.state).to.equal('succeeded');
      expect(stack.keycloak.users()).to.have.length(1);
      expect(stack.wac.users()).to.have.length(1);
    });
  });

  describe('Redis going down', () => {
    let redis: RedisServer;
    let stack: Stack;

    beforeEach(async () => {
      redis = await startRedisServer();
      stack = await startStack({ REDIS_URL: redis.url });
      stack.wac.seedDomain({ domain: 'example.com' });
    });

    afterEach(async () => {
      await stack.close();
      await redis.kill();
    });

    it('fails at once an API command in flight when Redis dies (no 10 s of retries)', async () => {
      const api = createRedis({ kind: 'single', url: redis.url }, 'producer');
      api.on('error', () => undefined);
      await api.connect();
      try {
        // In flight when Redis dies: BLPOP waits on the server for an answer that never comes.
        const started = Date.now();
        const inFlight = api.blpop('kitter-test:nothing', 30).then(
          () => 'answered',
          () => 'failed',
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
        await redis.kill();

        expect(await inFlight).to.equal('failed');
        expect(Date.now() - started).to.be.lessThan(2_000);
      } finally {
        api.disconnect();
        redis = await startRedisServer(redis.port);
      }
      // Back before the stack closes: BullMQ's close waits on a connection still reconnecting.
      await until('the API to reach Redis again', async () => {
        return (await stack.call('GET', '/health/ready')).status === 200;
      });
    });

    it('stops on SIGTERM while Redis is down in seconds, not its deadline, when idle', async () => {
      const worker = await startWorkerProcess(stack, { KITTER_SHUTDOWN_DEADLINE_MS: '20000' });
      await redis.kill();
      await new Promise((resolve) => setTimeout(resolve, 200));

      const asked = Date.now();
      worker.child.kill('SIGTERM');
      const exit = await worker.exited;
      const tookMs = Date.now() - asked;
      // Back before the stack of this process closes, which would otherwise meet the same wait.
      redis = await startRedisServer(redis.port);
      await until('the API to reach Redis again', async () => {
        return (await stack.call('GET', '/health/ready')).status === 200;
      });

      expect(exit.code, worker.output()).to.equal(0);
      // No job runs: BullMQ's close gets 1 s (it never returns while Redis is away), the
      // connection's QUIT 2 s, then the process exits (about 3 s); before, the workers' step
      // waited for the whole deadline and 5 s more.
      expect(tookMs, worker.output()).to.be.lessThan(10_000);
      expect(worker.output()).not.to.include('shutdown step overran');
    });

    it('answers 503 at once while Redis is down, and works again when it is back', async () => {
      await redis.kill();

      // Each request timed on its own, so that a slow one is named when the check below fails.
      const took: Record<string, number> = {};
      const timed = async <T>(what: string, request: () => Promise<T>) => {
        const started = Date.now();
        const answer = await request();
        took[what] = Date.now() - started;
        return answer;
      };
      const refused = await timed('POST /users', () =>
        stack.call('POST', '/users', userBody('ada')),
      );
      const job = await timed('GET /jobs', () => stack.call('GET', '/jobs/some-job'));
      const ready = await timed('GET /health/ready', () => stack.call('GET', '/health/ready'));
      const imports = await timed('GET /imports', () => stack.call('GET', '/imports'));
      const waited = Object.values(took).reduce((sum, ms) => sum + ms, 0);

      expect(refused.status).to.equal(503);
      expect(refused.body).to.deep.equal({
        error: 'the job queue (Redis) is not reachable; try again',
        code: 'queue_unavailable',
      });
      expect(job.status).to.equal(503);
      expect(imports.body).to.deep.equal(refused.body);
      expect(ready.status).to.equal(503);
      expect(ready.body.error).to.include('redis');
      // The log says what Redis or BullMQ said, and since when; the answer does not.
      expect(stack.logs.join('')).to.match(/"cause":"[^"]+","msg":"the job queue is unavailable"/);
      expect(stack.logs.join('')).to.include('"msg":"lost the connection to Redis"');
      // "At once" means no request waits for Redis to come back; generous for a busy machine.
      expect(waited, `ms each request took: ${JSON.stringify(took)}`).to.be.lessThan(5_000);
      expect(stack.keycloak.users()).to.deep.equal([]);

      redis = await startRedisServer(redis.port);
      await until('the API to reach Redis again', async () => {
        return (await stack.call('GET', '/health/ready')).status === 200;
      });
      expect(stack.logs.join('')).to.include('"msg":"connected to Redis again"');
      const logged = stack.logs.length;
      // The first write after: it once met a queue broken for good by Redis going away while
      // it opened (every write 503, the API ready), which the API now waits out as it starts.
      const created = await stack.call('POST', '/users', userBody('ada'));

      const why = stack.logs
        .slice(logged)
        .filter((line) => /queue is unavailable|connection to Redis|Redis again/.test(line));
      expect(created.status, `${JSON.stringify(created.body)} ${why.join('')}`).to.equal(201);
      expect(stack.wac.users()).to.have.length(1);
      // The workers' connections failing to reconnect: warned once a second, not an error each.
      const workerErrors = stack.logs.filter((line) => line.includes('"msg":"worker error"'));
      expect(workerErrors).to.deep.equal([]);
      const trouble =
        /"queue":"(provisioning|logout|imports)","unsaid":\d+,"msg":"Redis connection/;
      expect(stack.logs.join('')).to.match(trouble);
    });
  });

  describe('backends that refuse or shed load', () => {
    let stack: Stack;

    beforeEach(async () => {
      stack = await startStack();
      stack.wac.seedDomain({ domain: 'example.com' });
    });

    afterEach(async () => {
      await stack.close();
    });

    it('pauses the queue on 429 instead of hammering, and every job ends succeeded', async () => {
      stack.keycloak.faults.set({ error_rate: 1, error_status: 429, paths: '^POST /admin' });
      const accepted = [];
      for (let i = 0; i < 20; i++) {
        const answer = await stack.call('POST', '/users', userBody(`user${i}`), {
          prefer: 'respond-async',
        });
        accepted.push(answer.body.job.id);
      }
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const refusals = stack.keycloak.faults.counts.errors;
      stack.keycloak.faults.reset();

      const jobs = await Promise.all(accepted.map((id) => waitForJob(stack, id, 30_000)));

      expect(jobs.map((job) => job.state)).to.deep.equal(Array(20).fill('succeeded'));
      // 20 jobs of 8 attempts with 20 ms backoff would make well over 100 calls in 1.5 s
      // unthrottled; paused for a second at each 429, the queue makes a few rounds at most.
      expect(refusals).to.be.greaterThan(0);
      expect(refusals).to.be.lessThan(80);
      expect(stack.keycloak.users()).to.have.length(20);
    });

    it('fails at once on a 403 from Keycloak, naming kitter’s configuration', async () => {
      stack.keycloak.faults.set({ error_rate: 1, error_status: 403, paths: '^POST /admin' });

      const answer = await stack.call('POST', '/users', userBody('ada'));
      const job = (await stack.call('GET', `/jobs/${answer.headers.get('kitter-job')}`)).body.job;

      expect(answer.status).to.equal(502);
      expect(answer.body.code).to.equal('backend_misconfigured');
      expect(job.attempts).to.equal(1);
    });

    it('keeps no secrets, not even sealed, in finished jobs', async () => {
      const succeeded = await stack.call('POST', '/users', userBody('ada'));
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^POST /sapi/users' });
      const failed = await stack.call('POST', '/users', userBody('bob'));

      const redis = new Redis(stack.config.redisUrl);
      const data = await Promise.all(
        [succeeded, failed].map((answer) =>
          redis.hget(
            `${stack.config.queuePrefix}:provisioning:${answer.headers.get('kitter-job')}`,
            'data',
          ),
        ),
      );
      await redis.quit();

      expect([succeeded.status, failed.status]).to.deep.equal([201, 400]);
      for (const text of data) {
        expect(JSON.parse(text!)).to.include({ secretsRemoved: true });
        expect(JSON.parse(text!)).not.to.have.property('secrets');
      }
      // How each run ended is kept with the removal, for a run after it whose end was lost.
      const [ok, refused] = data.map((text) => JSON.parse(text!));
      expect(ok).to.include({ endedAs: 'succeeded' }).and.not.to.have.property('failedWith');
      expect(refused).to.include({ endedAs: 'failed' });
      expect(refused.failedWith).to.match(/400/);
    });

    it('keeps finished jobs as long as configured', async () => {
      await stack.close();
      stack = await startStack({ KITTER_KEEP_SUCCEEDED_S: '120', KITTER_KEEP_FAILED_S: '600' });
      await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });

      const answer = await stack.call('POST', '/users', userBody('ada'));
      const redis = new Redis(stack.config.redisUrl);
      const opts = await redis.hget(
        `${stack.config.queuePrefix}:provisioning:${answer.headers.get('kitter-job')}`,
        'opts',
      );
      await redis.quit();

      expect(JSON.parse(opts!)).to.deep.include({
        removeOnComplete: { age: 120 },
        removeOnFail: { age: 600 },
      });
    });
  });
});
