import { randomBytes } from 'node:crypto';

import { expect } from 'chai';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { retryAfresh, retryJob } from '../../src/jobs/job-controls.js';
import { JOB_TYPES, createQueues } from '../../src/jobs/queues.js';
import { ranBefore } from '../../src/workers/failures.js';
import { testRedisUrl } from '../support/redis.js';

/**
 * A retry by hand counts a job's attempts and starts afresh. A job that started before must
 * still say so (`ranBefore`): its runs may have made records, and a cancel of its import must
 * undo its row, not drop it. Here a job fails the way BullMQ fails one itself, with no word from
 * kitter's code in its data (as for a job that stalled too often).
 */
describe('a failed job retried by hand', function () {
  this.timeout(20_000);

  it('still counts as having run before, though its starts are counted afresh', async () => {
    const url = await testRedisUrl();
    const prefix = `test-${randomBytes(6).toString('hex')}`;
    const connection = new Redis(url, { maxRetriesPerRequest: null });
    const policy = { attempts: 1, backoffMs: 10, keepSucceededS: 60, keepFailedS: 60 };
    const queues = createQueues(connection, prefix, policy, () => undefined);
    const failing = new Worker(
      'provisioning',
      async () => {
        throw new UnrecoverableError('gone with its worker');
      },
      { connection, prefix, autorun: false },
    );
    try {
      const added = await queues.provisioning.add(JOB_TYPES.userCreate, { v: 1 }, { jobId: 'j1' });
      const ended = new Promise((resolve) => failing.once('failed', resolve));
      void failing.run();
      await ended;
      await failing.close();
      const failed = (await queues.provisioning.getJob(added.id!))!;
      expect(failed.attemptsStarted).to.equal(1);
      expect(ranBefore(failed, false)).to.equal(true);

      const view = await retryJob(queues, 'j1');

      const retried = (await queues.provisioning.getJob('j1'))!;
      expect(view.state).to.equal('queued');
      expect(retried.attemptsStarted).to.equal(0);
      expect(ranBefore(retried, false)).to.equal(true);
      expect(retried.data).to.deep.equal({ v: 1, startedBefore: true });

      // A retry that overlaps (it read the job while it was failed) writes nothing over what
      // the job's data has become since, and is refused.
      await retried.updateData({ v: 2, startedBefore: true });
      const late = await retryAfresh(queues.provisioning, failed).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(String(late)).to.match(/not in the failed state/);
      expect((await queues.provisioning.getJob('j1'))!.data).to.deep.equal({
        v: 2,
        startedBefore: true,
      });
    } finally {
      await failing.close();
      await Promise.all(Object.values(queues).map((queue) => queue.close()));
      const admin = new Redis(url);
      const keys = await admin.keys(`${prefix}:*`);
      if (keys.length > 0) await admin.del(...keys);
      await admin.quit();
      connection.disconnect();
    }
  });
});
