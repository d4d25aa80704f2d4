import KcAdminClient, { NetworkError } from '@keycloak/keycloak-admin-client';
import { expect } from 'chai';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

import {
  parseSearchQuery,
  startKeycloakEmulator,
  type KeycloakEmulator,
} from '../../src/emulators/keycloak.js';

const REALM = 'quobis';
const KITTER = { clientId: 'kitter', clientSecret: 'kitter-secret' };
const READER = {
  clientId: 'reader',
  clientSecret: 'reader-secret',
  serviceAccountRoles: ['view-users', 'query-users'],
};
const NOBODY = { clientId: 'nobody', clientSecret: 'nobody-secret', serviceAccountRoles: [] };

/** Runs a call that must fail and hands back the admin client's error, to check status and body. */
async function failure(call: Promise<unknown>): Promise<NetworkError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof NetworkError) return err;
    throw err;
  }
  throw new Error('expected the call to fail, it succeeded');
}

async function adminClient(kc: KeycloakEmulator, client = KITTER): Promise<KcAdminClient> {
  const admin = new KcAdminClient({ baseUrl: kc.url, realmName: REALM });
  await admin.auth({
    grantType: 'client_credentials',
    clientId: client.clientId,
    clientSecret: client.clientSecret,
  });
  return admin;
}

function form(fields: Record<string, string>): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  };
}

describe('Keycloak emulator', function () {
  let kc: KeycloakEmulator;
  let admin: KcAdminClient;
  let tokenUrl: string;
  let usersUrl: string;

  before(async function () {
    kc = await startKeycloakEmulator({ port: 0, clients: [KITTER, READER, NOBODY] });
    tokenUrl = `${kc.url}/realms/${REALM}/protocol/openid-connect/token`;
    usersUrl = `${kc.url}/admin/realms/${REALM}/users`;
  });

  beforeEach(async function () {
    kc.reset();
    admin = await adminClient(kc);
  });

  after(async function () {
    await kc.close();
  });

  const authHeaders = () => ({
    authorization: `Bearer ${admin.accessToken}`,
    'content-type': 'application/json',
  });

  describe('token endpoint', function () {
    it('lets the real admin client authenticate with client_credentials', async function () {
      const client = new KcAdminClient({ baseUrl: kc.url, realmName: REALM });
      await client.auth({ grantType: 'client_credentials', ...KITTER });

      expect(client.accessToken).to.be.a('string');
      expect(client.refreshToken).to.equal(undefined);
      expect(await client.users.count()).to.equal(0);
    });

    it('answers client_credentials with a bearer token and no refresh token', async function () {
      const res = await fetch(tokenUrl, form({ grant_type: 'client_credentials', ...secretsOf() }));
      const body = (await res.json()) as Record<string, unknown>;

      expect(res.status).to.equal(200);
      expect(body).to.have.keys(
        'access_token',
        'expires_in',
        'refresh_expires_in',
        'token_type',
        'not-before-policy',
        'scope',
      );
      expect(body).to.include({
        expires_in: 300,
        refresh_expires_in: 0,
        token_type: 'Bearer',
        'not-before-policy': 0,
        scope: 'profile email',
      });
      expect(body).not.to.have.property('refresh_token');
    });

    it('accepts the client id and secret over HTTP Basic', async function () {
      const basic = Buffer.from(`${KITTER.clientId}:${KITTER.clientSecret}`).toString('base64');
      const init = form({ grant_type: 'client_credentials' });
      const res = await fetch(tokenUrl, {
        ...init,
        headers: { ...init.headers, authorization: `Basic ${basic}` },
      });

      expect(res.status).to.equal(200);
    });

    it('answers 401 unauthorized_client for a wrong secret or unknown client', async function () {
      for (const fields of [
        { client_id: KITTER.clientId, client_secret: 'wrong' },
        { client_id: 'ghost', client_secret: 'whatever' },
      ]) {
        const res = await fetch(tokenUrl, form({ grant_type: 'client_credentials', ...fields }));
        expect(res.status).to.equal(401);
        expect(await res.json()).to.deep.equal({
          error: 'unauthorized_client',
          error_description: 'Invalid client or Invalid client credentials',
        });
      }
    });

    it('answers 400 unsupported_grant_type for the password grant', async function () {
      const res = await fetch(
        tokenUrl,
        form({ grant_type: 'password', username: 'a', password: 'b', ...secretsOf() }),
      );

      expect(res.status).to.equal(400);
      expect(await res.json()).to.deep.equal({
        error: 'unsupported_grant_type',
        error_description: 'Unsupported grant_type',
      });
    });

    it('answers 404 "Realm does not exist" for another realm', async function () {
      const url = `${kc.url}/realms/elsewhere/protocol/openid-connect/token`;
      const res = await fetch(url, form({ grant_type: 'client_credentials', ...secretsOf() }));

      expect(res.status).to.equal(404);
      expect(await res.json()).to.deep.equal({ error: 'Realm does not exist' });
    });

    it('signs RS256 tokens that verify against the JWKS with Keycloak claims', async function () {
      const config = (await (
        await fetch(`${kc.url}/realms/${REALM}/.well-known/openid-configuration`)
      ).json()) as Record<string, string>;
      expect(config.issuer).to.equal(kc.issuer);
      expect(config.token_endpoint).to.equal(tokenUrl);

      const jwks = createRemoteJWKSet(new URL(config.jwks_uri));
      const token = admin.accessToken as string;
      const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: kc.issuer });

      expect(protectedHeader.alg).to.equal('RS256');
      expect(protectedHeader.kid).to.be.a('string');
      expect(payload).to.include({
        typ: 'Bearer',
        azp: 'kitter',
        preferred_username: 'service-account-kitter',
      });
      expect(payload.sub).to.be.a('string');
      expect(payload.jti).to.be.a('string');
      expect((payload.exp as number) - (payload.iat as number)).to.equal(300);
      expect(payload.resource_access).to.deep.equal({
        'realm-management': { roles: ['manage-users', 'view-users', 'query-users'] },
      });
      expect(payload.realm_access).to.have.property('roles').that.is.an('array');
    });

    it('signs with a new kid after rotation and still publishes the old key', async function () {
      const oldKid = decodeProtectedHeader(admin.accessToken as string).kid;
      const newKid = await kc.rotateSigningKey();
      const fresh = await adminClient(kc);

      expect(newKid).to.not.equal(oldKid);
      expect(decodeProtectedHeader(fresh.accessToken as string).kid).to.equal(newKid);
      const certs = (await (await fetch(`${kc.issuer}/protocol/openid-connect/certs`)).json()) as {
        keys: Array<{ kid: string }>;
      };
      expect(certs.keys.map((k) => k.kid)).to.deep.equal([newKid, oldKid]);
      expect(await admin.users.count()).to.equal(0);
    });

    it('refuses tokens of a dropped key once rotated with keepPrevious false', async function () {
      await kc.rotateSigningKey({ keepPrevious: false });

      const err = await failure(admin.users.count());
      expect(err.response.status).to.equal(401);
    });
  });

  describe('admin authentication', function () {
    it('answers 401 without a bearer token', async function () {
      const res = await fetch(usersUrl);

      expect(res.status).to.equal(401);
      expect(await res.json()).to.deep.equal({ error: 'HTTP 401 Unauthorized' });
    });

    it('answers 401 for a malformed token and for one signed elsewhere', async function () {
      const other = await startKeycloakEmulator({ clients: [KITTER] });
      try {
        const foreign = await other.issueToken({
          clientRoles: { 'realm-management': ['manage-users'] },
        });
        for (const token of ['not-a-jwt', foreign]) {
          const res = await fetch(usersUrl, { headers: { authorization: `Bearer ${token}` } });
          expect(res.status).to.equal(401);
        }
      } finally {
        await other.close();
      }
    });

    it('answers 401 for an expired token', async function () {
      const token = await kc.issueToken({
        clientRoles: { 'realm-management': ['manage-users'] },
        expiresInSeconds: -5,
      });
      const res = await fetch(usersUrl, { headers: { authorization: `Bearer ${token}` } });

      expect(res.status).to.equal(401);
      expect(await kc.verifyToken(token)).to.equal(false);
    });

    it('answers 401 to the admin client once expireAllTokens revoked its token', async function () {
      expect(await kc.verifyToken(admin.accessToken as string)).to.equal(true);
      kc.expireAllTokens();

      const err = await failure(admin.users.find());
      expect(err.response.status).to.equal(401);
      expect(err.responseData).to.deep.equal({ error: 'HTTP 401 Unauthorized' });
      expect(await kc.verifyToken(admin.accessToken as string)).to.equal(false);
    });

    it('answers 403 to writes from a service account without manage-users', async function () {
      const reader = await adminClient(kc, READER);

      expect(await reader.users.find()).to.deep.equal([]);
      const err = await failure(reader.users.create({ username: 'mallory' }));
      expect(err.response.status).to.equal(403);
      expect(err.responseData).to.deep.equal({ error: 'HTTP 403 Forbidden' });
    });

    it('answers 403 to reads from a service account with no admin role', async function () {
      const nobody = await adminClient(kc, NOBODY);

      const err = await failure(nobody.users.find());
      expect(err.response.status).to.equal(403);
    });

    it('accepts test tokens from issueToken that carry the right client role', async function () {
      const token = await kc.issueToken({
        username: 'operator',
        clientRoles: { 'realm-management': ['view-users'] },
      });
      const res = await fetch(`${usersUrl}/count`, {
        headers: { authorization: `Bearer ${token}` },
      });

      expect(res.status).to.equal(200);
      const claims = decodeJwt(token);
      expect(claims.preferred_username).to.equal('operator');
      expect(claims.iss).to.equal(kc.issuer);
    });
  });

  describe('creating users', function () {
    it('answers 201 with an empty body and the new id in Location', async function () {
      const res = await fetch(`${usersUrl}/`, {
        method: 'POST',
        headers: authHeaders(),
        body: JSON.stringify({ username: 'alice' }),
      });

      expect(res.status).to.equal(201);
      expect(await res.text()).to.equal('');
      const location = res.headers.get('location') ?? '';
      expect(location).to.match(new RegExp(`^${usersUrl}/[0-9a-f-]{36}$`));
      const id = location.split('/').pop();
      expect(kc.users().map((u) => u.id)).to.deep.equal([id]);
    });

    it('returns the id from Location through the admin client', async function () {
      const { id } = await admin.users.create({ username: 'alice', enabled: true });

      const user = await admin.users.findOne({ id });
      expect(user?.username).to.equal('alice');
      expect(user?.enabled).to.equal(true);
    });

    it('stores username and email lower-cased', async function () {
      const { id } = await admin.users.create({
        username: 'Alice.Smith',
        email: 'Alice.Smith@Example.COM',
      });

      const user = await admin.users.findOne({ id });
      expect(user).to.include({ username: 'alice.smith', email: 'alice.smith@example.com' });
    });

    it('leaves a new user disabled unless enabled is given, like Keycloak', async function () {
      const { id } = await admin.users.create({ username: 'alice' });

      expect((await admin.users.findOne({ id }))?.enabled).to.equal(false);
    });

    it('answers 409 with "User exists with same username" for a taken username', async function () {
      await admin.users.create({ username: 'alice' });

      const err = await failure(admin.users.create({ username: 'ALICE' }));
      expect(err.response.status).to.equal(409);
      expect(err.responseData).to.deep.equal({ errorMessage: 'User exists with same username' });
    });

    it('answers 409 with "User exists with same email" for a taken email', async function () {
      await admin.users.create({ username: 'alice', email: 'shared@example.com' });

      const err = await failure(
        admin.users.create({ username: 'bob', email: 'SHARED@example.com' }),
      );
      expect(err.response.status).to.equal(409);
      expect(err.responseData).to.deep.equal({ errorMessage: 'User exists with same email' });
    });

    it('lets two users share an email when the realm allows duplicates', async function () {
      kc.configure({ duplicateEmailsAllowed: true });
      await admin.users.create({ username: 'alice', email: 'shared@example.com' });
      await admin.users.create({ username: 'bob', email: 'shared@example.com' });

      expect(await admin.users.count({ email: 'shared@example.com' })).to.equal(2);
    });

    it('answers 400 error-invalid-length for a username shorter than 3', async function () {
      const err = await failure(admin.users.create({ username: 'al' }));

      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.equal({
        field: 'username',
        errorMessage: 'error-invalid-length',
        params: ['username', 3, 255],
      });
    });

    it('answers 400 error-invalid-length for a username longer than 255', async function () {
      const err = await failure(admin.users.create({ username: 'a'.repeat(256) }));

      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.include({ errorMessage: 'error-invalid-length' });
    });

    it('answers 400 error-username-invalid-character for CJK and whitespace', async function () {
      for (const username of ['用户名字', 'alice smith', 'tab\there']) {
        const err = await failure(admin.users.create({ username }));
        expect(err.response.status).to.equal(400);
        expect(err.responseData).to.deep.equal({
          field: 'username',
          errorMessage: 'error-username-invalid-character',
          params: ['username', username],
        });
      }
    });

    it('accepts letters, digits and _ . - @ in usernames', async function () {
      const { id } = await admin.users.create({ username: 'a_b.c-d@e9' });

      expect(id).to.be.a('string');
    });

    it('answers 400 error-user-attribute-required without a username', async function () {
      const err = await failure(admin.users.create({ email: 'x@example.com' }));

      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.equal({
        field: 'username',
        errorMessage: 'error-user-attribute-required',
        params: ['username'],
      });
    });

    it('answers 400 error-invalid-email for a malformed email', async function () {
      const err = await failure(admin.users.create({ username: 'alice', email: 'not-an-email' }));

      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.equal({
        field: 'email',
        errorMessage: 'error-invalid-email',
        params: ['email', 'not-an-email'],
      });
    });

    it('answers 400 with a list when several fields are invalid at once', async function () {
      const err = await failure(admin.users.create({ username: 'a b', email: 'nope' }));

      expect(err.response.status).to.equal(400);
      const body = err.responseData as { errors: Array<{ field: string }> };
      expect(body.errors.map((e) => e.field)).to.deep.equal(['username', 'email']);
    });

    it('answers 400 unknown_error for an unknown top-level property', async function () {
      const res = await fetch(usersUrl, {
        method: 'POST',
        headers: authHeaders(),
        body: JSON.stringify({ username: 'alice', nickname: 'al' }),
      });

      expect(res.status).to.equal(400);
      expect(await res.json()).to.deep.equal({ error: 'unknown_error' });
      expect(kc.users()).to.have.length(0);
    });

    it('stores a password from credentials as a hash only', async function () {
      const { id } = await admin.users.create({
        username: 'alice',
        credentials: [{ type: 'password', value: 'Secret-123', temporary: true }],
      });

      expect(kc.checkPassword(id, 'Secret-123')).to.equal(true);
      expect(kc.checkPassword(id, 'secret-123')).to.equal(false);
      const stored = kc.users()[0];
      expect(JSON.stringify(stored)).not.to.contain('Secret-123');
      expect(stored.requiredActions).to.deep.equal(['UPDATE_PASSWORD']);
    });

    it('refuses a too short password on create and stores no user', async function () {
      kc.configure({ passwordMinLength: 8 });

      const err = await failure(
        admin.users.create({
          username: 'alice',
          credentials: [{ type: 'password', value: 'short', temporary: false }],
        }),
      );
      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.equal({
        error: 'invalidPasswordMinLengthMessage',
        error_description: 'Invalid password: minimum length 8.',
      });
      expect(kc.users()).to.have.length(0);
    });

    it('drops attributes silently when unmanaged attributes are DISABLED', async function () {
      kc.configure({ unmanagedAttributePolicy: 'DISABLED' });

      const { id } = await admin.users.create({
        username: 'alice',
        attributes: { tenant: ['acme'] },
      });
      expect((await admin.users.findOne({ id }))?.attributes).to.equal(undefined);

      await admin.users.update({ id }, { attributes: { tenant: ['acme'] } });
      expect(kc.users()[0].attributes).to.deep.equal({});
    });
  });

  describe('searching users', function () {
    beforeEach(function () {
      kc.seedUsers([
        {
          username: 'alice',
          email: 'alice@acme.com',
          firstName: 'Alice',
          lastName: 'Liddell',
          enabled: true,
          attributes: { tenant: ['acme'], role: ['admin'] },
        },
        {
          username: 'malice',
          email: 'mal@evil.org',
          firstName: 'Mal',
          enabled: false,
          attributes: { tenant: ['evil'] },
        },
        {
          username: 'bob',
          email: 'bob@acme.com',
          firstName: 'Bob',
          lastName: 'Alison',
          enabled: true,
          attributes: { tenant: ['acme'], role: ['user'] },
        },
        { username: 'carol', email: 'carol@acme.com', emailVerified: true },
      ]);
    });

    const names = (users: Array<{ username?: string }>) => users.map((u) => u.username);

    it('matches search as a prefix of username, email or names', async function () {
      expect(names(await admin.users.find({ search: 'ali' }))).to.deep.equal(['alice', 'bob']);
      expect(names(await admin.users.find({ search: 'mal' }))).to.deep.equal(['malice']);
    });

    it('matches search anywhere with a leading * and exactly when quoted', async function () {
      expect(names(await admin.users.find({ search: '*lice' }))).to.deep.equal(['alice', 'malice']);
      expect(names(await admin.users.find({ search: '"alice"' }))).to.deep.equal(['alice']);
      expect(names(await admin.users.find({ search: '"alic"' }))).to.deep.equal([]);
    });

    it('matches username as a substring, or whole with exact=true', async function () {
      expect(names(await admin.users.find({ username: 'lic' }))).to.deep.equal(['alice', 'malice']);
      expect(names(await admin.users.find({ username: 'lic', exact: true }))).to.deep.equal([]);
      expect(names(await admin.users.find({ username: 'ALICE', exact: true }))).to.deep.equal([
        'alice',
      ]);
    });

    it('filters by email, firstName and lastName, case-insensitively', async function () {
      expect(names(await admin.users.find({ email: 'ACME' }))).to.deep.equal([
        'alice',
        'bob',
        'carol',
      ]);
      expect(names(await admin.users.find({ firstName: 'al' }))).to.deep.equal(['alice', 'malice']);
      expect(names(await admin.users.find({ lastName: 'liddell', exact: true }))).to.deep.equal([
        'alice',
      ]);
    });

    it('finds users by attribute with q, every pair having to match', async function () {
      expect(names(await admin.users.find({ q: 'tenant:acme' }))).to.deep.equal(['alice', 'bob']);
      expect(names(await admin.users.find({ q: 'tenant:acme role:admin' }))).to.deep.equal([
        'alice',
      ]);
      expect(names(await admin.users.find({ q: 'tenant:acm' }))).to.deep.equal([]);
    });

    it('filters by enabled and emailVerified', async function () {
      expect(names(await admin.users.find({ enabled: false }))).to.deep.equal(['carol', 'malice']);
      expect(names(await admin.users.find({ emailVerified: true }))).to.deep.equal(['carol']);
    });

    it('pages with first and max over results sorted by username', async function () {
      expect(names(await admin.users.find())).to.deep.equal(['alice', 'bob', 'carol', 'malice']);
      expect(names(await admin.users.find({ first: 1, max: 2 }))).to.deep.equal(['bob', 'carol']);
      expect(names(await admin.users.find({ first: 3, max: 10 }))).to.deep.equal(['malice']);
    });

    it('leaves attributes out of a brief representation', async function () {
      const [full] = await admin.users.find({ username: 'alice', exact: true });
      const [brief] = await admin.users.find({
        username: 'alice',
        exact: true,
        briefRepresentation: true,
      });

      expect(full.attributes).to.deep.equal({ tenant: ['acme'], role: ['admin'] });
      expect(brief).not.to.have.property('attributes');
      expect(brief.email).to.equal('alice@acme.com');
    });

    it('counts with the same filters and answers a bare number', async function () {
      expect(await admin.users.count()).to.equal(4);
      expect(await admin.users.count({ q: 'tenant:acme' })).to.equal(2);
      expect(await admin.users.count({ search: '*lice' })).to.equal(2);

      const res = await fetch(`${usersUrl}/count?email=acme`, { headers: authHeaders() });
      expect(await res.text()).to.equal('3');
    });

    it('parses quoted q keys and values and skips words without a colon', function () {
      expect(parseSearchQuery(' a:1 loose "b c":"d \\"e\\"" f:g ')).to.deep.equal([
        ['a', '1'],
        ['b c', 'd "e"'],
        ['f', 'g'],
      ]);
    });
  });

  describe('reading, updating and deleting one user', function () {
    let id: string;

    beforeEach(async function () {
      ({ id } = await admin.users.create({
        username: 'alice',
        email: 'alice@acme.com',
        firstName: 'Alice',
        lastName: 'Liddell',
        enabled: true,
        attributes: { tenant: ['acme'], phone: ['+34 600'] },
      }));
    });

    it('answers 404 "User not found" for an unknown id', async function () {
      expect(await admin.users.findOne({ id: 'no-such-id' })).to.equal(null);

      const res = await fetch(`${usersUrl}/no-such-id`, { headers: authHeaders() });
      expect(res.status).to.equal(404);
      expect(await res.json()).to.deep.equal({ error: 'User not found' });
    });

    it('keeps attributes when a PUT has no attributes', async function () {
      await admin.users.update({ id }, { firstName: 'Alicia' });

      const user = await admin.users.findOne({ id });
      expect(user).to.include({ firstName: 'Alicia', email: 'alice@acme.com' });
      expect(user?.attributes).to.deep.equal({ tenant: ['acme'], phone: ['+34 600'] });
    });

    it('drops email and names left out of a PUT that has attributes', async function () {
      await admin.users.update({ id }, { attributes: { tenant: ['other'] } });

      const user = await admin.users.findOne({ id });
      expect(user?.attributes).to.deep.equal({ tenant: ['other'] });
      expect(user).not.to.have.property('email');
      expect(user).not.to.have.property('firstName');
      expect(user).not.to.have.property('lastName');
      expect(user?.username).to.equal('alice');
    });

    it('lower-cases a new username and email on PUT', async function () {
      await admin.users.update({ id }, { username: 'Alice2', email: 'NEW@Acme.com' });

      expect(await admin.users.findOne({ id })).to.include({
        username: 'alice2',
        email: 'new@acme.com',
      });
      expect(await admin.users.find({ username: 'alice2', exact: true })).to.have.length(1);
    });

    it("answers 409 when a PUT takes another user's username or email", async function () {
      await admin.users.create({ username: 'bob', email: 'bob@acme.com' });

      const byName = await failure(admin.users.update({ id }, { username: 'BOB' }));
      expect(byName.response.status).to.equal(409);
      expect(byName.responseData).to.deep.equal({
        errorMessage: 'User exists with same username',
      });
      const byEmail = await failure(admin.users.update({ id }, { email: 'bob@acme.com' }));
      expect(byEmail.response.status).to.equal(409);
      expect(byEmail.responseData).to.deep.equal({ errorMessage: 'User exists with same email' });
    });

    it('answers 400 read-only to a username change when editing is off', async function () {
      kc.configure({ editUsernameAllowed: false });

      const err = await failure(admin.users.update({ id }, { username: 'alice2' }));
      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.include({
        field: 'username',
        errorMessage: 'error-user-attribute-read-only',
      });
      await admin.users.update({ id }, { username: 'alice', firstName: 'Al' });
    });

    it('ignores credentials in a PUT', async function () {
      await admin.users.update(
        { id },
        { credentials: [{ type: 'password', value: 'ignored', temporary: false }] },
      );

      expect(kc.checkPassword(id, 'ignored')).to.equal(false);
    });

    it('answers 204 to reset-password and stores the new password', async function () {
      await admin.users.resetPassword({
        id,
        credential: { type: 'password', value: 'N3w-password', temporary: true },
      });

      expect(kc.checkPassword(id, 'N3w-password')).to.equal(true);
      expect(kc.users()[0].requiredActions).to.deep.equal(['UPDATE_PASSWORD']);

      await admin.users.resetPassword({
        id,
        credential: { type: 'password', value: 'Final-password', temporary: false },
      });
      expect(kc.users()[0].requiredActions).to.deep.equal([]);
    });

    it('answers 400 in the OAuth2 shape to a password under the policy', async function () {
      kc.configure({ passwordMinLength: 12 });

      const err = await failure(
        admin.users.resetPassword({ id, credential: { type: 'password', value: 'short' } }),
      );
      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.deep.equal({
        error: 'invalidPasswordMinLengthMessage',
        error_description: 'Invalid password: minimum length 12.',
      });
    });

    it('answers 400 missing_value to reset-password with an empty value', async function () {
      const err = await failure(
        admin.users.resetPassword({ id, credential: { type: 'password', value: '' } }),
      );

      expect(err.response.status).to.equal(400);
      expect(err.responseData).to.have.property('error', 'missing_value');
    });

    it('counts logouts per user', async function () {
      await admin.users.logout({ id });
      await admin.users.logout({ id });

      expect(kc.logoutCount(id)).to.equal(2);
      expect(kc.calls.count('POST /admin/realms/:realm/users/:id/logout')).to.equal(2);
    });

    it('deletes a user with 204, after which it is not found', async function () {
      await admin.users.del({ id });

      expect(await admin.users.findOne({ id })).to.equal(null);
      expect(await admin.users.count()).to.equal(0);
      const err = await failure(admin.users.del({ id }));
      expect(err.response.status).to.equal(404);
    });

    it('hands out deep copies from users()', function () {
      const [copy] = kc.users();
      copy.attributes.tenant.push('mutated');
      copy.username = 'mutated';

      expect(kc.users()[0].attributes.tenant).to.deep.equal(['acme']);
      expect(kc.users()[0].username).to.equal('alice');
    });
  });

  describe('faults and unknown routes', function () {
    it('answers 503 while faults are set and recovers after DELETE', async function () {
      const put = await fetch(`${kc.url}/_emulator/faults`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ error_rate: 1, error_status: 503 }),
      });
      expect(put.status).to.equal(200);

      const err = await failure(admin.users.find());
      expect(err.response.status).to.equal(503);

      const del = await fetch(`${kc.url}/_emulator/faults`, { method: 'DELETE' });
      expect(del.status).to.equal(204);
      expect(await admin.users.find()).to.deep.equal([]);
    });

    it('answers 404 "HTTP 404 Not Found" for an unknown path', async function () {
      const res = await fetch(`${kc.url}/realms/${REALM}/nothing-here`);

      expect(res.status).to.equal(404);
      expect(await res.json()).to.deep.equal({ error: 'HTTP 404 Not Found' });
    });

    it('answers 404 "Realm not found." for admin calls on another realm', async function () {
      const res = await fetch(`${kc.url}/admin/realms/elsewhere/users`, {
        headers: authHeaders(),
      });

      expect(res.status).to.equal(404);
      expect(await res.json()).to.deep.equal({ error: 'Realm not found.' });
    });
  });

  describe('seeding', function () {
    it('seeds 10 000 users quickly and serves them over the API', async function () {
      const started = Date.now();
      const ids = kc.seedUsers(
        Array.from({ length: 10_000 }, (_, i) => ({
          username: `user${String(i).padStart(5, '0')}`,
          email: `user${i}@example.com`,
          attributes: { tenant: [`t${i % 10}`] },
        })),
      );

      expect(Date.now() - started).to.be.below(2_000);
      expect(ids).to.have.length(10_000);
      expect(await admin.users.count()).to.equal(10_000);
      expect(await admin.users.count({ q: 'tenant:t3' })).to.equal(1_000);
      const [found] = await admin.users.find({ username: 'user04242', exact: true });
      expect(found.id).to.equal(ids[4242]);
    });

    it('refuses a batch with a duplicate and stores none of it', function () {
      kc.seedUsers([{ username: 'alice' }]);

      expect(() => kc.seedUsers([{ username: 'bob' }, { username: 'Alice' }])).to.throw(
        /User exists with same username/,
      );
      expect(kc.users().map((u) => u.username)).to.deep.equal(['alice']);
    });

    it('keeps lookups fast with 100 000 users', async function () {
      this.timeout(30_000);
      kc.seedUsers(
        Array.from({ length: 100_000 }, (_, i) => ({
          username: `bulk${i}`,
          email: `bulk${i}@example.com`,
        })),
      );

      const started = Date.now();
      for (let i = 0; i < 50; i++) {
        await admin.users.create({ username: `late${i}`, email: `late${i}@example.com` });
        await admin.users.find({ username: `late${i}`, exact: true });
      }
      expect(Date.now() - started).to.be.below(5_000);
      expect(await admin.users.count()).to.equal(100_050);
    });
  });

  function secretsOf() {
    return { client_id: KITTER.clientId, client_secret: KITTER.clientSecret };
  }
});
