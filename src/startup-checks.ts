import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { Cluster, type Redis } from 'ioredis';
import { decodeJwt } from 'jose';

import { KeycloakClient } from './clients/keycloak.js';
import { TokenSource } from './clients/token-source.js';
import type { Config } from './config.js';
import { BackendError } from './errors.js';
import { createRedis } from './redis.js';

/** The realm-management roles kitter's service account needs for what it does to users. */
export const REQUIRED_ROLES = ['manage-users', 'view-users', 'query-users'];

/** Tries of a Keycloak call that fails for a passing reason, about 3 s in all. */
const TRIES = 5;

/** Holds every realm-management role through composites. */
const REALM_ADMIN = 'realm-admin';

/** What the round trip writes: every attribute kitter relies on Keycloak to keep. */
const PROBE_ATTRIBUTES: Record<string, string[]> = {
  domain: ['kitter-startup-check.invalid'],
  phone_number: ['+10000000000'],
  kitter_job: ['startup-check'],
};

export interface StartupFindings {
  /** Each one stops the process. */
  problems: string[];
  /** Said, but the process starts. */
  warnings: string[];
}

/**
 * Checks, before the service starts, what would otherwise fail later and far from its cause:
 * a Redis that may evict queued jobs, a Keycloak client without a token or without the roles
 * kitter needs, and a realm that drops the attributes kitter writes. One sentence each.
 */
export async function checkStartup(config: Config): Promise<StartupFindings> {
  const findings: StartupFindings = { problems: [], warnings: [] };
  await Promise.all([checkEviction(config, findings), checkKeycloak(config, findings)]);
  return findings;
}

/**
 * Redis must never evict: an evicted key is a lost job, or a job half gone. Some managed Redis
 * services refuse CONFIG; then kitter cannot tell, and says so.
 */
async function checkEviction(config: Config, findings: StartupFindings): Promise<void> {
  const redis = createRedis(config.redis, 'probe');
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
    const policies = await Promise.all(nodes.map(readEvictionPolicy));

    for (const policy of new Set(policies)) {
      if (policy instanceof Error) {
        findings.warnings.push(
          `cannot read Redis's maxmemory-policy (${policy.message}); make sure it is ` +
            'noeviction, or Redis may drop queued jobs when its memory is full',
        );
      } else if (policy !== 'noeviction') {
        findings.problems.push(
          `Redis's maxmemory-policy is ${policy}, not noeviction: Redis would drop queued ` +
            'jobs when its memory is full (set maxmemory-policy noeviction)',
        );
      }
    }
  } catch (err) {
    findings.problems.push(`Redis did not answer the start-up check: ${messageOf(err)}`);
  } finally {
    redis.disconnect();
  }
}

async function readEvictionPolicy(node: Redis): Promise<string | Error> {
  try {
    const answer = (await node.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    return answer[1] ?? new Error('CONFIG GET answered nothing');
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

async function checkKeycloak(config: Config, findings: StartupFindings): Promise<void> {
  const { url, realm, clientId } = config.keycloak;
  const timeoutMs = config.backendTimeoutMs;
  const tokens = new TokenSource({ ...config.keycloak, timeoutMs });

  let token: string;
  try {
    token = await patiently(() => tokens.getAccessToken());
  } catch (err) {
    findings.problems.push(
      `the Keycloak client ${clientId} gets no token from realm ${realm} at ${url}: ` +
        messageOf(err),
    );
    return;
  }

  const missing = missingRoles(token);
  if (missing.length > 0) {
    findings.problems.push(
      `the Keycloak client ${clientId}'s token lacks the realm-management role` +
        `${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: give its service account ` +
        REQUIRED_ROLES.join(', '),
    );
    return;
  }

  const problem = await attributeRoundTrip(new KeycloakClient(tokens, { url, realm, timeoutMs }));
  if (problem) findings.problems.push(problem);
}

/** The required roles that a service-account token does not carry. */
export function missingRoles(token: string): string[] {
  const access = decodeJwt(token).resource_access as
    Record<string, { roles?: unknown } | undefined> | undefined;
  const roles = access?.['realm-management']?.roles;
  const held = new Set(Array.isArray(roles) ? roles : []);
  if (held.has(REALM_ADMIN)) return [];
  return REQUIRED_ROLES.filter((role) => !held.has(role));
}

/**
 * Writes a throwaway user with kitter's attributes, reads it back and deletes it. Since
 * Keycloak 24 a realm drops undeclared attributes on write without an error; only a write
 * shows it. Reading an existing user would not do: a realm that shows unmanaged attributes to
 * admins but ignores their writes (ADMIN_VIEW) reads fine, and a user kitter made earlier tells
 * what the realm did then, not now. The user is disabled, has no email or password, and lives
 * for three admin calls.
 */
async function attributeRoundTrip(keycloak: KeycloakClient): Promise<string | undefined> {
  const username = `kitter-startup-check-${randomBytes(6).toString('hex')}`;
  let id: string | undefined;
  try {
    id = await patiently(async () => {
      try {
        return await keycloak.createUser({
          username,
          enabled: false,
          attributes: PROBE_ATTRIBUTES,
        });
      } catch (err) {
        // A create whose answer was lost: the user is there, under its unique name.
        const made = await keycloak.findByUsername(username).catch(() => undefined);
        if (made?.id) return made.id;
        throw err;
      }
    });
    const stored = await patiently(() => keycloak.getUser(id!));
    const dropped = Object.entries(PROBE_ATTRIBUTES)
      .filter(([name, values]) => stored?.attributes?.[name]?.[0] !== values[0])
      .map(([name]) => name);
    if (dropped.length === 0) return undefined;

    return (
      `Keycloak's realm drops the user attribute${dropped.length > 1 ? 's' : ''} ` +
      `${dropped.join(', ')} that kitter writes: set the realm's unmanaged attribute policy ` +
      'to ENABLED, or declare them in its user profile'
    );
  } catch (err) {
    return `cannot check that Keycloak keeps kitter's user attributes: ${messageOf(err)}`;
  } finally {
    // A leftover disabled user is harmless; its name says where it came from.
    if (id) await patiently(() => keycloak.deleteUser(id!)).catch(() => undefined);
  }
}

/**
 * Runs a Keycloak call again while it fails for a passing reason (a 5xx, a 429, a dropped
 * connection, a timeout), so that a process started during a blip still starts; a
 * misconfiguration fails at once.
 */
async function patiently<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      // A 401 here is a wrong client secret, not an expired token: no use trying again.
      const passing = err instanceof BackendError && err.retryable && err.kind !== 'unauthorized';
      if (attempt >= TRIES || !passing) throw err;
      await sleep(100 * 2 ** attempt);
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
