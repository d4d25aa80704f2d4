import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Queue } from 'bullmq';
import type Koa from 'koa';

import { retryAfresh } from '../../jobs/job-controls.js';
import type { Queues } from '../../jobs/queues.js';
import type { ApiState } from '../middleware.js';
import { BOARD_PATH, LOGIN_PATH } from './login.js';

const SEALED = '[sealed; removed when the job ends]';

/**
 * Bull Board's own Koa app, mounted at /admin/queues: `@bull-board/koa` builds it with its
 * router, body parser, views and static files, so its routes stay out of kitter's routers and
 * its request handling out of kitter's. Loaded the first time the board is asked for (see
 * `queueBoard`).
 */
export function boardApp(queues: Queues): Koa.Middleware<ApiState> {
  const server = new KoaAdapter();
  server.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: Object.values(queues).map((queue) => new KitterQueueAdapter(queue)),
    serverAdapter: server,
    options: {
      uiConfig: {
        boardTitle: 'kitter queues',
        miscLinks: [{ text: 'Sign out', url: LOGIN_PATH }],
        hideDocsLink: true,
      },
    },
  });
  return server.registerPlugin() as unknown as Koa.Middleware<ApiState>;
}

/**
 * A BullMQ queue as the board sees it, with kitter's rules: job data shows no sealed secrets
 * (kitter removes them when a job ends; a waiting job still has them, encrypted), a retry
 * gives a failed job all its attempts again as `POST /jobs/{id}/retry` does, and succeeded
 * jobs are not run again.
 */
class KitterQueueAdapter extends BullMQAdapter {
  constructor(queue: Queue) {
    // Passed on to the base adapter, whose options type names it; BullMQAdapter's does not.
    const options = { allowRetries: true, allowCompletedRetries: false };
    super(queue, options as ConstructorParameters<typeof BullMQAdapter>[1]);
    this.setFormatter('data', withoutSecrets);
  }

  override async getJob(id: string) {
    const job = await super.getJob(id);
    if (job) {
      const retry = job.retry.bind(job);
      job.retry = async (state) => {
        // The board's API takes a retry of a succeeded job even where its page offers none.
        if (state === 'completed') throw new Error('a succeeded job is not run again');
        await retryAfresh(job, retry);
      };
    }
    return job;
  }
}

function withoutSecrets(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || !('secrets' in data)) return data;
  return { ...data, secrets: SEALED };
}
