import Router from '@koa/router';
import Joi from 'joi';

import { domainName } from '../../model/domains.js';
import { reconcile } from '../../reconcile/reconcile.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { validate } from '../validate.js';

export const reconcileQuery = Joi.object({ domain: domainName.required() });

export function reconcileRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  // Read-only: repairs change both systems, and belong to an operator running `kitter
  // reconcile --fix`, not to a GET. One domain at a time keeps the answer's time bounded.
  router.get('/reconcile', async (ctx) => {
    const query = validate<{ domain: string }>(reconcileQuery, ctx.query, 'the query');
    ctx.body = await reconcile(deps, { domain: query.domain, fix: false });
  });

  return router;
}
