import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';

import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { bearerAuth } from './auth.js';
import type { ApiDeps } from './deps.js';
import { errorBoundary, requestLog, type ApiState } from './middleware.js';
import { metricsRoutes } from './routes/metrics.js';

/**
 * `GET /metrics` (and `GET /health/live`) of a worker-only process, on `KITTER_METRICS_PORT`,
 * behind the same bearer tokens as the API. Its requests are logged but not counted: the
 * HTTP metrics are the API's.
 */
export async function serveMetrics(
  config: Config,
  logger: Logger,
  metrics: Metrics,
): Promise<{ url: string; close(): Promise<void> }> {
  const app = new Koa<ApiState>();
  app.silent = true;
  app.use(requestLog(logger));
  app.use(errorBoundary());
  app.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/health/live') ctx.body = { status: 'ok' };
    else await next();
  });
  app.use(bearerAuth(config));
  app.use(metricsRoutes({ metrics } as ApiDeps).routes());

  const server = http.createServer(app.callback());
  server.listen(config.metricsPort, config.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;

  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
