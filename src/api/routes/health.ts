import Router from '@koa/router';

import { isRedisUnreachable } from '../../redis.js';
import type { ApiDeps } from '../deps.js';
import { unavailableFor, type ApiState } from '../middleware.js';

const CHECK_TIMEOUT_MS = 2_000;

/** Liveness and readiness; no token needed. */
export function healthRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/health/live', (ctx) => {
    ctx.body = { status: 'ok' };
  });

  router.get('/health/ready', async (ctx) => {
    // All at once, each bounded: the answer comes within CHECK_TIMEOUT_MS however many hang.
    const checks = {
      redis: check(async () => {
        await deps.redis.ping().catch((err: unknown) => {
          // ioredis's words for it ("Stream isn't writeable and enableOfflineQueue…") say less.
          throw isRedisUnreachable(err) ? new Error('not reachable') : err;
        });
        // A queue whose opening failed refuses every write: not ready (see service.ts).
        await Promise.all(Object.values(deps.queues).map((queue) => queue.waitUntilReady()));
      }),
      keycloak: check(() => deps.keycloak.checkToken()),
      wac_core: check(async () => {
        await deps.wac.listDomains({ limit: 1 });
      }),
    };
    const results = Object.fromEntries(
      await Promise.all(
        Object.entries(checks).map(async ([name, result]) => [name, await result] as const),
      ),
    );

    const down = Object.entries(results)
      .filter(([, result]) => result !== 'ok')
      .map(([name]) => name);
    if (down.length === 0) ctx.status = 200;
    else unavailableFor(ctx);
    ctx.body =
      down.length === 0
        ? { status: 'ready', checks: results }
        : {
            error: `not ready: ${down.join(', ')} unreachable`,
            code: 'backend_unavailable',
            checks: results,
          };
  });

  return router;
}

async function check(probe: () => Promise<void>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([probe().then(() => 'ok'), timeout]);
  } catch (err) {
    return (err as Error).message.slice(0, 200);
  } finally {
    clearTimeout(timer);
  }
}
