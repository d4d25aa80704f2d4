import type { AddressInfo } from 'node:net';

import { expect } from 'chai';
import Koa from 'koa';

import type { ApiDeps } from '../../src/api/deps.js';
import { healthRoutes } from '../../src/api/routes/health.js';

/** Serves the health routes over deps whose Redis answers and whose one queue is as given. */
async function readiness(queueOpened: Promise<void>, ping = async () => 'PONG') {
  const deps = {
    redis: { ping },
    queues: { provisioning: { waitUntilReady: () => queueOpened } },
    keycloak: { checkToken: async () => undefined },
    wac: { listDomains: async () => [] },
  } as unknown as ApiDeps;
  const app = new Koa();
  app.use(healthRoutes(deps).routes());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const answer = await fetch(`http://127.0.0.1:${port}/health/ready`);
    return { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
  } finally {
    server.close();
  }
}

describe('readiness', () => {
  it('is not ready while a queue that failed to open refuses every write', async () => {
    // What BullMQ keeps when the version check it makes as a queue opens was cut off.
    const failed = Promise.reject(new Error('Reached the max retries per request limit'));
    failed.catch(() => undefined);

    const broken = await readiness(failed);
    const fine = await readiness(Promise.resolve());

    expect(broken.status).to.equal(503);
    expect(broken.body.checks).to.deep.include({
      redis: 'Reached the max retries per request limit',
    });
    expect(fine.status).to.equal(200);
  });

  it('says Redis is not reachable in words, not in ioredis’s', async () => {
    const away = async () => {
      throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
    };

    const answer = await readiness(Promise.resolve(), away);

    expect(answer.status).to.equal(503);
    expect(answer.body.checks).to.deep.include({ redis: 'not reachable' });
    expect(answer.body.error).to.equal('not ready: redis unreachable');
  });
});
