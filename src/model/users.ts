import Joi from 'joi';

import type { UserRepresentation } from '../clients/keycloak.js';
import type { SipCredential, WacSipMapping, WacUser } from '../clients/wac-core.js';
import { domainName } from './domains.js';

export const MASKED = '********';

export interface SipMappingInput {
  username: string;
  password: string;
  sip_domain?: string;
  sip_auth_proxy?: string;
}

export interface UserInput {
  username: string;
  email?: string;
  enabled?: boolean;
  first_name?: string;
  last_name?: string;
  email_verified?: boolean;
  credentials?: { password: string; temporary?: boolean };
  attributes: {
    domain: string;
    phone_number?: string;
    capabilities?: string[];
    sip_mapping?: SipMappingInput;
  };
}

/** A user as kitter's API shows it: passwords masked, never sent. */
export interface User {
  id: string;
  username: string;
  email: string | null;
  enabled: boolean;
  first_name: string | null;
  last_name: string | null;
  email_verified: boolean;
  attributes: {
    domain: string;
    phone_number?: string;
    capabilities: string[];
    sip_mapping?: {
      username: string;
      password: string;
      sip_domain: string | null;
      sip_auth_proxy: string | null;
    };
  };
}

// Messages are given per rule (`.rule({ message })`), not with `.messages()`: joi merges a
// schema's `.messages()` into the options again on every validation, about a quarter of the
// cost of validating a user (see BENCHMARKS.md, import).

/**
 * Keycloak's default username rules (3–255 characters of Latin letters, digits, `_ . - @`),
 * checked here so a bad name is a 400 before anything is written.
 */
export const username = Joi.string()
  .trim()
  .lowercase()
  .min(3)
  .max(255)
  .pattern(/^[a-z0-9_.@-]+$/)
  .rule({ message: '{{#label}} may hold only letters a-z, digits and the characters _ . - @' });

/**
 * Keycloak's person-name rules: these characters (and control characters such as line breaks)
 * are refused in first and last names, so they are a 400 here rather than a failed job.
 */
const name = Joi.string()
  .trim()
  .max(255)
  // Control characters are refused too, as Keycloak does; the rule is about them.
  // eslint-disable-next-line no-control-regex
  .pattern(/^[^<>&"$%!#?§;*~/\\|^=[\]{}()\x00-\x1f\x7f-\x9f]*$/)
  .rule({
    message:
      '{{#label}} may not hold control characters (line breaks, tabs), braces or any of ' +
      '< > & " $ % ! # ? § ; * ~ / \\ | ^ = [ ] ( )',
  });
const secret = Joi.string().min(1).max(1024);

export const phoneNumber = Joi.string()
  .trim()
  .pattern(/^\+?[0-9]{2,20}$/)
  .rule({ message: '{{#label}} must be digits, optionally after a +' });

const capability = Joi.string()
  .max(64)
  .pattern(/^[+-][a-z0-9][a-z0-9-]*$/)
  .rule({ message: '{{#label}} must look like +chat or -whiteboard' });

export const sipMappingSchema = Joi.object({
  username: Joi.string().trim().min(1).max(255).required(),
  password: secret.required(),
  sip_domain: Joi.string().trim().max(255),
  sip_auth_proxy: Joi.string().trim().max(1024),
});

const email = Joi.string().trim().lowercase().email({ tlds: false }).max(254);
const capabilities = Joi.array().items(capability).max(256).unique();
const credentials = Joi.object({
  password: secret.required(),
  temporary: Joi.boolean(),
});

export const userCreateSchema = Joi.object({
  username: username.required(),
  email,
  enabled: Joi.boolean(),
  first_name: name,
  last_name: name,
  email_verified: Joi.boolean(),
  credentials,
  attributes: Joi.object({
    domain: domainName.required(),
    phone_number: phoneNumber,
    capabilities,
    sip_mapping: sipMappingSchema,
  }).required(),
});

/** The passwords of a user input, kept apart so job data never holds them in clear. */
export interface UserSecrets {
  password?: string;
  sipPassword?: string;
}

/** Job-safe copy of a user input: the same fields, the passwords taken out. */
export type UserSpec = Omit<UserInput, 'credentials' | 'attributes'> & {
  credentials?: { temporary?: boolean };
  attributes: Omit<UserInput['attributes'], 'sip_mapping'> & {
    sip_mapping?: Omit<SipMappingInput, 'password'>;
  };
};

/** A change to a user, as `PATCH /users/{id}` takes it; `null` removes a field. */
export interface UserPatch {
  username?: string;
  email?: string | null;
  enabled?: boolean;
  first_name?: string | null;
  last_name?: string | null;
  email_verified?: boolean;
  credentials?: { password: string; temporary?: boolean };
  attributes?: {
    domain?: string;
    phone_number?: string | null;
    capabilities?: string[];
    sip_mapping?: SipMappingInput | null;
  };
}

/** Job-safe copy of a user patch: the passwords taken out. */
export type UserPatchSpec = Omit<UserPatch, 'credentials' | 'attributes'> & {
  credentials?: { temporary?: boolean };
  attributes?: Omit<NonNullable<UserPatch['attributes']>, 'sip_mapping'> & {
    sip_mapping?: Omit<SipMappingInput, 'password'> | null;
  };
};

export const userPatchSchema = Joi.object({
  // Deprecated in the reference and ignored: the id is the one in the path.
  id: Joi.any().strip(),
  username,
  email: email.allow(null),
  enabled: Joi.boolean(),
  first_name: name.allow(null),
  last_name: name.allow(null),
  email_verified: Joi.boolean(),
  credentials: credentials,
  attributes: Joi.object({
    domain: domainName,
    phone_number: phoneNumber.allow(null),
    capabilities,
    sip_mapping: sipMappingSchema.allow(null),
  }).min(1),
})
  .min(1)
  .messages({ 'object.min': 'the request body must change at least one field' });

export function splitSecrets(input: UserInput): { spec: UserSpec; secrets: UserSecrets } {
  return takeSecrets(input) as { spec: UserSpec; secrets: UserSecrets };
}

export function splitPatchSecrets(input: UserPatch): { spec: UserPatchSpec; secrets: UserSecrets } {
  return takeSecrets(input) as { spec: UserPatchSpec; secrets: UserSecrets };
}

/**
 * Takes the user password and the SIP password out of a create or a patch. Copies field by
 * field: object rest (`{ a, ...rest }`) is several times slower, and this runs for every row of
 * an import.
 */
function takeSecrets(input: UserInput | UserPatch): { spec: object; secrets: UserSecrets } {
  const secrets: UserSecrets = {};
  const spec: Record<string, unknown> = {};

  for (const [field, value] of Object.entries(input)) {
    if (field === 'credentials') {
      if (!value) continue;
      const { password, temporary } = value as { password?: string; temporary?: boolean };
      spec.credentials = { temporary };
      secrets.password = password;
    } else if (field === 'attributes') {
      if (value) spec.attributes = publicAttributes(value as Record<string, unknown>, secrets);
    } else {
      spec[field] = value;
    }
  }
  return { spec, secrets };
}

function publicAttributes(attributes: Record<string, unknown>, secrets: UserSecrets) {
  const kept: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(attributes)) {
    if (field === 'sip_mapping' && value === undefined) continue;
    if (field === 'sip_mapping' && value !== null) {
      const sip: Record<string, unknown> = {};
      for (const [key, part] of Object.entries(value as Record<string, unknown>)) {
        if (key === 'password') secrets.sipPassword = part as string | undefined;
        else sip[key] = part;
      }
      kept.sip_mapping = sip;
    } else {
      kept[field] = value;
    }
  }
  return kept;
}

/** Attribute that marks a Keycloak user with the job that created it, to adopt it on retry. */
export const JOB_ATTRIBUTE = 'kitter_job';

export function toKeycloakUser(
  spec: UserSpec,
  secrets: UserSecrets,
  jobId: string,
): UserRepresentation {
  const attributes: Record<string, string[]> = {
    domain: [spec.attributes.domain],
    [JOB_ATTRIBUTE]: [jobId],
  };
  if (spec.attributes.phone_number) attributes.phone_number = [spec.attributes.phone_number];

  const user: UserRepresentation = {
    username: spec.username,
    enabled: spec.enabled ?? true,
    emailVerified: spec.email_verified ?? false,
    attributes,
  };
  if (spec.email !== undefined) user.email = spec.email;
  if (spec.first_name !== undefined) user.firstName = spec.first_name;
  if (spec.last_name !== undefined) user.lastName = spec.last_name;
  if (secrets.password !== undefined) {
    user.credentials = [
      {
        type: 'password',
        value: secrets.password,
        temporary: spec.credentials?.temporary ?? false,
      },
    ];
  }
  return user;
}

export function toWacUser(spec: UserSpec, domainId: string, keycloakId: string): Partial<WacUser> {
  const displayName = [spec.first_name, spec.last_name].filter(Boolean).join(' ');
  return {
    domain: domainId,
    username: spec.username,
    email: spec.email ?? null,
    displayName: displayName || null,
    role: 'user',
    capabilities: spec.attributes.capabilities ?? [],
    mobilePhone: spec.attributes.phone_number ? [spec.attributes.phone_number] : [],
    externalId: keycloakId,
  };
}

export function toSipMapping(
  spec: UserSpec,
  secrets: UserSecrets,
  wacUserId: string,
): Omit<WacSipMapping, 'id'> | undefined {
  const sip = spec.attributes.sip_mapping;
  if (!sip) return undefined;

  return {
    ownerUri: ownerUriOf(wacUserId),
    credential: sipCredentialOf(sip, secrets, spec.attributes.domain),
  };
}

function sipCredentialOf(
  sip: Omit<SipMappingInput, 'password'>,
  secrets: UserSecrets,
  domain: string,
): SipCredential {
  return {
    username: sip.username,
    password: secrets.sipPassword ?? '',
    domain: sip.sip_domain ?? domain,
    authProxy: sip.sip_auth_proxy ?? '',
  };
}

/** Writes on one user are ordered by its username, which Keycloak keeps unique and lower-case. */
export function orderKeyOfUser(username: string): string {
  return `user:${username.toLowerCase()}`;
}

export function ownerUriOf(wacUserId: string): string {
  return `wac-user:${wacUserId}`;
}

/** The user as the API answers it, from the records of both systems. */
export function toApiUser(
  keycloak: UserRepresentation,
  wac: WacUser | undefined,
  sip: WacSipMapping | undefined,
): User {
  const attribute = (key: string) => keycloak.attributes?.[key]?.[0];
  const user: User = {
    id: keycloak.id ?? '',
    username: keycloak.username ?? '',
    email: keycloak.email ?? null,
    enabled: keycloak.enabled ?? true,
    first_name: keycloak.firstName ?? null,
    last_name: keycloak.lastName ?? null,
    email_verified: keycloak.emailVerified ?? false,
    attributes: {
      domain: attribute('domain') ?? '',
      capabilities: wac?.capabilities ?? [],
    },
  };

  const phone = attribute('phone_number');
  if (phone !== undefined) user.attributes.phone_number = phone;
  if (sip) {
    user.attributes.sip_mapping = {
      username: sip.credential.username,
      password: MASKED,
      sip_domain: sip.credential.domain,
      sip_auth_proxy: sip.credential.authProxy,
    };
  }
  return user;
}

/**
 * The whole Keycloak user after a patch: Keycloak's PUT drops attributes (and, since 24.0.4,
 * email and names) that the body leaves out, so the patch is applied to the user as read.
 */
export function patchKeycloakUser(
  current: UserRepresentation,
  patch: UserPatchSpec,
): UserRepresentation {
  const next: UserRepresentation = { ...current, attributes: { ...current.attributes } };
  const attributes = next.attributes!;
  const set = <K extends keyof UserRepresentation>(key: K, value: unknown) => {
    if (value === undefined) return;
    if (value === null) delete next[key];
    else next[key] = value as UserRepresentation[K];
  };

  set('username', patch.username);
  set('email', patch.email);
  set('enabled', patch.enabled);
  set('firstName', patch.first_name);
  set('lastName', patch.last_name);
  set('emailVerified', patch.email_verified);

  const changes = patch.attributes ?? {};
  if (changes.domain !== undefined) attributes.domain = [changes.domain];
  if (changes.phone_number === null) delete attributes.phone_number;
  else if (changes.phone_number !== undefined) attributes.phone_number = [changes.phone_number];
  return next;
}

/** The wac-core fields a patch changes, from the patched Keycloak user. */
export function patchWacUser(
  patched: UserRepresentation,
  patch: UserPatchSpec,
  domainId: string,
): Partial<WacUser> {
  const displayName = [patched.firstName, patched.lastName].filter(Boolean).join(' ');
  const changes: Partial<WacUser> = {
    domain: domainId,
    username: patched.username,
    email: patched.email ?? null,
    displayName: displayName || null,
  };
  const attributes = patch.attributes ?? {};
  if (attributes.capabilities) changes.capabilities = attributes.capabilities;
  if (attributes.phone_number !== undefined) {
    changes.mobilePhone = attributes.phone_number ? [attributes.phone_number] : [];
  }
  return changes;
}

/** The SIP credential a patch asks for, or null when it removes the mapping. */
export function patchedSipCredential(
  patch: UserPatchSpec,
  secrets: UserSecrets,
  domain: string,
): SipCredential | null | undefined {
  const sip = patch.attributes?.sip_mapping;
  if (sip === undefined || sip === null) return sip;
  return sipCredentialOf(sip, secrets, domain);
}
