import { expect } from 'chai';

import { ConfigError, loadConfig, type RedisSettings } from '../../src/config.js';
import { describeRedis, isRedisAway } from '../../src/redis.js';

const secrets = {
  KEYCLOAK_CLIENT_SECRET: 'client-secret',
  KITTER_SECRET_KEY: 'a-secret-key-of-16',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig('worker', { ...secrets, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('the Redis topology in the configuration', () => {
  it('takes one server at REDIS_URL by default', () => {
    const config = loadConfig('worker', secrets);

    expect(config.redis).to.deep.equal({ kind: 'single', url: 'redis://127.0.0.1:6379' });
    expect(config.queuePrefix).to.equal('kitter');
  });

  it('reads Sentinels, the primary name and the password', () => {
    const config = loadConfig('worker', {
      ...secrets,
      REDIS_SENTINELS: 'sentinel-1:26379, 10.0.0.2:26380,[fd00::3]:26381',
      REDIS_SENTINEL_NAME: 'mymaster',
      REDIS_PASSWORD: 'redis-password',
    });

    expect(config.redis).to.deep.equal({
      kind: 'sentinel',
      sentinels: [
        { host: 'sentinel-1', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
        { host: 'fd00::3', port: 26381 },
      ],
      name: 'mymaster',
      password: 'redis-password',
    });
    expect(config.redisUrl).to.equal('');
    expect(config.queuePrefix).to.equal('kitter');
  });

  it('reads Cluster nodes, and makes the queue prefix a hash tag', () => {
    const config = loadConfig('worker', {
      ...secrets,
      REDIS_CLUSTER_NODES: 'redis-1:6379,redis-2:6379',
      KITTER_QUEUE_PREFIX: 'acme',
    });

    expect(config.redis).to.deep.include({
      kind: 'cluster',
      nodes: [
        { host: 'redis-1', port: 6379 },
        { host: 'redis-2', port: 6379 },
      ],
    });
    expect(config.queuePrefix).to.equal('{acme}');
  });

  it('keeps a queue prefix that has a hash tag already', () => {
    const env = { REDIS_CLUSTER_NODES: 'redis-1:6379', KITTER_QUEUE_PREFIX: 'x-{acme}' };

    expect(loadConfig('worker', { ...secrets, ...env }).queuePrefix).to.equal('x-{acme}');
  });

  it('refuses two topologies at once, naming both variables', () => {
    const problems = problemsOf({
      REDIS_URL: 'redis://redis:6379',
      REDIS_CLUSTER_NODES: 'redis-1:6379',
    });

    expect(problems).to.have.length(1);
    expect(problems[0]).to.match(/^REDIS_URL and REDIS_CLUSTER_NODES are both set: set only one/);
  });

  it('needs the primary name with Sentinels, and Sentinels with a primary name', () => {
    expect(problemsOf({ REDIS_SENTINELS: 'sentinel-1:26379' })).to.deep.equal([
      "REDIS_SENTINEL_NAME is required with REDIS_SENTINELS (the primary's name)",
    ]);
    expect(problemsOf({ REDIS_SENTINEL_NAME: 'mymaster' })).to.deep.equal([
      'REDIS_SENTINEL_NAME is set but REDIS_SENTINELS is not',
    ]);
  });

  it('refuses a node list that is not host:port, and a port out of range', () => {
    const malformed = problemsOf({ REDIS_CLUSTER_NODES: 'redis-1' });
    const outOfRange = problemsOf({ REDIS_CLUSTER_NODES: 'redis-1:6379,redis-2:70000' });

    expect(malformed).to.deep.equal([
      'REDIS_CLUSTER_NODES must be a comma-separated list of host:port',
    ]);
    expect(outOfRange).to.deep.equal([
      'REDIS_CLUSTER_NODES: redis-2:70000 has no valid port (1–65535)',
    ]);
  });

  it('describes where Redis is without its password', () => {
    const single: RedisSettings = { kind: 'single', url: 'redis://:s3cret@redis:6379/0' };
    const sentinel: RedisSettings = {
      kind: 'sentinel',
      sentinels: [{ host: 's1', port: 26379 }],
      name: 'mymaster',
      password: 's3cret',
    };

    expect(describeRedis(single)).to.equal('redis://***@redis:6379/0');
    expect(describeRedis(sentinel)).to.equal('primary mymaster of Sentinels s1:26379');
  });
});

describe('errors that say Redis is away', () => {
  const failed = (code: string, message: string) => Object.assign(new Error(message), { code });

  it('tells Redis away (unreachable, or not yet taking commands) from anything else', () => {
    const connection = [
      failed('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:6379'),
      failed('ETIMEDOUT', 'connect ETIMEDOUT'),
      new Error('connect EHOSTUNREACH 10.0.0.9:6379'),
      new Error('Connection is closed.'),
      new Error('LOADING Redis is loading the dataset in memory'),
      new Error("READONLY You can't write against a read only replica."),
    ];
    const other = [
      new Error('Missing lock for job 12. moveToFinished'),
      failed('ERR', 'ERR unknown command'),
      undefined,
    ];

    expect(connection.map(isRedisAway)).to.deep.equal(connection.map(() => true));
    expect(other.map(isRedisAway)).to.deep.equal([false, false, false]);
  });
});
