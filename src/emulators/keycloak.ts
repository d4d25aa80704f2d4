import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';

import Router from '@koa/router';
import type { JWTPayload } from 'jose';
import Koa from 'koa';

import { Faults } from './faults.js';
import { SigningKeys } from './jwt.js';
import { CallLog, listen, readJson, type ListenOptions, type RunningServer } from './server.js';

// ---------------------------------------------------------------------------------------------
// Public types

export interface EmulatedClient {
  clientId: string;
  clientSecret: string;
  /**
   * realm-management roles of its service account; default manage-users, view-users and
   * query-users
   */
  serviceAccountRoles?: string[];
}

/** Realm settings that change how the admin API answers; `configure()` changes them live. */
export interface RealmSettings {
  /** Lifetime of access tokens; Keycloak's default outside master is 300. */
  tokenLifetimeSeconds: number;
  /**
   * DISABLED drops attributes silently on create and update (201/204 all the same), as
   * Keycloak 24+ does for attributes the user profile does not declare.
   */
  unmanagedAttributePolicy: 'ENABLED' | 'DISABLED';
  /** false: a PUT that changes the username gets 400 error-user-attribute-read-only. */
  editUsernameAllowed: boolean;
  duplicateEmailsAllowed: boolean;
  /** 0: no password policy. */
  passwordMinLength: number;
}

export interface KeycloakEmulatorOptions extends ListenOptions, Partial<RealmSettings> {
  /** default 'quobis' */
  realm?: string;
  clients: EmulatedClient[];
}

/** A stored user, as the admin API's full representation holds it (never the password). */
export interface KeycloakUser {
  id: string;
  username: string;
  firstName?: string;
  lastName?: string;
  email?: string;
  emailVerified: boolean;
  /** Always present here (empty when none); the HTTP representation leaves it out when empty. */
  attributes: Record<string, string[]>;
  createdTimestamp: number;
  enabled: boolean;
  requiredActions: string[];
}

export interface IssueTokenClaims {
  /** default 'test-user'; a stored user with that username lends its id as `sub` */
  username?: string;
  /** default the realm's default roles */
  realmRoles?: string[];
  /** client id → roles, e.g. `{ 'realm-management': ['view-users'] }` */
  clientRoles?: Record<string, string[]>;
  /** default the realm's token lifetime; 0 or less gives an already expired token */
  expiresInSeconds?: number;
  /** `azp`; default the first configured client */
  clientId?: string;
  /** Extra claims merged in last (they win over the computed ones). */
  claims?: Record<string, unknown>;
}

/** The claims of an access token this emulator signs. */
export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  jti: string;
  iat: number;
  exp: number;
  typ: 'Bearer';
  azp: string;
  preferred_username: string;
  realm_access: { roles: string[] };
  resource_access?: Record<string, { roles: string[] }>;
  scope: string;
}

export type SeedUser = Partial<KeycloakUser> & { username: string; password?: string };

export interface KeycloakEmulator extends RunningServer {
  readonly realm: string;
  /** `${url}/realms/${realm}` */
  readonly issuer: string;
  readonly faults: Faults;
  readonly calls: CallLog;
  /** The settings in force now (a copy). */
  readonly settings: RealmSettings;
  /** Changes realm settings live; `reset()` puts back the ones given at start. */
  configure(changes: Partial<RealmSettings>): void;
  /** A signed access token for a test user, with chosen roles (realm roles and client roles). */
  issueToken(claims?: IssueTokenClaims): Promise<string>;
  /** True if the token is one this emulator signed, unexpired and not revoked. */
  verifyToken(token: string): Promise<boolean>;
  /** The claims of a token `verifyToken` accepts; undefined otherwise. */
  verifyTokenClaims(token: string): Promise<AccessTokenClaims | undefined>;
  /** Makes every token issued so far invalid, as if they had all expired. */
  expireAllTokens(): void;
  /**
   * Adds a new signing key that signs every token from now on, and returns its `kid`. The older
   * keys stay in the JWKS and keep verifying unless `keepPrevious` is false.
   */
  rotateSigningKey(options?: { keepPrevious?: boolean }): Promise<string>;
  /** Deep copies of the stored users, sorted by username. */
  users(): KeycloakUser[];
  /** True if the user has a password and it is this one. */
  checkPassword(userId: string, password: string): boolean;
  /** How many times POST /users/{id}/logout was called for this user id. */
  logoutCount(userId: string): number;
  /**
   * Seeds users directly, with the same rules as create (throws on the first broken or
   * duplicate user, storing none of the batch); returns the ids in order.
   */
  seedUsers(users: SeedUser[]): string[];
  /** Users, logouts, calls, faults and settings back to how they were at start. */
  reset(): void;
}

// ---------------------------------------------------------------------------------------------
// Errors: every failure is thrown as a KeycloakError and written out by one middleware

class KeycloakError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

interface FieldError {
  field: string;
  errorMessage: string;
  params: unknown[];
}

const UNAUTHORIZED = () => new KeycloakError(401, { error: 'HTTP 401 Unauthorized' });
const FORBIDDEN = () => new KeycloakError(403, { error: 'HTTP 403 Forbidden' });
const NOT_FOUND = () => new KeycloakError(404, { error: 'HTTP 404 Not Found' });
const USER_NOT_FOUND = () => new KeycloakError(404, { error: 'User not found' });
const BAD_BODY = () => new KeycloakError(400, { error: 'unknown_error' });
const USERNAME_TAKEN = () =>
  new KeycloakError(409, { errorMessage: 'User exists with same username' });
const EMAIL_TAKEN = () => new KeycloakError(409, { errorMessage: 'User exists with same email' });

/** One error comes back bare; several come back as a list, as Keycloak's ErrorResponse does. */
function validationFailure(errors: FieldError[]): KeycloakError {
  if (errors.length === 1) return new KeycloakError(400, errors[0]);
  return new KeycloakError(400, { errors });
}

function oauthError(status: number, error: string, description: string): KeycloakError {
  return new KeycloakError(status, { error, error_description: description });
}

// ---------------------------------------------------------------------------------------------
// Request bodies

interface CredentialInput {
  type?: string;
  value?: string;
  temporary?: boolean;
}

/** A user body as sent; `null` counts as absent, the way Keycloak reads its representation. */
interface UserInput {
  username?: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  enabled?: boolean;
  emailVerified?: boolean;
  attributes?: Record<string, string[]>;
  requiredActions?: string[];
  credentials?: CredentialInput[];
}

/** Properties of Keycloak's UserRepresentation; any other one fails JSON binding there. */
const KNOWN_USER_PROPERTIES = new Set([
  'id',
  'username',
  'firstName',
  'lastName',
  'email',
  'emailVerified',
  'attributes',
  'userProfileMetadata',
  'self',
  'origin',
  'createdTimestamp',
  'enabled',
  'totp',
  'federationLink',
  'serviceAccountClientId',
  'credentials',
  'disableableCredentialTypes',
  'requiredActions',
  'federatedIdentities',
  'realmRoles',
  'clientRoles',
  'clientConsents',
  'notBefore',
  'applicationRoles',
  'socialLinks',
  'groups',
  'access',
]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw BAD_BODY();
  return value;
}

function optionalBoolean(body: Record<string, unknown>, key: string): boolean | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw BAD_BODY();
  return value;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function parseAttributes(value: unknown): Record<string, string[]> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isPlainObject(value)) throw BAD_BODY();

  const attributes: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(value)) {
    if (!isStringArray(values)) throw BAD_BODY();
    attributes[name] = [...values];
  }
  return attributes;
}

function parseCredential(value: unknown): CredentialInput {
  if (!isPlainObject(value)) throw BAD_BODY();
  const credential: CredentialInput = {
    type: optionalString(value, 'type'),
    value: optionalString(value, 'value'),
    temporary: optionalBoolean(value, 'temporary'),
  };
  return credential;
}

function parseUserBody(body: unknown): UserInput {
  if (!isPlainObject(body)) throw BAD_BODY();
  if (Object.keys(body).some((key) => !KNOWN_USER_PROPERTIES.has(key))) throw BAD_BODY();

  const requiredActions = body.requiredActions;
  if (requiredActions != null && !isStringArray(requiredActions)) throw BAD_BODY();
  const credentials = body.credentials;
  if (credentials != null && !Array.isArray(credentials)) throw BAD_BODY();

  return {
    username: optionalString(body, 'username'),
    email: optionalString(body, 'email'),
    firstName: optionalString(body, 'firstName'),
    lastName: optionalString(body, 'lastName'),
    enabled: optionalBoolean(body, 'enabled'),
    emailVerified: optionalBoolean(body, 'emailVerified'),
    attributes: parseAttributes(body.attributes),
    requiredActions: requiredActions == null ? undefined : [...requiredActions],
    credentials: credentials == null ? undefined : credentials.map(parseCredential),
  };
}

// ---------------------------------------------------------------------------------------------
// Validation, as Keycloak's default user profile does it

// Keycloak refuses whitespace, markup characters and (through its homograph check) anything
// that is not plain ASCII; what is left in practice is letters, digits and these four.
const USERNAME_CHARACTERS = /^[a-z0-9_.@-]+$/;

// The characters Keycloak's person-name validator refuses in first and last names.
const PERSON_NAME_PROHIBITED = /[<>&"$%!#?§;*~/\\|^=[\]{}()\p{Cc}]/u;

const EMAIL_LOCAL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const EMAIL_DOMAIN_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function isValidEmail(email: string): boolean {
  const at = email.lastIndexOf('@');
  if (at <= 0 || at === email.length - 1) return false;

  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local.length > 64 || !EMAIL_LOCAL.test(local)) return false;
  return domain.split('.').every((label) => EMAIL_DOMAIN_LABEL.test(label));
}

function usernameErrors(username: string): FieldError[] {
  const errors: FieldError[] = [];
  if (username.length < 3 || username.length > 255) {
    errors.push({
      field: 'username',
      errorMessage: 'error-invalid-length',
      params: ['username', 3, 255],
    });
  }
  if (!USERNAME_CHARACTERS.test(username)) {
    errors.push({
      field: 'username',
      errorMessage: 'error-username-invalid-character',
      params: ['username', username],
    });
  }
  return errors;
}

function emailErrors(email: string | undefined): FieldError[] {
  if (email === undefined || isValidEmail(email)) return [];
  return [{ field: 'email', errorMessage: 'error-invalid-email', params: ['email', email] }];
}

function personNameErrors(field: string, value: string | undefined): FieldError[] {
  if (value === undefined || !PERSON_NAME_PROHIBITED.test(value)) return [];
  return [{ field, errorMessage: 'error-person-name-invalid-character', params: [field, value] }];
}

function missingUsername(): KeycloakError {
  return validationFailure([
    { field: 'username', errorMessage: 'error-user-attribute-required', params: ['username'] },
  ]);
}

/** Empty means "no value" for these fields, as in Keycloak's user profile. */
function blankToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

// ---------------------------------------------------------------------------------------------
// Passwords: a salted hash only, never the value

interface PasswordHash {
  salt: Buffer;
  hash: Buffer;
}

function hashPassword(password: string, salt: Buffer = randomBytes(16)): PasswordHash {
  const hash = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return { salt, hash };
}

function passwordMatches(stored: PasswordHash, password: string): boolean {
  return timingSafeEqual(stored.hash, hashPassword(password, stored.salt).hash);
}

// ---------------------------------------------------------------------------------------------
// The user store: a Map per lookup and one array kept sorted by username for listing

interface StoredUser {
  user: KeycloakUser;
  password?: PasswordHash;
}

interface UserFilter {
  /** An index hit that narrows the candidates; absent: every user, in username order. */
  only?: StoredUser[];
  test(user: KeycloakUser): boolean;
}

const UPDATE_PASSWORD = 'UPDATE_PASSWORD';

function compareUsernames(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

function copyUser(user: KeycloakUser): KeycloakUser {
  const attributes: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(user.attributes)) attributes[name] = [...values];
  return { ...user, attributes, requiredActions: [...user.requiredActions] };
}

class UserStore {
  private readonly byId = new Map<string, StoredUser>();
  private readonly byUsername = new Map<string, StoredUser>();
  private readonly byEmail = new Map<string, Set<StoredUser>>();
  private sorted: StoredUser[] = [];

  constructor(private readonly settings: () => RealmSettings) {}

  get(id: string): StoredUser | undefined {
    return this.byId.get(id);
  }

  all(): StoredUser[] {
    return this.sorted;
  }

  byUsernameLookup(username: string): StoredUser | undefined {
    return this.byUsername.get(username.toLowerCase());
  }

  byEmailLookup(email: string): StoredUser[] {
    const found = this.byEmail.get(email.toLowerCase());
    if (!found) return [];
    return [...found].sort((a, b) => compareUsernames(a.user.username, b.user.username));
  }

  clear(): void {
    this.byId.clear();
    this.byUsername.clear();
    this.byEmail.clear();
    this.sorted = [];
  }

  /**
   * Checks a new user against the rules and the store and builds it, without storing it.
   * `pending` holds users of the same batch not stored yet, so a seed batch can't collide
   * with itself.
   */
  prepare(input: UserInput, pending?: Map<string, StoredUser>): StoredUser {
    const settings = this.settings();
    const username = input.username?.toLowerCase();
    if (username === undefined || username.trim() === '') throw missingUsername();
    if (this.byUsername.has(username) || pending?.has(`u:${username}`)) throw USERNAME_TAKEN();

    const email = blankToUndefined(input.email)?.toLowerCase();
    if (email !== undefined && !settings.duplicateEmailsAllowed) {
      if (this.byEmail.has(email) || pending?.has(`e:${email}`)) throw EMAIL_TAKEN();
    }

    const firstName = blankToUndefined(input.firstName);
    const lastName = blankToUndefined(input.lastName);
    const errors = [
      ...usernameErrors(username),
      ...emailErrors(email),
      ...personNameErrors('firstName', firstName),
      ...personNameErrors('lastName', lastName),
    ];
    if (errors.length > 0) throw validationFailure(errors);

    const requiredActions = [...(input.requiredActions ?? [])];
    const password = this.passwordFrom(input.credentials, requiredActions);
    const attributes =
      settings.unmanagedAttributePolicy === 'ENABLED' ? (input.attributes ?? {}) : {};

    const user: KeycloakUser = {
      id: randomUUID(),
      username,
      emailVerified: input.emailVerified ?? false,
      attributes,
      createdTimestamp: Date.now(),
      // Keycloak leaves a user created over the admin API disabled unless told otherwise.
      enabled: input.enabled ?? false,
      requiredActions,
    };
    if (firstName !== undefined) user.firstName = firstName;
    if (lastName !== undefined) user.lastName = lastName;
    if (email !== undefined) user.email = email;
    return { user, password };
  }

  insert(stored: StoredUser): void {
    this.index(stored);
    const at = this.position(stored.user.username);
    this.sorted.splice(at, 0, stored);
  }

  /** Stores many prepared users at once: one sort instead of one splice each. */
  insertMany(batch: StoredUser[]): void {
    for (const stored of batch) this.index(stored);
    this.sorted.push(...batch);
    this.sorted.sort((a, b) => compareUsernames(a.user.username, b.user.username));
  }

  /** Applies a PUT body with Keycloak's full-replace rules. */
  update(stored: StoredUser, input: UserInput): void {
    const settings = this.settings();
    const current = stored.user;
    const replacing = input.attributes !== undefined;

    let username = current.username;
    if (input.username !== undefined) {
      const asked = input.username.toLowerCase();
      if (asked.trim() === '') throw missingUsername();
      if (asked !== current.username && !settings.editUsernameAllowed) {
        throw validationFailure([
          {
            field: 'username',
            errorMessage: 'error-user-attribute-read-only',
            params: ['username'],
          },
        ]);
      }
      username = asked;
    }
    if (username !== current.username && this.byUsername.has(username)) throw USERNAME_TAKEN();

    // With `attributes` in the body, Keycloak (>= 24.0.4) reads the body as the whole user:
    // email and names left out are removed. Without it, fields left out stay as they are.
    const email = this.nextValue(current.email, input.email, replacing)?.toLowerCase();
    const firstName = this.nextValue(current.firstName, input.firstName, replacing);
    const lastName = this.nextValue(current.lastName, input.lastName, replacing);

    if (email !== undefined && email !== current.email && !settings.duplicateEmailsAllowed) {
      const owners = this.byEmail.get(email);
      if (owners && [...owners].some((o) => o !== stored)) throw EMAIL_TAKEN();
    }

    const errors = [
      ...(username !== current.username ? usernameErrors(username) : []),
      ...(email !== current.email ? emailErrors(email) : []),
      ...personNameErrors('firstName', firstName),
      ...personNameErrors('lastName', lastName),
    ];
    if (errors.length > 0) throw validationFailure(errors);

    this.unindex(stored);
    if (username !== current.username) this.sorted.splice(this.position(current.username), 1);

    const next: KeycloakUser = {
      id: current.id,
      username,
      emailVerified: input.emailVerified ?? current.emailVerified,
      attributes: current.attributes,
      createdTimestamp: current.createdTimestamp,
      enabled: input.enabled ?? current.enabled,
      requiredActions: input.requiredActions ?? current.requiredActions,
    };
    if (firstName !== undefined) next.firstName = firstName;
    if (lastName !== undefined) next.lastName = lastName;
    if (email !== undefined) next.email = email;
    if (replacing && settings.unmanagedAttributePolicy === 'ENABLED') {
      next.attributes = input.attributes ?? {};
    }

    stored.user = next;
    this.index(stored);
    if (username !== current.username) {
      this.sorted.splice(this.position(username), 0, stored);
    }
  }

  delete(stored: StoredUser): void {
    this.unindex(stored);
    this.sorted.splice(this.position(stored.user.username), 1);
  }

  setPassword(stored: StoredUser, credential: CredentialInput): void {
    const requiredActions = [...stored.user.requiredActions];
    const password = this.passwordFrom([credential], requiredActions);
    if (!password) throw oauthError(400, 'missing_value', 'Password value is missing');
    stored.password = password;
    stored.user = { ...stored.user, requiredActions };
  }

  /**
   * Hashes the password among the credentials after checking the policy; a temporary one adds
   * the UPDATE_PASSWORD required action and a permanent one takes it away.
   */
  private passwordFrom(
    credentials: CredentialInput[] | undefined,
    requiredActions: string[],
  ): PasswordHash | undefined {
    const credential = credentials?.find((c) => (c.type ?? 'password') === 'password');
    if (!credential) return undefined;

    const value = credential.value;
    if (value === undefined || value === '') {
      throw oauthError(400, 'missing_value', 'Password value is missing');
    }
    const minLength = this.settings().passwordMinLength;
    if ([...value].length < minLength) {
      throw oauthError(
        400,
        'invalidPasswordMinLengthMessage',
        `Invalid password: minimum length ${minLength}.`,
      );
    }

    const at = requiredActions.indexOf(UPDATE_PASSWORD);
    if (credential.temporary === true && at < 0) requiredActions.push(UPDATE_PASSWORD);
    if (credential.temporary !== true && at >= 0) requiredActions.splice(at, 1);
    return hashPassword(value);
  }

  private nextValue(
    current: string | undefined,
    given: string | undefined,
    replacing: boolean,
  ): string | undefined {
    if (given !== undefined) return blankToUndefined(given);
    return replacing ? undefined : current;
  }

  private index(stored: StoredUser): void {
    const { user } = stored;
    this.byId.set(user.id, stored);
    this.byUsername.set(user.username, stored);
    if (user.email === undefined) return;

    let owners = this.byEmail.get(user.email);
    if (!owners) {
      owners = new Set();
      this.byEmail.set(user.email, owners);
    }
    owners.add(stored);
  }

  private unindex(stored: StoredUser): void {
    const { user } = stored;
    this.byId.delete(user.id);
    this.byUsername.delete(user.username);
    if (user.email === undefined) return;

    const owners = this.byEmail.get(user.email);
    owners?.delete(stored);
    if (owners?.size === 0) this.byEmail.delete(user.email);
  }

  /** Binary search: where this username sits (or would sit) in the sorted array. */
  private position(username: string): number {
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.sorted[mid].user.username < username) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}

// ---------------------------------------------------------------------------------------------
// Search: the query parameters of GET /users and GET /users/count

type Query = Record<string, string | undefined>;

function flattenQuery(query: Record<string, string | string[] | undefined>): Query {
  const flat: Query = {};
  for (const [key, value] of Object.entries(query)) {
    flat[key] = Array.isArray(value) ? value[0] : value;
  }
  return flat;
}

function parseBoolean(value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  return value.toLowerCase() === 'true';
}

/** JAX-RS answers 404 when a query parameter does not convert to its Java type. */
function parseInteger(value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  if (!/^[-+]?\d+$/.test(value)) throw NOT_FOUND();
  return Number(value);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function lower(value: string | undefined): string | undefined {
  return value?.toLowerCase();
}

/**
 * One word of `search`: `"word"` is an exact match, otherwise a prefix match in which `*`
 * stands for anything (so `*word` finds it anywhere), on username, email and both names.
 */
function searchWord(word: string): (user: KeycloakUser) => boolean {
  if (word.length >= 2 && word.startsWith('"') && word.endsWith('"')) {
    const exact = word.slice(1, -1);
    return (u) =>
      u.username === exact ||
      u.email === exact ||
      lower(u.firstName) === exact ||
      lower(u.lastName) === exact;
  }

  const pattern = new RegExp(`^${word.split('*').map(escapeRegExp).join('.*')}`, 's');
  const hit = (value: string | undefined) => value !== undefined && pattern.test(value);
  return (u) =>
    hit(u.username) || hit(u.email) || hit(lower(u.firstName)) || hit(lower(u.lastName));
}

/**
 * Parses `q`: `key:value` pairs separated by spaces; a key or value may be double-quoted (with
 * `\"` inside) to hold spaces or colons; words without a colon are skipped.
 */
export function parseSearchQuery(q: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c);
  let i = 0;

  const readPart = (stopAtColon: boolean): string => {
    let out = '';
    if (q[i] === '"') {
      i++;
      while (i < q.length && q[i] !== '"') {
        if (q[i] === '\\' && i + 1 < q.length) i++;
        out += q[i];
        i++;
      }
      i++;
      return out;
    }
    while (i < q.length && !isSpace(q[i]) && !(stopAtColon && q[i] === ':')) {
      out += q[i];
      i++;
    }
    return out;
  };

  while (i < q.length) {
    if (isSpace(q[i])) {
      i++;
      continue;
    }
    const key = readPart(true);
    if (q[i] !== ':') {
      while (i < q.length && !isSpace(q[i])) i++;
      continue;
    }
    i++;
    const value = readPart(false);
    if (key !== '') pairs.push([key, value]);
  }
  return pairs;
}

/**
 * Builds the filter Keycloak applies: `search` (with `enabled`) wins over every other filter;
 * otherwise the field filters, `q` attribute pairs and flags all have to match.
 */
function buildFilter(store: UserStore, query: Query): UserFilter {
  const enabled = parseBoolean(query.enabled);
  const enabledOk = (u: KeycloakUser) => enabled === undefined || u.enabled === enabled;

  const search = query.search;
  if (search !== undefined) {
    if (search.startsWith('id:')) {
      const found = store.get(search.slice(3).trim());
      return { only: found ? [found] : [], test: () => true };
    }
    const words = search.trim().toLowerCase().split(/\s+/).map(searchWord);
    return { test: (u) => enabledOk(u) && words.every((matches) => matches(u)) };
  }

  const exact = parseBoolean(query.exact) === true;
  const tests: Array<(u: KeycloakUser) => boolean> = [enabledOk];
  let only: StoredUser[] | undefined;

  const field = (name: 'username' | 'email' | 'firstName' | 'lastName') => {
    const wanted = query[name]?.toLowerCase();
    if (wanted === undefined) return;
    if (exact) tests.push((u) => lower(u[name]) === wanted);
    else tests.push((u) => lower(u[name])?.includes(wanted) === true);
  };
  field('username');
  field('email');
  field('firstName');
  field('lastName');

  // Exact username or email lookups go through the index instead of a scan.
  if (exact && query.username !== undefined) {
    const found = store.byUsernameLookup(query.username);
    only = found ? [found] : [];
  } else if (exact && query.email !== undefined) {
    only = store.byEmailLookup(query.email);
  }

  const emailVerified = parseBoolean(query.emailVerified);
  if (emailVerified !== undefined) tests.push((u) => u.emailVerified === emailVerified);

  // Attribute values match whole and case-insensitively, unless exact=false asks for a part.
  const attributeExact = parseBoolean(query.exact) !== false;
  for (const [name, value] of parseSearchQuery(query.q ?? '')) {
    const wanted = value.toLowerCase();
    tests.push((u) =>
      (u.attributes[name] ?? []).some((v) =>
        attributeExact ? v.toLowerCase() === wanted : v.toLowerCase().includes(wanted),
      ),
    );
  }

  return { only, test: (u) => tests.every((t) => t(u)) };
}

function findUsers(store: UserStore, filter: UserFilter, first: number, max: number) {
  const found: StoredUser[] = [];
  let skipped = 0;
  for (const stored of filter.only ?? store.all()) {
    if (max >= 0 && found.length >= max) break;
    if (!filter.test(stored.user)) continue;
    if (skipped < first) {
      skipped++;
      continue;
    }
    found.push(stored);
  }
  return found;
}

function countUsers(store: UserStore, filter: UserFilter): number {
  let count = 0;
  for (const stored of filter.only ?? store.all()) {
    if (filter.test(stored.user)) count++;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Representations

interface Access {
  manageGroupMembership: boolean;
  view: boolean;
  mapRoles: boolean;
  impersonate: boolean;
  manage: boolean;
}

function briefRepresentation(user: KeycloakUser): Record<string, unknown> {
  const rep: Record<string, unknown> = { id: user.id, username: user.username };
  if (user.firstName !== undefined) rep.firstName = user.firstName;
  if (user.lastName !== undefined) rep.lastName = user.lastName;
  if (user.email !== undefined) rep.email = user.email;
  rep.emailVerified = user.emailVerified;
  rep.createdTimestamp = user.createdTimestamp;
  rep.enabled = user.enabled;
  return rep;
}

function fullRepresentation(user: KeycloakUser, access: Access): Record<string, unknown> {
  const rep: Record<string, unknown> = { id: user.id, username: user.username };
  if (user.firstName !== undefined) rep.firstName = user.firstName;
  if (user.lastName !== undefined) rep.lastName = user.lastName;
  if (user.email !== undefined) rep.email = user.email;
  rep.emailVerified = user.emailVerified;
  if (Object.keys(user.attributes).length > 0) rep.attributes = copyUser(user).attributes;
  rep.createdTimestamp = user.createdTimestamp;
  rep.enabled = user.enabled;
  rep.totp = false;
  rep.disableableCredentialTypes = [];
  rep.requiredActions = [...user.requiredActions];
  rep.notBefore = 0;
  rep.access = access;
  return rep;
}

// ---------------------------------------------------------------------------------------------
// The emulator

const DEFAULT_SERVICE_ACCOUNT_ROLES = ['manage-users', 'view-users', 'query-users'];
const READ_ROLES = ['view-users', 'manage-users', 'query-users'];
const VIEW_ROLES = ['view-users', 'manage-users'];
const WRITE_ROLES = ['manage-users'];
const REALM_MANAGEMENT = 'realm-management';
/** Holds every realm-management role through composites. */
const REALM_ADMIN = 'realm-admin';

/** Keeps revocation cheap: expired token ids are swept once the map grows past this. */
const LIVE_TOKEN_SWEEP_AT = 50_000;

interface ClientRecord {
  clientId: string;
  clientSecret: string;
  roles: string[];
  /** The id of its service-account user, the `sub` of its tokens. */
  serviceAccountId: string;
}

type AdminState = { claims: AccessTokenClaims };

function realmManagementRoles(claims: AccessTokenClaims): Set<string> {
  return new Set(claims.resource_access?.[REALM_MANAGEMENT]?.roles ?? []);
}

function hasAnyRole(claims: AccessTokenClaims, roles: string[]): boolean {
  const held = realmManagementRoles(claims);
  return held.has(REALM_ADMIN) || roles.some((role) => held.has(role));
}

function requireRole(ctx: Koa.Context, roles: string[]): void {
  const { claims } = ctx.state as AdminState;
  if (!hasAnyRole(claims, roles)) throw FORBIDDEN();
}

function accessFor(claims: AccessTokenClaims): Access {
  const manage = hasAnyRole(claims, WRITE_ROLES);
  return {
    manageGroupMembership: manage,
    view: hasAnyRole(claims, VIEW_ROLES),
    mapRoles: manage,
    impersonate: hasAnyRole(claims, ['impersonation']),
    manage,
  };
}

/** Sends a status with no body at all (Koa would otherwise write the status text). */
function sendEmpty(ctx: Koa.Context, status: number): void {
  ctx.body = null;
  ctx.status = status;
}

async function readForm(ctx: Koa.Context): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
  // Keycloak reads form parameters only from a form body; anything else has none.
  if (!ctx.is('application/x-www-form-urlencoded')) return new URLSearchParams();
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Client id and secret from HTTP Basic (form-encoded inside, per RFC 6749) or the body. */
function clientCredentials(
  ctx: Koa.Context,
  form: URLSearchParams,
): { clientId?: string; clientSecret?: string } {
  const header = ctx.get('authorization');
  const match = /^basic\s+(\S+)$/i.exec(header);
  if (!match) {
    return {
      clientId: form.get('client_id') ?? undefined,
      clientSecret: form.get('client_secret') ?? undefined,
    };
  }

  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return {};
  const formDecode = (part: string) => {
    try {
      return decodeURIComponent(part.replace(/\+/g, ' '));
    } catch {
      return part;
    }
  };
  return {
    clientId: formDecode(decoded.slice(0, colon)),
    clientSecret: formDecode(decoded.slice(colon + 1)),
  };
}

function bearerToken(ctx: Koa.Context): string | undefined {
  const match = /^bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
  return match?.[1];
}

export async function startKeycloakEmulator(
  options: KeycloakEmulatorOptions,
): Promise<KeycloakEmulator> {
  const realm = options.realm ?? 'quobis';
  const initialSettings: RealmSettings = {
    tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 300,
    unmanagedAttributePolicy: options.unmanagedAttributePolicy ?? 'ENABLED',
    editUsernameAllowed: options.editUsernameAllowed ?? true,
    duplicateEmailsAllowed: options.duplicateEmailsAllowed ?? false,
    passwordMinLength: options.passwordMinLength ?? 0,
  };
  let settings = { ...initialSettings };

  const clients = new Map<string, ClientRecord>();
  for (const client of options.clients) {
    clients.set(client.clientId, {
      clientId: client.clientId,
      clientSecret: client.clientSecret,
      roles: [...(client.serviceAccountRoles ?? DEFAULT_SERVICE_ACCOUNT_ROLES)],
      serviceAccountId: randomUUID(),
    });
  }

  const keys = await SigningKeys.create();
  const store = new UserStore(() => settings);
  const logouts = new Map<string, number>();
  const faults = new Faults();
  const calls = new CallLog();
  // Token ids issued and not revoked, with their expiry, so expireAllTokens can void them all.
  const liveTokens = new Map<string, number>();
  const defaultRealmRoles = ['offline_access', 'uma_authorization', `default-roles-${realm}`];

  let baseUrl = '';
  const issuer = () => `${baseUrl}/realms/${realm}`;

  async function sign(claims: AccessTokenClaims): Promise<string> {
    if (liveTokens.size >= LIVE_TOKEN_SWEEP_AT) {
      const now = Math.floor(Date.now() / 1000);
      for (const [jti, exp] of liveTokens) if (exp <= now) liveTokens.delete(jti);
    }
    liveTokens.set(claims.jti, claims.exp);
    return keys.sign(claims);
  }

  function baseClaims(lifetime: number): Pick<AccessTokenClaims, 'iss' | 'jti' | 'iat' | 'exp'> {
    const iat = Math.floor(Date.now() / 1000);
    return { iss: issuer(), jti: randomUUID(), iat, exp: iat + lifetime };
  }

  async function serviceAccountToken(client: ClientRecord): Promise<string> {
    const resourceAccess: Record<string, { roles: string[] }> = {};
    if (client.roles.length > 0) resourceAccess[REALM_MANAGEMENT] = { roles: [...client.roles] };

    const claims: AccessTokenClaims = {
      ...baseClaims(settings.tokenLifetimeSeconds),
      sub: client.serviceAccountId,
      typ: 'Bearer',
      azp: client.clientId,
      acr: '1',
      realm_access: { roles: [...defaultRealmRoles] },
      scope: 'profile email',
      email_verified: false,
      clientHost: '127.0.0.1',
      // Keycloak stores usernames lower-cased, the service account's too.
      preferred_username: `service-account-${client.clientId.toLowerCase()}`,
      clientAddress: '127.0.0.1',
      client_id: client.clientId,
    };
    if (Object.keys(resourceAccess).length > 0) {
      claims.aud = Object.keys(resourceAccess);
      claims.resource_access = resourceAccess;
    }
    return sign(claims);
  }

  async function verifyTokenClaims(token: string): Promise<AccessTokenClaims | undefined> {
    let payload: JWTPayload;
    try {
      payload = await keys.verify(token, { issuer: issuer() });
    } catch {
      return undefined;
    }
    if (payload.typ !== 'Bearer' || typeof payload.jti !== 'string') return undefined;
    if (!liveTokens.has(payload.jti)) return undefined;
    return payload as AccessTokenClaims;
  }

  // --- routes --------------------------------------------------------------------------------

  const router = new Router();
  const oidc = '/realms/:realm/protocol/openid-connect';
  const users = '/admin/realms/:realm/users';

  const checkRealm = (ctx: Koa.Context) => {
    if (ctx.params.realm !== realm) {
      throw new KeycloakError(404, { error: 'Realm does not exist' });
    }
  };
  const checkAdminRealm = (ctx: Koa.Context) => {
    if (ctx.params.realm !== realm) throw new KeycloakError(404, { error: 'Realm not found.' });
  };
  const userFrom = (ctx: Koa.Context): StoredUser => {
    checkAdminRealm(ctx);
    const stored = store.get(ctx.params.id);
    if (!stored) throw USER_NOT_FOUND();
    return stored;
  };

  router.post(`${oidc}/token`, async (ctx) => {
    checkRealm(ctx);
    const form = await readForm(ctx);

    // Keycloak checks the grant type before it authenticates the client.
    const grantType = form.get('grant_type');
    if (!grantType) {
      throw oauthError(400, 'invalid_request', 'Missing form parameter: grant_type');
    }
    if (grantType !== 'client_credentials') {
      throw oauthError(400, 'unsupported_grant_type', 'Unsupported grant_type');
    }

    const { clientId, clientSecret } = clientCredentials(ctx, form);
    const client = clientId === undefined ? undefined : clients.get(clientId);
    if (!client || clientSecret !== client.clientSecret) {
      throw oauthError(401, 'unauthorized_client', 'Invalid client or Invalid client credentials');
    }

    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      access_token: await serviceAccountToken(client),
      expires_in: settings.tokenLifetimeSeconds,
      refresh_expires_in: 0,
      token_type: 'Bearer',
      'not-before-policy': 0,
      scope: 'profile email',
    };
  });

  router.get(`${oidc}/certs`, (ctx) => {
    checkRealm(ctx);
    ctx.body = keys.jwks();
  });

  router.get('/realms/:realm/.well-known/openid-configuration', (ctx) => {
    checkRealm(ctx);
    const base = `${issuer()}/protocol/openid-connect`;
    ctx.body = {
      issuer: issuer(),
      authorization_endpoint: `${base}/auth`,
      token_endpoint: `${base}/token`,
      jwks_uri: `${base}/certs`,
      userinfo_endpoint: `${base}/userinfo`,
      end_session_endpoint: `${base}/logout`,
      grant_types_supported: ['client_credentials'],
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      scopes_supported: ['openid', 'profile', 'email'],
    };
  });

  // `count` is registered before `:id` so the literal path wins.
  router.get(`${users}/count`, (ctx) => {
    checkAdminRealm(ctx);
    requireRole(ctx, READ_ROLES);
    const filter = buildFilter(store, flattenQuery(ctx.query));
    ctx.type = 'application/json';
    ctx.body = String(countUsers(store, filter));
  });

  router.get(users, (ctx) => {
    checkAdminRealm(ctx);
    requireRole(ctx, READ_ROLES);
    const query = flattenQuery(ctx.query);
    const first = Math.max(0, parseInteger(query.first, 0));
    const max = parseInteger(query.max, 100);
    const brief = parseBoolean(query.briefRepresentation) === true;

    const access = accessFor((ctx.state as AdminState).claims);
    const found = findUsers(store, buildFilter(store, query), first, max);
    ctx.body = found.map(({ user }) =>
      brief ? { ...briefRepresentation(user), access } : fullRepresentation(user, access),
    );
  });

  router.post(users, async (ctx) => {
    checkAdminRealm(ctx);
    requireRole(ctx, WRITE_ROLES);
    const input = parseUserBody(await readJson(ctx));
    const stored = store.prepare(input);
    store.insert(stored);

    ctx.set('Location', `${baseUrl}/admin/realms/${realm}/users/${stored.user.id}`);
    sendEmpty(ctx, 201);
  });

  router.get(`${users}/:id`, (ctx) => {
    requireRole(ctx, VIEW_ROLES);
    const { user } = userFrom(ctx);
    ctx.body = fullRepresentation(user, accessFor((ctx.state as AdminState).claims));
  });

  router.put(`${users}/:id`, async (ctx) => {
    requireRole(ctx, WRITE_ROLES);
    const stored = userFrom(ctx);
    // Credentials in a PUT are ignored, as Keycloak does: passwords go via reset-password.
    store.update(stored, parseUserBody(await readJson(ctx)));
    sendEmpty(ctx, 204);
  });

  router.delete(`${users}/:id`, (ctx) => {
    requireRole(ctx, WRITE_ROLES);
    store.delete(userFrom(ctx));
    sendEmpty(ctx, 204);
  });

  router.put(`${users}/:id/reset-password`, async (ctx) => {
    requireRole(ctx, WRITE_ROLES);
    const stored = userFrom(ctx);
    const body = await readJson(ctx);
    const credential = parseCredential(body);
    if (credential.type !== undefined && credential.type !== 'password') throw BAD_BODY();
    store.setPassword(stored, credential);
    sendEmpty(ctx, 204);
  });

  router.post(`${users}/:id/logout`, (ctx) => {
    requireRole(ctx, WRITE_ROLES);
    const { user } = userFrom(ctx);
    logouts.set(user.id, (logouts.get(user.id) ?? 0) + 1);
    sendEmpty(ctx, 204);
  });

  // --- middleware ----------------------------------------------------------------------------

  const app = new Koa();
  // Errors are all answered below; Koa must not print anything of its own.
  app.silent = true;

  app.use(faults.middleware());
  app.use(calls.middleware());

  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof KeycloakError) {
        ctx.status = err.status;
        ctx.body = err.body;
        return;
      }
      // readJson throws a 400 for malformed JSON; Keycloak calls that an unknown error too.
      const status = (err as { status?: unknown }).status;
      ctx.status = typeof status === 'number' && status >= 400 && status < 500 ? 400 : 500;
      ctx.body = { error: 'unknown_error' };
    }
  });

  // Unknown paths and methods get Keycloak's JSON bodies instead of Koa's plain text.
  app.use(async (ctx, next) => {
    await next();
    if (ctx.body !== undefined && ctx.body !== null) return;

    // Setting a body makes Koa answer 200 unless the status is set again afterwards.
    const status = ctx.status;
    if (status === 405) ctx.body = { error: 'HTTP 405 Method Not Allowed' };
    if (status === 404) ctx.body = { error: 'HTTP 404 Not Found' };
    ctx.status = status;
  });

  // Keycloak authenticates every admin request before it looks at the path.
  app.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/admin/')) return next();
    const token = bearerToken(ctx);
    const claims = token === undefined ? undefined : await verifyTokenClaims(token);
    if (!claims) throw UNAUTHORIZED();
    (ctx.state as AdminState).claims = claims;
    return next();
  });

  app.use(router.routes());
  app.use(router.allowedMethods());

  const server = await listen(app, options);
  baseUrl = server.url;

  return {
    url: server.url,
    port: server.port,
    close: () => server.close(),
    realm,
    issuer: issuer(),
    faults,
    calls,

    get settings() {
      return { ...settings };
    },

    configure(changes) {
      settings = { ...settings, ...changes };
    },

    issueToken(claims = {}) {
      const username = (claims.username ?? 'test-user').toLowerCase();
      const stored = store.byUsernameLookup(username);
      const resourceAccess: Record<string, { roles: string[] }> = {};
      for (const [client, roles] of Object.entries(claims.clientRoles ?? {})) {
        if (roles.length > 0) resourceAccess[client] = { roles: [...roles] };
      }

      const token: AccessTokenClaims = {
        ...baseClaims(claims.expiresInSeconds ?? settings.tokenLifetimeSeconds),
        sub: stored?.user.id ?? randomUUID(),
        typ: 'Bearer',
        azp: claims.clientId ?? options.clients[0]?.clientId ?? 'account',
        realm_access: { roles: [...(claims.realmRoles ?? defaultRealmRoles)] },
        scope: 'openid profile email',
        preferred_username: username,
      };
      if (Object.keys(resourceAccess).length > 0) {
        token.aud = Object.keys(resourceAccess);
        token.resource_access = resourceAccess;
      }
      if (stored?.user.email !== undefined) token.email = stored.user.email;
      return sign({ ...token, ...claims.claims });
    },

    async verifyToken(token) {
      return (await verifyTokenClaims(token)) !== undefined;
    },

    verifyTokenClaims,

    expireAllTokens() {
      liveTokens.clear();
    },

    rotateSigningKey(rotateOptions) {
      return keys.rotate(rotateOptions);
    },

    users() {
      return store.all().map(({ user }) => copyUser(user));
    },

    checkPassword(userId, password) {
      const stored = store.get(userId);
      if (!stored?.password) return false;
      return passwordMatches(stored.password, password);
    },

    logoutCount(userId) {
      return logouts.get(userId) ?? 0;
    },

    seedUsers(seeds) {
      const pending = new Map<string, StoredUser>();
      const batch = seeds.map((seed, index) => {
        const input = seedInput(seed);
        let stored: StoredUser;
        try {
          stored = store.prepare(input, pending);
        } catch (err) {
          throw seedError(err, index, seed.username);
        }

        if (seed.id !== undefined) {
          if (store.get(seed.id) || pending.has(`i:${seed.id}`)) {
            throw new Error(`seedUsers: user ${index} (${seed.username}): id ${seed.id} taken`);
          }
          stored.user.id = seed.id;
        }
        if (seed.createdTimestamp !== undefined) {
          stored.user.createdTimestamp = seed.createdTimestamp;
        }
        pending.set(`u:${stored.user.username}`, stored);
        pending.set(`i:${stored.user.id}`, stored);
        if (stored.user.email !== undefined) pending.set(`e:${stored.user.email}`, stored);
        return stored;
      });

      store.insertMany(batch);
      return batch.map((stored) => stored.user.id);
    },

    reset() {
      store.clear();
      logouts.clear();
      calls.reset();
      faults.reset();
      faults.resetCounts();
      settings = { ...initialSettings };
    },
  };
}

function seedInput(seed: SeedUser): UserInput {
  return {
    username: seed.username,
    email: seed.email,
    firstName: seed.firstName,
    lastName: seed.lastName,
    enabled: seed.enabled,
    emailVerified: seed.emailVerified,
    attributes: seed.attributes,
    requiredActions: seed.requiredActions,
    credentials:
      seed.password === undefined ? undefined : [{ type: 'password', value: seed.password }],
  };
}

function seedError(err: unknown, index: number, username: string): Error {
  const detail = err instanceof KeycloakError ? JSON.stringify(err.body) : String(err);
  return new Error(`seedUsers: user ${index} (${username}) refused: ${detail}`);
}
