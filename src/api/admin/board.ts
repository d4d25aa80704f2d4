import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Queue } from 'bullmq';
import type Koa from 'koa';

import { errors } from '../../errors.js';
import type { Queues } from '../../jobs/queues.js';
import type { ApiState } from '../middleware.js';
import { BOARD_PATH, LOGIN_PATH, underBoard } from './login.js';

/**
 * The board's page loads its scripts and styles from here only. This also keeps it from
 * fetching its web font from Google, which would tell Google who looks at the board.
 */
const BOARD_POLICY = [
  "default-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SEALED = '[sealed; removed when the job ends]';

/**
 * Bull Board at /admin/queues. `@bull-board/koa` builds a Koa app of its own (its router,
 * body parser, views and static files) and mounts it, so its routes stay out of kitter's
 * routers and its request handling out of kitter's; the guard in front of it is kitter's.
 */
export function queueBoard(queues: Queues): Koa.Middleware<ApiState> {
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
  const board = server.registerPlugin() as unknown as Koa.Middleware<ApiState>;

  return async (ctx, next) => {
    if (!underBoard(ctx.path)) return next();

    ctx.set('Content-Security-Policy', BOARD_POLICY);
    ctx.set('Cache-Control', 'no-store');
    await board(ctx, async () => {
      throw errors.notFound(`${ctx.method} ${ctx.path}`);
    });
    // The board's own router names its routes without the mount point.
    const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
    const inner = typeof route === 'string' && !underBoard(route) ? route : '/*';
    (ctx as { _matchedRoute?: string })._matchedRoute = `${BOARD_PATH}${inner}`;
  };
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
        await retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
      };
    }
    return job;
  }
}

function withoutSecrets(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || !('secrets' in data)) return data;
  return { ...data, secrets: SEALED };
}
