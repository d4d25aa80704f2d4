import Router from '@koa/router';
import Joi from 'joi';

import type { WacDomain } from '../../clients/wac-core.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type { DomainCreateData } from '../../jobs/types.js';
import { domainCreateSchema, fromWacDomain, type DomainInput } from '../../model/domains.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { answerJob } from '../respond.js';
import { validate } from '../validate.js';

const listQuery = Joi.object({
  name: Joi.string().trim().max(253),
  nameContains: Joi.string().trim().max(253),
});

const createBody = Joi.object({ domain: domainCreateSchema.required() });

/** wac-core lists at most this many domains a page. */
const PAGE = 1000;

export function domainRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/domains', async (ctx) => {
    const query = validate<{ name?: string; nameContains?: string }>(
      listQuery,
      ctx.query,
      'the query',
    );

    if (query.name !== undefined) {
      const found = await deps.wac.findDomainByName(query.name);
      ctx.body = { domains: found ? [fromWacDomain(found)] : [] };
      return;
    }

    const all = await allDomains(deps);
    const needle = query.nameContains?.toLowerCase();
    const domains = needle ? all.filter((d) => d.domain.toLowerCase().includes(needle)) : all;
    ctx.body = { domains: domains.map(fromWacDomain) };
  });

  router.post('/domains', async (ctx) => {
    const body = validate<{ domain: DomainInput }>(createBody, ctx.request.body);
    const data: DomainCreateData = { v: 1, domain: body.domain, requestId: ctx.state.requestId };

    const job = await deps.gateway.submit(JOB_TYPES.domainCreate, data);
    await answerJob(ctx, deps.gateway, job, deps.config, {
      status: 201,
      wrap: (domain) => ({ domain }),
    });
  });

  return router;
}

async function allDomains(deps: ApiDeps): Promise<WacDomain[]> {
  const domains: WacDomain[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await deps.wac.listDomains({ offset, limit: PAGE });
    domains.push(...page.items);
    if (page.items.length < PAGE || domains.length >= page.total) return domains;
  }
}
