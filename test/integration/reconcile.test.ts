import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { expect } from 'chai';

import { createLogger } from '../../src/logger.js';
import { clientsOf } from '../../src/reconcile/cli.js';
import { reconcile, type ReconcileDeps } from '../../src/reconcile/reconcile.js';
import type { ReconcileReport } from '../../src/reconcile/report.js';
import { createUser } from '../support/fixtures.js';
import { CLIENT_SECRET, startStack, type Stack } from '../support/stack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A user without a SIP mapping, as a create that stopped before wac-core would have made. */
const PLAIN = { attributes: { domain: 'example.com', phone_number: '+34612345678' } };

describe('reconciliation', function () {
  let stack: Stack;
  let deps: ReconcileDeps;
  let exampleId: string;
  let otherId: string;

  beforeEach(async () => {
    stack = await startStack();
    const example = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    const other = await stack.call('POST', '/domains', { domain: { domain: 'other.com' } });
    exampleId = example.body.domain.id;
    otherId = other.body.domain.id;
    await createUser(stack, 'alice');
    await createUser(stack, 'bob');
    deps = { ...clientsOf(stack.config), logger: createLogger('silent') };
  });

  afterEach(async () => {
    await deps.wac.close();
    await stack.close();
  });

  const run = (fix: boolean, domain?: string) => reconcile(deps, { domain, fix });

  const wacUser = (username: string) => stack.wac.users().find((u) => u.username === username);

  const keycloakUser = (username: string) =>
    stack.keycloak.users().find((u) => u.username === username)!;

  /** Calls a backend's HTTP API directly, as someone working around kitter would. */
  async function backend(method: string, url: string, body?: unknown): Promise<void> {
    const token = await stack.keycloak.issueToken({
      clientRoles: { 'realm-management': ['manage-users'] },
    });
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const answer = await fetch(url, { method, headers, body: JSON.stringify(body) });
    expect(answer.status, `${method} ${url}`).to.be.within(200, 299);
  }

  const wacUrl = (path: string) => `${stack.wac.baseUrl}${path}`;
  const keycloakUrl = (id: string) => `${stack.keycloak.url}/admin/realms/quobis/users/${id}`;

  const kinds = (report: ReconcileReport) => report.drift.map((item) => item.kind);

  it('reports no drift when both systems agree, through the API too', async () => {
    const answer = await stack.call('GET', '/reconcile?domain=example.com');
    const all = await run(false);

    expect(answer.status).to.equal(200);
    expect(answer.body).to.deep.equal({
      domains: 1,
      keycloak_users: 2,
      wac_core_users: 2,
      drift: [],
      fixed: [],
      left: [],
    });
    expect(all).to.include({ domains: 2, keycloak_users: 2, wac_core_users: 2 });
    expect(all.drift).to.deep.equal([]);
  });

  it('answers 400 without a domain and 404 for a domain wac-core does not have', async () => {
    const missing = await stack.call('GET', '/reconcile');
    const unknown = await stack.call('GET', '/reconcile?domain=nowhere.example');

    expect(missing.status).to.equal(400);
    expect(missing.body.details[0].path).to.equal('domain');
    expect(unknown.status).to.equal(404);
    expect(unknown.body.code).to.equal('not_found');
  });

  describe('keycloak_only', () => {
    it('finishes a kitter create from the Keycloak data: the wac-core user, once', async () => {
      const id = await createUser(stack, 'carol', PLAIN);
      await backend('DELETE', wacUrl(`/users/${wacUser('carol')!.id}`));

      const found = await stack.call('GET', '/reconcile?domain=example.com');
      const fixed = await run(true);
      const again = await run(true);

      expect(found.body.drift).to.deep.equal([
        {
          kind: 'keycloak_only',
          domain: 'example.com',
          username: 'carol',
          keycloak_id: id,
          wac_core_id: null,
          fixable: true,
        },
      ]);
      expect(found.body.left[0].reason).to.equal('not repaired: a read-only run');
      expect(fixed.fixed.map((item) => item.action)).to.have.lengthOf(1);
      expect(fixed.fixed[0].action).to.match(/^created the wac-core user [0-9a-f]{24}/);
      expect(fixed.left).to.deep.equal([]);
      expect(wacUser('carol')).to.deep.include({
        domain: exampleId,
        email: 'carol@example.com',
        displayName: 'Ada Lovelace',
        mobilePhone: ['+34612345678'],
        externalId: id,
      });
      expect(again.drift).to.deep.equal([]);
      expect(stack.wac.users().filter((u) => u.externalId === id)).to.have.lengthOf(1);
    });

    it('only reports a Keycloak user kitter did not make (no kitter_job)', async () => {
      const [id] = stack.keycloak.seedUsers([
        {
          username: 'manual',
          email: 'manual@example.com',
          attributes: { domain: ['example.com'] },
        },
      ]);

      const fixed = await run(true, 'example.com');
      const again = await run(false, 'example.com');

      expect(fixed.drift).to.deep.equal([
        {
          kind: 'keycloak_only',
          domain: 'example.com',
          username: 'manual',
          keycloak_id: id,
          wac_core_id: null,
          fixable: false,
          reason: 'no kitter_job attribute: not made by kitter',
        },
      ]);
      expect(fixed.fixed).to.deep.equal([]);
      expect(fixed.left.map((item) => item.reason)).to.deep.equal([
        'no kitter_job attribute: not made by kitter',
      ]);
      expect(wacUser('manual')).to.equal(undefined);
      expect(kinds(again)).to.deep.equal(['keycloak_only']);
    });
  });

  describe('wac_core_only', () => {
    it('finishes the delete: the SIP mapping and the wac-core user go', async () => {
      const alice = keycloakUser('alice');
      const record = wacUser('alice')!;
      await backend('DELETE', keycloakUrl(alice.id));

      const found = await run(false);
      const fixed = await run(true);
      const again = await run(true);

      expect(found.drift).to.deep.equal([
        {
          kind: 'wac_core_only',
          domain: 'example.com',
          username: 'alice',
          keycloak_id: alice.id,
          wac_core_id: record.id,
          fixable: true,
        },
      ]);
      expect(fixed.fixed.map((item) => item.action)).to.deep.equal([
        'deleted the wac-core user and its SIP mapping',
      ]);
      expect(wacUser('alice')).to.equal(undefined);
      expect(stack.wac.sipMappings().map((m) => m.ownerUri)).to.not.include(
        `wac-user:${record.id}`,
      );
      expect(again.drift).to.deep.equal([]);
      expect(wacUser('bob')).to.not.equal(undefined);
    });
  });

  describe('unlinked', () => {
    it('reports a wac-core user without externalId and never touches it', async () => {
      const [legacy] = stack.wac.seedUsers([
        { domain: exampleId, username: 'legacy', email: 'legacy@example.com' },
      ]);

      const fixed = await run(true);
      const again = await run(true);

      expect(fixed.drift).to.deep.equal([
        {
          kind: 'unlinked',
          domain: 'example.com',
          username: 'legacy',
          keycloak_id: null,
          wac_core_id: legacy.id,
          fixable: false,
          reason: 'no externalId: not made by kitter',
        },
      ]);
      expect(fixed.fixed).to.deep.equal([]);
      expect(wacUser('legacy')).to.deep.equal(legacy);
      expect(kinds(again)).to.deep.equal(['unlinked']);
    });
  });

  describe('different', () => {
    it('writes Keycloak’s username and email over wac-core’s', async () => {
      const alice = keycloakUser('alice');
      const record = wacUser('alice')!;
      await backend('PATCH', wacUrl(`/users/${record.id}`), {
        username: 'alice2',
        email: 'alice@old.example.com',
      });

      const found = await stack.call('GET', '/reconcile?domain=example.com');
      const fixed = await run(true, 'example.com');
      const again = await run(false, 'example.com');

      expect(found.body.drift).to.deep.equal([
        {
          kind: 'different',
          domain: 'example.com',
          username: 'alice',
          keycloak_id: alice.id,
          wac_core_id: record.id,
          differences: [
            { field: 'username', keycloak: 'alice', wac_core: 'alice2' },
            { field: 'email', keycloak: 'alice@example.com', wac_core: 'alice@old.example.com' },
          ],
          fixable: true,
        },
      ]);
      expect(fixed.fixed[0].action).to.equal(
        "updated the wac-core user's username, email from Keycloak",
      );
      expect(wacUser('alice')).to.deep.include({ id: record.id, email: 'alice@example.com' });
      expect(again.drift).to.deep.equal([]);
    });

    it('finds a wac-core user in another domain, reports it once, and moves it back', async () => {
      const bob = keycloakUser('bob');
      const record = wacUser('bob')!;
      await backend('PATCH', wacUrl(`/users/${record.id}`), { domain: otherId });

      const fromKeycloak = await run(false, 'example.com');
      const fromWacCore = await run(false, 'other.com');
      const all = await run(false);
      const fixed = await run(true);
      const again = await run(false);

      const expected = {
        kind: 'different',
        domain: 'example.com',
        username: 'bob',
        keycloak_id: bob.id,
        wac_core_id: record.id,
        differences: [{ field: 'domain', keycloak: 'example.com', wac_core: 'other.com' }],
        fixable: true,
      };
      expect(fromKeycloak.drift).to.deep.equal([expected]);
      expect(fromWacCore.drift).to.deep.equal([expected]);
      expect(all.drift).to.deep.equal([expected]);
      expect(fixed.fixed.map((item) => item.action)).to.deep.equal([
        "updated the wac-core user's domain from Keycloak",
      ]);
      expect(wacUser('bob')!.domain).to.equal(exampleId);
      expect(again.drift).to.deep.equal([]);
    });
  });

  it('pages through both systems: a domain larger than a page of either', async function () {
    this.timeout(30_000);
    const count = 1_201;
    const usernames = Array.from({ length: count }, (_, i) => `user${String(i).padStart(5, '0')}`);
    const ids = stack.keycloak.seedUsers(
      usernames.map((username) => ({ username, attributes: { domain: ['example.com'] } })),
    );
    // The last Keycloak user has no wac-core user; the last wac-core user no Keycloak user.
    stack.wac.seedUsers(
      usernames.slice(0, -1).map((username, i) => ({
        domain: exampleId,
        username,
        externalId: i === count - 2 ? '00000000-0000-4000-8000-000000000000' : ids[i],
      })),
    );

    const report = await run(false, 'example.com');

    expect(report).to.include({ domains: 1, keycloak_users: count + 2 });
    expect(report.wac_core_users).to.equal(count + 1);
    expect(report.drift.map((item) => `${item.kind} ${item.username}`)).to.deep.equal([
      `keycloak_only ${usernames[count - 2]}`,
      `wac_core_only ${usernames[count - 2]}`,
      `keycloak_only ${usernames[count - 1]}`,
    ]);
  });

  it('runs as `kitter reconcile`: a summary, exit 1 with drift, 0 once fixed', async function () {
    this.timeout(60_000);
    await createUser(stack, 'carol', PLAIN);
    await backend('DELETE', wacUrl(`/users/${wacUser('carol')!.id}`));

    const found = await kitter(['reconcile', '--domain', 'example.com']);
    const fixed = await kitter(['reconcile', '--fix']);
    const again = await kitter(['reconcile', '--json']);
    const wrong = await kitter(['reconcile', '--colour']);
    const unknown = await kitter(['reconcile', '--domain=nowhere.example']);

    expect(found.code, found.stderr).to.equal(1);
    expect(found.stdout).to.contain('domains: 1, Keycloak users: 3, wac-core users: 2, drift: 1');
    expect(found.stdout).to.match(/^ {2}keycloak_only example\.com carol \[keycloak [^\]]+\]$/m);
    expect(found.stdout).to.contain('run with --fix');
    expect(fixed.code, fixed.stderr).to.equal(0);
    expect(fixed.stdout).to.match(/^fixed:\n {2}keycloak_only example\.com carol .*: created/m);
    expect(fixed.stdout).to.contain('no drift left');
    expect(again.code, again.stderr).to.equal(0);
    expect(JSON.parse(again.stdout)).to.deep.include({ domains: 2, drift: [], left: [] });
    expect(wrong.code).to.equal(2);
    expect(wrong.stderr).to.contain('usage: kitter reconcile');
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.contain('domain nowhere.example not found');
  });

  /**
   * Runs the entry point as an operator would, with only what reconcile needs: no Redis, no
   * API tokens, no KITTER_SECRET_KEY.
   */
  function kitter(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = {
      PATH: process.env.PATH ?? '',
      KEYCLOAK_URL: stack.config.keycloak.url,
      KEYCLOAK_CLIENT_SECRET: CLIENT_SECRET,
      WAC_CORE_URL: stack.config.wacCoreUrl,
    };
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/main.ts', ...args],
        { cwd: ROOT, env, timeout: 30_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }
});
