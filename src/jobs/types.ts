import type { UserRepresentation } from '../clients/keycloak.js';
import type { WacHtableEntry, WacUser } from '../clients/wac-core.js';
import type { DomainInput, DomainPatch } from '../model/domains.js';
import type { UserPatchSpec, UserSpec } from '../model/users.js';
import type { Ordered } from './gateway.js';

/** What every job carries besides its own fields. */
interface JobBase extends Ordered {
  v: 1;
  /** The API request that asked for the job, to follow it through the logs. */
  requestId?: string;
  /**
   * Set when the job's passwords were removed as a run of it ended, with how that run ended (and
   * why, when it failed): a run after it, its end lost, ends the same way.
   */
  secretsRemoved?: boolean;
  endedAs?: EndedAs;
  failedWith?: string;
}

export type EndedAs = 'succeeded' | 'failed' | 'cancelled';

/** What a user.create has made so far, written as an attempt ends: its retry starts there. */
export interface UserCreateProgress {
  keycloakId?: string;
  wacUserId?: string;
  sipMappingId?: string;
}

/** Set on a job that creates one row of an import. */
export interface ImportRow {
  id: string;
  row: number;
  /** The row's cells as in the file, without secrets: for the error report if it fails. */
  cells: Record<string, string>;
}

export interface UserCreateData extends JobBase {
  /**
   * The user to create. An import row's job has none: it keeps the row's cells (`import`),
   * which the worker turns into the user with the rules that accepted the row. Keeping both
   * made each row's job twice the size, in Redis and in every write of it.
   */
  user?: UserSpec;
  import?: ImportRow;
  /** The user's passwords, sealed with the SecretBox; absent when there are none. */
  secrets?: string;
  progress?: UserCreateProgress;
}

export interface UserUpdateData extends JobBase {
  userId: string;
  patch: UserPatchSpec;
  secrets?: string;
  /** The user as it was before the job's first write, to put back if the job fails for good. */
  before?: { keycloak: UserRepresentation; wac: WacUser };
}

export interface UserDeleteData extends JobBase {
  userId: string;
  /** Set before the first delete: on a re-run, finding nothing means the work is done. */
  started?: boolean;
}

export interface UserLogoutData extends JobBase {
  userId: string;
}

export interface DomainCreateData extends JobBase {
  domain: DomainInput;
  /** Set before the domain is sent to wac-core: a re-run may find its own earlier write. */
  sent?: boolean;
}

export interface DomainUpdateData extends JobBase {
  domainId: string;
  changes: DomainPatch;
}

export interface DomainDeleteData extends JobBase {
  domainId: string;
  started?: boolean;
}

export interface DomainLogoutData extends JobBase {
  domainId: string;
  /** The domain's name: its users carry it in their Keycloak `domain` attribute. */
  domain: string;
  /** How many users of the domain's list are logged out: a re-run goes on from there. */
  cursor?: number;
  /** The id of the user just before the cursor: a re-run checks the list has not moved. */
  after?: string;
}

export interface HtableCreateData extends JobBase {
  entry: WacHtableEntry;
  /** Set before the entry is sent to wac-core: a re-run may find its own earlier write. */
  sent?: boolean;
}

export interface HtableDeleteData extends JobBase {
  name: string;
  /** Set before the delete is sent: on a re-run, finding nothing means the work is done. */
  started?: boolean;
}

type FieldKind = 'string' | 'object';

/**
 * A job's data is input too: processors check it before acting on it. True when `data` is a
 * version-1 job with each named field of the named kind.
 */
export function hasFields(data: unknown, fields: Record<string, FieldKind>): boolean {
  const record = data as Record<string, unknown> | null;
  if (typeof record !== 'object' || record === null || record.v !== 1) return false;
  return Object.entries(fields).every(
    ([name, kind]) => typeof record[name] === kind && record[name] !== null,
  );
}

export function isUserCreateData(data: unknown): data is UserCreateData {
  const d = data as UserCreateData;
  const user =
    hasFields(data, { user: 'object' }) &&
    typeof d.user!.username === 'string' &&
    typeof d.user!.attributes?.domain === 'string';
  const row =
    hasFields(data, { import: 'object' }) &&
    typeof d.import!.cells === 'object' &&
    d.import!.cells !== null;
  return (user || row) && (d.secrets === undefined || typeof d.secrets === 'string');
}

export function isDomainCreateData(data: unknown): data is DomainCreateData {
  const d = data as DomainCreateData;
  return hasFields(data, { domain: 'object' }) && typeof d.domain.domain === 'string';
}

export function isHtableCreateData(data: unknown): data is HtableCreateData {
  const d = data as HtableCreateData;
  return (
    hasFields(data, { entry: 'object' }) &&
    typeof d.entry.name === 'string' &&
    typeof d.entry.value === 'string'
  );
}

export interface ImportCancelData extends JobBase {
  importId: string;
}
