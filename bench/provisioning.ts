/**
 * Provisioning throughput: N users created through `POST /users` (`Prefer: respond-async`) on
 * one API process and one worker process (KITTER_WORKER_CONCURRENCY=C), until every job has
 * ended; beside it, in the same run, a baseline making the same Keycloak and wac-core calls for
 * the same users with the same concurrency, directly (bench/direct.ts). Both emulators answer
 * every request after BENCH_LATENCY_MS. Each side runs BENCH_RUNS times, alternating; the
 * figures are the medians.
 *
 *   npm run bench:provisioning     (BENCH_USERS=5000, BENCH_CONCURRENCY=50, BENCH_RUNS=3)
 */
import { startRedisServer } from '../test/support/redis.js';
import { measureDirect, measureKitter, type Setup } from './provisioning-run.js';
import { alternateRuns, LATENCY_MS, machine, RUNS, saveResult, startBackends } from './support.js';

const USERS = Number(process.env.BENCH_USERS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);

const redis = await startRedisServer();
const backends = await startBackends();
const setup: Setup = {
  redisUrl: redis.url,
  backends,
  users: USERS,
  concurrency: CONCURRENCY,
  processes: 1,
};

const {
  kitterRuns: kitter,
  baselineRuns: direct,
  ...paired
} = await alternateRuns(
  (run) => measureDirect(setup, `d${run}`),
  (run) => measureKitter(setup, `k${run}`),
);
const kitterRate = paired.kitterRate;
const directRate = paired.baselineRate;
const result = {
  users: USERS,
  concurrency: CONCURRENCY,
  latency_ms: LATENCY_MS,
  runs: RUNS,
  kitter_users_per_s: kitterRate,
  baseline_users_per_s: directRate,
  ratio: paired.ratio,
  ratio_of_medians: paired.ratioOfMedians,
  failed: kitter.reduce((sum, m) => sum + m.failed, 0),
  target: { ratio: 0.9 },
  kitter_runs: kitter,
  baseline_runs: direct,
  machine: machine(),
};

const last = kitter[kitter.length - 1];
console.log(`provisioning of ${USERS} users, concurrency ${CONCURRENCY}, ${LATENCY_MS} ms a call`);
console.log(`  kitter:    ${kitterRate} users/s (API + 1 worker; median of ${RUNS})`);
console.log(`  baseline:  ${directRate} users/s (same calls, direct, no queue)`);
console.log(`  ratio:     ${result.ratio} (median of the runs' ratios; target >= 0.9)`);
console.log(`  failed jobs: ${result.failed}`);
console.log(`  calls/user: kitter ${JSON.stringify(last.calls_per_user)}`);
console.log(`              direct ${JSON.stringify(direct[direct.length - 1].calls_per_user)}`);
console.log(`  CPU s/1000 users: kitter ${JSON.stringify(last.cpu_s_per_1000)}`);
console.log(
  `                    direct ${JSON.stringify(direct[direct.length - 1].cpu_s_per_1000)}`,
);
await saveResult('provisioning', result);

await backends.close();
await redis.kill();
