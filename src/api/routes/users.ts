import Router from '@koa/router';
import Joi from 'joi';

import type { UserQuery } from '../../clients/keycloak.js';
import { errors } from '../../errors.js';
import { JOB_TYPES } from '../../jobs/queues.js';
import type {
  UserCreateData,
  UserDeleteData,
  UserLogoutData,
  UserUpdateData,
} from '../../jobs/types.js';
import { mapLimited } from '../../limit.js';
import { domainName } from '../../model/domains.js';
import {
  orderKeyOfUser,
  ownerUriOf,
  phoneNumber,
  splitPatchSecrets,
  splitSecrets,
  toApiUser,
  userCreateSchema,
  userPatchSchema,
  type UserInput,
  type UserPatch,
  type UserSecrets,
} from '../../model/users.js';
import type { ApiDeps } from '../deps.js';
import type { ApiState } from '../middleware.js';
import { keycloakId, paginate, type Page } from '../params.js';
import { validate, validateBody } from '../validate.js';
import { submitWrite } from '../writes.js';

export const userCreateBody = Joi.object({ user: userCreateSchema.required() });

export const userPath = Joi.object({
  domain: domainName.required(),
  username: Joi.string().trim().lowercase().min(1).max(255).required(),
});

export const userIdPath = Joi.object({ id: keycloakId.required() });

export const userListQuery = Joi.object({
  email: Joi.string().trim().max(254),
  username: Joi.string().trim().max(255),
  exact: Joi.boolean().default(false),
  phone_number: phoneNumber,
  domain: domainName,
  email_verified: Joi.boolean(),
  ...paginate,
});

type UserListQuery = Page & {
  email?: string;
  username?: string;
  exact: boolean;
  phone_number?: string;
  domain?: string;
  email_verified?: boolean;
};

/** Users read from wac-core at once while a page of users is put together. */
const ENRICH_CONCURRENCY = 10;

export function userRoutes(deps: ApiDeps): Router<ApiState> {
  const router = new Router<ApiState>();

  router.get('/users', async (ctx) => {
    const query = validate<UserListQuery>(userListQuery, ctx.query, 'the query');
    const max = query['paginate[max]'];
    const filter: UserQuery = {
      username: query.username?.toLowerCase(),
      email: query.email?.toLowerCase(),
      exact: query.exact,
      emailVerified: query.email_verified,
      attributes: attributeFilter(query),
    };

    const [found, total] = await Promise.all([
      deps.keycloak.findUsers({ ...filter, first: query['paginate[page]'] * max, max }),
      deps.keycloak.countUsers(filter),
    ]);
    const users = await mapLimited(found, ENRICH_CONCURRENCY, async (user) => {
      const wacUser = await deps.wac.findUserByKeycloakId(user.id!);
      const sip = wacUser && (await deps.wac.findSipMapping(ownerUriOf(wacUser.id)));
      return toApiUser(user, wacUser, sip);
    });
    ctx.body = { users, total };
  });

  router.post('/users', async (ctx) => {
    const { user } = validateBody<{ user: UserInput }>(userCreateBody, ctx.request.body);

    // Refused here, before anything is queued: nothing is written for an unknown domain.
    const domain = await deps.domains.byName(user.attributes.domain);
    if (!domain) throw errors.unknownDomain(user.attributes.domain);

    const { spec, secrets } = splitSecrets(user);
    const data: UserCreateData = {
      v: 1,
      user: spec,
      requestId: ctx.state.requestId,
      secrets: sealed(deps, secrets),
    };
    await submitWrite(ctx, deps, JOB_TYPES.userCreate, data, {
      orderKey: orderKeyOfUser(spec.username),
      status: 201,
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

  router.patch('/users/:id', async (ctx) => {
    const { id } = validate<{ id: string }>(userIdPath, ctx.params, 'the path');
    const patch = validateBody<UserPatch>(userPatchSchema, ctx.request.body);
    const current = await existingUser(deps, id);

    const domain = patch.attributes?.domain;
    if (domain !== undefined && !(await deps.domains.byName(domain))) {
      throw errors.unknownDomain(domain, 'attributes.domain');
    }

    const { spec, secrets } = splitPatchSecrets(patch);
    const data: UserUpdateData = {
      v: 1,
      userId: id,
      patch: spec,
      requestId: ctx.state.requestId,
      secrets: sealed(deps, secrets),
    };
    await submitWrite(ctx, deps, JOB_TYPES.userUpdate, data, {
      orderKey: orderKeyOfUser(current),
      status: 200,
    });
  });

  router.delete('/users/:id', async (ctx) => {
    const { id } = validate<{ id: string }>(userIdPath, ctx.params, 'the path');
    const current = await existingUser(deps, id, { orInWacCore: true });

    const data: UserDeleteData = { v: 1, userId: id, requestId: ctx.state.requestId };
    await submitWrite(ctx, deps, JOB_TYPES.userDelete, data, {
      orderKey: orderKeyOfUser(current),
      status: 204,
    });
  });

  router.post('/users/:id/logout', async (ctx) => {
    const { id } = validate<{ id: string }>(userIdPath, ctx.params, 'the path');
    const current = await existingUser(deps, id);

    const data: UserLogoutData = { v: 1, userId: id, requestId: ctx.state.requestId };
    await submitWrite(ctx, deps, JOB_TYPES.userLogout, data, {
      orderKey: orderKeyOfUser(current),
      status: 204,
    });
  });

  return router;
}

function attributeFilter(query: UserListQuery): Record<string, string> | undefined {
  const attributes: Record<string, string> = {};
  if (query.domain) attributes.domain = query.domain;
  if (query.phone_number) attributes.phone_number = query.phone_number;
  return Object.keys(attributes).length > 0 ? attributes : undefined;
}

/**
 * The username of the user with this Keycloak id, or 404. With `orInWacCore`, a user left only
 * in wac-core (a half-provisioned one) counts too, so that it can be deleted.
 */
async function existingUser(
  deps: ApiDeps,
  id: string,
  options: { orInWacCore?: boolean } = {},
): Promise<string> {
  const user = await deps.keycloak.getUser(id);
  if (user?.username) return user.username;

  const wacUser = options.orInWacCore ? await deps.wac.findUserByKeycloakId(id) : undefined;
  if (wacUser) return wacUser.username;
  throw errors.notFound(`user ${id}`);
}

function sealed(deps: ApiDeps, secrets: UserSecrets): string | undefined {
  const none = secrets.password === undefined && secrets.sipPassword === undefined;
  return none ? undefined : deps.secrets.seal(secrets);
}
