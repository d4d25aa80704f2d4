import type { Job } from 'bullmq';

import { errors } from '../errors.js';
import { hasFields, type UserDeleteData, type UserLogoutData } from '../jobs/types.js';
import { ownerUriOf } from '../model/users.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt } from './failures.js';

/**
 * Deletes a user: its SIP mapping, its wac-core user, then the Keycloak user last, so that a
 * crash half-way leaves a user still found by its Keycloak id, and the re-run finishes it.
 */
export async function deleteUser(job: Job<UserDeleteData>, deps: WorkerDeps): Promise<null> {
  if (!hasFields(job.data, { userId: 'string' })) {
    throw await failAttempt(job, errors.validation('the job data is not a user.delete job'));
  }

  const data = job.data;
  try {
    const { keycloak, wac } = deps;
    const [keycloakUser, wacUser] = await Promise.all([
      keycloak.getUser(data.userId),
      wac.findUserByKeycloakId(data.userId),
    ]);

    if (!keycloakUser && !wacUser) {
      // Nothing left: either this job finished before a crash, or there was never such a user.
      if (data.started) return null;
      throw errors.notFound(`user ${data.userId}`);
    }
    if (!data.started) await job.updateData({ ...data, started: true });

    if (wacUser) {
      const mapping = await wac.findSipMapping(ownerUriOf(wacUser.id));
      if (mapping) await wac.deleteSipMapping(mapping.id);
      await wac.deleteUser(wacUser.id);
    }
    if (keycloakUser) await keycloak.deleteUser(data.userId);
    return null;
  } catch (err) {
    throw await failAttempt(job, err);
  }
}

/** Ends every session of a user in Keycloak. */
export async function logoutUser(job: Job<UserLogoutData>, deps: WorkerDeps): Promise<null> {
  if (!hasFields(job.data, { userId: 'string' })) {
    throw await failAttempt(job, errors.validation('the job data is not a user.logout job'));
  }

  try {
    await deps.keycloak.logout(job.data.userId);
    return null;
  } catch (err) {
    throw await failAttempt(job, err);
  }
}
