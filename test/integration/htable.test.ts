import { Queue } from 'bullmq';
import { expect } from 'chai';
import { Redis } from 'ioredis';

import { startStack, type Stack } from '../support/stack.js';

async function waitForJob(stack: Stack, id: string): Promise<any> {
  for (let i = 0; i < 100; i++) {
    const answer = await stack.call('GET', `/jobs/${id}`);
    const state = answer.body?.job?.state;
    if (state === 'succeeded' || state === 'failed') return answer.body.job;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`job ${id} did not end`);
}

describe('the caller-id table when it is not turned on', function () {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    await stack.close();
  });

  it('answers 404 on every htable path, and writes nothing', async () => {
    const answers = [
      await stack.call('GET', '/htable'),
      await stack.call('POST', '/htable', { name: '+34600000001', value: 'Ada' }),
      await stack.call('DELETE', '/htable/%2B34600000001'),
    ];

    for (const answer of answers) {
      expect(answer.status).to.equal(404);
      expect(answer.body.code).to.equal('not_found');
      expect(answer.body.error).to.be.a('string');
    }
    expect(stack.wac.htable()).to.deep.equal([]);
  });
});

describe('the caller-id table', function () {
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack({ KITTER_HTABLE_ENABLED: 'true' });
  });

  afterEach(async () => {
    await stack.close();
  });

  const create = (name: string, value: string) => stack.call('POST', '/htable', { name, value });

  it('creates an entry: 201 with the entry, stored in wac-core', async () => {
    const answer = await create('+34600000001', 'Ada Lovelace');

    expect(answer.status).to.equal(201);
    expect(answer.body).to.deep.equal({ name: '+34600000001', value: 'Ada Lovelace' });
    expect(answer.headers.get('kitter-job')).to.be.a('string');
    expect(stack.wac.htable()).to.deep.equal([{ name: '+34600000001', value: 'Ada Lovelace' }]);
  });

  it('lists entries with filters, pages and the total', async () => {
    for (const [name, value] of [
      ['+34600000001', 'Ada Lovelace'],
      ['+34600000002', 'Grace Hopper'],
      ['+34600000003', 'Alan Turing'],
      ['+44700000001', 'Ada Byron'],
      ['+44700000002', 'Edsger Dijkstra'],
    ]) {
      expect((await create(name, value)).status).to.equal(201);
    }

    const all = await stack.call('GET', '/htable');
    const spanish = await stack.call('GET', '/htable?nameContains=%2B346');
    const ada = await stack.call('GET', '/htable?valueContains=ada');
    const both = await stack.call('GET', '/htable?nameContains=%2B44&valueContains=ADA');
    const second = await stack.call('GET', '/htable?paginate[max]=2&paginate[page]=1');
    const beyond = await stack.call('GET', '/htable?paginate%5Bmax%5D=2&paginate%5Bpage%5D=9');

    expect(all.status).to.equal(200);
    expect(all.body.total).to.equal(5);
    expect(all.body.entries).to.deep.equal(stack.wac.htable());
    expect(spanish.body.total).to.equal(3);
    expect(spanish.body.entries.map((e: any) => e.name)).to.deep.equal([
      '+34600000001',
      '+34600000002',
      '+34600000003',
    ]);
    expect(ada.body.entries.map((e: any) => e.value)).to.deep.equal(['Ada Lovelace', 'Ada Byron']);
    expect(both.body).to.deep.equal({
      entries: [{ name: '+44700000001', value: 'Ada Byron' }],
      total: 1,
    });
    expect(second.body).to.deep.equal({ entries: stack.wac.htable().slice(2, 4), total: 5 });
    expect(beyond.body).to.deep.equal({ entries: [], total: 5 });
  });

  it('answers 409 for a name already taken, and keeps the first value', async () => {
    await create('+34600000001', 'Ada Lovelace');

    const again = await create('+34600000001', 'Someone Else');
    const same = await create('+34600000001', 'Ada Lovelace');

    for (const answer of [again, same]) {
      expect(answer.status).to.equal(409);
      expect(answer.body.code).to.equal('conflict');
      expect(answer.body.error).to.include('+34600000001');
    }
    expect(stack.wac.htable()).to.deep.equal([{ name: '+34600000001', value: 'Ada Lovelace' }]);
  });

  it('answers 400 for bad input, naming the field, and queues nothing', async () => {
    const missing = await stack.call('POST', '/htable', { name: '+34600000001' });
    const unknown = await stack.call('POST', '/htable', { name: 'a', value: 'b', colour: 'red' });
    const blank = await stack.call('POST', '/htable', { name: '   ', value: 'b' });
    const long = await stack.call('POST', '/htable', { name: 'a', value: 'v'.repeat(1025) });
    const tooMany = await stack.call('GET', '/htable?paginate[max]=1000');
    const stray = await stack.call('GET', '/htable?limit=5');

    expect(missing.status).to.equal(400);
    expect(missing.body.details).to.deep.equal([{ path: 'value', message: 'value is required' }]);
    expect(unknown.status).to.equal(400);
    expect(unknown.body.details).to.deep.equal([
      { path: 'colour', message: 'colour is not allowed' },
    ]);
    expect(blank.status).to.equal(400);
    expect(blank.body.details[0].path).to.equal('name');
    expect(long.status).to.equal(400);
    expect(long.body.details[0].path).to.equal('value');
    expect(tooMany.status).to.equal(400);
    expect(tooMany.body.code).to.equal('validation_failed');
    expect(tooMany.body.error).to.include('paginate[max]').and.to.include('100');
    expect(stray.status).to.equal(400);
    expect(stray.body.details[0].path).to.equal('limit');
    expect(stack.wac.htable()).to.deep.equal([]);
    expect(stack.wac.calls.count('POST /sapi/htable')).to.equal(0);
  });

  it('deletes an entry: 204, then 404 for the same name', async () => {
    await create('+34600000001', 'Ada Lovelace');
    await create('+34600000002', 'Grace Hopper');

    const deleted = await stack.call('DELETE', '/htable/%2B34600000001');
    const again = await stack.call('DELETE', '/htable/%2B34600000001');

    expect(deleted.status).to.equal(204);
    expect(deleted.body).to.equal(undefined);
    expect(again.status).to.equal(404);
    expect(again.body.code).to.equal('not_found');
    expect(stack.wac.htable()).to.deep.equal([{ name: '+34600000002', value: 'Grace Hopper' }]);
  });

  it('takes names with spaces and slashes in the path', async () => {
    await create('front desk/main', 'Reception');

    const deleted = await stack.call('DELETE', `/htable/${encodeURIComponent('front desk/main')}`);

    expect(deleted.status).to.equal(204);
    expect(stack.wac.htable()).to.deep.equal([]);
  });

  it('retries a transient wac-core failure and creates the entry once', async () => {
    stack.wac.faults.set({ error_rate: 1, error_status: 503, paths: '^POST /sapi/htable' });
    const pending = create('+34600000001', 'Ada Lovelace');
    await new Promise((resolve) => setTimeout(resolve, 150));
    const refusals = stack.wac.faults.counts.errors;
    stack.wac.faults.reset();

    const answer = await pending;

    expect(refusals).to.be.greaterThan(0);
    expect(answer.status).to.equal(201);
    expect(stack.wac.htable()).to.deep.equal([{ name: '+34600000001', value: 'Ada Lovelace' }]);
  });

  describe('run twice', () => {
    // A re-run of a job whose earlier attempt wrote to wac-core but lost the answer: the job
    // is added by hand with the mark its first attempt had left.
    let redis: Redis;
    let queue: Queue;

    beforeEach(() => {
      redis = new Redis(stack.config.redisUrl);
      queue = new Queue('provisioning', { connection: redis, prefix: stack.config.queuePrefix });
    });

    afterEach(async () => {
      await queue.close();
      await redis.quit();
    });

    it('takes an entry with its own value as its own earlier write', async () => {
      await create('+34600000001', 'Ada Lovelace');
      const entry = { name: '+34600000001', value: 'Ada Lovelace' };

      await queue.add('htable.create', { v: 1, entry, sent: true }, { jobId: 'rerun-create' });
      const job = await waitForJob(stack, 'rerun-create');

      expect(job.state).to.equal('succeeded');
      expect(job.result).to.deep.equal(entry);
      expect(stack.wac.htable()).to.deep.equal([entry]);
    });

    it('still answers 409 when the entry found holds another value', async () => {
      await create('+34600000001', 'Someone Else');
      const entry = { name: '+34600000001', value: 'Ada Lovelace' };

      await queue.add('htable.create', { v: 1, entry, sent: true }, { jobId: 'rerun-conflict' });
      const job = await waitForJob(stack, 'rerun-conflict');

      expect(job.state).to.equal('failed');
      expect(job.error).to.include({ status: 409, code: 'conflict' });
    });

    it('takes a delete that finds nothing on a re-run as done', async () => {
      await queue.add('htable.delete', { v: 1, name: 'gone', started: true }, { jobId: 'rerun' });
      const job = await waitForJob(stack, 'rerun');

      expect(job.state).to.equal('succeeded');
    });

    it('fails a job whose data is not an htable job, at once', async () => {
      await queue.add('htable.create', { v: 1, entry: { name: 7 } }, { jobId: 'bad-data' });
      const job = await waitForJob(stack, 'bad-data');

      expect(job.state).to.equal('failed');
      expect(job.attempts).to.equal(1);
      expect(job.error.code).to.equal('validation_failed');
    });
  });
});
