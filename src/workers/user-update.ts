import type { Job } from 'bullmq';

import type { UserRepresentation } from '../clients/keycloak.js';
import type { WacUser } from '../clients/wac-core.js';
import { errors } from '../errors.js';
import { hasFields, type UserUpdateData } from '../jobs/types.js';
import {
  ownerUriOf,
  patchedSipCredential,
  patchKeycloakUser,
  patchWacUser,
  toApiUser,
  type User,
  type UserSecrets,
} from '../model/users.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt, readingOnly, secretsGone } from './failures.js';

/**
 * Changes a user in both systems. Every step writes a target state (the whole Keycloak user,
 * the wac-core fields, the SIP credential), so a re-run after a crash just writes it again.
 * If a step fails for good, Keycloak and wac-core get back the user as it was before the job.
 */
export async function updateUser(
  job: Job<UserUpdateData>,
  deps: WorkerDeps,
): Promise<{ user: User }> {
  if (!hasFields(job.data, { userId: 'string', patch: 'object' })) {
    throw await failAttempt(job, errors.validation('the job data is not a user.update job'));
  }

  const data = job.data;
  if (data.secretsRemoved) {
    // Run again after its passwords were removed by a run that succeeded, its end lost: that
    // run's changes stand, and are read back. (A job from before runs recorded how they ended
    // cannot tell, and fails as it did then.)
    if (data.endedAs !== 'succeeded') throw secretsGone();
    return { user: await readingOnly(job, () => readUser(deps, data.userId)) };
  }
  let before = data.before;
  try {
    const { keycloak, wac } = deps;
    const { userId, patch } = data;
    const secrets = data.secrets ? deps.secrets.open<UserSecrets>(data.secrets) : {};

    const [current, wacUser] = await Promise.all([
      keycloak.getUser(userId),
      wac.findUserByKeycloakId(userId),
    ]);
    if (!current) throw errors.notFound(`user ${userId}`);
    if (!wacUser) throw halfProvisioned(userId);

    const domainName = patch.attributes?.domain ?? current.attributes?.domain?.[0] ?? '';
    const domain = await wac.findDomainByName(domainName);
    if (!domain) throw errors.unknownDomain(domainName, 'attributes.domain');

    if (!before) {
      before = { keycloak: current, wac: wacUser };
      await job.updateData({ ...data, before });
    }

    // The whole user first: written after the password, it would undo the required action
    // that a temporary password sets.
    const patched = patchKeycloakUser(current, patch);
    await keycloak.updateUser(userId, patched);

    if (secrets.password !== undefined) {
      const temporary = patch.credentials?.temporary ?? false;
      await keycloak.resetPassword(userId, secrets.password, temporary);
    }
    await wac.updateUser(wacUser.id, patchWacUser(patched, patch, domain.id));

    const ownerUri = ownerUriOf(wacUser.id);
    const credential = patchedSipCredential(patch, secrets, domainName);
    if (credential !== undefined) {
      const mapping = await wac.findSipMapping(ownerUri);
      if (credential === null && mapping) await wac.deleteSipMapping(mapping.id);
      if (credential && mapping) await wac.updateSipMapping(mapping.id, credential);
      if (credential && !mapping) await wac.createSipMapping({ ownerUri, credential });
    }

    return { user: await readUser(deps, userId, wacUser) };
  } catch (err) {
    throw await failAttempt(job, err, () => restore(job, deps, before));
  }
}

function halfProvisioned(userId: string) {
  return errors.conflict(
    `user ${userId} has no wac-core record (half-provisioned); ` +
      'run a reconciliation before changing it',
  );
}

/** The user as both systems now say; `known` is its wac-core record as read before the job. */
async function readUser(deps: WorkerDeps, userId: string, known?: WacUser): Promise<User> {
  // Without the record read before, it is read first (its id names the SIP mapping), once.
  const fresh = known ? undefined : await deps.wac.findUserByKeycloakId(userId);
  const record = known ?? fresh;
  if (!record) throw halfProvisioned(userId);
  const [keycloakUser, wacUser, sip] = await Promise.all([
    deps.keycloak.getUser(userId),
    fresh ?? deps.wac.findUserByKeycloakId(userId),
    deps.wac.findSipMapping(ownerUriOf(record.id)),
  ]);
  if (!keycloakUser) throw errors.notFound(`user ${userId}`);
  return toApiUser(keycloakUser, wacUser, sip);
}

/** Puts back the user as it was before the job; the password and SIP credential cannot be. */
async function restore(
  job: Job<UserUpdateData>,
  deps: WorkerDeps,
  before: { keycloak: UserRepresentation; wac: WacUser } | undefined,
): Promise<string> {
  if (!before) return '';

  const left: string[] = [];
  try {
    await deps.keycloak.updateUser(job.data.userId, before.keycloak);
  } catch {
    left.push('the Keycloak user');
  }
  try {
    const { id, externalId: _externalId, ...fields } = before.wac;
    await deps.wac.updateUser(id, fields);
  } catch {
    left.push('the wac-core user');
  }

  const kept = job.data.secrets ? ' (a new password or SIP credential stays as set)' : '';
  if (left.length > 0) {
    deps.logger.error({ jobId: job.id, left }, 'restore after a failed update was incomplete');
    return `restore incomplete, not restored: ${left.join(', ')}`;
  }
  return `undone: the user was restored as it was${kept}`;
}
