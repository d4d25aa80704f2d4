/**
 * Domain logout: a domain of BENCH_DOMAIN_USERS users seeded straight into both emulators, then
 * `POST /domains/{id}/logout` through an API and one worker (KITTER_LOGOUT_FAN_OUT=F), until
 * the job has ended; users logged out a second, beside the same Keycloak calls made directly
 * with the same concurrency F (bench/direct.ts: count, pages of 100, F logouts in flight).
 * Medians of BENCH_RUNS runs.
 *
 *   npm run bench:logout           (BENCH_DOMAIN_USERS=10000 BENCH_FAN_OUT=10 BENCH_RUNS=3)
 */
import { Redis } from 'ioredis';

import { freePort, startRedisServer } from '../test/support/redis.js';
import type { DirectInput, DirectResult } from './direct.js';
import {
  alternateRuns,
  apiAnswers,
  kitterEnv,
  LATENCY_MS,
  machine,
  round,
  RUNS,
  saveResult,
  startBackends,
  startChild,
  startKitter,
  TOKEN,
} from './support.js';

const USERS = Number(process.env.BENCH_DOMAIN_USERS ?? 10_000);
const FAN_OUT = Number(process.env.BENCH_FAN_OUT ?? 10);

const redis = await startRedisServer();
const backends = await startBackends();

/** Empties Redis and the emulators, then seeds the domain's users; answers the domain's id. */
async function seed(): Promise<string> {
  const flush = new Redis(redis.url);
  await flush.flushall();
  await flush.quit();
  await backends.call('reset');
  await backends.call('seedDomainUsers', { count: USERS });
  return backends.call<string>('domainId');
}

async function checkAllLoggedOut() {
  const logouts = await backends.call<{ users: number; calls: number }>('logouts');
  if (logouts.users !== USERS) throw new Error(`${logouts.users} of ${USERS} users logged out`);
  return logouts.calls;
}

async function measureKitter() {
  const domainId = await seed();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = kitterEnv(redis.url, backends, { KITTER_LOGOUT_FAN_OUT: String(FAN_OUT) });
  const api = await startKitter('api', { ...env, PORT: String(port) }, apiAnswers(url));
  const worker = await startKitter('worker', { ...env, PORT: '0' }, async () => true);
  const headers = { authorization: `Bearer ${TOKEN}` };

  const started = performance.now();
  const accepted = await fetch(`${url}/domains/${domainId}/logout`, { method: 'POST', headers });
  const { job } = (await accepted.json()) as { job: { id: string } };
  if (accepted.status !== 202) throw new Error(`logout: ${accepted.status}`);
  let state = 'queued';
  let done = 0;
  while (state !== 'succeeded' && state !== 'failed') {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const answer = await fetch(`${url}/jobs/${job.id}`, { headers });
    ({ state, done = 0 } = (
      (await answer.json()) as { job: { state: string; done?: number } }
    ).job);
  }
  const seconds = (performance.now() - started) / 1000;
  if (state !== 'succeeded') throw new Error(`the logout job ${state}`);

  await worker.stop();
  await api.stop();
  const calls = await checkAllLoggedOut();
  return { users_per_s: round(USERS / seconds), seconds: round(seconds, 2), done, calls };
}

async function measureDirect() {
  await seed();
  const child = await startChild('direct.ts');
  const result = await child.run<DirectResult>({
    keycloakUrl: backends.keycloakUrl,
    wacBaseUrl: backends.wacBaseUrl,
    task: 'logout',
    concurrency: FAN_OUT,
  } satisfies DirectInput);
  await child.stop();
  const seconds = (result.ended - result.started) / 1000;
  const calls = await checkAllLoggedOut();
  return {
    users_per_s: round(USERS / seconds),
    seconds: round(seconds, 2),
    done: result.done,
    calls,
  };
}

const {
  kitterRuns: kitter,
  baselineRuns: direct,
  ...paired
} = await alternateRuns(
  () => measureDirect(),
  () => measureKitter(),
);
const kitterRate = paired.kitterRate;
const directRate = paired.baselineRate;
const result = {
  users: USERS,
  fan_out: FAN_OUT,
  latency_ms: LATENCY_MS,
  runs: RUNS,
  kitter_users_per_s: kitterRate,
  baseline_users_per_s: directRate,
  ratio: paired.ratio,
  ratio_of_medians: paired.ratioOfMedians,
  // What F calls in flight of LATENCY_MS each allow at most.
  ceiling_users_per_s: round((FAN_OUT * 1000) / LATENCY_MS),
  kitter_runs: kitter,
  baseline_runs: direct,
  machine: machine(),
};

console.log(`domain logout of ${USERS} users, fan-out ${FAN_OUT}, ${LATENCY_MS} ms a call`);
console.log(`  kitter:    ${kitterRate} users/s (median of ${RUNS})`);
console.log(`  baseline:  ${directRate} users/s (same calls, direct, ${FAN_OUT} in flight)`);
console.log(`  ratio:     ${result.ratio}; ceiling ${result.ceiling_users_per_s} users/s`);
await saveResult('logout', result);

await backends.close();
await redis.kill();
