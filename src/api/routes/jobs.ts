import Router from '@koa/router';
import Joi from 'joi';

import { errors } from '../../errors.js';
import type { JobStatus } from '../../jobs/gateway.js';
import { listJobs, removeJob, retryJob } from '../../jobs/job-controls.js';
import { JOB_TYPES, type JobType } from '../../jobs/queues.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { paginate, type Page } from '../params.js';
import { validate } from '../validate.js';

const JOB_ID = /^[A-Za-z0-9._-]{1,128}$/;

export const JOB_STATES: JobStatus[] = ['queued', 'running', 'succeeded', 'failed'];

export const jobListQuery = Joi.object({
  state: Joi.string().valid(...JOB_STATES),
  type: Joi.string().valid(...Object.values(JOB_TYPES)),
  ...paginate,
});

type ListQuery = Page & { state?: JobStatus; type?: JobType };

export function jobRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/jobs', async (ctx) => {
    const query = validate<ListQuery>(jobListQuery, ctx.query, 'the query');
    ctx.body = await listJobs(deps.queues, deps.redis, {
      state: query.state,
      type: query.type,
      max: query['paginate[max]'],
      page: query['paginate[page]'],
    });
  });

  router.get('/jobs/:id', async (ctx) => {
    const id = jobId(ctx.params.id);
    const job = await deps.gateway.find(id);
    if (!job) throw errors.notFound(`job ${id}`);
    ctx.body = { job: await deps.gateway.view(job) };
  });

  // An operator's tools: runs a failed job again once its cause is fixed, or drops a job.
  router.post('/jobs/:id/retry', async (ctx) => {
    const view = await retryJob(deps.queues, jobId(ctx.params.id));
    ctx.status = 202;
    ctx.set('Location', `/jobs/${view.id}`);
    ctx.body = { job: view };
  });

  router.delete('/jobs/:id', async (ctx) => {
    await removeJob(deps.queues, jobId(ctx.params.id));
    ctx.status = 204;
  });

  return router;
}

/** A path's job id; ids kitter never gives are not found, without asking Redis. */
function jobId(id: string): string {
  if (!JOB_ID.test(id)) throw errors.notFound(`job ${JSON.stringify(id.slice(0, 64))}`);
  return id;
}
