import { randomBytes } from 'node:crypto';

import { expect } from 'chai';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { JobGateway } from '../../src/jobs/gateway.js';
import { JOB_TYPES, createQueues, type Queues } from '../../src/jobs/queues.js';
import { until } from '../support/fixtures.js';
import { testRedisUrl } from '../support/redis.js';

/**
 * The API reads a queue's event stream only while a request waits on one of its jobs: every
 * job added and every step of every job is an event, and an API reading them all while it
 * queues an import or a burst of asynchronous requests spends its time on nothing.
 */
describe('the job event stream is read only while a request waits', function () {
  const POLL_MS = 8000;
  const IDLE_MS = 300;
  let prefix: string;
  let connection: Redis;
  let events: Redis;
  let admin: Redis;
  let queues: Queues;
  let gateway: JobGateway;
  let worker: Worker | undefined;
  let release: () => void;
  let held: Promise<void>;

  beforeEach(async () => {
    const url = await testRedisUrl();
    prefix = `test-${randomBytes(6).toString('hex')}`;
    connection = new Redis(url);
    events = new Redis(url, { maxRetriesPerRequest: null });
    admin = new Redis(url);
    const policy = { attempts: 1, backoffMs: 10, keepSucceededS: 60, keepFailedS: 60 };
    queues = createQueues(connection, prefix, policy, () => undefined);
    // A poll far longer than the test waits: a wait that ends in time was woken by its event.
    gateway = new JobGateway(queues, {
      ...{ connection, events, prefix, listen: ['provisioning'] },
      ...{ pollMs: POLL_MS, listenIdleMs: IDLE_MS },
    });
    held = new Promise((resolve) => (release = resolve));
  });

  afterEach(async () => {
    release();
    await worker?.close();
    worker = undefined;
    await gateway.close();
    await Promise.all(Object.values(queues).map((queue) => queue.close()));
    await Promise.all([connection, events, admin].map((redis) => redis.quit()));
  });

  /** Connections BullMQ opened to read this test's event streams. */
  async function streamReaders(): Promise<number> {
    const clients = (await admin.client('LIST')) as string;
    return clients
      .split('\n')
      .filter((line) => line.includes(` name=${prefix}:`) && /name=\S+:qe /.test(line)).length;
  }

  /** A worker whose jobs end when the test releases them. */
  function startWorker(): void {
    worker = new Worker(
      'provisioning',
      async () => {
        await held;
        return { done: true };
      },
      { connection: events.duplicate(), prefix, concurrency: 10 },
    );
  }

  it('opens no stream for jobs added and run without a wait', async () => {
    startWorker();
    const jobs = await gateway.submitBulk(
      JOB_TYPES.userCreate,
      Array.from({ length: 20 }, (_, i) => ({ data: { n: i } })),
    );
    release();
    await until('the jobs to end', async () => {
      const states = await Promise.all(jobs.map((job) => job.getState()));
      return states.every((state) => state === 'completed');
    });
    expect(await streamReaders()).to.equal(0);
  });

  it('wakes a wait with the completed event, then closes the stream when idle', async () => {
    startWorker();
    const job = await gateway.submit(JOB_TYPES.userCreate, { n: 1 });
    const started = Date.now();
    const waiting = gateway.wait(job, 20_000);

    await until('a stream reader', async () => (await streamReaders()) === 1);
    release();
    const view = await waiting;
    expect(view.state).to.equal('succeeded');
    expect(view.result).to.deep.equal({ done: true });
    expect(Date.now() - started).to.be.below(POLL_MS / 2);

    await until('the stream to close', async () => (await streamReaders()) === 0, 5000);
  });

  it('sees a job that ends while its stream is being opened', async () => {
    // The job ends before the wait's stream has read anything: the stream is read from Redis's
    // clock as the wait began, so the event is not lost, and the wait need not poll.
    startWorker();
    const job = await gateway.submit(JOB_TYPES.userCreate, { n: 2 });
    const started = Date.now();
    const waiting = gateway.wait(job, 20_000);
    release();
    const view = await waiting;
    expect(view.state).to.equal('succeeded');
    expect(Date.now() - started).to.be.below(POLL_MS / 2);
  });

  it('keeps one stream for waits that overlap, and reopens it after it closed', async () => {
    startWorker();
    const [first, second] = await Promise.all([
      gateway.submit(JOB_TYPES.userCreate, { n: 3 }),
      gateway.submit(JOB_TYPES.userCreate, { n: 4 }),
    ]);
    const waits = [gateway.wait(first, 20_000), gateway.wait(second, 20_000)];
    await until('a stream reader', async () => (await streamReaders()) === 1);
    release();
    for (const view of await Promise.all(waits)) expect(view.state).to.equal('succeeded');
    await until('the stream to close', async () => (await streamReaders()) === 0, 5000);

    const third = await gateway.submit(JOB_TYPES.userCreate, { n: 5 });
    const started = Date.now();
    const view = await gateway.wait(third, 20_000);
    expect(view.state).to.equal('succeeded');
    expect(Date.now() - started).to.be.below(POLL_MS / 2);
  });
});
