import type { Job } from 'bullmq';

import { BackendError, errors } from '../errors.js';
import type { UserCreateData, UserCreateProgress } from '../jobs/types.js';
import { isUserCreateData } from '../jobs/types.js';
import {
  JOB_ATTRIBUTE,
  ownerUriOf,
  toApiUser,
  toKeycloakUser,
  toSipMapping,
  toWacUser,
  type User,
  type UserSecrets,
  type UserSpec,
} from '../model/users.js';
import { userOfImportRow, type RowCells } from '../imports/columns.js';
import type { WorkerDeps } from './deps.js';
import { failAttempt, isFinalAttempt, isRetryable, readingOnly, secretsGone } from './failures.js';

/**
 * Creates a user in Keycloak, then in wac-core, then its SIP mapping. A step that finds its
 * record already there (409) adopts it when this job made it (the job's id in Keycloak, the
 * Keycloak id in wac-core, the wac-core user as the mapping's owner), so a re-run after a crash
 * never creates anything twice. What each step made is kept in the job's `progress`, written
 * to Redis as the attempt ends, not after each step (three writes of the whole job a user, a
 * tenth of the worker's time, BENCHMARKS.md §1): with the removal of the passwords when it
 * succeeds, before its retry when it fails for a moment, with the undo when it fails for good.
 * (`ranBefore` does not need it: BullMQ counts a job's starts, and a retry by hand marks it.)
 * A job that fails for good deletes what it made, wac-core first.
 */
export async function createUser(
  job: Job<UserCreateData>,
  deps: WorkerDeps,
): Promise<{ user: User }> {
  if (!isUserCreateData(job.data)) {
    throw await failAttempt(job, errors.validation('the job data is not a user.create job'));
  }

  const data = job.data;
  const progress: UserCreateProgress = { ...data.progress };
  if (data.secretsRemoved) {
    // Run again after its passwords were removed (see everythingMade).
    const finished = everythingMade(data, progress);
    if (!finished) throw secretsGone();
    return { user: await readingOnly(job, () => readBack(deps, finished.who, finished.ids)) };
  }
  const cells = data.import?.cells as RowCells | undefined;
  let spec = data.user;

  try {
    const secrets = data.secrets ? deps.secrets.open<UserSecrets>(data.secrets) : {};
    spec ??= userOfImportRow(cells!, secrets);
    const user = await runSteps(job, deps, spec, secrets, progress);
    // Written with the passwords' removal as the run ends (see removeSecrets). A job without
    // passwords writes nothing: run again, it adopts what it made (and needs no password).
    job.data = { ...data, progress: { ...progress } };
    return { user };
  } catch (err) {
    if (isRetryable(err) && !isFinalAttempt(job) && Object.keys(progress).length > 0) {
      // The retry starts from what this attempt made; unwritten (Redis away), it adopts it.
      await job.updateData({ ...data, progress: { ...progress } }).catch(() => undefined);
    }
    const made = spec ?? whoOfCells(cells!);
    throw await failAttempt(job, err, made && (() => undoCreate(job, deps, made, progress)));
  }
}

async function runSteps(
  job: Job<UserCreateData>,
  deps: WorkerDeps,
  spec: UserSpec,
  secrets: UserSecrets,
  progress: UserCreateProgress,
): Promise<User> {
  const { keycloak, wac } = deps;

  const domain = await wac.findDomainByName(spec.attributes.domain);
  if (!domain) throw errors.unknownDomain(spec.attributes.domain);

  if (!progress.keycloakId) {
    progress.keycloakId = await adoptOnConflict(
      () => keycloak.createUser(toKeycloakUser(spec, secrets, job.id!)),
      () => ownKeycloakUserId(job, deps, spec.username),
    );
  }
  const keycloakId = progress.keycloakId;

  if (!progress.wacUserId) {
    progress.wacUserId = await adoptOnConflict(
      async () => (await wac.createUser(toWacUser(spec, domain.id, keycloakId))).id,
      async () => {
        const existing = await wac.findUser(domain.id, spec.username);
        return existing?.externalId === keycloakId ? existing.id : undefined;
      },
    );
  }
  const wacUserId = progress.wacUserId;

  const mapping = toSipMapping(spec, secrets, wacUserId);
  if (mapping && !progress.sipMappingId) {
    // The owner is this job's own wac-core user, so a mapping already there is this job's.
    progress.sipMappingId = await adoptOnConflict(
      async () => (await wac.createSipMapping(mapping)).id,
      async () => (await wac.findSipMapping(mapping.ownerUri))?.id,
    );
  }

  const ids = { domainId: domain.id, keycloakId, wacUserId, mapped: mapping !== undefined };
  return readBack(deps, spec, ids);
}

interface MadeIds {
  domainId?: string;
  keycloakId: string;
  wacUserId: string;
  mapped: boolean;
}

/** The user as the three records now say, for the job's result. */
async function readBack({ keycloak, wac }: WorkerDeps, who: UserSpec, ids: MadeIds): Promise<User> {
  let domainId = ids.domainId;
  if (domainId === undefined) {
    const domain = await wac.findDomainByName(who.attributes.domain);
    if (!domain) throw errors.unknownDomain(who.attributes.domain);
    domainId = domain.id;
  }
  const [keycloakUser, wacUser, sip] = await Promise.all([
    keycloak.getUser(ids.keycloakId),
    wac.findUser(domainId, who.username),
    ids.mapped ? wac.findSipMapping(ownerUriOf(ids.wacUserId)) : undefined,
  ]);
  if (!keycloakUser) throw errors.conflict('the user was deleted while it was being created');
  return toApiUser(keycloakUser, wacUser, sip);
}

/**
 * Whether a job whose passwords were removed as it ended had made every record before: its run
 * ended, but the end was lost (its lock lapsed while Redis failed over, or its worker died
 * between the two writes), and it runs again. Then it only reads the records back and ends as
 * it would have. Answers who and what was made, or nothing when a step that needs a password
 * is still to be done.
 */
function everythingMade(
  data: UserCreateData,
  progress: UserCreateProgress,
): { who: UserSpec; ids: MadeIds } | undefined {
  const cells = data.import?.cells as RowCells | undefined;
  const who = data.user ?? (cells && whoOfCells(cells));
  const mapped = data.user
    ? data.user.attributes.sip_mapping !== undefined
    : Boolean(cells?.sip_username?.trim());
  const { keycloakId, wacUserId, sipMappingId } = progress;
  if (!who || !keycloakId || !wacUserId || (mapped && !sipMappingId)) return undefined;
  return { who, ids: { keycloakId, wacUserId, mapped } };
}

/**
 * Who an import row's job creates when its passwords could not be opened: the undo needs only
 * the name and the domain, as the row's rules make them. None when the cells do not say.
 */
function whoOfCells(cells: RowCells): UserSpec | undefined {
  try {
    return userOfImportRow({ username: cells.username, domain: cells.domain }, {});
  } catch {
    return undefined;
  }
}

/**
 * Runs a create; on a 409, asks `findOwn` for the record this job made earlier and adopts it.
 * A 409 for a record someone else made is a conflict for the client.
 */
async function adoptOnConflict(
  create: () => Promise<string>,
  findOwn: () => Promise<string | undefined>,
): Promise<string> {
  try {
    return await create();
  } catch (err) {
    if (!(err instanceof BackendError) || err.kind !== 'conflict') throw err;

    const own = await findOwn();
    if (own) return own;
    throw err;
  }
}

async function ownKeycloakUserId(job: Job<UserCreateData>, deps: WorkerDeps, username: string) {
  const existing = await deps.keycloak.findByUsername(username);
  return existing?.attributes?.[JOB_ATTRIBUTE]?.[0] === job.id ? existing?.id : undefined;
}

/**
 * Deletes what this job created, newest first. Records a crash kept out of `progress` are
 * found by their marks (the job id in Keycloak, the Keycloak id in wac-core). Answers what it
 * did, or what it left behind, in words for the job's error.
 */
async function undoCreate(
  job: Job<UserCreateData>,
  deps: WorkerDeps,
  spec: UserSpec,
  progress: UserCreateProgress,
): Promise<string> {
  const { keycloak, wac } = deps;
  const removed: string[] = [];
  const left: string[] = [];

  /** True when the record is gone now (removed, or was never there). */
  const remove = async (what: string, step: () => Promise<boolean>) => {
    try {
      if (await step()) removed.push(what);
      return true;
    } catch (err) {
      left.push(what);
      deps.logger.error({ jobId: job.id, err: String(err) }, `undo failed: ${what}`);
      return false;
    }
  };
  // What is still there after the undo: a retry by hand starts again from that, not from
  // records the undo deleted.
  const kept: UserCreateProgress = { ...progress };

  const keycloakId =
    progress.keycloakId ??
    (await lookUp(left, 'a Keycloak user', () => ownKeycloakUserId(job, deps, spec.username)));
  const wacUserId =
    progress.wacUserId ??
    (keycloakId &&
      (await lookUp(left, 'a wac-core user', async () => {
        const domain = await wac.findDomainByName(spec.attributes.domain);
        const found = domain && (await wac.findUser(domain.id, spec.username));
        return found && found.externalId === keycloakId ? found.id : undefined;
      })));

  if (wacUserId) {
    const ownerUri = ownerUriOf(wacUserId);
    const sipGone = await remove(`the SIP mapping of ${ownerUri}`, async () => {
      const mapping = await wac.findSipMapping(ownerUri);
      return mapping ? wac.deleteSipMapping(mapping.id) : false;
    });
    if (sipGone) delete kept.sipMappingId;
    if (await remove(`the wac-core user ${wacUserId}`, () => wac.deleteUser(wacUserId))) {
      delete kept.wacUserId;
    }
  }
  if (keycloakId) {
    const what = `the Keycloak user ${keycloakId}`;
    if (await remove(what, () => keycloak.deleteUser(keycloakId))) delete kept.keycloakId;
  }
  await job.updateData({ ...job.data, progress: kept }).catch(() => undefined);

  if (left.length > 0) return `undo incomplete, left behind: ${left.join(', ')}`;
  return removed.length > 0 ? `undone: removed ${removed.join(', ')}` : '';
}

/** A look-up for the undo; when it fails, what it looked for is counted as left behind. */
async function lookUp(
  left: string[],
  what: string,
  find: () => Promise<string | undefined>,
): Promise<string | undefined> {
  try {
    return await find();
  } catch {
    left.push(`possibly ${what} (it could not be looked up)`);
    return undefined;
  }
}
