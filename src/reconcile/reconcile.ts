import type { KeycloakClient, UserRepresentation } from '../clients/keycloak.js';
import type { WacCoreClient, WacDomain, WacUser } from '../clients/wac-core.js';
import { errors } from '../errors.js';
import { mapLimited } from '../limit.js';
import type { Logger } from '../logger.js';
import { JOB_ATTRIBUTE } from '../model/users.js';
import { repair } from './repair.js';
import type { Difference, ReconcileReport, SharedField } from './report.js';

export interface ReconcileDeps {
  keycloak: KeycloakClient;
  wac: WacCoreClient;
  logger: Logger;
}

export interface ReconcileOptions {
  /** One domain, by name; every wac-core domain when left out. */
  domain?: string;
  /** Repair what is safe to repair; otherwise only read. */
  fix: boolean;
}

/** Keycloak users read a page: small enough for a quick answer, large enough for few calls. */
const KEYCLOAK_PAGE = 500;
/** wac-core lists at most this many records a page. */
const WAC_PAGE = 1000;
/** Look-ups and repairs in flight at once, so a large drift does not flood either backend. */
const IN_FLIGHT = 8;

const READ_ONLY = 'not repaired: a read-only run';

/**
 * What is kept of a Keycloak user while its domain is compared: a few short strings, so a
 * domain of 100 000 users fits in a few tens of megabytes.
 */
interface KeycloakEntry {
  username: string;
  email: string | null;
  domain: string | null;
  /** It has a `kitter_job` attribute: a create job of kitter made it. */
  byKitter: boolean;
}

interface Scan {
  deps: ReconcileDeps;
  report: ReconcileReport;
  /**
   * Keycloak ids of users whose two records sit in different domains. Both domains' scans
   * meet such a user; the first reports it and the second skips it. Holds drift only.
   */
  crossed: Set<string>;
  /** wac-core domain names by id. */
  domainNames: Map<string, string>;
}

/**
 * Compares the users of one domain, or of every domain, in Keycloak and in wac-core, and with
 * `fix` repairs what is safe to repair. Both sides are read page by page; only the Keycloak
 * side of the domain at hand is held, as small records indexed by id.
 */
export async function reconcile(
  deps: ReconcileDeps,
  options: ReconcileOptions,
): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    domains: 0,
    keycloak_users: 0,
    wac_core_users: 0,
    drift: [],
    fixed: [],
    left: [],
  };
  const scan: Scan = { deps, report, crossed: new Set(), domainNames: new Map() };

  for await (const domain of domainsOf(deps.wac, options.domain)) await scanDomain(scan, domain);

  report.drift.sort(
    (a, b) =>
      a.domain.localeCompare(b.domain) ||
      a.username.localeCompare(b.username) ||
      a.kind.localeCompare(b.kind),
  );

  // Every domain is read before anything is repaired, so no repair shifts a page being read.
  const outcomes = options.fix
    ? await mapLimited(report.drift, IN_FLIGHT, (item) => repair(deps, item))
    : [];
  report.drift.forEach((item, index) => {
    const { fixable: _fixable, reason, ...record } = item;
    const outcome = outcomes[index];
    if (outcome && 'fixed' in outcome) report.fixed.push({ ...record, action: outcome.fixed });
    else report.left.push({ ...record, reason: outcome?.left ?? reason ?? READ_ONLY });
  });

  const { drift, fixed, left, ...counts } = report;
  const outcome = { drift: drift.length, fixed: fixed.length, left: left.length };
  deps.logger.info({ ...options, ...counts, ...outcome }, 'reconciled');
  return report;
}

async function* domainsOf(wac: WacCoreClient, name: string | undefined) {
  if (name !== undefined) {
    const domain = await wac.findDomainByName(name.toLowerCase());
    if (!domain) throw errors.notFound(`domain ${name}`);
    yield domain;
    return;
  }

  for (let offset = 0; ; offset += WAC_PAGE) {
    const page = await wac.listDomains({ offset, limit: WAC_PAGE });
    yield* page.items;
    if (page.items.length < WAC_PAGE || offset + WAC_PAGE >= page.total) return;
  }
}

async function scanDomain(scan: Scan, domain: WacDomain): Promise<void> {
  const { keycloak, wac } = scan.deps;
  scan.report.domains += 1;
  scan.domainNames.set(domain.id, domain.domain);

  const unmatched = await keycloakUsersOf(keycloak, domain.domain);
  scan.report.keycloak_users += unmatched.size;

  for (let offset = 0; ; offset += WAC_PAGE) {
    const page = await wac.listUsers({ domain: domain.id, offset, limit: WAC_PAGE });
    scan.report.wac_core_users += page.items.length;
    await mapLimited(page.items, IN_FLIGHT, (user) => checkWacUser(scan, domain, user, unmatched));
    if (page.items.length < WAC_PAGE || offset + WAC_PAGE >= page.total) break;
  }

  // What is left has no wac-core record in this domain: it may have one in another domain.
  const ids = [...unmatched.keys()];
  await mapLimited(ids, IN_FLIGHT, (id) => checkKeycloakUser(scan, id, unmatched.get(id)!));
}

/** The domain's Keycloak users by id, each as a small record. */
async function keycloakUsersOf(keycloak: KeycloakClient, domain: string) {
  const users = new Map<string, KeycloakEntry>();
  for (let first = 0; ; first += KEYCLOAK_PAGE) {
    const page = await keycloak.findUsers({ attributes: { domain }, first, max: KEYCLOAK_PAGE });
    for (const user of page) if (user.id) users.set(user.id, entryOf(user));
    if (page.length < KEYCLOAK_PAGE) return users;
  }
}

/** Matches one wac-core user of the domain to its Keycloak user, taking that out of `unmatched`. */
async function checkWacUser(
  scan: Scan,
  domain: WacDomain,
  user: WacUser,
  unmatched: Map<string, KeycloakEntry>,
): Promise<void> {
  const keycloakId = user.externalId;
  if (!keycloakId) {
    scan.report.drift.push({
      kind: 'unlinked',
      domain: domain.domain,
      username: user.username,
      keycloak_id: null,
      wac_core_id: user.id,
      fixable: false,
      reason: 'no externalId: not made by kitter',
    });
    return;
  }

  const entry = unmatched.get(keycloakId);
  if (entry) {
    unmatched.delete(keycloakId);
    compare(scan, keycloakId, entry, user, domain.domain);
    return;
  }
  if (scan.crossed.has(keycloakId)) return;

  // Not among the domain's Keycloak users: it may be in another domain (or was created since
  // this domain's Keycloak users were read), or gone.
  const found = await scan.deps.keycloak.getUser(keycloakId);
  if (found) {
    compare(scan, keycloakId, entryOf(found), user, domain.domain);
    return;
  }
  scan.report.drift.push({
    kind: 'wac_core_only',
    domain: domain.domain,
    username: user.username,
    keycloak_id: keycloakId,
    wac_core_id: user.id,
    fixable: true,
  });
}

/** A Keycloak user with no wac-core record in its domain: looked up across every domain. */
async function checkKeycloakUser(scan: Scan, id: string, entry: KeycloakEntry): Promise<void> {
  if (scan.crossed.has(id)) return;

  const record = await scan.deps.wac.findUserByKeycloakId(id);
  if (record) {
    compare(scan, id, entry, record, await domainNameOf(scan, record.domain));
    return;
  }
  scan.report.drift.push({
    kind: 'keycloak_only',
    domain: entry.domain ?? '',
    username: entry.username,
    keycloak_id: id,
    wac_core_id: null,
    fixable: entry.byKitter,
    ...(entry.byKitter ? {} : { reason: `no ${JOB_ATTRIBUTE} attribute: not made by kitter` }),
  });
}

/** Reports the fields a Keycloak user and its wac-core record disagree on, if any. */
function compare(
  scan: Scan,
  keycloakId: string,
  entry: KeycloakEntry,
  record: WacUser,
  recordDomain: string,
): void {
  const differences = differencesOf(entry, { ...record, domain: recordDomain });
  if (differences.length === 0) return;

  if (differences.some((difference) => difference.field === 'domain')) {
    if (scan.crossed.has(keycloakId)) return;
    scan.crossed.add(keycloakId);
  }
  scan.report.drift.push({
    kind: 'different',
    domain: entry.domain ?? recordDomain,
    username: entry.username,
    keycloak_id: keycloakId,
    wac_core_id: record.id,
    differences,
    fixable: entry.domain !== null,
    ...(entry.domain === null ? { reason: 'the Keycloak user has no domain attribute' } : {}),
  });
}

/**
 * Both systems lower-case usernames and match them (and domain names) in any case, so values
 * that differ only in case are the same.
 */
function differencesOf(
  entry: KeycloakEntry,
  record: { username: string; email: string | null; domain: string },
): Difference[] {
  const pairs: Array<[SharedField, string | null, string | null]> = [
    ['username', entry.username, record.username],
    ['email', entry.email, record.email],
    ['domain', entry.domain, record.domain],
  ];
  return pairs
    .filter(([, keycloak, wac]) => (keycloak ?? '').toLowerCase() !== (wac ?? '').toLowerCase())
    .map(([field, keycloak, wac]) => ({
      field,
      keycloak: keycloak || null,
      wac_core: wac || null,
    }));
}

async function domainNameOf(scan: Scan, id: string): Promise<string> {
  const known = scan.domainNames.get(id);
  if (known) return known;

  // A record whose domain wac-core no longer has is named by the id it holds.
  const name = (await scan.deps.wac.getDomain(id))?.domain ?? id;
  scan.domainNames.set(id, name);
  return name;
}

function entryOf(user: UserRepresentation): KeycloakEntry {
  const attribute = (key: string) => user.attributes?.[key]?.[0];
  return {
    username: user.username ?? '',
    email: user.email ?? null,
    domain: attribute('domain') ?? null,
    byKitter: Boolean(attribute(JOB_ATTRIBUTE)),
  };
}
