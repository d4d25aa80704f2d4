import { expect } from 'chai';

import { userBody, waitForJob } from '../support/fixtures.js';
import { startWorkerProcess, type WorkerProcess } from '../support/processes.js';
import { startStack, type Stack } from '../support/stack.js';

/**
 * Several worker processes on one Redis share the queue: each takes jobs as it has room, and
 * each job runs in one of them, once. (How throughput grows with them: bench/scale.ts.)
 */
describe('worker processes sharing one queue', function () {
  this.timeout(60_000);
  let stack: Stack;
  const workers: WorkerProcess[] = [];

  beforeEach(async () => {
    // Two jobs at a time a process, each slow enough that both processes are needed.
    stack = await startStack({ KITTER_WORKER_CONCURRENCY: '2' }, { api: true, worker: false });
    for (let i = 0; i < 2; i++) workers.push(await startWorkerProcess(stack));
    const domain = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    expect(domain.status).to.equal(201);
    stack.wac.faults.set({ latency_ms: 100, paths: '^POST /sapi/users' });
  });

  afterEach(async () => {
    for (const worker of workers.splice(0)) {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    await stack?.close();
  });

  it('runs each job once, in one process or the other, and both take a share', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const answer = await stack.call('POST', '/users', userBody(`user${i}`), {
        prefer: 'respond-async',
      });
      expect(answer.status).to.equal(202);
      ids.push(answer.body.job.id);
    }
    const states = [];
    for (const id of ids) states.push((await waitForJob(stack, id)).state);

    const ran = workers.map((worker) => {
      const lines = worker
        .output()
        .split('\n')
        .filter((line) => line.includes('"msg":"job"'));
      return lines
        .filter((line) => /"type":"user.create".*"outcome":"succeeded"/.test(line))
        .map((line) => JSON.parse(line).jobId as string);
    });
    expect(states).to.deep.equal(Array(20).fill('succeeded'));
    expect(ran[0].length, 'jobs the first process ran').to.be.greaterThan(0);
    expect(ran[1].length, 'jobs the second process ran').to.be.greaterThan(0);
    expect([...ran[0], ...ran[1]].sort()).to.deep.equal([...ids].sort());
    expect(stack.keycloak.users()).to.have.length(20);
    expect(stack.wac.users()).to.have.length(20);
  });
});
