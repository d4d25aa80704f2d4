import { randomInt } from 'node:crypto';

import { userBody } from '../support/fixtures.js';
import { startWorkerProcess, type WorkerProcess } from '../support/processes.js';
import { startStack, type Stack } from '../support/stack.js';

export interface ChaosOptions {
  users: number;
  /** Worker processes kept running; one of them is killed every `killEveryMs`. */
  workers: number;
  killEveryMs: number;
  /** Share of backend calls answered 503, dropped, or carried out with the answer lost. */
  errorRate: number;
  dropRate: number;
  loseAnswerRate: number;
  /** Progress lines go here (the CLI prints them; the test keeps quiet). */
  log?: (line: string) => void;
}

export interface ChaosReport {
  jobs: number;
  succeeded: number;
  failed: number;
  /** Jobs that did not end before the deadline: must be 0. */
  unfinished: number;
  attempts: number;
  faults: { errors: number; drops: number; lost_answers: number };
  kills: number;
  /** Users whose final state in the backends is not what their succeeded jobs say. */
  lost: number;
  /** What reconciliation finds: users in one system only, or differing. Must be 0. */
  drift: number;
  seconds: number;
}

interface Op {
  jobId: string;
  username: string;
  kind: 'create' | 'update' | 'delete';
}

const PREFER_ASYNC = { prefer: 'respond-async' };
/** How many times a request answered 503 is sent, at most. */
const RESENDS = 5;

/**
 * Creates, changes and deletes users through the API while both emulators inject faults and
 * worker processes are killed (SIGKILL) and replaced; then waits for every job to end and asks
 * reconciliation whether Keycloak and wac-core still agree.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const stack = await startStack(
    {
      KITTER_JOB_LOCK_MS: '2000',
      KITTER_JOB_ATTEMPTS: '12',
      KITTER_JOB_BACKOFF_MS: '100',
      KITTER_WORKER_CONCURRENCY: '20',
      LOG_LEVEL: 'warn',
    },
    { api: true, worker: false },
  );
  const workers: WorkerProcess[] = [];
  let kills = 0;
  let killer: NodeJS.Timeout | undefined;

  try {
    for (let i = 0; i < options.workers; i++) workers.push(await startWorkerProcess(stack));
    const domain = await stack.call('POST', '/domains', { domain: { domain: 'example.com' } });
    if (domain.status !== 201) throw new Error(`the domain: ${domain.status}`);

    const faults = {
      error_rate: options.errorRate,
      error_status: 503,
      drop_rate: options.dropRate,
      lose_answer_rate: options.loseAnswerRate,
      paths: '^(POST|PUT|PATCH|DELETE) ',
    };
    stack.keycloak.faults.set(faults);
    stack.wac.faults.set(faults);

    let killing: Promise<void> = Promise.resolve();
    killer = setInterval(() => {
      killing = killing.then(async () => {
        const victim = workers.splice(randomInt(workers.length), 1)[0];
        victim.child.kill('SIGKILL');
        await victim.exited;
        kills++;
        workers.push(await startWorkerProcess(stack));
        log(`killed a worker (${kills} so far)`);
      });
    }, options.killEveryMs);

    const ops: Op[] = [];
    const names = Array.from({ length: options.users }, (_, i) => `chaos${i}`);
    log(`creating ${names.length} users`);
    ops.push(...(await submitAll(stack, names, 'create')));
    const created = await waitAll(stack, ops, log);

    const createdOk = names.filter((name) => created.get(name)?.state === 'succeeded');
    const toDelete = createdOk.filter((_, i) => i % 4 === 0);
    const toUpdate = createdOk.filter((_, i) => i % 2 === 1);
    log(`updating ${toUpdate.length} and deleting ${toDelete.length} users`);
    const second = [
      ...(await submitAll(stack, toUpdate, 'update', created)),
      ...(await submitAll(stack, toDelete, 'delete', created)),
    ];
    ops.push(...second);
    const changed = await waitAll(stack, second, log);

    clearInterval(killer);
    await killing;
    stack.keycloak.faults.reset();
    stack.wac.faults.reset();

    const jobs = [...created.values(), ...changed.values()];
    const reconciled = await stack.call('GET', '/reconcile?domain=example.com');
    const lost = countLost(stack, createdOk, changed, toDelete);

    return {
      jobs: ops.length,
      succeeded: jobs.filter((job) => job.state === 'succeeded').length,
      failed: jobs.filter((job) => job.state === 'failed').length,
      unfinished: ops.length - jobs.filter((job) => job.ended).length,
      attempts: jobs.reduce((sum, job) => sum + job.attempts, 0),
      faults: {
        errors: stack.keycloak.faults.counts.errors + stack.wac.faults.counts.errors,
        drops: stack.keycloak.faults.counts.drops + stack.wac.faults.counts.drops,
        lost_answers:
          stack.keycloak.faults.counts.lostAnswers + stack.wac.faults.counts.lostAnswers,
      },
      kills,
      lost,
      drift: reconciled.status === 200 ? reconciled.body.drift.length : -1,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
  } finally {
    clearInterval(killer);
    for (const worker of workers) worker.child.kill('SIGKILL');
    await Promise.all(workers.map((worker) => worker.exited));
    await stack.close();
  }
}

interface Ended {
  id: string;
  state: string;
  ended: boolean;
  attempts: number;
  userId?: string;
}

async function submitAll(
  stack: Stack,
  usernames: string[],
  kind: Op['kind'],
  created?: Map<string, Ended>,
): Promise<Op[]> {
  const ops: Op[] = [];
  for (const username of usernames) {
    const id = created?.get(username)?.userId;
    const send = () =>
      kind === 'create'
        ? stack.call('POST', '/users', userBody(username), PREFER_ASYNC)
        : kind === 'update'
          ? stack.call('PATCH', `/users/${id}`, { last_name: 'Changed' }, PREFER_ASYNC)
          : stack.call('DELETE', `/users/${id}`, undefined, PREFER_ASYNC);
    // The API checks the domain in wac-core before it queues, so a fault there (or at
    // Keycloak's token endpoint) is answered 503: sent again, as a client would.
    let answer = await send();
    for (let tries = 1; answer.status === 503 && tries < RESENDS; tries++) {
      const seconds = Number(answer.headers.get('retry-after') ?? NaN);
      if (!(seconds >= 0)) throw new Error(`${kind} ${username}: a 503 without Retry-After`);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      answer = await send();
    }
    if (answer.status !== 202) {
      throw new Error(`${kind} ${username}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    ops.push({ jobId: answer.body.job.id, username, kind });
  }
  return ops;
}

/** Polls every job until all have ended (or 5 minutes pass); keyed by username. */
async function waitAll(stack: Stack, ops: Op[], log: (line: string) => void) {
  const ended = new Map<string, Ended>();
  const deadline = Date.now() + 5 * 60_000;
  let pending = ops;

  while (pending.length > 0 && Date.now() < deadline) {
    const still: Op[] = [];
    for (const op of pending) {
      const { job } = (await stack.call('GET', `/jobs/${op.jobId}`)).body;
      const done = job.state === 'succeeded' || job.state === 'failed';
      if (!done) {
        still.push(op);
        continue;
      }
      const userId = job.result?.user?.id;
      ended.set(op.username, { ...job, ended: true, userId });
    }
    if (still.length > 0) log(`${ops.length - still.length}/${ops.length} jobs ended`);
    pending = still;
    if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  for (const op of pending) {
    ended.set(op.username, { id: op.jobId, state: 'unfinished', ended: false, attempts: 0 });
  }
  return ended;
}

/** Users whose records do not match what their jobs said: created and kept, or deleted. */
function countLost(
  stack: Stack,
  createdOk: string[],
  changed: Map<string, Ended>,
  toDelete: string[],
): number {
  const keycloak = new Set(stack.keycloak.users().map((user) => user.username));
  const wac = new Set(stack.wac.users().map((user) => user.username));
  const deleting = new Set(toDelete);

  return createdOk.filter((name) => {
    const deleted = deleting.has(name) && changed.get(name)?.state === 'succeeded';
    const kept = !deleting.has(name);
    if (deleted) return keycloak.has(name) || wac.has(name);
    if (kept) return !keycloak.has(name) || !wac.has(name);
    return false;
  }).length;
}
