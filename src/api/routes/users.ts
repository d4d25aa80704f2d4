import Router from '@koa/router';
import Joi from 'joi';

import { errors } from '../../errors.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type { UserCreateData } from '../../jobs/types.js';
import { domainName } from '../../model/domains.js';
import {
  ownerUriOf,
  splitSecrets,
  toApiUser,
  userCreateSchema,
  type UserInput,
} from '../../model/users.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { answerJob } from '../respond.js';
import { validate } from '../validate.js';

const createBody = Joi.object({ user: userCreateSchema.required() });

const userPath = Joi.object({
  domain: domainName.required(),
  username: Joi.string().trim().lowercase().min(1).max(255).required(),
});

export function userRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.post('/users', async (ctx) => {
    const { user } = validate<{ user: UserInput }>(createBody, ctx.request.body);

    // Refused here, before anything is queued: nothing is written for an unknown domain.
    const domain = await deps.domains.byName(user.attributes.domain);
    if (!domain) throw errors.unknownDomain(user.attributes.domain);

    const { spec, secrets } = splitSecrets(user);
    const data: UserCreateData = { v: 1, user: spec, requestId: ctx.state.requestId };
    if (secrets.password !== undefined || secrets.sipPassword !== undefined) {
      data.secrets = deps.secrets.seal(secrets);
    }

    const job = await deps.gateway.submit(JOB_TYPES.userCreate, data);
    await answerJob(ctx, deps.gateway, job, deps.config, {
      status: 201,
      wrap: (created) => ({ user: created }),
    });
  });

  router.get('/users/:domain/:username', async (ctx) => {
    const path = validate<{ domain: string; username: string }>(userPath, ctx.params, 'the path');
    const notFound = () => errors.notFound(`user ${path.username} in domain ${path.domain}`);

    const [keycloakUser, domain] = await Promise.all([
      deps.keycloak.findByUsername(path.username),
      deps.wac.findDomainByName(path.domain),
    ]);
    if (!keycloakUser || !domain) throw notFound();
    if (keycloakUser.attributes?.domain?.[0] !== path.domain) throw notFound();

    // A user exists for kitter when it exists in both systems.
    const wacUser = await deps.wac.findUser(domain.id, path.username);
    if (!wacUser) throw notFound();

    const sip = await deps.wac.findSipMapping(ownerUriOf(wacUser.id));
    ctx.body = toApiUser(keycloakUser, wacUser, sip);
  });

  return router;
}
