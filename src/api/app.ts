import Koa from 'koa';

import { bearerAuth } from './auth.js';
import type { ApiDeps } from './deps.js';
import { errorBoundary, jsonBody, requestLog, type ApiState } from './middleware.js';
import { docsRoutes } from './routes/docs.js';
import { domainRoutes } from './routes/domains.js';
import { healthRoutes } from './routes/health.js';
import { htableRoutes } from './routes/htable.js';
import { jobRoutes } from './routes/jobs.js';
import { reconcileRoutes } from './routes/reconcile.js';
import { userRoutes } from './routes/users.js';

/** The Koa app: request log, error boundary, open routes, then the token check and the rest. */
export function createApp(deps: ApiDeps): Koa<ApiState> {
  const app = new Koa<ApiState>();
  app.proxy = false;
  // The error boundary answers and logs every error; Koa's own handler would log them again.
  app.silent = true;

  const open = healthRoutes(deps);
  const secured = [
    domainRoutes(deps),
    userRoutes(deps),
    jobRoutes(deps),
    htableRoutes(deps),
    reconcileRoutes(deps),
  ];

  app.use(requestLog(deps.logger));
  app.use(errorBoundary());
  app.use(open.routes());
  app.use(docsRoutes(deps).routes());
  app.use(bearerAuth(deps.config));
  app.use(jsonBody());
  for (const router of secured) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  return app;
}
