import { createHash, timingSafeEqual } from 'node:crypto';

import {
  createRemoteJWKSet,
  errors as jose,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type Koa from 'koa';

import { backendErrorOf } from '../clients/backend-errors.js';
import type { Config } from '../config.js';
import { BackendError, errors } from '../errors.js';
import type { ApiState } from './middleware.js';

/**
 * Who made a request, as far as the logs and routes need to know; never the token itself. A
 * static token is told by its position in `KITTER_API_TOKENS`, counting from 1.
 */
export type Caller =
  | { kind: 'static-token'; index: number }
  | { kind: 'keycloak'; subject?: string; username?: string };

export interface AuthOptions {
  /** The bearer tokens of `KITTER_API_TOKENS`. */
  staticTokens: string[];
  keycloakUrl: string;
  realm: string;
  /** A realm role or a role of any client that a Keycloak token must carry. */
  requiredRole: string;
  /** How long one fetch of the realm's keys may take. */
  timeoutMs: number;
}

/** Three base64url parts: the compact form of a signed JWT. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The asymmetric algorithms a Keycloak realm can sign with; never `none` or HMAC. */
const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

const FETCH_KEYS = 'fetch signing keys';

/**
 * Tells who a bearer token belongs to: one of the configured static tokens, or a Keycloak
 * access token of the realm, verified against the realm's published keys and holding the
 * required role.
 */
export class Authenticator {
  private readonly digests: Buffer[];
  private readonly keys: JWTVerifyGetKey;
  private readonly issuer: string;

  constructor(private readonly options: AuthOptions) {
    this.digests = options.staticTokens.map(digest);
    this.issuer = `${options.keycloakUrl}/realms/${options.realm}`;

    // jose caches the key set, and fetches it again when a token names a key it does not hold
    // (Keycloak rotated its keys), at most once per cooldown (30 s) so that made-up key ids
    // cannot hammer Keycloak.
    const remote = createRemoteJWKSet(new URL(`${this.issuer}/protocol/openid-connect/certs`), {
      timeoutDuration: options.timeoutMs,
    });
    this.keys = async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        if (err instanceof jose.JWKSNoMatchingKey) throw err;
        if (err instanceof jose.JWKSMultipleMatchingKeys) throw err;
        // Anything else means the key set could not be fetched or read: the token may be fine.
        throw keySetFailure(err);
      }
    };
  }

  /** The caller behind an `Authorization` header; throws 401, 403 or 503 otherwise. */
  async identify(authorization: string): Promise<Caller> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw errors.unauthorized();

    const token = match[1];

    const index = this.staticIndex(token);
    if (index !== undefined) return { kind: 'static-token', index: index + 1 };
    if (!JWT_SHAPE.test(token)) throw errors.unauthorized('the bearer token is not valid');

    const claims = await this.verify(token);
    if (!hasRole(claims, this.options.requiredRole)) {
      throw errors.forbidden(
        `this token lacks the role "${this.options.requiredRole}" ` +
          '(a realm role or a client role) that kitter requires',
      );
    }
    return {
      kind: 'keycloak',
      subject: stringClaim(claims, 'sub'),
      username: stringClaim(claims, 'preferred_username'),
    };
  }

  /**
   * Whether a static token, known by its digest, is still configured: an admin session opened
   * with a token taken out of `KITTER_API_TOKENS` ends with it.
   */
  isStaticDigest(tokenDigest: string): boolean {
    return this.digests.some((known) => known.toString('hex') === tokenDigest);
  }

  /** Compares digests, so neither the tokens' contents nor their lengths show in the timing. */
  private staticIndex(token: string): number | undefined {
    const given = digest(token);
    let found: number | undefined;
    this.digests.forEach((known, index) => {
      if (timingSafeEqual(known, given) && found === undefined) found = index;
    });
    return found;
  }

  private async verify(token: string): Promise<JWTPayload> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.issuer,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      if (err instanceof BackendError) throw err;
      if (err instanceof jose.JWTExpired) throw errors.unauthorized('the bearer token has expired');
      if (err instanceof jose.JOSEError) {
        throw errors.unauthorized(`the bearer token is not valid (${reasonOf(err)})`);
      }
      throw err;
    }

    // Keycloak marks its access tokens `Bearer`; an ID or refresh token is not one.
    if (payload.typ !== undefined && payload.typ !== 'Bearer') {
      throw errors.unauthorized('the bearer token is not an access token');
    }
    return payload;
  }
}

/** The authenticator of a configuration; one per app, so every route shares its key cache. */
export function authenticatorOf(config: Config): Authenticator {
  return new Authenticator({
    staticTokens: config.apiTokens,
    keycloakUrl: config.keycloak.url,
    realm: config.keycloak.realm,
    requiredRole: config.requiredRole,
    timeoutMs: config.backendTimeoutMs,
  });
}

/** Checks the `Authorization` header and puts the caller in `ctx.state.caller`. */
export function bearerAuth(
  config: Config,
  authenticator = authenticatorOf(config),
): Koa.Middleware<ApiState> {
  return async (ctx, next) => {
    ctx.state.caller = await authenticator.identify(ctx.get('Authorization'));
    await next();
  };
}

/** True when the role is among the token's realm roles or the roles of any client. */
export function hasRole(claims: JWTPayload, role: string): boolean {
  const realmAccess = claims.realm_access as { roles?: unknown } | undefined;
  if (includes(realmAccess?.roles, role)) return true;

  const resourceAccess = claims.resource_access;
  if (typeof resourceAccess !== 'object' || resourceAccess === null) return false;
  return Object.values(resourceAccess).some((access) =>
    includes((access as { roles?: unknown } | null)?.roles, role),
  );
}

function includes(roles: unknown, role: string): boolean {
  return Array.isArray(roles) && roles.includes(role);
}

function stringClaim(claims: JWTPayload, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' ? value : undefined;
}

/** A static token's digest as an admin session keeps it: never the token itself. */
export function tokenDigest(token: string): string {
  return digest(token).toString('hex');
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Why jose refused a token, in words a client can act on; details stay out. */
function reasonOf(err: InstanceType<typeof jose.JOSEError>): string {
  if (err instanceof jose.JWTClaimValidationFailed) {
    return err.claim === 'iss' ? 'not issued by this realm' : `claim ${err.claim} refused`;
  }
  if (err instanceof jose.JWSSignatureVerificationFailed || err instanceof jose.JWKSNoMatchingKey) {
    return "not signed by one of the realm's keys";
  }
  if (err instanceof jose.JOSEAlgNotAllowed) return 'signature algorithm not accepted';
  return 'malformed';
}

function keySetFailure(err: unknown): BackendError {
  if (err instanceof jose.JWKSTimeout) {
    return new BackendError('keycloak', FETCH_KEYS, 'timeout', undefined, 'no answer in time');
  }
  // A status other than 200, a body that is not a key set.
  if (err instanceof jose.JOSEError) {
    return new BackendError('keycloak', FETCH_KEYS, 'unavailable', undefined, err.message);
  }
  return backendErrorOf(err, FETCH_KEYS, 'keycloak');
}
