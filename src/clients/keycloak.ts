import KcAdminClient from '@keycloak/keycloak-admin-client';

import { BackendError } from '../errors.js';
import { backendErrorOf } from './backend-errors.js';
import { statusOfFailure, type ObserveCall } from './observe.js';
import type { TokenSource } from './token-source.js';

/** A Keycloak user as the admin API sends and takes it. */
export type UserRepresentation = NonNullable<
  Awaited<ReturnType<KcAdminClient['users']['findOne']>>
>;

export interface UserQuery {
  username?: string;
  email?: string;
  search?: string;
  exact?: boolean;
  /** Attribute filters, sent as Keycloak's `q=key:value` (exact match). */
  attributes?: Record<string, string>;
  emailVerified?: boolean;
  first?: number;
  max?: number;
}

/**
 * kitter's view of the Keycloak admin API: the calls it needs on the users of one realm, each
 * failing with a BackendError. A 401 gets one more try with a new token.
 */
export class KeycloakClient {
  private readonly kc: KcAdminClient;
  private readonly observe: ObserveCall | undefined;

  constructor(
    private readonly tokens: TokenSource,
    options: { url: string; realm: string; timeoutMs: number; observe?: ObserveCall },
  ) {
    this.observe = options.observe;
    this.kc = new KcAdminClient({
      baseUrl: options.url,
      realmName: options.realm,
      timeout: options.timeoutMs,
    });
    this.kc.registerTokenProvider({ getAccessToken: () => tokens.getAccessToken() });
  }

  /** Creates a user and answers its id (Keycloak gives it in the Location header). */
  createUser(user: UserRepresentation): Promise<string> {
    return this.call('create user', async () => (await this.kc.users.create(user)).id);
  }

  async getUser(id: string): Promise<UserRepresentation | undefined> {
    return this.call('get user', async () => (await this.kc.users.findOne({ id })) ?? undefined);
  }

  /** The user with exactly this username (Keycloak keeps usernames lower-cased). */
  async findByUsername(username: string): Promise<UserRepresentation | undefined> {
    const found = await this.findUsers({ username: username.toLowerCase(), exact: true, max: 2 });
    return found.find((user) => user.username === username.toLowerCase());
  }

  findUsers(query: UserQuery): Promise<UserRepresentation[]> {
    return this.call('search users', () => this.kc.users.find(toParams(query)));
  }

  countUsers(query: UserQuery): Promise<number> {
    const { first: _first, max: _max, ...filters } = query;
    return this.call('count users', () => this.kc.users.count(toParams(filters)));
  }

  /** Writes the whole user: Keycloak drops attributes (and names) a PUT leaves out. */
  updateUser(id: string, user: UserRepresentation): Promise<void> {
    return this.call('update user', () => this.kc.users.update({ id }, user));
  }

  resetPassword(id: string, password: string, temporary: boolean): Promise<void> {
    const credential = { type: 'password', value: password, temporary };
    return this.call('reset password', () => this.kc.users.resetPassword({ id, credential }));
  }

  logout(id: string): Promise<void> {
    return this.call('log out user', () => this.kc.users.logout({ id }));
  }

  /** Deletes a user; answers false when there was none. */
  async deleteUser(id: string): Promise<boolean> {
    try {
      await this.call('delete user', () => this.kc.users.del({ id }));
      return true;
    } catch (err) {
      if (err instanceof BackendError && err.kind === 'not_found') return false;
      throw err;
    }
  }

  /**
   * Proves the service account gets a token and the admin API answers it (for readiness): a
   * token still cached says nothing about whether Keycloak is up now.
   */
  async checkToken(): Promise<void> {
    await this.tokens.getAccessToken();
    await this.call('check', () => this.kc.users.find({ max: 1, briefRepresentation: true }));
  }

  private async call<T>(operation: string, request: () => Promise<T>): Promise<T> {
    const fn = () => this.timed(operation, request);
    try {
      return await fn();
    } catch (err) {
      const failure = backendErrorOf(err, operation);
      if (failure.kind !== 'unauthorized') throw failure;
    }

    // The token expired or was revoked before its time: one more try with a new one.
    this.tokens.invalidate();
    try {
      return await fn();
    } catch (err) {
      throw backendErrorOf(err, operation);
    }
  }

  /** Tells `observe` of each request: the admin client keeps a success's exact status to itself. */
  private async timed<T>(operation: string, request: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let status = '2xx';
    try {
      return await request();
    } catch (err) {
      status = statusOfFailure(backendErrorOf(err, operation));
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.observe?.({ backend: 'keycloak', operation, status, seconds });
    }
  }
}

function toParams(query: UserQuery): Record<string, string | number | boolean> {
  const params: Record<string, string | number | boolean> = {};
  if (query.username !== undefined) params.username = query.username;
  if (query.email !== undefined) params.email = query.email;
  if (query.search !== undefined) params.search = query.search;
  if (query.exact !== undefined) params.exact = query.exact;
  if (query.emailVerified !== undefined) params.emailVerified = query.emailVerified;
  if (query.first !== undefined) params.first = query.first;
  if (query.max !== undefined) params.max = query.max;
  if (query.attributes) {
    params.q = Object.entries(query.attributes)
      .map(([key, value]) => `${key}:${value}`)
      .join(' ');
  }
  return params;
}
