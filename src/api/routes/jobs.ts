import Router from '@koa/router';

import { errors } from '../../errors.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';

const JOB_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function jobRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/jobs/:id', async (ctx) => {
    const id = ctx.params.id;
    if (!JOB_ID.test(id)) throw errors.notFound(`job ${JSON.stringify(id.slice(0, 64))}`);

    const job = await deps.gateway.find(id);
    if (!job) throw errors.notFound(`job ${id}`);
    ctx.body = { job: await deps.gateway.view(job) };
  });

  return router;
}
