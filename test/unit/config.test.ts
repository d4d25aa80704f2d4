import { expect } from 'chai';

import { ConfigError, DEMO_API_TOKEN, loadConfig } from '../../src/config.js';

const complete = {
  KEYCLOAK_CLIENT_SECRET: 'client-secret',
  KITTER_API_TOKENS: 'token-aaaaaaaaaaaaaaaa, token-bbbbbbbbbbbbbbbb',
  KITTER_SECRET_KEY: 'a-secret-key-of-16-chars',
};

function problemsOf(mode: 'api' | 'worker' | 'demo', env: Record<string, string>): string[] {
  try {
    loadConfig(mode, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('configuration', () => {
  it('runs the demo with no settings at all', () => {
    const config = loadConfig('demo', {});

    expect(config.port).to.equal(3000);
    // Its token is public: the demo's API answers on this machine only, unless HOST says.
    expect(config.host).to.equal('127.0.0.1');
    expect(loadConfig('demo', { HOST: '0.0.0.0' }).host).to.equal('0.0.0.0');
    expect(config.redisUrl).to.equal('redis://127.0.0.1:6379');
    expect(config.keycloak).to.include({ url: 'http://127.0.0.1:8080', realm: 'quobis' });
    expect(config.wacCoreUrl).to.equal('http://127.0.0.1:8001/sapi');
    expect(config.apiTokens).to.deep.equal([DEMO_API_TOKEN]);
    expect(config.syncTimeoutMs).to.equal(10_000);
  });

  it('reads every documented variable', () => {
    const config = loadConfig('api', {
      ...complete,
      PORT: '4000',
      REDIS_URL: 'redis://redis.internal:6380',
      KEYCLOAK_URL: 'https://sso.example.com/',
      KEYCLOAK_REALM: 'acme',
      KEYCLOAK_CLIENT_ID: 'provisioner',
      WAC_CORE_URL: 'https://wac.example.com/sapi/',
      KITTER_SYNC_TIMEOUT_MS: '2500',
    });

    expect(config.port).to.equal(4000);
    expect(config.host).to.equal('0.0.0.0');
    expect(config.keycloak).to.deep.equal({
      url: 'https://sso.example.com',
      realm: 'acme',
      clientId: 'provisioner',
      clientSecret: 'client-secret',
    });
    expect(config.wacCoreUrl).to.equal('https://wac.example.com/sapi');
    expect(config.apiTokens).to.deep.equal(['token-aaaaaaaaaaaaaaaa', 'token-bbbbbbbbbbbbbbbb']);
    expect(config.syncTimeoutMs).to.equal(2500);
  });

  it('reports every problem at once, each naming its variable', () => {
    const problems = problemsOf('api', {
      PORT: 'eighty',
      REDIS_URL: 'http://not-redis',
      KITTER_SYNC_TIMEOUT_MS: '-1',
    });

    const named = (name: string) => problems.some((problem) => problem.startsWith(name));
    expect(named('PORT')).to.equal(true);
    expect(named('REDIS_URL')).to.equal(true);
    expect(named('KITTER_SYNC_TIMEOUT_MS')).to.equal(true);
    expect(named('KEYCLOAK_CLIENT_SECRET')).to.equal(true);
    expect(named('KITTER_SECRET_KEY')).to.equal(true);
    expect(named('KITTER_API_TOKENS')).to.equal(true);
  });

  it('requires the secret key outside the demo, and no API token for a worker', () => {
    const { KITTER_SECRET_KEY: _key, KITTER_API_TOKENS: _tokens, ...rest } = complete;

    const problems = problemsOf('worker', rest);

    expect(problems).to.have.length(1);
    expect(problems[0]).to.match(/^KITTER_SECRET_KEY is required/);
  });

  it('refuses short API tokens outside the demo', () => {
    const problems = problemsOf('api', { ...complete, KITTER_API_TOKENS: 'short' });

    expect(problems).to.deep.equal(['KITTER_API_TOKENS: every token needs 16+ characters']);
  });

  it('reads the required role and the htable switch, with their defaults', () => {
    const defaults = loadConfig('api', complete);
    const set = loadConfig('api', {
      ...complete,
      KITTER_REQUIRED_ROLE: 'provisioner',
      KITTER_HTABLE_ENABLED: 'true',
    });
    const problems = problemsOf('api', {
      ...complete,
      KITTER_REQUIRED_ROLE: 'two roles',
      KITTER_HTABLE_ENABLED: 'yes please',
    });

    expect(defaults).to.include({ requiredRole: 'kitter-admin', htableEnabled: false });
    expect(set).to.include({ requiredRole: 'provisioner', htableEnabled: true });
    expect(problems).to.deep.equal([
      'KITTER_REQUIRED_ROLE must be one role name, without spaces',
      'KITTER_HTABLE_ENABLED must be true or false',
    ]);
  });
});
