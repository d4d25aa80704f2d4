import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

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
  // A poll far longer than the tests wait: a wait that ends in time was woken by its event.
  const POLL_MS = 8000;
  const IDLE_MS = 1000;
  let url: string;
  let prefix: string;
  let connection: Redis;
  let events: Redis;
  let admin: Redis;
  let queues: Queues;
  let gateway: JobGateway;
  let worker: Worker | undefined;
  let release: () => void;
  let held: Promise<void>;
  const cleanups: Array<() => Promise<unknown> | void> = [];

  /** Jobs the test worker takes from now on end when the test releases them. */
  function hold(): void {
    held = new Promise((resolve) => (release = resolve));
  }

  function gatewayOver(eventsConnection: Redis): JobGateway {
    return new JobGateway(queues, {
      ...{ connection, events: eventsConnection, prefix, listen: ['provisioning'] },
      ...{ pollMs: POLL_MS, listenIdleMs: IDLE_MS },
    });
  }

  beforeEach(async () => {
    url = await testRedisUrl();
    prefix = `test-${randomBytes(6).toString('hex')}`;
    connection = new Redis(url);
    events = new Redis(url, { maxRetriesPerRequest: null });
    admin = new Redis(url);
    const policy = { attempts: 1, backoffMs: 10, keepSucceededS: 60, keepFailedS: 60 };
    queues = createQueues(connection, prefix, policy, () => undefined);
    gateway = gatewayOver(events);
    hold();
  });

  afterEach(async () => {
    release();
    await worker?.close();
    worker = undefined;
    await gateway.close();
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await Promise.all(Object.values(queues).map((queue) => queue.close()));
    await Promise.all([connection, events, admin].map((redis) => redis.quit()));
  });

  /** The ids of the connections BullMQ opened to read this test's event streams. */
  async function streamReaders(): Promise<string[]> {
    const clients = (await admin.client('LIST')) as string;
    return clients
      .split('\n')
      .filter((line) => line.includes(` name=${prefix}:`) && /name=\S+:qe /.test(line))
      .map((line) => /\bid=(\d+)/.exec(line)![1]);
  }

  function startWorker(): void {
    const own = new Redis(url, { maxRetriesPerRequest: null });
    cleanups.push(() => own.quit());
    worker = new Worker(
      'provisioning',
      async () => {
        await held;
        return { done: true };
      },
      { connection: own, prefix, concurrency: 10 },
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
    expect(await streamReaders()).to.deep.equal([]);
  });

  it('wakes a wait with the completed event, then closes the stream when idle', async () => {
    startWorker();
    const job = await gateway.submit(JOB_TYPES.userCreate, { n: 1 });
    const started = Date.now();
    const waiting = gateway.wait(job, 20_000);

    await until('a stream reader', async () => (await streamReaders()).length === 1);
    release();
    const view = await waiting;
    expect(view.state).to.equal('succeeded');
    expect(view.result).to.deep.equal({ done: true });
    expect(Date.now() - started).to.be.below(POLL_MS / 2);

    await until('the stream to close', async () => (await streamReaders()).length === 0, 5000);
  });

  it('sees a job that ends while its stream is still connecting', async () => {
    // The stream's connection takes 800 ms to open; the job ends meanwhile, after the wait has
    // read it running. A stream read from its end once connected would miss the event.
    const slow = await delayingProxy(url, 800);
    const slowEvents = new Redis(slow.url, { maxRetriesPerRequest: null });
    const slowGateway = gatewayOver(slowEvents);
    cleanups.push(
      () => slowGateway.close(),
      () => slowEvents.quit(),
      () => slow.close(),
    );
    startWorker();
    const job = await slowGateway.submit(JOB_TYPES.userCreate, { n: 2 });
    await until('the job to start', async () => (await job.getState()) === 'active');

    const started = Date.now();
    const waiting = slowGateway.wait(job, 20_000);
    await sleep(200);
    expect(await streamReaders()).to.deep.equal([]);
    release();
    const view = await waiting;
    expect(view.state).to.equal('succeeded');
    expect(Date.now() - started).to.be.below(POLL_MS / 2);
  });

  it('shares a stream among waits, keeps it between waits close together, reopens it', async () => {
    startWorker();
    const [first, second] = await Promise.all([
      gateway.submit(JOB_TYPES.userCreate, { n: 3 }),
      gateway.submit(JOB_TYPES.userCreate, { n: 4 }),
    ]);
    const waits = [gateway.wait(first, 20_000), gateway.wait(second, 20_000)];
    await until('a stream reader', async () => (await streamReaders()).length === 1);
    const reader = await streamReaders();
    release();
    for (const view of await Promise.all(waits)) expect(view.state).to.equal('succeeded');

    // A wait within the idle time after the last one reads the same stream.
    const third = await gateway.submit(JOB_TYPES.userCreate, { n: 5 });
    expect((await gateway.wait(third, 20_000)).state).to.equal('succeeded');
    await sleep(200);
    expect(await streamReaders()).to.deep.equal(reader);
    await until('the stream to close', async () => (await streamReaders()).length === 0, 5000);

    hold();
    const fourth = await gateway.submit(JOB_TYPES.userCreate, { n: 6 });
    const started = Date.now();
    const waiting = gateway.wait(fourth, 20_000);
    await until('a stream reader again', async () => (await streamReaders()).length === 1);
    release();
    expect((await waiting).state).to.equal('succeeded');
    expect(Date.now() - started).to.be.below(POLL_MS / 2);
  });

  it('opens no stream once closed: a request still waiting at shutdown polls', async () => {
    startWorker();
    release();
    await gateway.close();
    const job = await gateway.submit(JOB_TYPES.userCreate, { n: 7 });
    await until('the job to end', async () => (await job.getState()) === 'completed');
    expect((await gateway.wait(job, 20_000)).state).to.equal('succeeded');
    await sleep(150);
    expect(await streamReaders()).to.deep.equal([]);
  });
});

/** A TCP proxy to Redis whose connections reach it only `delayMs` after they are opened. */
async function delayingProxy(redisUrl: string, delayMs: number) {
  const target = new URL(redisUrl);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    setTimeout(() => {
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    }, delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}${target.pathname}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
