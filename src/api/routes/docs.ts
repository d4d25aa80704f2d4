import Router from '@koa/router';

import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { openApiDocument } from '../openapi.js';
import { renderDocsPage } from '../openapi/html.js';

/** The page allows its own inline style and nothing else: it loads nothing from anywhere. */
const PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'";

/** The OpenAPI document and the page rendered from it; no token needed. */
export function docsRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  const doc = openApiDocument(deps.config);
  let page: string | undefined;

  router.get('/openapi.json', (ctx) => {
    ctx.body = doc;
  });

  router.get('/docs', (ctx) => {
    page ??= renderDocsPage(doc);
    ctx.type = 'html';
    ctx.set('Content-Security-Policy', PAGE_POLICY);
    ctx.body = page;
  });

  return router;
}
