import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Job, Queue } from 'bullmq';
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
 * gives a failed job all its attempts again as `POST /jobs/{id}/retry` does, succeeded jobs
 * are not run again, and no job is added or has its data replaced from the board (it would
 * skip the checks of a request, and could put passwords in Redis unsealed).
 */
class KitterQueueAdapter extends BullMQAdapter {
  constructor(private readonly kitterQueue: Queue) {
    // Passed on to the base adapter, whose options type names it; BullMQAdapter's does not.
    const options = { allowRetries: true, allowCompletedRetries: false };
    super(kitterQueue, options as ConstructorParameters<typeof BullMQAdapter>[1]);
    this.setFormatter('data', withoutSecrets);
  }

  override async getJob(id: string) {
    const job = await super.getJob(id);
    return job && this.withKitterRetry(job);
  }

  /** The board's "retry all" takes its jobs here, a page at a time, and retries each. */
  override async getJobs(...args: Parameters<BullMQAdapter['getJobs']>) {
    return (await super.getJobs(...args)).map((job) => this.withKitterRetry(job));
  }

  /** The board's "add job": refused, as every job comes from kitter's checked requests. */
  override async addJob(): Promise<never> {
    throw refused(
      "jobs are added through kitter's API, which checks them and seals their passwords",
    );
  }

  /**
   * The job, whose `retry` is `POST /jobs/{id}/retry`'s (all its attempts again, never a
   * success), and whose data the board may not replace.
   */
  private withKitterRetry<T extends Job>(job: T): T {
    const retry = job.retry.bind(job);
    job.retry = async (state) => {
      // The board's API takes a retry of a succeeded job even where its page offers none.
      if (state === 'completed') throw refused('a succeeded job is not run again');
      await retryAfresh(this.kitterQueue, job, retry);
    };
    job.updateData = async () => {
      throw refused("a job's data is what its request was checked as; send a new request");
    };
    return job;
  }
}

/** What the board offers and kitter refuses: its API answers the error's `statusCode`. */
function refused(message: string): Error {
  return Object.assign(new Error(message), { statusCode: 405 });
}

function withoutSecrets(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || !('secrets' in data)) return data;
  return { ...data, secrets: SEALED };
}
