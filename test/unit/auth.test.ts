import { expect } from 'chai';

import { Authenticator, hasRole } from '../../src/api/auth.js';
import { ApiError } from '../../src/errors.js';

describe('authentication rules', () => {
  describe('hasRole', () => {
    it('finds the role among the realm roles or the roles of any client', () => {
      expect(hasRole({ realm_access: { roles: ['a', 'kitter-admin'] } }, 'kitter-admin')).to.equal(
        true,
      );
      expect(
        hasRole(
          { resource_access: { account: { roles: ['x'] }, console: { roles: ['kitter-admin'] } } },
          'kitter-admin',
        ),
      ).to.equal(true);
    });

    it('finds nothing in claims of the wrong shape, and never throws on them', () => {
      const shapes = [
        {},
        { realm_access: null },
        { realm_access: { roles: 'kitter-admin' } },
        { realm_access: ['kitter-admin'] },
        { resource_access: null },
        { resource_access: { console: null } },
        { resource_access: { console: { roles: { 0: 'kitter-admin' } } } },
        { resource_access: 'kitter-admin' },
        { kitter_admin: true, roles: ['kitter-admin'] },
      ];

      for (const claims of shapes) {
        expect(hasRole(claims as never, 'kitter-admin'), JSON.stringify(claims)).to.equal(false);
      }
    });

    it('matches the role name exactly', () => {
      expect(hasRole({ realm_access: { roles: ['Kitter-Admin'] } }, 'kitter-admin')).to.equal(
        false,
      );
      expect(hasRole({ realm_access: { roles: ['kitter-admin-x'] } }, 'kitter-admin')).to.equal(
        false,
      );
    });
  });

  describe('static tokens', () => {
    // No Keycloak listens here: static tokens must never need it.
    const authenticator = new Authenticator({
      staticTokens: ['first-static-token-0001', 'abcd.efgh.static-token-with-dots'],
      keycloakUrl: 'http://127.0.0.1:9',
      realm: 'quobis',
      requiredRole: 'kitter-admin',
      timeoutMs: 500,
    });

    const refusal = async (header: string): Promise<ApiError> => {
      try {
        await authenticator.identify(header);
      } catch (err) {
        return err as ApiError;
      }
      throw new Error(`accepted ${header}`);
    };

    it('tells which configured token was used, counting from 1', async () => {
      expect(await authenticator.identify('Bearer first-static-token-0001')).to.deep.equal({
        kind: 'static-token',
        index: 1,
      });
      expect(await authenticator.identify('bearer   first-static-token-0001 ')).to.deep.equal({
        kind: 'static-token',
        index: 1,
      });
    });

    it('accepts a configured token that happens to look like a JWT', async () => {
      const caller = await authenticator.identify('Bearer abcd.efgh.static-token-with-dots');

      expect(caller).to.deep.equal({ kind: 'static-token', index: 2 });
    });

    it('refuses with 401 a missing header, another scheme, and a near miss', async () => {
      const headers = [
        '',
        'Basic Zmlyc3Qtc3RhdGljLXRva2VuLTAwMDE=',
        'Bearer',
        'Bearer first-static-token-000',
        'Bearer first-static-token-00011',
        'Bearer first-static-token-0001 extra',
      ];

      for (const header of headers) {
        const err = await refusal(header);
        expect(err, header).to.be.instanceOf(ApiError);
        expect(err.status, header).to.equal(401);
      }
    });
  });
});
