import { expect } from 'chai';
import { Cluster } from 'ioredis';

import { userBody, waitForJob } from '../support/fixtures.js';
import {
  startRedisCluster,
  startRedisSentinel,
  type RedisCluster,
  type RedisSentinel,
} from '../support/redis-topologies.js';
import { startStack, type Stack } from '../support/stack.js';

/** Every user of `usernames` in Keycloak and wac-core, linked, once. */
function expectProvisioned(stack: Stack, usernames: string[]) {
  const keycloak = new Map(stack.keycloak.users().map((user) => [user.username, user]));
  const wac = stack.wac.users();
  for (const username of usernames) {
    const user = keycloak.get(username);
    expect(user, `${username} in Keycloak`).to.not.equal(undefined);
    const linked = wac.filter((record) => record.externalId === user!.id);
    expect(linked, `${username} in wac-core`).to.have.length(1);
  }
}

describe('Redis topologies', function () {
  this.timeout(60_000);

  describe('a Redis Cluster of three masters', () => {
    let cluster: RedisCluster;
    let stack: Stack;

    before(async () => {
      cluster = await startRedisCluster(3);
    });

    after(async () => {
      await cluster?.stop();
    });

    beforeEach(async () => {
      stack = await startStack({ REDIS_CLUSTER_NODES: cluster.nodes });
      stack.wac.seedDomain({ domain: 'example.com' });
    });

    afterEach(async () => {
      await stack.close();
    });

    it('creates users end to end, every kitter key under one hash tag', async () => {
      const usernames = Array.from({ length: 20 }, (_, i) => `cluster-user-${i}`);

      const answers = await Promise.all(
        usernames.map((username, i) =>
          stack.call('POST', '/users', userBody(username), {
            // Idempotency keys and order keys live in the Cluster too.
            'idempotency-key': `create-${username}`,
            ...(i % 2 === 0 ? { prefer: 'respond-async' } : {}),
          }),
        ),
      );
      expect(answers.map((answer) => answer.status)).to.satisfy((statuses: number[]) =>
        statuses.every((status) => status === 201 || status === 202),
      );
      for (const answer of answers.filter((each) => each.status === 202)) {
        expect((await waitForJob(stack, answer.body.job.id)).state).to.equal('succeeded');
      }
      const again = await stack.call('POST', '/users', userBody(usernames[0]), {
        'idempotency-key': `create-${usernames[0]}`,
      });
      expect(again.status).to.equal(201);
      expect((await stack.call('GET', '/health/ready')).status).to.equal(200);
      expectProvisioned(stack, usernames);
      expect(stack.keycloak.users()).to.have.length(usernames.length);

      // The prefix became a hash tag: every key of this stack is in one slot, on one master.
      const prefix = stack.config.queuePrefix;
      expect(prefix).to.match(/^\{test-[0-9a-f]+\}$/);
      const client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
      try {
        await client.ping();
        const mastersWithKeys = await Promise.all(
          client.nodes('master').map(async (node) => (await node.keys(`${prefix}*`)).length),
        );
        expect(mastersWithKeys.filter((count) => count > 0)).to.have.length(1);
        const slot = Number(await client.cluster('KEYSLOT', prefix));
        expect(Number(await client.cluster('KEYSLOT', `${prefix}:order:anything`))).to.equal(slot);
      } finally {
        client.disconnect();
      }
    });

    it('imports a file (chunk, username and order keys named in Lua, in one slot)', async () => {
      const usernames = Array.from({ length: 120 }, (_, i) => `cluster-import-${i}`);
      const csv = ['username,domain', ...usernames.map((name) => `${name},example.com`)];
      csv.push(`${usernames[7]},example.com`);

      const answer = await stack.call('POST', '/imports', csv.join('\n'), {
        'content-type': 'text/csv',
      });
      expect(answer.status, JSON.stringify(answer.body)).to.equal(202);
      expect(answer.body.import).to.include({ total: 121, valid: 120, invalid: 1 });
      let view = answer.body.import;
      for (let i = 0; view.pending > 0 && i < 400; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        view = (await stack.call('GET', `/imports/${view.id}`)).body.import;
      }
      expect(view).to.include({ state: 'finished', succeeded: 120, failed: 0 });
      expectProvisioned(stack, usernames);
    });
  });

  describe('a primary, a replica and a Sentinel', () => {
    let sentinel: RedisSentinel;
    let stack: Stack | undefined;

    beforeEach(async () => {
      sentinel = await startRedisSentinel();
    });

    afterEach(async () => {
      await stack?.close();
      await sentinel.stop();
    });

    it('loses no accepted job when the Sentinel fails over in the middle of a run', async () => {
      stack = await startStack({
        REDIS_SENTINELS: sentinel.sentinels,
        REDIS_SENTINEL_NAME: sentinel.name,
        // A job whose worker lost its lock in the switch runs again within seconds.
        KITTER_JOB_LOCK_MS: '3000',
      });
      const running = stack;
      running.wac.seedDomain({ domain: 'example.com' });
      // Each job takes a while, so that many are in flight when the primary changes.
      running.keycloak.faults.set({ latency_ms: 150, paths: '^POST ' });

      // Requests go on until the new primary takes writes again: until then they are refused.
      const answers: Array<Promise<Sent>> = [];
      let failover: Promise<void> | undefined;
      let switched = false;
      const acceptedAfterSwitch = async () =>
        (await Promise.all(answers.slice(-5))).every((sent) => sent.accepted);
      for (let i = 0; i < 40 || !switched || !(await acceptedAfterSwitch()); i++) {
        answers.push(send(running, `sentinel-user-${i}`));
        if (i === 40) failover = sentinel.failover().then(() => void (switched = true));
        if (i > 600) throw new Error('the new primary never took writes again');
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
      await failover;
      const sent = await Promise.all(answers);

      const accepted = sent.filter((each) => each.accepted);
      const refused = sent.filter((each) => !each.accepted);
      expect(await sentinel.primary()).to.equal(sentinel.replicaPort);
      // Refused while no replica could take the job: the API's 503, never another answer.
      expect(refused.map((each) => each.status)).to.satisfy((statuses: number[]) =>
        statuses.every((status) => status === 503),
      );
      expect(refused.length, 'requests refused in the failover').to.be.greaterThan(0);
      // The requests before the failover, and the last five after it.
      expect(accepted.length).to.be.at.least(40 + 5);

      const ended = await Promise.all(
        accepted.map(async (each) => {
          const { state, error } = await waitForJob(running, each.job!, 30_000);
          // A job that did not succeed is shown with its reason.
          return { username: each.username, state, ...(error ? { error } : {}) };
        }),
      );
      expect(ended.filter((job) => job.state !== 'succeeded')).to.deep.equal([]);
      expectProvisioned(
        running,
        accepted.map((each) => each.username),
      );
    });
  });
});

interface Sent {
  username: string;
  status: number;
  /** 202, or 201 for a job that was already done by the time it was answered. */
  accepted: boolean;
  job?: string;
}

async function send(stack: Stack, username: string): Promise<Sent> {
  const answer = await stack.call('POST', '/users', userBody(username), {
    prefer: 'respond-async',
  });
  const accepted = answer.status === 202 || answer.status === 201;
  return {
    username,
    status: answer.status,
    accepted,
    job: answer.headers.get('kitter-job') ?? undefined,
  };
}
