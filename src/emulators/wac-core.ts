import { randomBytes, randomInt } from 'node:crypto';
import http from 'node:http';

import Router from '@koa/router';
import Koa from 'koa';

import { SERVICE_NAMES } from '../model/domains.js';
import { Faults } from './faults.js';
import { CallLog, listen, readJson, type ListenOptions, type RunningServer } from './server.js';

/*
 * An in-memory stand-in for wac-core's service API (`/sapi`): domains, users,
 * SIP mappings and the caller-id htable, with the same validation, conflicts
 * and error bodies kitter has to cope with against the real thing.
 */

// ---------------------------------------------------------------- wire types

/** The services a domain can configure; each names the backends it uses. */
export const WAC_SERVICES = SERVICE_NAMES;

export type WacServiceName = (typeof WAC_SERVICES)[number];

export interface WacDomain {
  id: string;
  /** Hostname-like, always lower-case. */
  domain: string;
  enableAnonymous: boolean;
  anonymousCapabilities: string[];
  origins: string[];
  /** The parent domain's name (not its id), or null for a top-level domain. */
  parent: string | null;
  remoteSipRegister: boolean;
  services: Partial<Record<WacServiceName, string[]>>;
}

export type WacRole = 'user' | 'admin';

export interface WacUser {
  id: string;
  /** The id of the user's domain. */
  domain: string;
  username: string;
  email: string | null;
  displayName: string | null;
  role: WacRole;
  capabilities: string[];
  mobilePhone: string[];
  /** The Keycloak user id, set by kitter. */
  externalId: string | null;
}

export interface WacSipCredential {
  username: string;
  password: string | null;
  domain: string | null;
  authProxy: string | null;
}

export interface WacSipMapping {
  id: string;
  /** `wac-user:<wac user id>`. */
  ownerUri: string;
  credential: WacSipCredential;
}

export interface WacHtableEntry {
  name: string;
  value: string;
}

// ------------------------------------------------------------------- errors

/** A failure the API answers with its status and a one-sentence message. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'WacCoreApiError';
  }
}

const badRequest = (message: string) => new ApiError(400, message);
const notFound = (message: string) => new ApiError(404, message);
const conflict = (message: string) => new ApiError(409, message);

function errorBody(status: number, message: string) {
  return { error: http.STATUS_CODES[status] ?? 'Error', message };
}

// ---------------------------------------------------------------- ids

const ID_PATTERN = /^[0-9a-f]{24}$/;
const OWNER_URI_PATTERN = /^wac-user:([0-9a-f]{24})$/;

/**
 * Makes ObjectId-like ids: 4 bytes of seconds, 5 random bytes fixed per
 * emulator, a 3-byte counter. The counter starts in its lower half so it
 * cannot wrap in a test run, which keeps ids in creation order.
 */
class IdMaker {
  private readonly middle = randomBytes(5).toString('hex');
  private counter = randomInt(0, 0x800000);

  next(): string {
    const seconds = Math.floor(Date.now() / 1000);
    const count = this.counter++ & 0xffffff;
    return (
      seconds.toString(16).padStart(8, '0') + this.middle + count.toString(16).padStart(6, '0')
    );
  }
}

// ---------------------------------------------------------- input checks

type JsonObject = Record<string, unknown>;

function readObject(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest(`${what} must be a JSON object.`);
  }
  return value as JsonObject;
}

/** Rejects keys outside `allowed`; `id` has its own message as callers send it most. */
function checkKeys(
  body: JsonObject,
  allowed: readonly string[],
  what: string,
  allowId: boolean,
): void {
  if ('id' in body && !allowId) {
    throw badRequest(`The ${what} id is assigned by the server and cannot be sent.`);
  }
  const unknown = Object.keys(body).filter((k) => k !== 'id' && !allowed.includes(k));
  if (unknown.length > 0) {
    throw badRequest(`Unknown ${what} fields: ${unknown.join(', ')}.`);
  }
}

function readString(value: unknown, field: string): string {
  if (typeof value !== 'string') throw badRequest(`${field} must be a string.`);
  return value;
}

function readNonEmpty(value: unknown, field: string): string {
  const text = readString(value, field);
  if (text.trim() === '') throw badRequest(`${field} must not be empty.`);
  return text;
}

function readNullable(value: unknown, field: string): string | null {
  return value === null ? null : readString(value, field);
}

function readBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw badRequest(`${field} must be true or false.`);
  return value;
}

function readStringList(value: unknown, field: string): string[] {
  const ok = Array.isArray(value) && value.every((v) => typeof v === 'string');
  if (!ok) throw badRequest(`${field} must be an array of strings.`);
  return [...(value as string[])];
}

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN_NAME_PATTERN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

/** Hostname-like: dot-separated labels of letters, digits and inner hyphens. */
function readDomainName(value: unknown, field: string): string {
  const name = readString(value, field).toLowerCase();
  if (name.length > 253 || !DOMAIN_NAME_PATTERN.test(name)) {
    throw badRequest(`${field} must be a hostname-like name, not "${name}".`);
  }
  return name;
}

function readServices(value: unknown): WacDomain['services'] {
  const input = readObject(value, 'services');
  const known: readonly string[] = WAC_SERVICES;
  const unknown = Object.keys(input).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw badRequest(`Unknown services: ${unknown.join(', ')}.`);
  }

  const services: WacDomain['services'] = {};
  for (const [name, backends] of Object.entries(input)) {
    services[name as WacServiceName] = readStringList(backends, `services.${name}`);
  }
  return services;
}

const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+$/;

function readEmail(value: unknown): string | null {
  const email = readNullable(value, 'email');
  if (email !== null && !EMAIL_PATTERN.test(email)) {
    throw badRequest(`email must be an address like name@example.com, not "${email}".`);
  }
  return email;
}

function readRole(value: unknown): WacRole {
  if (value !== 'user' && value !== 'admin') {
    throw badRequest('role must be "user" or "admin".');
  }
  return value;
}

// ------------------------------------------------------------ deep copies

function copyDomain(d: WacDomain): WacDomain {
  const services: WacDomain['services'] = {};
  for (const [name, backends] of Object.entries(d.services)) {
    services[name as WacServiceName] = [...backends];
  }
  return {
    ...d,
    anonymousCapabilities: [...d.anonymousCapabilities],
    origins: [...d.origins],
    services,
  };
}

function copyUser(u: WacUser): WacUser {
  return { ...u, capabilities: [...u.capabilities], mobilePhone: [...u.mobilePhone] };
}

function copyMapping(m: WacSipMapping): WacSipMapping {
  return { ...m, credential: { ...m.credential } };
}

// ------------------------------------------------------------------ store

const DOMAIN_FIELDS = [
  'domain',
  'enableAnonymous',
  'anonymousCapabilities',
  'origins',
  'parent',
  'remoteSipRegister',
  'services',
] as const;

const USER_FIELDS = [
  'domain',
  'username',
  'email',
  'displayName',
  'role',
  'capabilities',
  'mobilePhone',
  'externalId',
] as const;

const CREDENTIAL_FIELDS = ['username', 'password', 'domain', 'authProxy'] as const;

interface Paging {
  offset: number;
  limit: number;
}

interface ListResult<T> {
  total: number;
  items: T[];
}

/** Counts every match and keeps the ones inside the page, in one pass. */
function pageOf<T>(
  candidates: Iterable<T>,
  keep: (item: T) => boolean,
  paging: Paging,
): ListResult<T> {
  const items: T[] = [];
  let total = 0;
  for (const item of candidates) {
    if (!keep(item)) continue;
    if (total >= paging.offset && items.length < paging.limit) items.push(item);
    total++;
  }
  return { total, items };
}

interface Group {
  ids: Set<string>;
  lastSeq: number;
  sorted: boolean;
}

/**
 * Ids grouped by a key, each group listed in creation order so a filtered
 * list pages the same way an unfiltered one does. Appends keep a group in
 * order; a user moved into a group late marks it for one re-sort.
 */
class GroupIndex {
  private readonly groups = new Map<string, Group>();

  constructor(private readonly seqOf: (id: string) => number) {}

  add(key: string, id: string): void {
    let group = this.groups.get(key);
    if (!group) {
      group = { ids: new Set(), lastSeq: -1, sorted: true };
      this.groups.set(key, group);
    }

    const seq = this.seqOf(id);
    if (seq < group.lastSeq) group.sorted = false;
    else group.lastSeq = seq;
    group.ids.add(id);
  }

  remove(key: string, id: string): void {
    const group = this.groups.get(key);
    if (!group) return;
    group.ids.delete(id);
    if (group.ids.size === 0) this.groups.delete(key);
  }

  size(key: string): number {
    return this.groups.get(key)?.ids.size ?? 0;
  }

  ids(key: string): Iterable<string> {
    const group = this.groups.get(key);
    if (!group) return [];

    if (!group.sorted) {
      const ordered = [...group.ids].sort((a, b) => this.seqOf(a) - this.seqOf(b));
      group.ids = new Set(ordered);
      group.sorted = true;
    }
    return group.ids;
  }

  clear(): void {
    this.groups.clear();
  }
}

interface UserFilters {
  domain?: string;
  username?: string;
  externalId?: string;
}

interface HtableFilters {
  nameContains?: string;
  valueContains?: string;
}

/** All data and rules, free of HTTP so seeding goes through the same checks. */
class WacCoreStore {
  private readonly ids = new IdMaker();

  private readonly domainsById = new Map<string, WacDomain>();
  private readonly domainIdByName = new Map<string, string>();

  private readonly usersById = new Map<string, WacUser>();
  private readonly userSeq = new Map<string, number>();
  private nextSeq = 0;
  /** `<domain id>/<lower-cased username>` → user id. */
  private readonly userIdByKey = new Map<string, string>();
  private readonly usersByDomain = new GroupIndex((id) => this.seqOf(id));
  private readonly usersByExternalId = new GroupIndex((id) => this.seqOf(id));

  private readonly mappingsById = new Map<string, WacSipMapping>();
  private readonly mappingIdByOwner = new Map<string, string>();

  private readonly htable = new Map<string, string>();
  /** Names in sorted order, rebuilt on the first list after a change. */
  private sortedNames: string[] | undefined;

  clear(): void {
    this.domainsById.clear();
    this.domainIdByName.clear();
    this.usersById.clear();
    this.userSeq.clear();
    this.userIdByKey.clear();
    this.usersByDomain.clear();
    this.usersByExternalId.clear();
    this.mappingsById.clear();
    this.mappingIdByOwner.clear();
    this.htable.clear();
    this.sortedNames = undefined;
  }

  private seqOf(userId: string): number {
    return this.userSeq.get(userId) ?? 0;
  }

  /** A fresh id, or the caller's own when seeding (`allowId`). */
  private takeId(requested: unknown, taken: Map<string, unknown>, what: string): string {
    if (requested === undefined) {
      let id = this.ids.next();
      while (taken.has(id)) id = this.ids.next();
      return id;
    }

    const id = readString(requested, 'id');
    if (!ID_PATTERN.test(id)) {
      throw badRequest('id must be 24 lower-case hex characters.');
    }
    if (taken.has(id)) throw conflict(`A ${what} with the id ${id} already exists.`);
    return id;
  }

  // ------------------------------------------------------------ domains

  allDomains(): WacDomain[] {
    return [...this.domainsById.values()].map(copyDomain);
  }

  getDomain(id: string): WacDomain {
    return copyDomain(this.requireDomain(id));
  }

  listDomains(name: string | undefined, paging: Paging): ListResult<WacDomain> {
    let candidates: Iterable<WacDomain> = this.domainsById.values();
    if (name !== undefined) {
      const id = this.domainIdByName.get(name.toLowerCase());
      candidates = id === undefined ? [] : [this.domainsById.get(id)!];
    }

    const { total, items } = pageOf(candidates, () => true, paging);
    return { total, items: items.map(copyDomain) };
  }

  createDomain(input: unknown, allowId: boolean): WacDomain {
    const body = readObject(input, 'The request body');
    checkKeys(body, DOMAIN_FIELDS, 'domain', allowId);
    if (body.domain === undefined) throw badRequest('domain is required.');

    const record: WacDomain = {
      id: this.takeId(body.id, this.domainsById, 'domain'),
      domain: '',
      enableAnonymous: false,
      anonymousCapabilities: [],
      origins: [],
      parent: null,
      remoteSipRegister: false,
      services: {},
    };
    applyDomainFields(record, body);
    this.checkDomain(record, undefined);

    this.domainsById.set(record.id, record);
    this.domainIdByName.set(record.domain, record.id);
    return copyDomain(record);
  }

  patchDomain(id: string, input: unknown): WacDomain {
    const current = this.requireDomain(id);
    const body = readObject(input, 'The request body');
    checkKeys(body, DOMAIN_FIELDS, 'domain', false);

    const next = copyDomain(current);
    applyDomainFields(next, body);
    this.checkDomain(next, current);

    this.domainIdByName.delete(current.domain);
    this.domainIdByName.set(next.domain, id);
    this.domainsById.set(id, next);
    return copyDomain(next);
  }

  deleteDomain(id: string): void {
    const domain = this.requireDomain(id);

    const users = this.usersByDomain.size(id);
    if (users > 0) {
      throw conflict(`The domain ${domain.domain} still has ${users} user(s).`);
    }
    const children = this.childrenOf(domain.domain);
    if (children.length > 0) {
      throw conflict(`The domain ${domain.domain} is the parent of ${children.join(', ')}.`);
    }

    this.domainsById.delete(id);
    this.domainIdByName.delete(domain.domain);
  }

  private requireDomain(id: string): WacDomain {
    const domain = this.domainsById.get(id);
    if (!domain) throw notFound(`No domain has the id "${id}".`);
    return domain;
  }

  private childrenOf(name: string): string[] {
    const children: string[] = [];
    for (const d of this.domainsById.values()) {
      if (d.parent === name) children.push(d.domain);
    }
    return children;
  }

  /** Rules across records: unique names, a real parent, no loops. */
  private checkDomain(next: WacDomain, current: WacDomain | undefined): void {
    const owner = this.domainIdByName.get(next.domain);
    if (owner !== undefined && owner !== next.id) {
      throw conflict(`A domain named ${next.domain} already exists.`);
    }

    // Children name their parent, so a rename would orphan them.
    if (current && current.domain !== next.domain) {
      const children = this.childrenOf(current.domain);
      if (children.length > 0) {
        throw conflict(
          `The domain ${current.domain} cannot be renamed while it is the parent ` +
            `of ${children.join(', ')}.`,
        );
      }
    }

    if (next.parent === null) return;

    if (next.parent === next.domain || next.parent === current?.domain) {
      throw badRequest('A domain cannot be its own parent.');
    }
    if (!this.domainIdByName.has(next.parent)) {
      throw badRequest(`parent names no existing domain: ${next.parent}.`);
    }

    // Walk up from the new parent; meeting this domain again means a loop.
    const seen = new Set<string>();
    let ancestor: string | null = next.parent;
    while (ancestor !== null && !seen.has(ancestor)) {
      if (ancestor === current?.domain) {
        throw badRequest(`parent ${next.parent} would make the domains a loop.`);
      }
      seen.add(ancestor);
      const id = this.domainIdByName.get(ancestor);
      ancestor = id === undefined ? null : this.domainsById.get(id)!.parent;
    }
  }

  // -------------------------------------------------------------- users

  allUsers(): WacUser[] {
    return [...this.usersById.values()].map(copyUser);
  }

  getUser(id: string): WacUser {
    return copyUser(this.requireUser(id));
  }

  listUsers(filters: UserFilters, paging: Paging): ListResult<WacUser> {
    const { domain, username, externalId } = filters;
    if (domain !== undefined && !ID_PATTERN.test(domain)) {
      throw badRequest('The domain filter must be a domain id (24 hex characters).');
    }
    const lowerName = username?.toLowerCase();

    // Start from the narrowest index, then check every filter on each match.
    let ids: Iterable<string> = this.usersById.keys();
    if (domain !== undefined && lowerName !== undefined) {
      const id = this.userIdByKey.get(`${domain}/${lowerName}`);
      ids = id === undefined ? [] : [id];
    } else if (externalId !== undefined) {
      ids = this.usersByExternalId.ids(externalId);
    } else if (domain !== undefined) {
      ids = this.usersByDomain.ids(domain);
    }

    const keep = (id: string) => {
      const u = this.usersById.get(id)!;
      if (domain !== undefined && u.domain !== domain) return false;
      if (lowerName !== undefined && u.username.toLowerCase() !== lowerName) return false;
      return externalId === undefined || u.externalId === externalId;
    };
    const { total, items } = pageOf(ids, keep, paging);
    return { total, items: items.map((id) => copyUser(this.usersById.get(id)!)) };
  }

  createUser(input: unknown, allowId: boolean): WacUser {
    const body = readObject(input, 'The request body');
    checkKeys(body, USER_FIELDS, 'user', allowId);
    if (body.domain === undefined) throw badRequest('domain is required.');
    if (body.username === undefined) throw badRequest('username is required.');

    const record: WacUser = {
      id: this.takeId(body.id, this.usersById, 'user'),
      domain: '',
      username: '',
      email: null,
      displayName: null,
      role: 'user',
      capabilities: [],
      mobilePhone: [],
      externalId: null,
    };
    applyUserFields(record, body);
    this.checkUser(record);

    this.userSeq.set(record.id, this.nextSeq++);
    this.usersById.set(record.id, record);
    this.indexUser(record);
    return copyUser(record);
  }

  /** Creates all or none: a failure removes the ones already made. */
  seedUsers(inputs: unknown[]): WacUser[] {
    const created: WacUser[] = [];
    try {
      for (const input of inputs) created.push(this.createUser(input, true));
    } catch (err) {
      for (const user of created) this.deleteUser(user.id);
      throw err;
    }
    return created;
  }

  patchUser(id: string, input: unknown): WacUser {
    const current = this.requireUser(id);
    const body = readObject(input, 'The request body');
    checkKeys(body, USER_FIELDS, 'user', false);

    const next = copyUser(current);
    applyUserFields(next, body);
    this.checkUser(next);

    this.unindexUser(current);
    this.usersById.set(id, next);
    this.indexUser(next);
    return copyUser(next);
  }

  deleteUser(id: string): void {
    const user = this.requireUser(id);
    this.unindexUser(user);
    this.usersById.delete(id);
    this.userSeq.delete(id);
  }

  private requireUser(id: string): WacUser {
    const user = this.usersById.get(id);
    if (!user) throw notFound(`No user has the id "${id}".`);
    return user;
  }

  private checkUser(user: WacUser): void {
    if (!this.domainsById.has(user.domain)) {
      throw badRequest(`domain must be the id of an existing domain, not "${user.domain}".`);
    }

    const owner = this.userIdByKey.get(userKey(user));
    if (owner !== undefined && owner !== user.id) {
      const domainName = this.domainsById.get(user.domain)!.domain;
      throw conflict(`The user ${user.username} already exists in ${domainName}.`);
    }
  }

  private indexUser(user: WacUser): void {
    this.userIdByKey.set(userKey(user), user.id);
    this.usersByDomain.add(user.domain, user.id);
    if (user.externalId !== null) this.usersByExternalId.add(user.externalId, user.id);
  }

  private unindexUser(user: WacUser): void {
    this.userIdByKey.delete(userKey(user));
    this.usersByDomain.remove(user.domain, user.id);
    if (user.externalId !== null) this.usersByExternalId.remove(user.externalId, user.id);
  }

  // -------------------------------------------------------- SIP mappings

  allMappings(): WacSipMapping[] {
    return [...this.mappingsById.values()].map(copyMapping);
  }

  getMapping(id: string): WacSipMapping {
    return copyMapping(this.requireMapping(id));
  }

  listMappings(ownerUri: string | undefined, paging: Paging): ListResult<WacSipMapping> {
    let candidates: Iterable<WacSipMapping> = this.mappingsById.values();
    if (ownerUri !== undefined) {
      const id = this.mappingIdByOwner.get(ownerUri);
      candidates = id === undefined ? [] : [this.mappingsById.get(id)!];
    }

    const { total, items } = pageOf(candidates, () => true, paging);
    return { total, items: items.map(copyMapping) };
  }

  createMapping(input: unknown): WacSipMapping {
    const body = readObject(input, 'The request body');
    checkKeys(body, ['ownerUri', 'credential'], 'SIP mapping', false);
    if (body.ownerUri === undefined) throw badRequest('ownerUri is required.');
    if (body.credential === undefined) throw badRequest('credential is required.');

    const ownerUri = readString(body.ownerUri, 'ownerUri');
    const match = OWNER_URI_PATTERN.exec(ownerUri);
    if (!match) {
      throw badRequest(`ownerUri must look like wac-user:<user id>, not "${ownerUri}".`);
    }
    if (!this.usersById.has(match[1])) {
      throw badRequest(`ownerUri names no existing user: ${ownerUri}.`);
    }
    const credential = readCredential(body.credential);
    if (this.mappingIdByOwner.has(ownerUri)) {
      throw conflict(`${ownerUri} already has a SIP mapping.`);
    }

    const id = this.takeId(undefined, this.mappingsById, 'SIP mapping');
    const record: WacSipMapping = { id, ownerUri, credential };
    this.mappingsById.set(id, record);
    this.mappingIdByOwner.set(ownerUri, id);
    return copyMapping(record);
  }

  replaceCredential(id: string, input: unknown): WacSipMapping {
    const current = this.requireMapping(id);
    const body = readObject(input, 'The request body');
    checkKeys(body, ['ownerUri', 'credential'], 'SIP mapping', false);
    if (body.ownerUri !== undefined && body.ownerUri !== current.ownerUri) {
      throw badRequest('ownerUri cannot change; delete the mapping and create another.');
    }
    if (body.credential === undefined) throw badRequest('credential is required.');

    const credential = readCredential(body.credential);
    const next: WacSipMapping = { ...current, credential };
    this.mappingsById.set(id, next);
    return copyMapping(next);
  }

  deleteMapping(id: string): void {
    const mapping = this.requireMapping(id);
    this.mappingsById.delete(id);
    this.mappingIdByOwner.delete(mapping.ownerUri);
  }

  private requireMapping(id: string): WacSipMapping {
    const mapping = this.mappingsById.get(id);
    if (!mapping) throw notFound(`No SIP mapping has the id "${id}".`);
    return mapping;
  }

  // -------------------------------------------------------------- htable

  allEntries(): WacHtableEntry[] {
    return this.names().map((name) => ({ name, value: this.htable.get(name)! }));
  }

  listEntries(filters: HtableFilters, paging: Paging): ListResult<WacHtableEntry> {
    const namePart = filters.nameContains?.toLowerCase();
    const valuePart = filters.valueContains?.toLowerCase();

    const keep = (name: string) => {
      if (namePart !== undefined && !name.toLowerCase().includes(namePart)) return false;
      if (valuePart === undefined) return true;
      return this.htable.get(name)!.toLowerCase().includes(valuePart);
    };
    const { total, items } = pageOf(this.names(), keep, paging);
    const entries = items.map((name) => ({ name, value: this.htable.get(name)! }));
    return { total, items: entries };
  }

  createEntry(input: unknown): WacHtableEntry {
    const body = readObject(input, 'The request body');
    checkKeys(body, ['name', 'value'], 'htable entry', false);
    if (body.name === undefined) throw badRequest('name is required.');
    if (body.value === undefined) throw badRequest('value is required.');

    const name = readNonEmpty(body.name, 'name');
    const value = readNonEmpty(body.value, 'value');
    if (this.htable.has(name)) throw conflict(`The htable already has an entry ${name}.`);

    this.htable.set(name, value);
    this.sortedNames = undefined;
    return { name, value };
  }

  deleteEntry(name: string): void {
    if (!this.htable.delete(name)) throw notFound(`The htable has no entry ${name}.`);
    this.sortedNames = undefined;
  }

  private names(): string[] {
    this.sortedNames ??= [...this.htable.keys()].sort();
    return this.sortedNames;
  }
}

function userKey(user: WacUser): string {
  return `${user.domain}/${user.username.toLowerCase()}`;
}

function applyDomainFields(target: WacDomain, body: JsonObject): void {
  for (const [key, value] of Object.entries(body)) {
    switch (key) {
      case 'domain':
        target.domain = readDomainName(value, 'domain');
        break;
      case 'parent':
        target.parent = value === null ? null : readDomainName(value, 'parent');
        break;
      case 'enableAnonymous':
      case 'remoteSipRegister':
        target[key] = readBoolean(value, key);
        break;
      case 'anonymousCapabilities':
      case 'origins':
        target[key] = readStringList(value, key);
        break;
      case 'services':
        target.services = readServices(value);
        break;
    }
  }
}

function applyUserFields(target: WacUser, body: JsonObject): void {
  for (const [key, value] of Object.entries(body)) {
    switch (key) {
      case 'domain':
        target.domain = readString(value, 'domain');
        break;
      case 'username':
        target.username = readNonEmpty(value, 'username');
        break;
      case 'email':
        target.email = readEmail(value);
        break;
      case 'displayName':
        target.displayName = readNullable(value, 'displayName');
        break;
      case 'role':
        target.role = readRole(value);
        break;
      case 'capabilities':
      case 'mobilePhone':
        target[key] = readStringList(value, key);
        break;
      case 'externalId': {
        const externalId = readNullable(value, 'externalId');
        if (externalId === '') {
          throw badRequest('externalId must not be empty; use null.');
        }
        target.externalId = externalId;
        break;
      }
    }
  }
}

function readCredential(value: unknown): WacSipCredential {
  const body = readObject(value, 'credential');
  checkKeys(body, CREDENTIAL_FIELDS, 'credential', false);
  if (body.username === undefined) throw badRequest('credential.username is required.');

  const optional = (key: 'password' | 'domain' | 'authProxy') =>
    body[key] === undefined ? null : readNullable(body[key], `credential.${key}`);
  return {
    username: readNonEmpty(body.username, 'credential.username'),
    password: optional('password'),
    domain: optional('domain'),
    authProxy: optional('authProxy'),
  };
}

// ------------------------------------------------------------------- HTTP

const PAGE_DEFAULT = 100;
const PAGE_MAX = 1000;

function readCount(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) {
    throw badRequest(`${name} must be a whole number of 0 or more.`);
  }
  return Number(raw);
}

/**
 * Reads a list's query: the named filters plus offset and limit. Unknown or
 * repeated parameters are 400s, so a client's typo cannot pass as "no filter".
 */
function readListQuery<F extends string>(
  ctx: Koa.Context,
  filters: readonly F[],
): { filters: Partial<Record<F, string>>; paging: Paging } {
  const query = ctx.query;
  const allowed: readonly string[] = [...filters, 'offset', 'limit'];
  const unknown = Object.keys(query).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw badRequest(`Unknown query parameters: ${unknown.join(', ')}.`);
  }

  const single = (name: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) throw badRequest(`Give the query parameter ${name} once.`);
    return value;
  };

  const picked: Partial<Record<F, string>> = {};
  for (const name of filters) {
    const value = single(name);
    if (value !== undefined) picked[name] = value;
  }

  // Larger limits are cut to the maximum, as paging clients must expect.
  const limit = Math.min(readCount(single('limit'), 'limit', PAGE_DEFAULT), PAGE_MAX);
  const offset = readCount(single('offset'), 'offset', 0);
  return { filters: picked, paging: { offset, limit } };
}

function sendList<T>(ctx: Koa.Context, result: ListResult<T>): void {
  ctx.set('X-Total-Count', String(result.total));
  ctx.body = result.items;
}

function sendCreated(ctx: Koa.Context, location: string, body: object): void {
  ctx.status = 201;
  ctx.set('Location', location);
  ctx.body = body;
}

/** Turns thrown errors and bodiless error statuses into the API's error shape. */
function errorShaper(): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const { status, message } = describeError(err);
      ctx.status = status;
      if (status === 401) ctx.set('WWW-Authenticate', 'Bearer realm="wac-core"');
      ctx.body = errorBody(status, message);
      return;
    }

    if (ctx.status < 400 || ctx.body != null) return;

    // Koa turns an unset status into 200 once a body is set, so set it again.
    const status = ctx.status;
    const where = `${ctx.method} ${ctx.path}`;
    const message =
      status === 405
        ? `${ctx.method} is not allowed on ${ctx.path}.`
        : status === 404
          ? `Nothing answers ${where}.`
          : `The emulator cannot answer ${where}.`;
    ctx.body = errorBody(status, message);
    ctx.status = status;
  };
}

function describeError(err: unknown): { status: number; message: string } {
  if (err instanceof ApiError) return { status: err.status, message: err.message };

  // http-errors, as thrown by ctx.throw (readJson's malformed body, say).
  const e = err as { status?: unknown; expose?: unknown; message?: unknown };
  const status = typeof e.status === 'number' && e.status >= 400 ? e.status : 500;
  const text = typeof e.message === 'string' ? e.message : '';
  if (status >= 500 || e.expose !== true) {
    // An emulator bug: say what broke, since a test is reading this.
    return { status, message: `The emulator failed: ${text || 'unknown error'}.` };
  }
  return { status, message: asSentence(text || 'the request was refused') };
}

function asSentence(text: string): string {
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

const BEARER_PATTERN = /^Bearer +(\S+) *$/i;

function authenticator(verifyToken: (token: string) => Promise<boolean>): Koa.Middleware {
  return async (ctx, next) => {
    const match = BEARER_PATTERN.exec(ctx.get('Authorization'));
    if (!match) throw new ApiError(401, 'A bearer token is required.');

    // A verifier that throws is treated as saying no, like an unreachable IdP.
    const token = match[1];
    const valid = await Promise.resolve()
      .then(() => verifyToken(token))
      .catch(() => false);
    if (valid !== true) throw new ApiError(401, 'The bearer token is not valid.');

    await next();
  };
}

function buildRouter(store: WacCoreStore): Router {
  // Case-sensitive so a client's `/sapi/sipmappings` typo fails as it would live.
  const router = new Router({ prefix: '/sapi', sensitive: true });

  router.get('/domains', (ctx) => {
    const { filters, paging } = readListQuery(ctx, ['domain']);
    sendList(ctx, store.listDomains(filters.domain, paging));
  });
  router.post('/domains', async (ctx) => {
    const domain = store.createDomain(await readJson(ctx), false);
    sendCreated(ctx, `/sapi/domains/${domain.id}`, domain);
  });
  router.get('/domains/:id', (ctx) => {
    ctx.body = store.getDomain(ctx.params.id);
  });
  router.patch('/domains/:id', async (ctx) => {
    ctx.body = store.patchDomain(ctx.params.id, await readJson(ctx));
  });
  router.delete('/domains/:id', (ctx) => {
    store.deleteDomain(ctx.params.id);
    ctx.status = 204;
  });

  router.get('/users', (ctx) => {
    const { filters, paging } = readListQuery(ctx, ['domain', 'username', 'externalId']);
    sendList(ctx, store.listUsers(filters, paging));
  });
  router.post('/users', async (ctx) => {
    const user = store.createUser(await readJson(ctx), false);
    sendCreated(ctx, `/sapi/users/${user.id}`, user);
  });
  router.get('/users/:id', (ctx) => {
    ctx.body = store.getUser(ctx.params.id);
  });
  router.patch('/users/:id', async (ctx) => {
    ctx.body = store.patchUser(ctx.params.id, await readJson(ctx));
  });
  router.delete('/users/:id', (ctx) => {
    store.deleteUser(ctx.params.id);
    ctx.status = 204;
  });

  router.get('/sipMappings', (ctx) => {
    const { filters, paging } = readListQuery(ctx, ['ownerUri']);
    sendList(ctx, store.listMappings(filters.ownerUri, paging));
  });
  router.post('/sipMappings', async (ctx) => {
    const mapping = store.createMapping(await readJson(ctx));
    sendCreated(ctx, `/sapi/sipMappings/${mapping.id}`, mapping);
  });
  router.get('/sipMappings/:id', (ctx) => {
    ctx.body = store.getMapping(ctx.params.id);
  });
  router.put('/sipMappings/:id', async (ctx) => {
    ctx.body = store.replaceCredential(ctx.params.id, await readJson(ctx));
  });
  router.delete('/sipMappings/:id', (ctx) => {
    store.deleteMapping(ctx.params.id);
    ctx.status = 204;
  });

  router.get('/htable', (ctx) => {
    const { filters, paging } = readListQuery(ctx, ['nameContains', 'valueContains']);
    sendList(ctx, store.listEntries(filters, paging));
  });
  router.post('/htable', async (ctx) => {
    const entry = store.createEntry(await readJson(ctx));
    sendCreated(ctx, `/sapi/htable/${encodeURIComponent(entry.name)}`, entry);
  });
  router.delete('/htable/:name', (ctx) => {
    store.deleteEntry(ctx.params.name);
    ctx.status = 204;
  });

  return router;
}

// ------------------------------------------------------------ the emulator

export interface WacCoreEmulatorOptions extends ListenOptions {
  /**
   * Decides whether a bearer token is valid (the Keycloak emulator's
   * verifyToken in practice).
   */
  verifyToken: (token: string) => Promise<boolean>;
}

export interface WacCoreEmulator extends RunningServer {
  /** `${url}/sapi`. */
  readonly baseUrl: string;
  readonly faults: Faults;
  readonly calls: CallLog;
  /** Deep copies of the stored records, in creation order. */
  domains(): WacDomain[];
  users(): WacUser[];
  sipMappings(): WacSipMapping[];
  /** Sorted by name. */
  htable(): WacHtableEntry[];
  /** Stores a domain directly, under the API's rules; throws their error. */
  seedDomain(d: Partial<WacDomain> & { domain: string }): WacDomain;
  /** Stores users directly (all or none), under the API's rules. */
  seedUsers(users: Array<Partial<WacUser> & { domain: string; username: string }>): WacUser[];
  /** Empties the data, the call log and the faults. */
  reset(): void;
}

export async function startWacCoreEmulator(
  options: WacCoreEmulatorOptions,
): Promise<WacCoreEmulator> {
  const store = new WacCoreStore();
  const faults = new Faults();
  const calls = new CallLog();
  const router = buildRouter(store);

  const app = new Koa();
  // Every failure is answered by errorShaper; Koa must not print anything.
  app.silent = true;
  app.use(faults.middleware());
  app.use(calls.middleware());
  app.use(errorShaper());
  app.use(authenticator(options.verifyToken));
  app.use(router.routes());
  app.use(router.allowedMethods());

  const server = await listen(app, { port: options.port, host: options.host });

  return {
    url: server.url,
    port: server.port,
    close: () => server.close(),
    baseUrl: `${server.url}/sapi`,
    faults,
    calls,
    domains: () => store.allDomains(),
    users: () => store.allUsers(),
    sipMappings: () => store.allMappings(),
    htable: () => store.allEntries(),
    seedDomain: (d) => store.createDomain(d, true),
    seedUsers: (users) => store.seedUsers(users),
    reset() {
      store.clear();
      calls.reset();
      faults.reset();
      faults.resetCounts();
    },
  };
}
