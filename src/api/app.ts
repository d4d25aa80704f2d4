import Koa from 'koa';

import { queueBoard } from './admin/board.js';
import { adminRoutes, boardGuard } from './admin/login.js';
import { AdminSessions } from './admin/sessions.js';
import { authenticatorOf, bearerAuth } from './auth.js';
import type { ApiDeps } from './deps.js';
import { errorBoundary, jsonBody, requestLog, type ApiState } from './middleware.js';
import { docsRoutes } from './routes/docs.js';
import { domainRoutes } from './routes/domains.js';
import { healthRoutes } from './routes/health.js';
import { htableRoutes } from './routes/htable.js';
import { importRoutes } from './routes/imports.js';
import { jobRoutes } from './routes/jobs.js';
import { metricsRoutes } from './routes/metrics.js';
import { queueRoutes } from './routes/queues.js';
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
    queueRoutes(deps),
    metricsRoutes(deps),
  ];
  const authenticator = authenticatorOf(deps.config);
  const sessions = new AdminSessions(deps.redis, deps.config.queuePrefix, deps.config.secretKey);
  const admin = adminRoutes(authenticator, sessions);

  app.use(requestLog(deps.logger, deps.metrics));
  app.use(errorBoundary());
  app.use(open.routes());
  app.use(docsRoutes(deps).routes());
  // The dashboard takes a session cookie as well as a bearer token.
  app.use(admin.routes());
  app.use(admin.allowedMethods());
  app.use(boardGuard(authenticator, sessions));
  app.use(queueBoard(deps.queues));
  app.use(bearerAuth(deps.config, authenticator));
  // Imports read CSV bodies themselves, so their routes come before the JSON body parser.
  const imports = importRoutes(deps);
  app.use(imports.routes());
  app.use(imports.allowedMethods());
  // Only for a route that exists: another method on a known path is 405, whatever its body.
  app.use(jsonBody((ctx) => secured.some((router) => router.match(ctx.path, ctx.method).route)));
  for (const router of secured) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  return app;
}
