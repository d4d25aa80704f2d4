import { expect } from 'chai';

import {
  startWacCoreEmulator,
  type WacCoreEmulator,
  type WacDomain,
  type WacSipMapping,
  type WacUser,
} from '../../src/emulators/wac-core.js';

const TOKEN = 'good-token';
const ID = /^[0-9a-f]{24}$/;

interface Reply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

interface CallOptions {
  body?: unknown;
  /** Sent as is, so tests can send malformed JSON. */
  rawBody?: string;
  /** null sends no Authorization header at all. */
  token?: string | null;
}

describe('wac-core emulator', () => {
  let wac: WacCoreEmulator;

  before(async () => {
    wac = await startWacCoreEmulator({
      port: 0,
      verifyToken: async (token) => token === TOKEN,
    });
  });

  after(async () => {
    await wac.close();
  });

  beforeEach(() => {
    wac.reset();
  });

  async function call<T = unknown>(
    method: string,
    path: string,
    options: CallOptions = {},
  ): Promise<Reply<T>> {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? TOKEN : options.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;

    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = 'application/json';

    const res = await fetch(`${wac.url}${path}`, { method, headers, body });
    const text = await res.text();
    return {
      status: res.status,
      headers: res.headers,
      body: (text === '' ? undefined : JSON.parse(text)) as T,
    };
  }

  function expectError(reply: Reply, status: number, error: string, words?: RegExp) {
    expect(reply.status).to.equal(status);
    expect(reply.body).to.have.keys('error', 'message');
    const body = reply.body as { error: string; message: string };
    expect(body.error).to.equal(error);
    expect(body.message).to.be.a('string').and.not.equal('');
    if (words) expect(body.message).to.match(words);
  }

  async function createDomain(domain: string, extra: Partial<WacDomain> = {}) {
    const reply = await call<WacDomain>('POST', '/sapi/domains', {
      body: { domain, ...extra },
    });
    expect(reply.status, JSON.stringify(reply.body)).to.equal(201);
    return reply.body;
  }

  async function createUser(domainId: string, username: string, extra = {}) {
    const reply = await call<WacUser>('POST', '/sapi/users', {
      body: { domain: domainId, username, ...extra },
    });
    expect(reply.status, JSON.stringify(reply.body)).to.equal(201);
    return reply.body;
  }

  describe('authentication', () => {
    it('answers 401 in the error shape when no token is sent', async () => {
      const reply = await call('GET', '/sapi/domains', { token: null });

      expectError(reply, 401, 'Unauthorized');
      expect(reply.headers.get('www-authenticate')).to.match(/^Bearer/);
    });

    it('answers 401 when the token is refused by verifyToken', async () => {
      const reply = await call('GET', '/sapi/users', { token: 'stolen-token' });

      expectError(reply, 401, 'Unauthorized', /not valid/);
    });

    it('answers 401 when the verifier throws', async () => {
      const other = await startWacCoreEmulator({
        verifyToken: async () => {
          throw new Error('IdP unreachable');
        },
      });
      try {
        const res = await fetch(`${other.baseUrl}/domains`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        expect(res.status).to.equal(401);
      } finally {
        await other.close();
      }
    });

    it('does not create anything for an unauthenticated POST', async () => {
      const reply = await call('POST', '/sapi/domains', {
        token: 'nope',
        body: { domain: 'acme.example' },
      });

      expect(reply.status).to.equal(401);
      expect(wac.domains()).to.deep.equal([]);
    });

    it('accepts a valid token with any case of the Bearer scheme', async () => {
      const res = await fetch(`${wac.baseUrl}/domains`, {
        headers: { authorization: `bearer ${TOKEN}` },
      });

      expect(res.status).to.equal(200);
    });
  });

  describe('domains', () => {
    it('creates a domain with defaults, a Location header and a 201', async () => {
      const reply = await call<WacDomain>('POST', '/sapi/domains', {
        body: { domain: 'Acme.Example' },
      });

      expect(reply.status).to.equal(201);
      expect(reply.body.id).to.match(ID);
      expect(reply.headers.get('location')).to.equal(`/sapi/domains/${reply.body.id}`);
      expect(reply.body).to.deep.equal({
        id: reply.body.id,
        domain: 'acme.example',
        enableAnonymous: false,
        anonymousCapabilities: [],
        origins: [],
        parent: null,
        remoteSipRegister: false,
        services: {},
      });
      expect(wac.domains()).to.deep.equal([reply.body]);
    });

    it('gives ObjectId-like ids that start with the creation time', async () => {
      const a = await createDomain('a.example');
      const b = await createDomain('b.example');

      const seconds = parseInt(a.id.slice(0, 8), 16);
      expect(Math.abs(seconds - Date.now() / 1000)).to.be.lessThan(5);
      expect(a.id).to.not.equal(b.id);
      expect(a.id < b.id).to.equal(true);
    });

    it('rejects a taken name with 409, whatever its case', async () => {
      await createDomain('acme.example');

      const reply = await call('POST', '/sapi/domains', {
        body: { domain: 'ACME.example' },
      });

      expectError(reply, 409, 'Conflict', /acme\.example/);
      expect(wac.domains()).to.have.length(1);
    });

    it('requires a hostname-like domain name', async () => {
      const missing = await call('POST', '/sapi/domains', { body: {} });
      const bad = await call('POST', '/sapi/domains', {
        body: { domain: 'no spaces' },
      });
      const number = await call('POST', '/sapi/domains', { body: { domain: 42 } });

      expectError(missing, 400, 'Bad Request', /domain is required/);
      expectError(bad, 400, 'Bad Request', /hostname/);
      expectError(number, 400, 'Bad Request');
    });

    it('accepts a parent that names an existing domain', async () => {
      await createDomain('quobis');

      const child = await createDomain('acme.example', { parent: 'Quobis' });

      expect(child.parent).to.equal('quobis');
    });

    it('rejects a parent that names no domain with 400', async () => {
      const reply = await call('POST', '/sapi/domains', {
        body: { domain: 'acme.example', parent: 'ghost.example' },
      });

      expectError(reply, 400, 'Bad Request', /ghost\.example/);
    });

    it('validates services: known names only, each an array of strings', async () => {
      const good = await createDomain('acme.example', {
        services: { contacts: ['wac', 'static'], presence: [] },
      });
      const unknown = await call('POST', '/sapi/domains', {
        body: { domain: 'b.example', services: { chat: [] } },
      });
      const notList = await call('POST', '/sapi/domains', {
        body: { domain: 'c.example', services: { login: 'keycloak' } },
      });

      expect(good.services).to.deep.equal({
        contacts: ['wac', 'static'],
        presence: [],
      });
      expectError(unknown, 400, 'Bad Request', /chat/);
      expectError(notList, 400, 'Bad Request', /services\.login/);
    });

    it('lists domains with X-Total-Count, filtering by name in any case', async () => {
      await createDomain('a.example');
      const b = await createDomain('b.example');

      const all = await call<WacDomain[]>('GET', '/sapi/domains');
      const one = await call<WacDomain[]>('GET', '/sapi/domains?domain=B.EXAMPLE');
      const none = await call<WacDomain[]>('GET', '/sapi/domains?domain=c.example');

      expect(all.status).to.equal(200);
      expect(all.body.map((d) => d.domain)).to.deep.equal(['a.example', 'b.example']);
      expect(all.headers.get('x-total-count')).to.equal('2');
      expect(one.body).to.deep.equal([b]);
      expect(one.headers.get('x-total-count')).to.equal('1');
      expect(none.body).to.deep.equal([]);
      expect(none.headers.get('x-total-count')).to.equal('0');
    });

    it('gets a domain by id', async () => {
      const made = await createDomain('acme.example');

      const reply = await call<WacDomain>('GET', `/sapi/domains/${made.id}`);

      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal(made);
    });

    it('answers 404 for an unknown or malformed domain id', async () => {
      const unknown = await call('GET', `/sapi/domains/${'a'.repeat(24)}`);
      const malformed = await call('GET', '/sapi/domains/not-an-id');
      const upper = await call('DELETE', `/sapi/domains/${'A'.repeat(24)}`);

      expectError(unknown, 404, 'Not Found');
      expectError(malformed, 404, 'Not Found');
      expectError(upper, 404, 'Not Found');
    });

    it('patches only the fields sent and returns the record', async () => {
      const made = await createDomain('acme.example', { origins: ['https://a'] });

      const reply = await call<WacDomain>('PATCH', `/sapi/domains/${made.id}`, {
        body: { enableAnonymous: true, anonymousCapabilities: ['call'] },
      });

      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({
        ...made,
        enableAnonymous: true,
        anonymousCapabilities: ['call'],
      });
      expect(wac.domains()[0]).to.deep.equal(reply.body);
    });

    it('renames a domain on PATCH and frees the old name', async () => {
      const made = await createDomain('old.example');

      const renamed = await call<WacDomain>('PATCH', `/sapi/domains/${made.id}`, {
        body: { domain: 'New.Example' },
      });
      const reused = await call('POST', '/sapi/domains', {
        body: { domain: 'old.example' },
      });

      expect(renamed.body.domain).to.equal('new.example');
      expect(reused.status).to.equal(201);
    });

    it('applies the create rules on PATCH', async () => {
      await createDomain('taken.example');
      const made = await createDomain('acme.example');
      const path = `/sapi/domains/${made.id}`;

      const taken = await call('PATCH', path, { body: { domain: 'taken.example' } });
      const ghost = await call('PATCH', path, { body: { parent: 'ghost.example' } });
      const self = await call('PATCH', path, { body: { parent: 'acme.example' } });
      const withId = await call('PATCH', path, { body: { id: made.id } });

      expectError(taken, 409, 'Conflict');
      expectError(ghost, 400, 'Bad Request');
      expectError(self, 400, 'Bad Request', /own parent/);
      expectError(withId, 400, 'Bad Request', /id/);
      expect(wac.domains()[1]).to.deep.equal(made);
    });

    it('refuses a PATCH that would make the parents a loop', async () => {
      const top = await createDomain('top.example');
      await createDomain('mid.example', { parent: 'top.example' });
      await createDomain('leaf.example', { parent: 'mid.example' });

      const reply = await call('PATCH', `/sapi/domains/${top.id}`, {
        body: { parent: 'leaf.example' },
      });

      expectError(reply, 400, 'Bad Request', /loop/);
    });

    it('refuses to rename a domain other domains name as parent', async () => {
      const top = await createDomain('top.example');
      await createDomain('child.example', { parent: 'top.example' });

      const reply = await call('PATCH', `/sapi/domains/${top.id}`, {
        body: { domain: 'moved.example' },
      });

      expectError(reply, 409, 'Conflict', /child\.example/);
    });

    it('deletes a domain with 204, after which it is gone', async () => {
      const made = await createDomain('acme.example');

      const deleted = await call('DELETE', `/sapi/domains/${made.id}`);
      const again = await call('GET', `/sapi/domains/${made.id}`);

      expect(deleted.status).to.equal(204);
      expect(deleted.body).to.equal(undefined);
      expect(again.status).to.equal(404);
      expect(wac.domains()).to.deep.equal([]);
    });

    it('refuses to delete a domain that still has users with 409', async () => {
      const made = await createDomain('acme.example');
      const user = await createUser(made.id, 'alice');

      const refused = await call('DELETE', `/sapi/domains/${made.id}`);
      await call('DELETE', `/sapi/users/${user.id}`);
      const allowed = await call('DELETE', `/sapi/domains/${made.id}`);

      expectError(refused, 409, 'Conflict', /user/);
      expect(allowed.status).to.equal(204);
    });

    it('refuses to delete a domain other domains name as parent with 409', async () => {
      const top = await createDomain('top.example');
      await createDomain('child.example', { parent: 'top.example' });

      const reply = await call('DELETE', `/sapi/domains/${top.id}`);

      expectError(reply, 409, 'Conflict', /child\.example/);
      expect(wac.domains()).to.have.length(2);
    });
  });

  describe('users', () => {
    let acme: WacDomain;
    let other: WacDomain;

    beforeEach(async () => {
      acme = await createDomain('acme.example');
      other = await createDomain('other.example');
    });

    it('creates a user with defaults, a Location header and a 201', async () => {
      const reply = await call<WacUser>('POST', '/sapi/users', {
        body: { domain: acme.id, username: 'Alice', externalId: 'kc-1' },
      });

      expect(reply.status).to.equal(201);
      expect(reply.headers.get('location')).to.equal(`/sapi/users/${reply.body.id}`);
      expect(reply.body).to.deep.equal({
        id: reply.body.id,
        domain: acme.id,
        username: 'Alice',
        email: null,
        displayName: null,
        role: 'user',
        capabilities: [],
        mobilePhone: [],
        externalId: 'kc-1',
      });
      expect(reply.body.id).to.match(ID);
    });

    it('rejects a user whose domain id names no domain with 400', async () => {
      const unknown = await call('POST', '/sapi/users', {
        body: { domain: 'f'.repeat(24), username: 'alice' },
      });
      const byName = await call('POST', '/sapi/users', {
        body: { domain: 'acme.example', username: 'alice' },
      });

      expectError(unknown, 400, 'Bad Request', /domain/);
      expectError(byName, 400, 'Bad Request', /domain/);
      expect(wac.users()).to.deep.equal([]);
    });

    it('requires a username', async () => {
      const missing = await call('POST', '/sapi/users', { body: { domain: acme.id } });
      const blank = await call('POST', '/sapi/users', {
        body: { domain: acme.id, username: '  ' },
      });

      expectError(missing, 400, 'Bad Request', /username/);
      expectError(blank, 400, 'Bad Request', /username/);
    });

    it('validates role, email and the string lists', async () => {
      const base = { domain: acme.id, username: 'alice' };
      const post = (extra: object) => call('POST', '/sapi/users', { body: { ...base, ...extra } });
      const role = await post({ role: 'root' });
      const email = await post({ email: 'x' });
      const phones = await post({ mobilePhone: [600000000] });

      expectError(role, 400, 'Bad Request', /role/);
      expectError(email, 400, 'Bad Request', /email/);
      expectError(phones, 400, 'Bad Request', /mobilePhone/);
    });

    it('rejects a username taken in the domain, in any case, with 409', async () => {
      await createUser(acme.id, 'alice');

      const reply = await call('POST', '/sapi/users', {
        body: { domain: acme.id, username: 'ALICE' },
      });

      expectError(reply, 409, 'Conflict', /acme\.example/);
    });

    it('allows the same username in another domain', async () => {
      await createUser(acme.id, 'alice');

      const reply = await call('POST', '/sapi/users', {
        body: { domain: other.id, username: 'alice' },
      });

      expect(reply.status).to.equal(201);
    });

    it('lists users and filters by domain, username and externalId', async () => {
      const alice = await createUser(acme.id, 'alice', { externalId: 'kc-a' });
      const bob = await createUser(acme.id, 'bob', { externalId: 'kc-b' });
      const otherAlice = await createUser(other.id, 'Alice');

      const list = async (query: string) => {
        const reply = await call<WacUser[]>('GET', `/sapi/users${query}`);
        expect(reply.status).to.equal(200);
        return reply.body.map((u) => u.id);
      };

      expect(await list('')).to.deep.equal([alice.id, bob.id, otherAlice.id]);
      expect(await list(`?domain=${acme.id}`)).to.deep.equal([alice.id, bob.id]);
      expect(await list('?username=ALICE')).to.deep.equal([alice.id, otherAlice.id]);
      expect(await list(`?domain=${other.id}&username=alice`)).to.deep.equal([otherAlice.id]);
      expect(await list('?externalId=kc-b')).to.deep.equal([bob.id]);
      expect(await list(`?externalId=kc-b&domain=${other.id}`)).to.deep.equal([]);
      expect(await list(`?domain=${'0'.repeat(24)}`)).to.deep.equal([]);
    });

    it('rejects a users domain filter that is not an id with 400', async () => {
      const reply = await call('GET', '/sapi/users?domain=acme.example');

      expectError(reply, 400, 'Bad Request', /domain/);
    });

    it('gets a user by id and answers 404 for unknown ids', async () => {
      const alice = await createUser(acme.id, 'alice');

      const found = await call<WacUser>('GET', `/sapi/users/${alice.id}`);
      const missing = await call('GET', `/sapi/users/${acme.id}`);
      const malformed = await call('GET', '/sapi/users/123');

      expect(found.body).to.deep.equal(alice);
      expectError(missing, 404, 'Not Found');
      expectError(malformed, 404, 'Not Found');
    });

    it('patches fields and keeps the rest', async () => {
      const alice = await createUser(acme.id, 'alice', { email: 'a@acme.example' });

      const reply = await call<WacUser>('PATCH', `/sapi/users/${alice.id}`, {
        body: { displayName: 'Alice A.', role: 'admin', capabilities: ['meetings'] },
      });

      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({
        ...alice,
        displayName: 'Alice A.',
        role: 'admin',
        capabilities: ['meetings'],
      });
      expect(wac.users()).to.deep.equal([reply.body]);
    });

    it('moves a user to another domain and updates the domain filter', async () => {
      const alice = await createUser(acme.id, 'alice');

      const moved = await call<WacUser>('PATCH', `/sapi/users/${alice.id}`, {
        body: { domain: other.id },
      });
      const inAcme = await call<WacUser[]>('GET', `/sapi/users?domain=${acme.id}`);
      const inOther = await call<WacUser[]>('GET', `/sapi/users?domain=${other.id}`);

      expect(moved.body.domain).to.equal(other.id);
      expect(inAcme.body).to.deep.equal([]);
      expect(inOther.body.map((u) => u.id)).to.deep.equal([alice.id]);
    });

    it('lists a domain in creation order even after users move into it', async () => {
      const early = await createUser(acme.id, 'early');
      const late = await createUser(other.id, 'late');
      await call('PATCH', `/sapi/users/${early.id}`, { body: { domain: other.id } });

      const reply = await call<WacUser[]>('GET', `/sapi/users?domain=${other.id}`);

      expect(reply.body.map((u) => u.id)).to.deep.equal([early.id, late.id]);
    });

    it('applies the duplicate and domain checks on PATCH', async () => {
      await createUser(other.id, 'alice');
      const alice = await createUser(acme.id, 'Alice');
      const bob = await createUser(acme.id, 'bob');

      const move = await call('PATCH', `/sapi/users/${alice.id}`, {
        body: { domain: other.id },
      });
      const rename = await call('PATCH', `/sapi/users/${bob.id}`, {
        body: { username: 'ALICE' },
      });
      const ghost = await call('PATCH', `/sapi/users/${bob.id}`, {
        body: { domain: 'e'.repeat(24) },
      });
      const ownCase = await call<WacUser>('PATCH', `/sapi/users/${alice.id}`, {
        body: { username: 'alice' },
      });

      expectError(move, 409, 'Conflict');
      expectError(rename, 409, 'Conflict');
      expectError(ghost, 400, 'Bad Request');
      expect(ownCase.status).to.equal(200);
      expect(ownCase.body.username).to.equal('alice');
    });

    it('finds a user by its new externalId after a PATCH, not by the old', async () => {
      const alice = await createUser(acme.id, 'alice', { externalId: 'kc-old' });

      await call('PATCH', `/sapi/users/${alice.id}`, {
        body: { externalId: 'kc-new' },
      });
      const byOld = await call<WacUser[]>('GET', '/sapi/users?externalId=kc-old');
      const byNew = await call<WacUser[]>('GET', '/sapi/users?externalId=kc-new');

      expect(byOld.body).to.deep.equal([]);
      expect(byNew.body.map((u) => u.id)).to.deep.equal([alice.id]);
    });

    it('deletes a user with 204 and frees the username', async () => {
      const alice = await createUser(acme.id, 'alice');

      const deleted = await call('DELETE', `/sapi/users/${alice.id}`);
      const again = await call('DELETE', `/sapi/users/${alice.id}`);
      const reused = await call('POST', '/sapi/users', {
        body: { domain: acme.id, username: 'alice' },
      });

      expect(deleted.status).to.equal(204);
      expectError(again, 404, 'Not Found');
      expect(reused.status).to.equal(201);
    });

    it('keeps SIP mappings when their user is deleted', async () => {
      const alice = await createUser(acme.id, 'alice');
      await call('POST', '/sapi/sipMappings', {
        body: { ownerUri: `wac-user:${alice.id}`, credential: { username: '1001' } },
      });

      await call('DELETE', `/sapi/users/${alice.id}`);

      expect(wac.sipMappings().map((m) => m.ownerUri)).to.deep.equal([`wac-user:${alice.id}`]);
    });
  });

  describe('SIP mappings', () => {
    let alice: WacUser;
    let bob: WacUser;

    beforeEach(async () => {
      const domain = await createDomain('acme.example');
      alice = await createUser(domain.id, 'alice');
      bob = await createUser(domain.id, 'bob');
    });

    const credential = {
      username: '1001',
      password: 's3cret',
      domain: 'sip.acme.example',
      authProxy: 'sip:proxy.acme.example',
    };

    async function createMapping(owner: WacUser, cred: object = credential) {
      const reply = await call<WacSipMapping>('POST', '/sapi/sipMappings', {
        body: { ownerUri: `wac-user:${owner.id}`, credential: cred },
      });
      expect(reply.status, JSON.stringify(reply.body)).to.equal(201);
      return reply;
    }

    it('creates a mapping with a 201 and a Location header', async () => {
      const reply = await createMapping(alice);

      expect(reply.body).to.deep.equal({
        id: reply.body.id,
        ownerUri: `wac-user:${alice.id}`,
        credential,
      });
      expect(reply.body.id).to.match(ID);
      expect(reply.headers.get('location')).to.equal(`/sapi/sipMappings/${reply.body.id}`);
    });

    it('stores missing optional credential fields as null', async () => {
      const reply = await createMapping(alice, { username: '1001' });

      expect(reply.body.credential).to.deep.equal({
        username: '1001',
        password: null,
        domain: null,
        authProxy: null,
      });
    });

    it('rejects an owner that is malformed or names no user with 400', async () => {
      const post = (ownerUri: string) =>
        call('POST', '/sapi/sipMappings', { body: { ownerUri, credential } });

      expectError(await post(`wac-user:${'c'.repeat(24)}`), 400, 'Bad Request', /user/);
      expectError(await post(alice.id), 400, 'Bad Request', /wac-user:/);
      expectError(await post(`wac-user:${alice.id.toUpperCase()}`), 400, 'Bad Request');
      expect(wac.sipMappings()).to.deep.equal([]);
    });

    it('requires credential.username and rejects unknown credential keys', async () => {
      const ownerUri = `wac-user:${alice.id}`;
      const noCredential = await call('POST', '/sapi/sipMappings', {
        body: { ownerUri },
      });
      const noUsername = await call('POST', '/sapi/sipMappings', {
        body: { ownerUri, credential: { password: 'x' } },
      });
      const extra = await call('POST', '/sapi/sipMappings', {
        body: { ownerUri, credential: { username: '1001', realm: 'x' } },
      });

      expectError(noCredential, 400, 'Bad Request', /credential/);
      expectError(noUsername, 400, 'Bad Request', /credential\.username/);
      expectError(extra, 400, 'Bad Request', /realm/);
    });

    it('rejects a second mapping for the same owner with 409', async () => {
      await createMapping(alice);

      const reply = await call('POST', '/sapi/sipMappings', {
        body: { ownerUri: `wac-user:${alice.id}`, credential: { username: '1002' } },
      });

      expectError(reply, 409, 'Conflict');
      expect(wac.sipMappings()).to.have.length(1);
    });

    it('lists mappings and filters them by ownerUri', async () => {
      const forAlice = (await createMapping(alice)).body;
      const forBob = (await createMapping(bob, { username: '1002' })).body;

      const all = await call<WacSipMapping[]>('GET', '/sapi/sipMappings');
      const uri = encodeURIComponent(`wac-user:${bob.id}`);
      const mine = await call<WacSipMapping[]>('GET', `/sapi/sipMappings?ownerUri=${uri}`);

      expect(all.body).to.deep.equal([forAlice, forBob]);
      expect(all.headers.get('x-total-count')).to.equal('2');
      expect(mine.body).to.deep.equal([forBob]);
      expect(mine.headers.get('x-total-count')).to.equal('1');
    });

    it('gets a mapping by id', async () => {
      const made = (await createMapping(alice)).body;

      const reply = await call('GET', `/sapi/sipMappings/${made.id}`);

      expect(reply.body).to.deep.equal(made);
    });

    it('replaces the credential on PUT and keeps the owner', async () => {
      const made = (await createMapping(alice)).body;
      const next = { username: '2001', password: 'new' };

      const reply = await call<WacSipMapping>('PUT', `/sapi/sipMappings/${made.id}`, {
        body: { credential: next },
      });

      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({
        id: made.id,
        ownerUri: made.ownerUri,
        credential: {
          username: '2001',
          password: 'new',
          domain: null,
          authProxy: null,
        },
      });
      expect(wac.sipMappings()).to.deep.equal([reply.body]);
    });

    it('refuses a PUT that tries to change the owner', async () => {
      const made = (await createMapping(alice)).body;

      const reply = await call('PUT', `/sapi/sipMappings/${made.id}`, {
        body: { ownerUri: `wac-user:${bob.id}`, credential },
      });

      expectError(reply, 400, 'Bad Request', /ownerUri/);
    });

    it('deletes a mapping with 204 so the owner can get a new one', async () => {
      const made = (await createMapping(alice)).body;

      const deleted = await call('DELETE', `/sapi/sipMappings/${made.id}`);
      const missing = await call('PUT', `/sapi/sipMappings/${made.id}`, {
        body: { credential },
      });

      expect(deleted.status).to.equal(204);
      expectError(missing, 404, 'Not Found');
      await createMapping(alice);
    });
  });

  describe('htable', () => {
    async function addEntry(name: string, value: string) {
      const reply = await call('POST', '/sapi/htable', { body: { name, value } });
      expect(reply.status, JSON.stringify(reply.body)).to.equal(201);
      return reply;
    }

    it('creates an entry with a 201', async () => {
      const reply = await addEntry('+34600000001', 'Alice');

      expect(reply.body).to.deep.equal({ name: '+34600000001', value: 'Alice' });
      expect(wac.htable()).to.deep.equal([{ name: '+34600000001', value: 'Alice' }]);
    });

    it('requires a non-empty name and value', async () => {
      const noValue = await call('POST', '/sapi/htable', { body: { name: 'x' } });
      const empty = await call('POST', '/sapi/htable', {
        body: { name: '', value: 'v' },
      });

      expectError(noValue, 400, 'Bad Request', /value/);
      expectError(empty, 400, 'Bad Request', /name/);
    });

    it('rejects an existing name with 409', async () => {
      await addEntry('1001', 'Alice');

      const reply = await call('POST', '/sapi/htable', {
        body: { name: '1001', value: 'Bob' },
      });

      expectError(reply, 409, 'Conflict');
      expect(wac.htable()).to.deep.equal([{ name: '1001', value: 'Alice' }]);
    });

    it('lists entries by name, filtering by substrings in any case', async () => {
      await addEntry('1003', 'Carol Smith');
      await addEntry('1001', 'Alice Smith');
      await addEntry('2001', 'Bob Jones');

      const names = async (query: string) => {
        const path = `/sapi/htable${query}`;
        const reply = await call<Array<{ name: string }>>('GET', path);
        expect(reply.status).to.equal(200);
        return reply.body.map((e) => e.name);
      };

      expect(await names('')).to.deep.equal(['1001', '1003', '2001']);
      expect(await names('?nameContains=100')).to.deep.equal(['1001', '1003']);
      expect(await names('?valueContains=SMITH')).to.deep.equal(['1001', '1003']);
      expect(await names('?nameContains=3&valueContains=smith')).to.deep.equal(['1003']);
    });

    it('pages entries with offset and limit and counts all matches', async () => {
      for (let i = 0; i < 5; i++) await addEntry(`10${i}`, `user ${i}`);

      const reply = await call<Array<{ name: string }>>('GET', '/sapi/htable?offset=1&limit=2');

      expect(reply.body.map((e) => e.name)).to.deep.equal(['101', '102']);
      expect(reply.headers.get('x-total-count')).to.equal('5');
    });

    it('deletes an entry by its URL-encoded name, then answers 404', async () => {
      await addEntry('+34 600/01', 'Alice');
      const path = `/sapi/htable/${encodeURIComponent('+34 600/01')}`;

      const deleted = await call('DELETE', path);
      const again = await call('DELETE', path);

      expect(deleted.status).to.equal(204);
      expectError(again, 404, 'Not Found');
      expect(wac.htable()).to.deep.equal([]);
    });
  });

  describe('request checks', () => {
    it('names unknown body keys in a 400', async () => {
      const reply = await call('POST', '/sapi/domains', {
        body: { domain: 'acme.example', colour: 'red', size: 3 },
      });

      expectError(reply, 400, 'Bad Request', /colour, size/);
      expect(wac.domains()).to.deep.equal([]);
    });

    it('refuses an id in a create body', async () => {
      const reply = await call('POST', '/sapi/domains', {
        body: { id: 'a'.repeat(24), domain: 'acme.example' },
      });

      expectError(reply, 400, 'Bad Request', /id/);
    });

    it('answers 400 in the error shape for malformed or non-object JSON', async () => {
      const malformed = await call('POST', '/sapi/domains', { rawBody: '{"domain":' });
      const array = await call('POST', '/sapi/htable', { body: [] });
      const empty = await call('POST', '/sapi/users');

      expectError(malformed, 400, 'Bad Request', /JSON/);
      expectError(array, 400, 'Bad Request', /JSON object/);
      expectError(empty, 400, 'Bad Request');
    });

    it('answers 404 in the error shape for unknown paths', async () => {
      const unknown = await call('GET', '/sapi/nothing');
      const wrongCase = await call('GET', '/sapi/sipmappings');
      const outside = await call('GET', '/elsewhere');

      expectError(unknown, 404, 'Not Found');
      expectError(wrongCase, 404, 'Not Found');
      expectError(outside, 404, 'Not Found');
    });

    it('answers 405 in the error shape for a method a path does not take', async () => {
      const reply = await call('PUT', '/sapi/domains');

      expectError(reply, 405, 'Method Not Allowed');
      expect(reply.headers.get('allow')).to.include('POST');
    });

    it('rejects unknown, repeated or malformed query parameters with 400', async () => {
      const unknown = await call('GET', '/sapi/users?userName=alice');
      const repeated = await call('GET', '/sapi/domains?domain=a&domain=b');
      const negative = await call('GET', '/sapi/domains?offset=-1');
      const word = await call('GET', '/sapi/domains?limit=ten');

      expectError(unknown, 400, 'Bad Request', /userName/);
      expectError(repeated, 400, 'Bad Request', /domain/);
      expectError(negative, 400, 'Bad Request', /offset/);
      expectError(word, 400, 'Bad Request', /limit/);
    });
  });

  describe('paging', () => {
    let domainId: string;

    beforeEach(() => {
      domainId = wac.seedDomain({ domain: 'acme.example' }).id;
      const users = [];
      for (let i = 0; i < 1205; i++) {
        users.push({ domain: domainId, username: `u${String(i).padStart(4, '0')}` });
      }
      wac.seedUsers(users);
    });

    async function page(query: string) {
      const reply = await call<WacUser[]>('GET', `/sapi/users${query}`);
      expect(reply.status).to.equal(200);
      return { names: reply.body.map((u) => u.username), total: reply.headers };
    }

    it('returns 100 records by default with the total in X-Total-Count', async () => {
      const { names, total } = await page('');

      expect(names).to.have.length(100);
      expect(names[0]).to.equal('u0000');
      expect(total.get('x-total-count')).to.equal('1205');
    });

    it('honours offset and limit', async () => {
      const { names, total } = await page('?offset=1200&limit=10');

      expect(names).to.deep.equal(['u1200', 'u1201', 'u1202', 'u1203', 'u1204']);
      expect(total.get('x-total-count')).to.equal('1205');
    });

    it('caps limit at 1000', async () => {
      const { names } = await page('?limit=5000');

      expect(names).to.have.length(1000);
    });

    it('returns an empty page past the end but still the total', async () => {
      const { names, total } = await page('?offset=5000');

      expect(names).to.deep.equal([]);
      expect(total.get('x-total-count')).to.equal('1205');
    });

    it('pages a filtered list over the filtered total', async () => {
      const { names, total } = await page(`?domain=${domainId}&offset=100&limit=2`);

      expect(names).to.deep.equal(['u0100', 'u0101']);
      expect(total.get('x-total-count')).to.equal('1205');
    });
  });

  describe('faults', () => {
    it('answers with the set error status until the faults are cleared', async () => {
      const set = await fetch(`${wac.url}/_emulator/faults`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ error_rate: 1, error_status: 503 }),
      });
      expect(set.status).to.equal(200);

      const failed = await call('POST', '/sapi/domains', {
        body: { domain: 'a.example' },
      });
      expect(failed.status).to.equal(503);
      expect(wac.domains()).to.deep.equal([]);

      const cleared = await fetch(`${wac.url}/_emulator/faults`, { method: 'DELETE' });
      expect(cleared.status).to.equal(204);

      const ok = await call('POST', '/sapi/domains', { body: { domain: 'a.example' } });
      expect(ok.status).to.equal(201);
    });

    it('limits faults to the paths pattern', async () => {
      wac.faults.set({ error_rate: 1, error_status: 500, paths: '^POST /sapi/users' });
      const domain = await createDomain('acme.example');

      const reply = await call('POST', '/sapi/users', {
        body: { domain: domain.id, username: 'alice' },
      });

      expect(reply.status).to.equal(500);
      expect(wac.users()).to.deep.equal([]);
    });
  });

  describe('in-process helpers', () => {
    it('counts calls by method and route pattern', async () => {
      const domain = await createDomain('acme.example');
      await call('GET', `/sapi/domains/${domain.id}`);
      await call('GET', `/sapi/domains/${domain.id}`);

      expect(wac.calls.count('POST /sapi/domains')).to.equal(1);
      expect(wac.calls.count('GET /sapi/domains/:id')).to.equal(2);
    });

    it('exposes baseUrl as the server url plus /sapi', () => {
      expect(wac.baseUrl).to.equal(`${wac.url}/sapi`);
      expect(wac.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    });

    it('returns deep copies that callers cannot use to change the store', async () => {
      const domain = await createDomain('acme.example', {
        services: { login: ['kc'] },
      });
      await createUser(domain.id, 'alice', { capabilities: ['call'] });

      wac.domains()[0].services.login!.push('changed');
      wac.users()[0].capabilities.push('changed');

      expect(wac.domains()[0].services.login).to.deep.equal(['kc']);
      expect(wac.users()[0].capabilities).to.deep.equal(['call']);
    });

    it('seeds domains and users under the API rules, with chosen ids', async () => {
      const id = '0123456789abcdef01234567';
      const domain = wac.seedDomain({ id, domain: 'Seeded.Example' });

      expect(domain.domain).to.equal('seeded.example');
      expect(() => wac.seedDomain({ domain: 'seeded.example' })).to.throw(/already/);
      expect(() => wac.seedDomain({ domain: 'x.example', parent: 'nope' })).to.throw();

      const reply = await call<WacDomain>('GET', `/sapi/domains/${id}`);
      expect(reply.body).to.deep.equal(domain);
    });

    it('seeds users all or nothing', () => {
      const { id } = wac.seedDomain({ domain: 'acme.example' });

      const seed = () =>
        wac.seedUsers([
          { domain: id, username: 'alice' },
          { domain: id, username: 'bob' },
          { domain: id, username: 'ALICE' },
        ]);

      expect(seed).to.throw(/alice/i);
      expect(wac.users()).to.deep.equal([]);
    });

    it('empties data, calls and faults on reset', async () => {
      const domain = await createDomain('acme.example');
      await createUser(domain.id, 'alice');
      await call('POST', '/sapi/htable', { body: { name: 'n', value: 'v' } });
      wac.faults.set({ latency_ms: 1 });

      wac.reset();

      expect(wac.domains()).to.deep.equal([]);
      expect(wac.users()).to.deep.equal([]);
      expect(wac.htable()).to.deep.equal([]);
      expect(wac.calls.all()).to.deep.equal({});
      expect(wac.faults.current().latency_ms).to.equal(0);
      const again = await call('POST', '/sapi/domains', {
        body: { domain: 'acme.example' },
      });
      expect(again.status).to.equal(201);
    });
  });

  describe('scale', () => {
    it('serves lookups quickly with 100 000 users', async function () {
      this.timeout(20_000);
      const a = wac.seedDomain({ domain: 'a.example' }).id;
      const b = wac.seedDomain({ domain: 'b.example' }).id;
      const users = [];
      for (let i = 0; i < 100_000; i++) {
        const domain = i % 2 ? a : b;
        users.push({ domain, username: `user${i}`, externalId: `kc-${i}` });
      }
      wac.seedUsers(users);

      const started = performance.now();
      for (let i = 0; i < 50; i++) {
        const n = 1 + i * 1998; // odd, so in domain a
        const byName = await call<WacUser[]>('GET', `/sapi/users?domain=${a}&username=USER${n}`);
        const byExternal = await call<WacUser[]>('GET', `/sapi/users?externalId=kc-${n}`);
        expect(byName.body.map((u) => u.username)).to.deep.equal([`user${n}`]);
        expect(byExternal.body.map((u) => u.username)).to.deep.equal([`user${n}`]);
      }
      const elapsed = performance.now() - started;

      const lastPage = await call<WacUser[]>('GET', `/sapi/users?domain=${a}&offset=49990`);
      expect(lastPage.body).to.have.length(10);
      expect(lastPage.headers.get('x-total-count')).to.equal('50000');
      // 100 indexed lookups take ~1 ms each here; scanning all 100 000 users
      // costs ~12 ms a request, which this bound catches.
      expect(elapsed).to.be.lessThan(1_000);
    });
  });
});
