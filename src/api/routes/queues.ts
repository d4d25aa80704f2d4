import Router from '@koa/router';

import { errors } from '../../errors.js';
import { readQueueStatus } from '../../jobs/queue-status.js';
import { QUEUE_NAMES, type QueueName } from '../../jobs/queues.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';

/** The queues as operators see them, and their pause switch. */
export function queueRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/queues', async (ctx) => {
    ctx.body = { queues: await Promise.all(QUEUE_NAMES.map(status)) };
  });

  // Pausing is global: every worker of the queue, in every process, stops taking jobs; the
  // active ones finish. Jobs keep being accepted and wait.
  router.post('/queues/:name/pause', async (ctx) => {
    const name = queueName(ctx.params.name);
    await redisOr503(() => deps.queues[name].pause());
    ctx.body = { queue: await status(name) };
  });

  router.post('/queues/:name/resume', async (ctx) => {
    const name = queueName(ctx.params.name);
    await redisOr503(() => deps.queues[name].resume());
    ctx.body = { queue: await status(name) };
  });

  function status(name: QueueName) {
    return redisOr503(() => readQueueStatus(deps.queues[name]));
  }

  return router;
}

function queueName(name: string): QueueName {
  if (!(QUEUE_NAMES as readonly string[]).includes(name)) {
    throw errors.notFound(`queue ${JSON.stringify(name.slice(0, 64))}`);
  }
  return name as QueueName;
}

async function redisOr503<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw errors.queueUnavailable(err);
  }
}
