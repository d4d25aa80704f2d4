import Router from '@koa/router';
import Joi from 'joi';

import type { WacHtableEntry } from '../../clients/wac-core.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type { HtableCreateData, HtableDeleteData } from '../../jobs/types.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { paginate, type Page } from '../params.js';
import { validate, validateBody } from '../validate.js';
import { submitWrite } from '../writes.js';

const entryName = Joi.string().trim().min(1).max(255);
const entryValue = Joi.string().trim().min(1).max(1024);

export const htableListQuery = Joi.object({
  ...paginate,
  // An empty filter, as forms send it, filters nothing.
  nameContains: Joi.string().allow('').max(255),
  valueContains: Joi.string().allow('').max(1024),
});

export const htableCreateBody = Joi.object({
  name: entryName.required(),
  value: entryValue.required(),
});

export const htableNamePath = Joi.object({ name: Joi.string().min(1).max(255).required() });

type ListQuery = Page & { nameContains?: string; valueContains?: string };

/**
 * The caller-id table (wac-core's htable). Operators turn it on with `KITTER_HTABLE_ENABLED`;
 * until then its paths do not exist (404), as in the original kitter.
 */
export function htableRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();
  if (!deps.config.htableEnabled) return router;

  router.get('/htable', async (ctx) => {
    const query = validate<ListQuery>(htableListQuery, ctx.query, 'the query');
    const max = query['paginate[max]'];

    const page = await deps.wac.listHtable({
      offset: query['paginate[page]'] * max,
      limit: max,
      nameContains: query.nameContains || undefined,
      valueContains: query.valueContains || undefined,
    });
    ctx.body = { entries: page.items.map(toEntry), total: page.total };
  });

  router.post('/htable', async (ctx) => {
    const entry = validateBody<WacHtableEntry>(htableCreateBody, ctx.request.body);
    const data: HtableCreateData = { v: 1, entry, requestId: ctx.state.requestId };

    await submitWrite(ctx, deps, JOB_TYPES.htableCreate, data, {
      orderKey: htableKey(entry.name),
      status: 201,
    });
  });

  router.delete('/htable/:name', async (ctx) => {
    const { name } = validate<{ name: string }>(htableNamePath, ctx.params, 'the path');
    const data: HtableDeleteData = { v: 1, name, requestId: ctx.state.requestId };

    await submitWrite(ctx, deps, JOB_TYPES.htableDelete, data, {
      orderKey: htableKey(name),
      status: 204,
    });
  });

  return router;
}

/** Only the two fields kitter answers, whatever else wac-core may add. */
function toEntry(entry: WacHtableEntry): WacHtableEntry {
  return { name: entry.name, value: entry.value };
}

/** Writes on one name run in the order they were accepted. */
function htableKey(name: string): string {
  return `htable:${name}`;
}
