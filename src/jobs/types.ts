import type { DomainInput } from '../model/domains.js';
import type { UserSpec } from '../model/users.js';

/** What a job has done so far, saved after each step so a re-run picks up from there. */
export interface UserCreateProgress {
  keycloakId?: string;
  wacUserId?: string;
  sipMappingId?: string;
}

export interface UserCreateData {
  v: 1;
  user: UserSpec;
  /** The user's passwords, sealed with the SecretBox; absent when there are none. */
  secrets?: string;
  requestId?: string;
  progress?: UserCreateProgress;
}

export interface DomainCreateData {
  v: 1;
  domain: DomainInput;
  requestId?: string;
  /** Set before the domain is sent to wac-core: a re-run may find its own earlier write. */
  sent?: boolean;
}

/** A job's data is input too: the processors check it before acting on it. */
export function isUserCreateData(data: unknown): data is UserCreateData {
  const d = data as UserCreateData;
  return (
    d?.v === 1 &&
    typeof d.user?.username === 'string' &&
    typeof d.user.attributes?.domain === 'string' &&
    (d.secrets === undefined || typeof d.secrets === 'string')
  );
}

export function isDomainCreateData(data: unknown): data is DomainCreateData {
  const d = data as DomainCreateData;
  return d?.v === 1 && typeof d.domain?.domain === 'string';
}
