import { expect } from 'chai';

import { createUser, PASSWORD, userBody, waitForJob } from '../support/fixtures.js';
import { startStack, type Stack } from '../support/stack.js';

describe('managing users', function () {
  let stack: Stack;

  beforeEach(async () => {
    stack = await startStack();
    await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    await stack.call('POST', '/domains', { domain: { domain: 'other.com' } });
  });

  afterEach(async () => {
    await stack.close();
  });

  describe('GET /users', () => {
    beforeEach(async () => {
      await createUser(stack, 'alice');
      await createUser(stack, 'alicia', { email: 'alicia@other.org', email_verified: true });
      await createUser(stack, 'bob', {
        attributes: { domain: 'other.com', phone_number: '+34600000001' },
      });
    });

    const names = (answer: { body: { users: Array<{ username: string }> } }) =>
      answer.body.users.map((user) => user.username);

    it('lists every user with a total, enriched from wac-core', async () => {
      const answer = await stack.call('GET', '/users');

      expect(answer.status).to.equal(200);
      expect(names(answer)).to.deep.equal(['alice', 'alicia', 'bob']);
      expect(answer.body.total).to.equal(3);
      expect(answer.body.users[0].attributes.capabilities).to.deep.equal(['+chat', '-whiteboard']);
      expect(answer.body.users[0].attributes.sip_mapping.password).to.equal('********');
    });

    it('matches part of a username unless exact is asked', async () => {
      const part = await stack.call('GET', '/users?username=ali');
      const exact = await stack.call('GET', '/users?username=alice&exact=true');

      expect(names(part)).to.deep.equal(['alice', 'alicia']);
      expect(names(exact)).to.deep.equal(['alice']);
      expect(exact.body.total).to.equal(1);
    });

    it('filters by domain, phone number, email and email_verified', async () => {
      const domain = await stack.call('GET', '/users?domain=other.com');
      const phone = await stack.call('GET', '/users?phone_number=%2B34600000001');
      const email = await stack.call('GET', '/users?email=other.org');
      const verified = await stack.call('GET', '/users?email_verified=true');

      expect(names(domain)).to.deep.equal(['bob']);
      expect(names(phone)).to.deep.equal(['bob']);
      expect(names(email)).to.deep.equal(['alicia']);
      expect(names(verified)).to.deep.equal(['alicia']);
    });

    it('pages with paginate[max] and paginate[page], the total counting every match', async () => {
      const first = await stack.call('GET', '/users?paginate[max]=2&paginate[page]=0');
      const second = await stack.call('GET', '/users?paginate%5Bmax%5D=2&paginate%5Bpage%5D=1');

      expect(names(first)).to.deep.equal(['alice', 'alicia']);
      expect(names(second)).to.deep.equal(['bob']);
      expect([first.body.total, second.body.total]).to.deep.equal([3, 3]);
    });

    it('refuses a page size over the cap and unknown filters', async () => {
      const big = await stack.call('GET', '/users?paginate[max]=1000');
      const unknown = await stack.call('GET', '/users?colour=blue');

      expect(big.status).to.equal(400);
      expect(big.body.details[0].path).to.equal('paginate[max]');
      expect(unknown.status).to.equal(400);
      expect(unknown.body.details[0].path).to.equal('colour');
    });
  });

  describe('PATCH /users/{id}', () => {
    let id: string;

    beforeEach(async () => {
      id = await createUser(stack, 'ada');
    });

    it('changes what the request names and keeps everything else, in both systems', async () => {
      const answer = await stack.call('PATCH', `/users/${id}`, {
        first_name: 'Augusta',
        attributes: { capabilities: ['+chat'] },
        id: 'ignored-deprecated-id',
      });

      expect(answer.status).to.equal(200);
      expect(answer.body.user).to.deep.include({
        id,
        first_name: 'Augusta',
        last_name: 'Lovelace',
        email: 'ada@example.com',
      });
      const [keycloakUser] = stack.keycloak.users();
      expect(keycloakUser).to.deep.include({
        firstName: 'Augusta',
        lastName: 'Lovelace',
        email: 'ada@example.com',
      });
      expect(keycloakUser.attributes.phone_number).to.deep.equal(['+34612345678']);
      expect(keycloakUser.attributes.domain).to.deep.equal(['example.com']);
      expect(stack.wac.users()[0]).to.deep.include({
        capabilities: ['+chat'],
        displayName: 'Augusta Lovelace',
        mobilePhone: ['+34612345678'],
      });
    });

    it('changes the password through reset-password', async () => {
      const answer = await stack.call('PATCH', `/users/${id}`, {
        credentials: { password: 'A-new-passw0rd', temporary: true },
      });

      expect(answer.status).to.equal(200);
      expect(stack.keycloak.checkPassword(id, 'A-new-passw0rd')).to.equal(true);
      expect(stack.keycloak.checkPassword(id, PASSWORD)).to.equal(false);
      expect(stack.keycloak.users()[0].requiredActions).to.include('UPDATE_PASSWORD');
    });

    it('replaces the SIP mapping, and removes it when asked with null', async () => {
      const replaced = await stack.call('PATCH', `/users/${id}`, {
        attributes: { sip_mapping: { username: 'new-sip', password: 'new-sip-pass' } },
      });

      expect(replaced.status).to.equal(200);
      expect(stack.wac.sipMappings()).to.have.length(1);
      expect(stack.wac.sipMappings()[0].credential).to.deep.include({
        username: 'new-sip',
        password: 'new-sip-pass',
        domain: 'example.com',
      });

      const removed = await stack.call('PATCH', `/users/${id}`, {
        attributes: { sip_mapping: null },
      });
      expect(removed.status).to.equal(200);
      expect(removed.body.user.attributes).not.to.have.property('sip_mapping');
      expect(stack.wac.sipMappings()).to.deep.equal([]);
    });

    it('moves the user to another domain in both systems', async () => {
      const answer = await stack.call('PATCH', `/users/${id}`, {
        attributes: { domain: 'other.com' },
      });

      expect(answer.status).to.equal(200);
      const other = stack.wac.domains().find((domain) => domain.domain === 'other.com')!;
      expect(stack.keycloak.users()[0].attributes.domain).to.deep.equal(['other.com']);
      expect(stack.wac.users()[0].domain).to.equal(other.id);
      expect((await stack.call('GET', '/users/other.com/ada')).status).to.equal(200);
    });

    it('refuses an unknown domain, an unknown key and an empty change', async () => {
      const before = { keycloak: stack.keycloak.users(), wac: stack.wac.users() };

      const domain = await stack.call('PATCH', `/users/${id}`, {
        attributes: { domain: 'no.org' },
      });
      const key = await stack.call('PATCH', `/users/${id}`, { nickname: 'x' });
      const empty = await stack.call('PATCH', `/users/${id}`, {});

      expect([domain.status, key.status, empty.status]).to.deep.equal([400, 400, 400]);
      expect(domain.body.code).to.equal('unknown_domain');
      expect(key.body.details[0].path).to.equal('nickname');
      expect(stack.keycloak.users()).to.deep.equal(before.keycloak);
      expect(stack.wac.users()).to.deep.equal(before.wac);
    });

    it('answers 409 for an email another user has, changing nothing', async () => {
      await createUser(stack, 'grace');
      const before = { keycloak: stack.keycloak.users(), wac: stack.wac.users() };

      const answer = await stack.call('PATCH', `/users/${id}`, { email: 'grace@example.com' });

      expect(answer.status).to.equal(409);
      expect(answer.body.error).to.include('User exists with same email');
      expect(stack.keycloak.users()).to.deep.equal(before.keycloak);
      expect(stack.wac.users()).to.deep.equal(before.wac);
    });

    it('puts both systems back when a later step fails for good', async () => {
      const before = { keycloak: stack.keycloak.users(), wac: stack.wac.users() };
      stack.wac.faults.set({ error_rate: 1, error_status: 400, paths: '^PUT /sapi/sipMappings' });

      const answer = await stack.call('PATCH', `/users/${id}`, {
        last_name: 'Byron',
        attributes: { sip_mapping: { username: 'new-sip', password: 'new-sip-pass' } },
      });

      expect(answer.status).to.equal(400);
      expect(answer.body.error).to.match(/^wac-core rejected update SIP mapping/);
      expect(answer.body.error).to.include('undone: the user was restored as it was');
      expect(stack.keycloak.users()).to.deep.equal(before.keycloak);
      expect(stack.wac.users()).to.deep.equal(before.wac);
    });

    it('answers 404 for an unknown id and 400 for something that is no id', async () => {
      const unknown = await stack.call('PATCH', '/users/00000000-0000-0000-0000-000000000000', {
        first_name: 'X',
      });
      const bad = await stack.call('PATCH', '/users/..%2F..%2Fetc', { first_name: 'X' });

      expect(unknown.status).to.equal(404);
      expect(bad.status).to.equal(400);
    });
  });

  describe('DELETE /users/{id} and logout', () => {
    it('deletes the user in Keycloak and wac-core, with its SIP mapping', async () => {
      const id = await createUser(stack, 'ada');

      const answer = await stack.call('DELETE', `/users/${id}`);

      expect(answer.status).to.equal(204);
      expect(answer.body).to.equal(undefined);
      expect(stack.keycloak.users()).to.deep.equal([]);
      expect(stack.wac.users()).to.deep.equal([]);
      expect(stack.wac.sipMappings()).to.deep.equal([]);
      expect((await stack.call('DELETE', `/users/${id}`)).status).to.equal(404);
    });

    it('finishes a delete that a crash cut short after the wac-core part', async () => {
      const id = await createUser(stack, 'ada');
      // What a crash between the two systems leaves: the user in Keycloak only.
      const mapping = stack.wac.sipMappings()[0];
      await fetch(`${stack.wac.baseUrl}/sipMappings/${mapping.id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${await stack.keycloak.issueToken()}` },
      });
      await fetch(`${stack.wac.baseUrl}/users/${stack.wac.users()[0].id}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${await stack.keycloak.issueToken()}` },
      });

      const answer = await stack.call('DELETE', `/users/${id}`);

      expect(answer.status).to.equal(204);
      expect(stack.keycloak.users()).to.deep.equal([]);
    });

    it('ends every session of a user', async () => {
      const id = await createUser(stack, 'ada');

      const answer = await stack.call('POST', `/users/${id}/logout`);

      expect(answer.status).to.equal(204);
      expect(stack.keycloak.logoutCount(id)).to.equal(1);
      expect((await stack.call('POST', '/users/no-such-user/logout')).status).to.equal(404);
    });
  });

  describe('ordering and idempotency', () => {
    it('runs writes on one user in the order they were accepted', async () => {
      const id = await createUser(stack, 'ada');
      stack.keycloak.faults.set({ latency_ms: 30, paths: '^PUT /admin' });
      const async = { prefer: 'respond-async' };

      const jobs = [];
      for (const name of ['One', 'Two', 'Three', 'Four']) {
        const answer = await stack.call('PATCH', `/users/${id}`, { first_name: name }, async);
        jobs.push(answer.body.job.id);
      }
      for (const job of jobs) expect((await waitForJob(stack, job)).state).to.equal('succeeded');

      expect(stack.keycloak.users()[0].firstName).to.equal('Four');
    });

    it('creates a user again only after the delete accepted before it has run', async () => {
      const id = await createUser(stack, 'ada');
      stack.wac.faults.set({ latency_ms: 50, paths: '^DELETE /sapi' });

      const deleted = await stack.call('DELETE', `/users/${id}`, undefined, {
        prefer: 'respond-async',
      });
      const created = await stack.call('POST', '/users', userBody('ada'));

      expect(deleted.status).to.equal(202);
      expect(created.status).to.equal(201);
      expect(created.body.user.id).not.to.equal(id);
      expect(stack.keycloak.users().map((user) => user.username)).to.deep.equal(['ada']);
    });

    it('answers a repeated Idempotency-Key with the same job, and does the work once', async () => {
      const headers = { 'idempotency-key': 'create-ada-1' };

      const first = await stack.call('POST', '/users', userBody('ada'), headers);
      const again = await stack.call('POST', '/users', userBody('ada'), headers);

      expect(first.status).to.equal(201);
      expect(again.status).to.equal(201);
      expect(again.headers.get('kitter-job')).to.equal(first.headers.get('kitter-job'));
      expect(again.headers.get('idempotent-replayed')).to.equal('true');
      expect(again.body).to.deep.equal(first.body);
      expect(stack.keycloak.users()).to.have.length(1);
    });

    it('answers 409 for an Idempotency-Key reused with another body', async () => {
      const headers = { 'idempotency-key': 'create-1' };
      await stack.call('POST', '/users', userBody('ada'), headers);

      const other = await stack.call('POST', '/users', userBody('bob'), headers);

      expect(other.status).to.equal(409);
      expect(other.body.error).to.include('Idempotency-Key');
      expect(stack.keycloak.users().map((user) => user.username)).to.deep.equal(['ada']);
    });
  });
});
