import { expect } from 'chai';
import sinon from 'sinon';

import { startKeycloakEmulator, type KeycloakEmulator } from '../../src/emulators/keycloak.js';
import { API_TOKEN, startStack, type Answer, type Stack } from '../support/stack.js';

const CERTS = 'GET /realms/:realm/protocol/openid-connect/certs';
/** jose fetches the key set again for an unknown key id at most once in this time. */
const COOLDOWN_MS = 30_000;

describe('authentication with Keycloak access tokens', function () {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    await stack.close();
  });

  afterEach(() => {
    sinon.restore();
    stack.keycloak.faults.reset();
  });

  const withToken = (token: string, path = '/domains'): Promise<Answer> =>
    stack.call('GET', path, undefined, { authorization: `Bearer ${token}` });

  const adminToken = (username = 'alice') =>
    stack.keycloak.issueToken({ username, realmRoles: ['kitter-admin'] });

  it('accepts a token with kitter-admin as a realm role', async () => {
    const answer = await withToken(await adminToken());

    expect(answer.status).to.equal(200);
    expect(answer.body).to.deep.equal({ domains: [] });
  });

  it('accepts a token with kitter-admin as a role of some client', async () => {
    const token = await stack.keycloak.issueToken({
      realmRoles: ['offline_access'],
      clientRoles: { 'kitter-console': ['kitter-admin'] },
    });

    expect((await withToken(token)).status).to.equal(200);
  });

  it('answers 403 naming the role for a valid token without it', async () => {
    const token = await stack.keycloak.issueToken({
      realmRoles: ['offline_access', 'admin'],
      clientRoles: { 'realm-management': ['manage-users'] },
    });

    const answer = await withToken(token);

    expect(answer.status).to.equal(403);
    expect(answer.body.code).to.equal('forbidden');
    expect(answer.body.error).to.include('"kitter-admin"');
  });

  it('answers 401 for an expired token', async () => {
    const token = await stack.keycloak.issueToken({
      realmRoles: ['kitter-admin'],
      expiresInSeconds: -10,
    });

    const answer = await withToken(token);

    expect(answer.status).to.equal(401);
    expect(answer.body).to.deep.equal({
      error: 'the bearer token has expired',
      code: 'unauthorized',
    });
    expect(answer.headers.get('www-authenticate')).to.match(/^Bearer/);
  });

  it('answers 401 for a token of the right issuer signed by another Keycloak', async () => {
    const other = await startKeycloakEmulator({
      realm: 'quobis',
      clients: [{ clientId: 'kitter', clientSecret: 'other-secret' }],
    });
    try {
      const token = await other.issueToken({
        realmRoles: ['kitter-admin'],
        claims: { iss: stack.keycloak.issuer },
      });

      const answer = await withToken(token);

      expect(answer.status).to.equal(401);
      expect(answer.body.error).to.include("not signed by one of the realm's keys");
    } finally {
      await other.close();
    }
  });

  it('answers 401 for a token whose claims were changed after signing', async () => {
    const [header, , signature] = (await stack.keycloak.issueToken({ realmRoles: [] })).split('.');
    const payload = JSON.parse(
      Buffer.from((await adminToken()).split('.')[1], 'base64url').toString(),
    );
    const forged = Buffer.from(JSON.stringify(payload)).toString('base64url');

    const answer = await withToken(`${header}.${forged}.${signature}`);

    expect(answer.status).to.equal(401);
    expect(answer.body.code).to.equal('unauthorized');
  });

  it('answers 401 for a token of another issuer', async () => {
    const token = await stack.keycloak.issueToken({
      realmRoles: ['kitter-admin'],
      claims: { iss: `${stack.keycloak.url}/realms/master` },
    });

    const answer = await withToken(token);

    expect(answer.status).to.equal(401);
    expect(answer.body.error).to.include('not issued by this realm');
  });

  it('answers 401 for malformed tokens, never 500', async () => {
    const valid = await adminToken();
    const tokens = [
      'a.b.c',
      'not-a-jwt-and-not-a-static-token',
      valid.slice(0, -10),
      `${valid.split('.')[0]}.e30.`,
      `${Buffer.from('{"alg":"none"}').toString('base64url')}.e30.AAAA`,
    ];

    for (const token of tokens) {
      const answer = await withToken(token);
      expect(answer.status, token).to.equal(401);
      expect(answer.body.code, token).to.equal('unauthorized');
    }
  });

  it('refuses an ID token in place of an access token', async () => {
    const token = await stack.keycloak.issueToken({
      realmRoles: ['kitter-admin'],
      claims: { typ: 'ID' },
    });

    expect((await withToken(token)).status).to.equal(401);
  });

  it('still accepts the static tokens', async () => {
    const answer = await withToken(API_TOKEN);

    expect(answer.status).to.equal(200);
  });

  it('logs who called, never the token', async () => {
    const token = await adminToken('grace');

    await withToken(token);
    await withToken(API_TOKEN);

    const requests = stack.logs
      .map((line) => JSON.parse(line))
      .filter((line) => line.msg === 'request');
    const [byToken, byStatic] = requests.slice(-2);
    expect(byToken.caller).to.include({ kind: 'keycloak', username: 'grace' });
    expect(byToken.caller.subject).to.be.a('string');
    expect(byStatic.caller).to.deep.equal({ kind: 'static-token', index: 1 });
    expect(stack.logs.join('\n')).to.not.include(token.split('.')[2]);
    expect(stack.logs.join('\n')).to.not.include(API_TOKEN);
  });
});

describe("authentication against the realm's published keys", function () {
  let stack: Stack;
  let keycloak: KeycloakEmulator;

  // A stack each: the service caches the keys it fetched, and these tests count the fetches.
  beforeEach(async () => {
    stack = await startStack();
    keycloak = stack.keycloak;
  });

  afterEach(async () => {
    sinon.restore();
    await stack.close();
  });

  const withToken = (token: string): Promise<Answer> =>
    stack.call('GET', '/domains', undefined, { authorization: `Bearer ${token}` });

  const adminToken = () => keycloak.issueToken({ realmRoles: ['kitter-admin'] });

  it('fetches the keys again for a key rotated in, once the cooldown has passed', async () => {
    const old = await adminToken();
    expect((await withToken(old)).status).to.equal(200);
    const clock = sinon.useFakeTimers({
      now: Date.now(),
      toFake: ['Date'],
      shouldAdvanceTime: true,
    });

    await keycloak.rotateSigningKey({ keepPrevious: false });
    clock.tick(COOLDOWN_MS + 1000);
    const fresh = await withToken(await adminToken());
    const dropped = await withToken(old);

    expect(fresh.status).to.equal(200);
    expect(keycloak.calls.count(CERTS)).to.equal(2);
    expect(dropped.status).to.equal(401);
  });

  it('fetches the keys at most once a cooldown for made-up key ids', async () => {
    expect((await withToken(await adminToken())).status).to.equal(200);
    const clock = sinon.useFakeTimers({
      now: Date.now(),
      toFake: ['Date'],
      shouldAdvanceTime: true,
    });
    const madeUp = async () => {
      const [header, payload, signature] = (await adminToken()).split('.');
      const fields = JSON.parse(Buffer.from(header, 'base64url').toString());
      const renamed = Buffer.from(JSON.stringify({ ...fields, kid: 'made-up' }));
      return `${renamed.toString('base64url')}.${payload}.${signature}`;
    };

    for (let i = 0; i < 3; i++) expect((await withToken(await madeUp())).status).to.equal(401);
    clock.tick(COOLDOWN_MS + 1000);
    for (let i = 0; i < 3; i++) expect((await withToken(await madeUp())).status).to.equal(401);

    expect(keycloak.calls.count(CERTS)).to.equal(2);
  });

  it('answers 503, not 401, and accepts the token once the keys can be fetched', async () => {
    const token = await keycloak.issueToken({ realmRoles: ['kitter-admin'] });
    keycloak.faults.set({ error_rate: 1, error_status: 503, paths: '/certs$' });
    const headers = { authorization: `Bearer ${token}` };

    const down = await stack.call('GET', '/domains', undefined, headers);
    keycloak.faults.reset();
    const up = await stack.call('GET', '/domains', undefined, headers);

    expect(down.status).to.equal(503);
    expect(down.body.code).to.equal('backend_unavailable');
    expect(down.body.error).to.match(/^Keycloak is unavailable \(fetch signing keys/);
    expect(up.status).to.equal(200);
  });

  it('answers 503 when the connection to Keycloak is dropped', async () => {
    const token = await keycloak.issueToken({ realmRoles: ['kitter-admin'] });
    keycloak.faults.set({ down: true, paths: '/certs$' });

    const answer = await stack.call('GET', '/domains', undefined, {
      authorization: `Bearer ${token}`,
    });

    expect(answer.status).to.equal(503);
    expect(answer.body.code).to.equal('backend_unavailable');
  });

  it('keeps static tokens working while Keycloak is down', async () => {
    keycloak.faults.set({ down: true, paths: '/certs$' });

    expect((await stack.call('GET', '/domains')).status).to.equal(200);
  });
});

describe('authentication with another required role', function () {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ KITTER_REQUIRED_ROLE: 'provisioner' });
  });

  after(async () => {
    await stack.close();
  });

  it('takes the role from KITTER_REQUIRED_ROLE', async () => {
    const call = async (roles: string[]) => {
      const token = await stack.keycloak.issueToken({ realmRoles: roles });
      return stack.call('GET', '/domains', undefined, { authorization: `Bearer ${token}` });
    };

    const allowed = await call(['provisioner']);
    const refused = await call(['kitter-admin']);

    expect(allowed.status).to.equal(200);
    expect(refused.status).to.equal(403);
    expect(refused.body.error).to.include('"provisioner"');
  });
});
