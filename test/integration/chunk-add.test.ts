import { randomBytes } from 'node:crypto';

import { expect } from 'chai';
import { Redis } from 'ioredis';

import { ChunkAddFault } from '../../src/jobs/chunk-add.js';
import { JobGateway } from '../../src/jobs/gateway.js';
import { JOB_TYPES, createQueues } from '../../src/jobs/queues.js';
import { testRedisUrl } from '../support/redis.js';

/**
 * An import's chunks are added by a script that runs BullMQ's own script for each job
 * (`ChunkAdder`), not by `addBulk`. What it leaves in Redis must be what `submitBulk` leaves for
 * the same jobs: the records, the priority order, the events, the order keys. Compared key by key
 * on the installed BullMQ, so an upgrade that changes how BullMQ adds a job fails here.
 */
describe('a chunk of jobs added by script calls that run BullMQ’s add', function () {
  this.timeout(20_000);
  const PRIORITY = 10;
  let url: string;
  let admin: Redis;
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    url = await testRedisUrl();
    admin = new Redis(url);
  });

  after(async () => {
    await admin.quit();
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function stack() {
    const prefix = `test-${randomBytes(6).toString('hex')}`;
    const connection = new Redis(url);
    const events = new Redis(url, { maxRetriesPerRequest: null });
    const policy = { attempts: 3, backoffMs: 10, keepSucceededS: 60, keepFailedS: 60 };
    const queues = createQueues(connection, prefix, policy, () => undefined);
    const gateway = new JobGateway(queues, { connection, events, prefix, listen: [] });
    cleanups.push(async () => {
      await gateway.close();
      await Promise.all(Object.values(queues).map((queue) => queue.close()));
      const keys = await admin.keys(`${prefix}:*`);
      if (keys.length > 0) await admin.del(...keys);
      connection.disconnect();
      events.disconnect();
    });
    return { prefix, gateway, queues, connection };
  }

  /** Every key of a prefix and what it holds, without the times that differ between runs. */
  async function snapshot(prefix: string): Promise<Record<string, unknown>> {
    const shown: Record<string, unknown> = {};
    for (const key of (await admin.keys(`${prefix}:*`)).sort()) {
      const name = key.slice(prefix.length);
      const type = await admin.type(key);
      if (type === 'hash') {
        const { timestamp: _time, ...fields } = await admin.hgetall(key);
        if (fields.opts) fields.opts = JSON.parse(fields.opts);
        shown[name] = fields;
      } else if (type === 'zset') {
        shown[name] = await admin.zrange(key, 0, -1, 'WITHSCORES');
      } else if (type === 'stream') {
        const entries = (await admin.xrange(key, '-', '+')) as Array<[string, string[]]>;
        shown[name] = entries.map(([, fields]) => fields);
      } else if (type === 'list') {
        shown[name] = await admin.lrange(key, 0, -1);
      } else if (type === 'string') {
        shown[name] = await admin.get(key);
      } else {
        shown[name] = type;
      }
    }
    return shown;
  }

  const rows = [
    { id: 'imp-x-r2', username: 'ana', data: { v: 1, import: { id: 'x', row: 2 } } },
    { id: 'imp-x-r3', username: 'bo', data: { v: 1, import: { id: 'x', row: 3 }, note: 'ñ é' } },
    { id: 'imp-x-r4', username: 'cy', data: { v: 1, import: { id: 'x', row: 4 } } },
  ];

  function packed(list: typeof rows) {
    const lines = list
      .map((row) => `user:${row.username}\n${row.id}\n${JSON.stringify(row.data)}\n`)
      .join('');
    return { lines: new TextEncoder().encode(lines), count: list.length };
  }

  /** The same story on both sides: an earlier job of one user, a chunk, the chunk again. */
  async function tell(
    add: (gateway: JobGateway, list: typeof rows) => Promise<unknown>,
    list = rows,
  ) {
    const side = await stack();
    await side.gateway.submit(
      JOB_TYPES.userUpdate,
      { v: 1 },
      {
        jobId: 'earlier',
        orderKey: 'user:bo',
      },
    );
    await add(side.gateway, list);
    await add(side.gateway, list.slice(1));
    return side;
  }

  const viaBulk = (gateway: JobGateway, list: typeof rows) =>
    gateway.submitBulk(
      JOB_TYPES.userCreate,
      list.map((row) => ({ data: row.data, jobId: row.id, orderKey: `user:${row.username}` })),
      { priority: PRIORITY },
    );
  const viaChunk = (gateway: JobGateway, list: typeof rows) =>
    gateway.submitPacked(JOB_TYPES.userCreate, packed(list), { priority: PRIORITY });

  it('leaves in Redis what submitBulk leaves for the same jobs', async () => {
    const bulk = await tell(viaBulk);
    const chunk = await tell(viaChunk);

    const expected = await snapshot(bulk.prefix);
    const actual = await snapshot(chunk.prefix);
    expect(actual).to.deep.equal(expected);
    // What the comparison covers, so that it cannot pass on two empty queues.
    expect(Object.keys(actual)).to.include.members([
      ':provisioning:imp-x-r2',
      ':provisioning:prioritized',
      ':provisioning:events',
      ':order:user:bo',
    ]);
  });

  it('does so for a chunk of many jobs, sent in several script calls', async () => {
    // Usernames repeat: a job after one of the same chunk, in another call or the same.
    const many = Array.from({ length: 137 }, (_, i) => ({
      id: `imp-y-r${i + 2}`,
      username: ['bo', `u${i % 60}`][i % 2],
      data: { v: 1, import: { id: 'y', row: i + 2 } },
    }));
    const bulk = await tell(viaBulk, many);
    const chunk = await tell(viaChunk, many);

    const actual = await snapshot(chunk.prefix);
    expect(actual).to.deep.equal(await snapshot(bulk.prefix));
    expect(actual).to.have.property(':provisioning:imp-y-r138');
  });

  it('queues each job once, after the job of its user before, with its priority', async () => {
    const { queues } = await tell(viaChunk);

    const waiting = await queues.provisioning.getJobs(['prioritized', 'waiting']);
    expect(waiting.map((job) => job.id).sort()).to.deep.equal([
      'earlier',
      'imp-x-r2',
      'imp-x-r3',
      'imp-x-r4',
    ]);
    const bo = await queues.provisioning.getJob('imp-x-r3');
    expect(bo!.data).to.deep.equal({ ...rows[1].data, after: 'earlier' });
    expect(bo!.opts).to.include({ priority: PRIORITY, attempts: 3, jobId: 'imp-x-r3' });
    expect((await queues.provisioning.getJob('imp-x-r2'))!.data).to.deep.equal(rows[0].data);
  });

  it('adds a single job and claims its order key as queue.add after a SET did', async () => {
    const story = [
      { jobId: 'earlier', username: 'bo', data: { v: 1 } },
      { jobId: 'one', username: 'ana', data: { v: 1, note: 'ñ é' } },
      { jobId: 'two', username: 'bo', data: { v: 2 } },
      { jobId: 'three', username: 'bo', data: {} },
      // A replay: not added again, and bo's key stays with 'three'.
      { jobId: 'two', username: 'bo', data: { v: 2 } },
      { jobId: 'four', username: 'bo', data: { v: 4 } },
    ];
    const scripted = await stack();
    const jobs = [];
    for (const { jobId, username, data } of story) {
      jobs.push(
        await scripted.gateway.submit(JOB_TYPES.userUpdate, data, {
          jobId,
          orderKey: `user:${username}`,
        }),
      );
    }
    // The same in two commands: the order key's SET, unless the job is there, then queue.add.
    const reference = await stack();
    for (const { jobId, username, data } of story) {
      const key = `${reference.prefix}:order:user:${username}`;
      const there = await reference.queues.provisioning.getJob(jobId);
      const before = there ? null : await reference.connection.set(key, jobId, 'EX', 60, 'GET');
      const after = before && before !== jobId ? { after: before } : {};
      await reference.queues.provisioning.add(
        JOB_TYPES.userUpdate,
        { ...data, ...after },
        { jobId },
      );
    }

    const actual = await snapshot(scripted.prefix);
    expect(actual).to.deep.equal(await snapshot(reference.prefix));
    expect(Object.keys(actual)).to.include.members([':provisioning:two', ':order:user:bo']);
    expect(jobs.map((job) => [job.id, job.data])).to.deep.equal([
      ['earlier', { v: 1 }],
      ['one', { v: 1, note: 'ñ é' }],
      ['two', { v: 2, after: 'earlier' }],
      ['three', { after: 'two' }],
      ['two', { v: 2 }],
      ['four', { v: 4, after: 'three' }],
    ]);
    const stored = await scripted.queues.provisioning.getJob('three');
    expect(stored!.data).to.deep.equal({ after: 'two' });
    expect(stored!.opts).to.include({ attempts: 3, jobId: 'three' });
  });

  it('leaves an order key with the job added since when a chunk is sent again', async () => {
    const { gateway, prefix } = await tell(viaChunk);
    await gateway.submit(JOB_TYPES.userUpdate, { v: 2 }, { jobId: 'later', orderKey: 'user:bo' });

    await viaChunk(gateway, rows);

    expect(await admin.get(`${prefix}:order:user:bo`)).to.equal('later');
    expect(await admin.get(`${prefix}:order:user:ana`)).to.equal('imp-x-r2');
  });

  it('does not take a fault of its own for Redis being away (no 503)', async () => {
    const { gateway } = await stack();

    const failure = await gateway
      .submitPacked(JOB_TYPES.userCreate, packed(rows), { priority: 0 })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(failure).to.be.instanceOf(ChunkAddFault);
    expect(failure).not.to.have.property('status');
  });

  it('answers 503 when Redis cannot take the chunk', async () => {
    const { gateway, connection } = await stack();
    connection.disconnect();

    const failure = await viaChunk(gateway, rows).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).to.include({ status: 503, code: 'queue_unavailable' });
  });
});
