import { Pool } from 'undici';

import { BackendError, kindOfStatus } from '../errors.js';
import { backendErrorOf, describeBody } from './backend-errors.js';
import { statusOfFailure, type ObserveCall } from './observe.js';
import type { TokenSource } from './token-source.js';

/** wac-core's records as its service API (`/sapi`) sends them. */
export interface WacDomain {
  id: string;
  domain: string;
  enableAnonymous: boolean;
  anonymousCapabilities: string[];
  origins: string[];
  parent: string | null;
  remoteSipRegister: boolean;
  services: Record<string, string[]>;
}

export interface WacUser {
  id: string;
  /** The id of the user's domain. */
  domain: string;
  username: string;
  email: string | null;
  displayName: string | null;
  role: 'user' | 'admin';
  capabilities: string[];
  mobilePhone: string[];
  /** The Keycloak user id, written by kitter: it ties the two records together. */
  externalId: string | null;
}

export interface SipCredential {
  username: string;
  password: string;
  /** wac-core leaves out what it was not given; kitter always sends both. */
  domain: string | null;
  authProxy: string | null;
}

export interface WacSipMapping {
  id: string;
  ownerUri: string;
  credential: SipCredential;
}

export interface WacHtableEntry {
  name: string;
  value: string;
}

export interface Page<T> {
  items: T[];
  total: number;
}

type Query = Record<string, string | number | undefined>;

/** wac-core lists at most this many records a page. */
const HTABLE_PAGE = 1000;

export interface WacCoreClientOptions {
  /** Base URL including the path, e.g. `http://127.0.0.1:8001/sapi`. */
  url: string;
  timeoutMs: number;
  connections?: number;
  /** Told of every request, for the metrics. */
  observe?: ObserveCall;
}

/**
 * The wac-core service API over a pool of keep-alive connections. Every failure is a
 * BackendError; a 401 gets one more try with a new token.
 */
export class WacCoreClient {
  private readonly pool: Pool;
  private readonly basePath: string;

  constructor(
    private readonly tokens: TokenSource,
    private readonly options: WacCoreClientOptions,
  ) {
    const url = new URL(options.url);
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(url.origin, {
      connections: options.connections ?? 64,
      connectTimeout: Math.min(options.timeoutMs, 5_000),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  findDomainByName(name: string): Promise<WacDomain | undefined> {
    return this.list<WacDomain>('find domain', '/domains', { domain: name, limit: 1 }).then(
      (page) => page.items[0],
    );
  }

  listDomains(query: Query = {}): Promise<Page<WacDomain>> {
    return this.list('list domains', '/domains', query);
  }

  getDomain(id: string): Promise<WacDomain | undefined> {
    return this.getOrUndefined('get domain', `/domains/${id}`);
  }

  createDomain(domain: Partial<WacDomain>): Promise<WacDomain> {
    return this.send('create domain', 'POST', '/domains', domain);
  }

  async findUser(domainId: string, username: string): Promise<WacUser | undefined> {
    const page = await this.list<WacUser>('find user', '/users', {
      domain: domainId,
      username,
      limit: 1,
    });
    return page.items[0];
  }

  getUser(id: string): Promise<WacUser | undefined> {
    return this.getOrUndefined('get user', `/users/${id}`);
  }

  listUsers(query: Query): Promise<Page<WacUser>> {
    return this.list('list users', '/users', query);
  }

  createUser(user: Partial<WacUser>): Promise<WacUser> {
    return this.send('create user', 'POST', '/users', user);
  }

  updateUser(id: string, changes: Partial<WacUser>): Promise<WacUser> {
    return this.send('update user', 'PATCH', `/users/${id}`, changes);
  }

  deleteUser(id: string): Promise<boolean> {
    return this.deleteOrFalse('delete user', `/users/${id}`);
  }

  async findSipMapping(ownerUri: string): Promise<WacSipMapping | undefined> {
    const page = await this.list<WacSipMapping>('find SIP mapping', '/sipMappings', {
      ownerUri,
      limit: 1,
    });
    return page.items[0];
  }

  createSipMapping(mapping: Omit<WacSipMapping, 'id'>): Promise<WacSipMapping> {
    return this.send('create SIP mapping', 'POST', '/sipMappings', mapping);
  }

  deleteSipMapping(id: string): Promise<boolean> {
    return this.deleteOrFalse('delete SIP mapping', `/sipMappings/${id}`);
  }

  updateDomain(id: string, changes: Partial<WacDomain>): Promise<WacDomain> {
    return this.send('update domain', 'PATCH', `/domains/${id}`, changes);
  }

  deleteDomain(id: string): Promise<boolean> {
    return this.deleteOrFalse('delete domain', `/domains/${id}`);
  }

  /** The wac-core user tied to a Keycloak user (kitter writes the Keycloak id as externalId). */
  async findUserByKeycloakId(keycloakId: string): Promise<WacUser | undefined> {
    const page = await this.list<WacUser>('find user', '/users', {
      externalId: keycloakId,
      limit: 1,
    });
    return page.items[0];
  }

  async countUsersInDomain(domainId: string): Promise<number> {
    return (await this.list('count users', '/users', { domain: domainId, limit: 1 })).total;
  }

  /** Replaces the credential of a SIP mapping. */
  updateSipMapping(id: string, credential: SipCredential): Promise<WacSipMapping> {
    return this.send('update SIP mapping', 'PUT', `/sipMappings/${id}`, { credential });
  }

  listHtable(query: Query): Promise<Page<WacHtableEntry>> {
    return this.list('list htable entries', '/htable', query);
  }

  /**
   * The htable entry of exactly this name. wac-core filters by part of a name only (and
   * case-insensitively), so the matches are read page by page until the name turns up.
   */
  async findHtableEntry(name: string): Promise<WacHtableEntry | undefined> {
    for (let offset = 0; ; offset += HTABLE_PAGE) {
      const page = await this.listHtable({ nameContains: name, offset, limit: HTABLE_PAGE });
      const found = page.items.find((entry) => entry.name === name);
      if (found) return found;
      if (page.items.length < HTABLE_PAGE || offset + HTABLE_PAGE >= page.total) return undefined;
    }
  }

  createHtableEntry(entry: WacHtableEntry): Promise<WacHtableEntry> {
    return this.send('create htable entry', 'POST', '/htable', entry);
  }

  /** False when there was no such entry. */
  deleteHtableEntry(name: string): Promise<boolean> {
    return this.deleteOrFalse('delete htable entry', `/htable/${encodeURIComponent(name)}`);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private async list<T>(operation: string, path: string, query: Query): Promise<Page<T>> {
    const answer = await this.request(operation, 'GET', path, undefined, query);
    const total = Number(answer.headers['x-total-count']);
    const items = answer.body as T[];
    return { items, total: Number.isFinite(total) ? total : items.length };
  }

  private async getOrUndefined<T>(operation: string, path: string): Promise<T | undefined> {
    try {
      return (await this.request(operation, 'GET', path)).body as T;
    } catch (err) {
      if (err instanceof BackendError && err.kind === 'not_found') return undefined;
      throw err;
    }
  }

  private async deleteOrFalse(operation: string, path: string): Promise<boolean> {
    try {
      await this.request(operation, 'DELETE', path);
      return true;
    } catch (err) {
      if (err instanceof BackendError && err.kind === 'not_found') return false;
      throw err;
    }
  }

  private async send<T>(operation: string, method: string, path: string, body: unknown) {
    return (await this.request(operation, method, path, body)).body as T;
  }

  private async request(
    operation: string,
    method: string,
    path: string,
    body?: unknown,
    query?: Query,
  ): Promise<{ body: unknown; headers: Record<string, string | string[] | undefined> }> {
    const first = await this.attempt(operation, method, path, body, query);
    if (!(first instanceof BackendError)) return first;
    if (first.kind !== 'unauthorized') throw first;

    this.tokens.invalidate();
    const second = await this.attempt(operation, method, path, body, query);
    if (second instanceof BackendError) throw second;
    return second;
  }

  /** One request, told to `observe` with its status and time. */
  private async attempt(
    operation: string,
    method: string,
    path: string,
    body: unknown,
    query: Query | undefined,
  ) {
    const started = performance.now();
    const answer = await this.exchange(operation, method, path, body, query);
    const status = answer instanceof BackendError ? statusOfFailure(answer) : answer.status;
    const seconds = (performance.now() - started) / 1000;
    this.options.observe?.({ backend: 'wac-core', operation, status, seconds });
    return answer;
  }

  /** One request and its answer; every failure comes back as a BackendError. */
  private async exchange(
    operation: string,
    method: string,
    path: string,
    body: unknown,
    query: Query | undefined,
  ) {
    try {
      const token = await this.tokens.getAccessToken();
      const answer = await this.pool.request({
        method: method as 'GET',
        path: `${this.basePath}${path}${toQueryString(query)}`,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

      const text = await answer.body.text();
      const data = parseJson(text);
      if (answer.statusCode >= 400) {
        const kind = kindOfStatus(answer.statusCode);
        return new BackendError('wac-core', operation, kind, answer.statusCode, describeBody(data));
      }
      return { body: data, headers: answer.headers, status: String(answer.statusCode) };
    } catch (err) {
      return backendErrorOf(err, operation, 'wac-core');
    }
  }
}

function toQueryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
