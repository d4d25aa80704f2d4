/**
 * One measurement of provisioning throughput, through kitter or directly: what
 * provisioning.ts, memory.ts and scale.ts repeat and report.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool } from 'undici';

import { freePort } from '../test/support/redis.js';
import type { DirectInput, DirectResult } from './direct.js';
import {
  apiAnswers,
  cpuSeconds,
  kitterEnv,
  peakRssMb,
  round,
  startChild,
  startKitter,
  TOKEN,
  userInput,
  type Backends,
} from './support.js';

export interface Setup {
  redisUrl: string;
  backends: Backends;
  users: number;
  /** Jobs (or direct creates) one process runs at once. */
  concurrency: number;
  /** Worker processes (or direct-call processes, each with `concurrency`). */
  processes: number;
}

export interface Measurement {
  users_per_s: number;
  seconds: number;
  /** Through kitter: when the last `POST /users` was answered. */
  queued_s?: number;
  /** Through kitter: users a second after that, while the worker finishes the queue. */
  drain_users_per_s?: number;
  failed: number;
  /** Backend requests per user, as the emulators counted them. */
  calls_per_user: { keycloak: number; wac: number };
  /** CPU seconds per 1 000 users, by process. */
  cpu_s_per_1000: Record<string, number>;
  peak_rss_mb: Record<string, number>;
}

/** Empties Redis and both emulators, so each measurement starts alike. */
async function clean(setup: Setup): Promise<void> {
  const redis = new Redis(setup.redisUrl);
  await redis.flushall();
  await redis.quit();
  await setup.backends.call('reset');
}

async function redisCpu(redisUrl: string): Promise<number> {
  const redis = new Redis(redisUrl);
  const info = await redis.info('cpu');
  await redis.quit();
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Checks every user was made in both systems, and counts the calls it took. */
async function verify(setup: Setup, failed: number) {
  const counts = await setup.backends.call<{
    keycloakUsers: number;
    wacUsers: number;
    sipMappings: number;
    calls: { keycloak: Record<string, number>; wac: Record<string, number> };
  }>('counts');
  const made = Math.min(counts.keycloakUsers, counts.wacUsers, counts.sipMappings);
  if (failed === 0 && made !== setup.users) {
    throw new Error(`expected ${setup.users} users, the emulators hold ${JSON.stringify(counts)}`);
  }
  const sum = (calls: Record<string, number>) =>
    Object.entries(calls)
      .filter(([route]) => !route.includes('/_emulator'))
      .reduce((total, [, count]) => total + count, 0);
  return {
    keycloak: round(sum(counts.calls.keycloak) / setup.users, 2),
    wac: round(sum(counts.calls.wac) / setup.users, 2),
  };
}

/** `users` creates through `POST /users` (respond-async) to one API and `processes` workers. */
export async function measureKitter(setup: Setup, run: string): Promise<Measurement> {
  await clean(setup);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = kitterEnv(setup.redisUrl, setup.backends, {
    KITTER_WORKER_CONCURRENCY: String(setup.concurrency),
  });
  const api = await startKitter('api', { ...env, PORT: String(port) }, apiAnswers(url));

  const connection = new Redis(setup.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('provisioning', { connection, prefix: 'bench' });
  const workers = [];
  for (let i = 0; i < setup.processes; i++) {
    const ready = async () => (await queue.getWorkersCount()) > i;
    workers.push(await startKitter('worker', { ...env, PORT: '0' }, ready));
  }
  const pids = {
    api: api.child.pid!,
    ...Object.fromEntries(workers.map((worker, i) => [`worker${i + 1}`, worker.child.pid!])),
  };

  await setup.backends.call('resetCalls');
  const cpuBefore = await cpuOf(setup, pids);
  const started = performance.now();

  // Requests go out on a few keep-alive connections, as from a client or a load balancer.
  const pool = new Pool(url, { connections: 16 });
  let next = 0;
  const send = async () => {
    while (next < setup.users) {
      const i = next++;
      const answer = await pool.request({
        method: 'POST',
        path: '/users',
        headers: {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/json',
          prefer: 'respond-async',
        },
        body: JSON.stringify({ user: userInput(run, i) }),
      });
      const text = await answer.body.text();
      if (answer.statusCode !== 202) throw new Error(`POST /users: ${answer.statusCode} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, send));
  const queuedS = (performance.now() - started) / 1000;
  const endedWhenQueued = Object.values(await queue.getJobCounts('completed', 'failed'));

  const deadline = Date.now() + 60_000 + setup.users * 20;
  let counts = await queue.getJobCounts('completed', 'failed');
  while (counts.completed + counts.failed < setup.users) {
    if (Date.now() > deadline) throw new Error(`jobs did not end: ${JSON.stringify(counts)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    counts = await queue.getJobCounts('completed', 'failed');
  }
  const seconds = (performance.now() - started) / 1000;

  const cpuAfter = await cpuOf(setup, pids);
  const peak: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) peak[name] = await peakRssMb(pid);

  await pool.close();
  for (const worker of workers) await worker.stop();
  await api.stop();
  await queue.close();
  await connection.quit();

  return {
    users_per_s: round(setup.users / seconds),
    seconds: round(seconds, 2),
    queued_s: round(queuedS, 2),
    // The worker's pace once the API is idle: what it does when it has the machine to itself.
    drain_users_per_s: round(
      (setup.users - endedWhenQueued.reduce((a, b) => a + b, 0)) / (seconds - queuedS),
    ),
    failed: counts.failed,
    calls_per_user: await verify(setup, counts.failed),
    cpu_s_per_1000: perThousand(cpuBefore, cpuAfter, setup.users),
    peak_rss_mb: peak,
  };
}

/** The same users made by `processes` direct-call processes, `concurrency` at once each. */
export async function measureDirect(setup: Setup, run: string): Promise<Measurement> {
  await clean(setup);
  const children = await Promise.all(
    Array.from({ length: setup.processes }, () => startChild('direct.ts')),
  );
  const pids = Object.fromEntries(children.map((child, i) => [`direct${i + 1}`, child.pid]));

  await setup.backends.call('resetCalls');
  const cpuBefore = await cpuOf(setup, pids);
  const share = Math.ceil(setup.users / setup.processes);
  const results = await Promise.all(
    children.map((child, i) =>
      child.run<DirectResult>({
        keycloakUrl: setup.backends.keycloakUrl,
        wacBaseUrl: setup.backends.wacBaseUrl,
        task: 'provision',
        run,
        from: i * share,
        to: Math.min(setup.users, (i + 1) * share),
        concurrency: setup.concurrency,
      } satisfies DirectInput),
    ),
  );
  const seconds =
    (Math.max(...results.map((r) => r.ended)) - Math.min(...results.map((r) => r.started))) / 1000;

  const cpuAfter = await cpuOf(setup, pids);
  const peak: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) peak[name] = await peakRssMb(pid);
  for (const child of children) await child.stop();

  return {
    users_per_s: round(setup.users / seconds),
    seconds: round(seconds, 2),
    failed: setup.users - results.reduce((sum, r) => sum + r.done, 0),
    calls_per_user: await verify(setup, 0),
    cpu_s_per_1000: perThousand(cpuBefore, cpuAfter, setup.users),
    peak_rss_mb: peak,
  };
}

async function cpuOf(setup: Setup, pids: Record<string, number>) {
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) cpu[name] = await cpuSeconds(pid);
  cpu.emulators = await cpuSeconds(setup.backends.pid);
  cpu.redis = await redisCpu(setup.redisUrl);
  return cpu;
}

function perThousand(before: Record<string, number>, after: Record<string, number>, n: number) {
  return Object.fromEntries(
    Object.keys(after).map((name) => [name, round(((after[name] - before[name]) * 1000) / n, 2)]),
  );
}
