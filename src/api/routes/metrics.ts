import Router from '@koa/router';

import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';

/** Prometheus's scrape target. */
export function metricsRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/metrics', async (ctx) => {
    const { contentType, text } = await deps.metrics.render();
    ctx.type = contentType;
    ctx.body = text;
  });

  return router;
}
