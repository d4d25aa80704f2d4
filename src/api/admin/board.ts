import type Koa from 'koa';

import { errors } from '../../errors.js';
import { loadOnce } from '../../limit.js';
import type { Queues } from '../../jobs/queues.js';
import type { ApiState } from '../middleware.js';
import { BOARD_PATH, underBoard } from './login.js';

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

/**
 * Bull Board at /admin/queues, behind kitter's guard (see `boardGuard`). Its code (the board,
 * its Koa app, views and their template engines: about 7 MB of the API's memory) is loaded the
 * first time someone opens it, not in every API process that never serves it.
 */
export function queueBoard(queues: Queues): Koa.Middleware<ApiState> {
  const board = loadOnce(async () => (await import('./board-app.js')).boardApp(queues));

  return async (ctx, next) => {
    if (!underBoard(ctx.path)) return next();

    ctx.set('Content-Security-Policy', BOARD_POLICY);
    ctx.set('Cache-Control', 'no-store');
    await (
      await board()
    )(ctx, async () => {
      throw errors.notFound(`${ctx.method} ${ctx.path}`);
    });
    // The board's own router names its routes without the mount point.
    const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
    const inner = typeof route === 'string' && !underBoard(route) ? route : '/*';
    (ctx as { _matchedRoute?: string })._matchedRoute = `${BOARD_PATH}${inner}`;
  };
}
