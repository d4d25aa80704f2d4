import Router from '@koa/router';

import { loadOnce } from '../../limit.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';

/** The page allows its own inline style and nothing else: it loads nothing from anywhere. */
const PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'";

/**
 * The OpenAPI document and the page rendered from it; no token needed. Both are built the first
 * time they are asked for: the code that turns joi schemas into JSON Schema (and lodash with
 * it) stays out of API processes that never serve them.
 */
export function docsRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const docs = loadOnce(async () => {
    const [openapi, html] = await Promise.all([
      import('../openapi.js'),
      import('../openapi/html.js'),
    ]);
    const doc = openapi.openApiDocument(deps.config);
    return { doc, page: html.renderDocsPage(doc) };
  });

  router.get('/openapi.json', async (ctx) => {
    ctx.body = (await docs()).doc;
  });

  router.get('/docs', async (ctx) => {
    const { page } = await docs();
    ctx.type = 'html';
    ctx.set('Content-Security-Policy', PAGE_POLICY);
    ctx.body = page;
  });

  return router;
}
