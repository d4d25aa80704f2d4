import type { KeycloakClient, UserRepresentation } from '../clients/keycloak.js';
import type { WacCoreClient, WacUser } from '../clients/wac-core.js';
import { BackendError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ownerUriOf, toWacUser, type UserSpec } from '../model/users.js';
import type { DriftItem } from './report.js';

export interface RepairDeps {
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  logger: Logger;
}

/** What a repair did (`fixed`), or why the drift is still there (`left`). */
export type RepairOutcome = { fixed: string } | { left: string };

/**
 * Repairs one drift item, Keycloak being the source of truth. Each repair reads both records
 * again first, so it acts on what is there now, not on what the scan saw, and running it twice
 * does nothing the second time.
 */
export async function repair(deps: RepairDeps, item: DriftItem): Promise<RepairOutcome> {
  if (!item.fixable || !item.keycloak_id) return { left: item.reason ?? 'not repairable' };

  try {
    const outcome = await repairOf(deps, item, item.keycloak_id);
    const fields = { kind: item.kind, keycloakId: item.keycloak_id, wacUserId: item.wac_core_id };
    if ('fixed' in outcome) deps.logger.info({ ...fields, action: outcome.fixed }, 'repaired');
    else deps.logger.warn({ ...fields, reason: outcome.left }, 'not repaired');
    return outcome;
  } catch (err) {
    if (!(err instanceof BackendError)) throw err;

    deps.logger.warn({ kind: item.kind, keycloakId: item.keycloak_id, err: err.message }, 'failed');
    return { left: `the repair failed: ${err.message}` };
  }
}

function repairOf(deps: RepairDeps, item: DriftItem, keycloakId: string) {
  if (item.kind === 'keycloak_only') return finishCreate(deps, keycloakId);
  if (item.kind === 'wac_core_only' && item.wac_core_id) {
    return finishDelete(deps, keycloakId, item.wac_core_id);
  }
  if (item.kind === 'different' && item.wac_core_id) {
    return alignWacUser(deps, keycloakId, item.wac_core_id);
  }
  return Promise.resolve({ left: 'not repairable' });
}

/**
 * A Keycloak user made by kitter without its wac-core user: a create that stopped half-way.
 * It is finished from the Keycloak data; the capabilities and the SIP mapping were only in the
 * create job, so they are not restored.
 */
async function finishCreate(deps: RepairDeps, keycloakId: string): Promise<RepairOutcome> {
  const { keycloak, wac } = deps;
  const [user, existing] = await Promise.all([
    keycloak.getUser(keycloakId),
    wac.findUserByKeycloakId(keycloakId),
  ]);
  if (!user) return { fixed: 'nothing to do: the Keycloak user is gone' };
  if (existing) return { fixed: `nothing to do: the wac-core user ${existing.id} exists now` };

  const domainName = user.attributes?.domain?.[0] ?? '';
  const domain = domainName ? await wac.findDomainByName(domainName) : undefined;
  if (!domain) return { left: `wac-core has no domain ${domainName || '(none given)'}` };

  try {
    const created = await wac.createUser(
      toWacUser(specOf(user, domainName), domain.id, keycloakId),
    );
    return {
      fixed: `created the wac-core user ${created.id} (without capabilities or SIP mapping)`,
    };
  } catch (err) {
    if (!(err instanceof BackendError) || err.kind !== 'conflict') throw err;

    // Another run (or the create job itself, retried) may have just made it.
    const made = await wac.findUserByKeycloakId(keycloakId);
    if (made) return { fixed: `nothing to do: the wac-core user ${made.id} exists now` };
    return { left: `wac-core has another user named ${user.username} in ${domainName}` };
  }
}

/**
 * A wac-core user whose Keycloak user is gone: a delete that stopped half-way. It is finished
 * as the delete job does it: the SIP mapping, then the wac-core user.
 */
async function finishDelete(
  deps: RepairDeps,
  keycloakId: string,
  wacUserId: string,
): Promise<RepairOutcome> {
  const { keycloak, wac } = deps;
  const [user, record] = await Promise.all([keycloak.getUser(keycloakId), wac.getUser(wacUserId)]);
  if (!record) return { fixed: 'nothing to do: the wac-core user is gone' };
  if (record.externalId !== keycloakId) return changedSinceScan();
  // A Keycloak user with that id means the scan raced a create: nothing may be deleted.
  if (user) return { left: 'the Keycloak user exists now; nothing deleted (run again)' };

  const mapping = await wac.findSipMapping(ownerUriOf(wacUserId));
  if (mapping) await wac.deleteSipMapping(mapping.id);
  await wac.deleteUser(wacUserId);
  return { fixed: `deleted the wac-core user${mapping ? ' and its SIP mapping' : ''}` };
}

/** Writes the Keycloak user's username, email and domain to its wac-core record. */
async function alignWacUser(
  deps: RepairDeps,
  keycloakId: string,
  wacUserId: string,
): Promise<RepairOutcome> {
  const { keycloak, wac } = deps;
  const [user, record] = await Promise.all([keycloak.getUser(keycloakId), wac.getUser(wacUserId)]);
  if (!user || !record || record.externalId !== keycloakId) return changedSinceScan();

  const domainName = user.attributes?.domain?.[0];
  const domain = domainName ? await wac.findDomainByName(domainName) : undefined;
  if (!domain) return { left: `wac-core has no domain ${domainName ?? '(none given)'}` };

  const target: Pick<WacUser, 'username' | 'email' | 'domain'> = {
    username: user.username ?? record.username,
    email: user.email ?? null,
    domain: domain.id,
  };
  const changed = (['username', 'email', 'domain'] as const).filter(
    (field) => (target[field] ?? '').toLowerCase() !== (record[field] ?? '').toLowerCase(),
  );
  if (changed.length === 0) return { fixed: 'nothing to do: the records agree now' };

  try {
    await wac.updateUser(wacUserId, target);
    return { fixed: `updated the wac-core user's ${changed.join(', ')} from Keycloak` };
  } catch (err) {
    if (!(err instanceof BackendError) || err.kind !== 'conflict') throw err;
    return { left: `wac-core has another user named ${target.username} in ${domainName}` };
  }
}

function changedSinceScan(): RepairOutcome {
  return { left: 'the records changed since they were read; nothing done (run again)' };
}

/** The Keycloak user as the create job's input would have had it, for the wac-core mapping. */
function specOf(user: UserRepresentation, domain: string): UserSpec {
  const phone = user.attributes?.phone_number?.[0];
  return {
    username: user.username ?? '',
    email: user.email,
    first_name: user.firstName,
    last_name: user.lastName,
    attributes: { domain, ...(phone ? { phone_number: phone } : {}) },
  };
}
