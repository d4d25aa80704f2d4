import Router from '@koa/router';
import Joi from 'joi';

import type { WacDomain } from '../../clients/wac-core.js';
import { errors } from '../../errors.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type {
  DomainCreateData,
  DomainDeleteData,
  DomainLogoutData,
  DomainUpdateData,
} from '../../jobs/types.js';
import {
  domainCreateSchema,
  domainPatchSchema,
  fromWacDomain,
  type DomainInput,
  type DomainPatch,
} from '../../model/domains.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { wacId } from '../params.js';
import { validate, validateBody } from '../validate.js';
import { submitWrite } from '../writes.js';

export const domainListQuery = Joi.object({
  name: Joi.string().trim().max(253),
  nameContains: Joi.string().trim().max(253),
});

export const domainCreateBody = Joi.object({ domain: domainCreateSchema.required() });

export const domainIdPath = Joi.object({ id: wacId.required() });

/** wac-core lists at most this many domains a page. */
const PAGE = 1000;

export function domainRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/domains', async (ctx) => {
    const query = validate<{ name?: string; nameContains?: string }>(
      domainListQuery,
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
    const body = validateBody<{ domain: DomainInput }>(domainCreateBody, ctx.request.body);
    const data: DomainCreateData = { v: 1, domain: body.domain, requestId: ctx.state.requestId };

    await submitWrite(ctx, deps, JOB_TYPES.domainCreate, data, {
      orderKey: domainKey(body.domain.domain),
      status: 201,
    });
  });

  router.get('/domains/:id', async (ctx) => {
    const domain = await existingDomain(deps, ctx.params);
    ctx.body = { domain: fromWacDomain(domain) };
  });

  router.patch('/domains/:id', async (ctx) => {
    const { id } = validate<{ id: string }>(domainIdPath, ctx.params, 'the path');
    const changes = validateBody<DomainPatch>(domainPatchSchema, ctx.request.body);
    const current = await existingDomain(deps, { id });

    const data: DomainUpdateData = { v: 1, domainId: id, changes, requestId: ctx.state.requestId };
    deps.domains.forget(current.domain);
    await submitWrite(ctx, deps, JOB_TYPES.domainUpdate, data, {
      orderKey: domainKey(current.domain),
      status: 200,
    });
  });

  router.delete('/domains/:id', async (ctx) => {
    const current = await existingDomain(deps, ctx.params);

    const data: DomainDeleteData = { v: 1, domainId: current.id, requestId: ctx.state.requestId };
    deps.domains.forget(current.domain);
    await submitWrite(ctx, deps, JOB_TYPES.domainDelete, data, {
      orderKey: domainKey(current.domain),
      status: 204,
    });
  });

  router.post('/domains/:id/logout', async (ctx) => {
    const current = await existingDomain(deps, ctx.params);

    const data: DomainLogoutData = {
      v: 1,
      domainId: current.id,
      domain: current.domain,
      requestId: ctx.state.requestId,
    };
    // Logging out a large domain takes a while: answered 202 unless the client asks to wait.
    await submitWrite(ctx, deps, JOB_TYPES.domainLogout, data, {
      asyncByDefault: true,
      status: 200,
    });
  });

  return router;
}

async function existingDomain(deps: ApiDeps, params: unknown): Promise<WacDomain> {
  const { id } = validate<{ id: string }>(domainIdPath, params, 'the path');
  const domain = await deps.wac.getDomain(id);
  if (!domain) throw errors.notFound(`domain ${id}`);
  return domain;
}

function domainKey(name: string): string {
  return `domain:${name.toLowerCase()}`;
}

async function allDomains(deps: ApiDeps): Promise<WacDomain[]> {
  const domains: WacDomain[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await deps.wac.listDomains({ offset, limit: PAGE });
    domains.push(...page.items);
    if (page.items.length < PAGE || domains.length >= page.total) return domains;
  }
}
